"""Push trained on a GPU, judged by PyBullet: wall time to >= 90 % on 200 PyBullet holdout goals.

The GPU machine has no PyBullet, so the run has two halves:

    # on the GPU machine: the twin recipe on CUDA with CUDA graphs, an actor snapshot every
    # --snapshot-every-s of wall time (the clock starts before the twin is built and the graph captured)
    python bench/twin_gpu_push.py train --out out/gpu_push.pt --max-wall-s 240 --set num_envs=4096
    # on a machine with PyBullet: every snapshot on the holdout goals; the first >= 90 % stops the clock
    python bench/twin_gpu_push.py judge out/gpu_push.pt --holdout 200 --json out/gpu_push_judged.json
    # several judged runs on one figure
    python bench/twin_gpu_push.py plot robust=out/a.json nominal=out/b.json --out out/curves.png --bar 0.6

``--set key=value`` overrides the recipe (docs/recipes/panda_push_twin_ppo.yaml); values are YAML.
Like ``bench/time_to_solve.py --task push``, the clock stops at the first snapshot whose holdout
result reaches the bar (the holdout picks the stopping point, as there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "docs" / "recipes" / "panda_push_twin_ppo.yaml"


def train(args) -> None:
    from simgate.policies.batched_ppo import Learner
    from simgate.policies.provenance import code_version
    from simgate.policies.recipes import load_recipe
    from simgate.sim.twin.env import make_twin

    overrides = {"device": "cuda", "cuda_graph": True, **{k: yaml.safe_load(v) for k, v in
                                                          (kv.split("=", 1) for kv in args.set)}}
    cfg = load_recipe(RECIPE, **overrides)
    t0 = time.perf_counter()
    learner, stats = None, None
    modes = [(cfg.cuda_graph, cfg.compile_twin, cfg.cuda_graph), (cfg.cuda_graph, cfg.compile_twin, False),
             (cfg.cuda_graph, False, False), (False, False, False)]
    for graph, comp, graph_update in dict.fromkeys(modes):  # a mode that fails falls back to the next, on the clock
        try:
            train_dr = cfg.randomization if cfg.train_randomization is None else cfg.train_randomization
            env = make_twin(cfg.env_id, cfg.num_envs, randomization=train_dr, device=cfg.device,
                            seed=cfg.seed, cuda_graph=graph, compile=comp)
            learner = Learner(cfg.model_copy(update={"cuda_graph": graph}), env, cfg.device)
            if not graph_update:
                learner.graphed = None  # the twin's step graphed, the PPO update eager
            stats = learner.update(learner.collect())
            break
        except Exception as exc:  # noqa: BLE001 - reported, then the next mode
            learner = stats = None
            print(f"mode cuda_graph={graph} compile={comp} graphed_update={graph_update} failed: "
                  f"{type(exc).__name__}: {str(exc)[:500]}", flush=True)
    if learner is None or stats is None:
        raise SystemExit("no twin mode could train (see the failures above)")
    cfg = cfg.model_copy(update={"cuda_graph": graph, "compile_twin": comp})
    first_iter_s = round(time.perf_counter() - t0, 2)
    print(f"first iteration (build, compile, capture) {first_iter_s} s; cuda_graph={graph} compile={comp} "
          f"graphed_update={learner.graphed is not None}", flush=True)
    snaps, next_snap, iters = [], 0.0, 1
    while True:
        wall = time.perf_counter() - t0
        done = wall >= args.max_wall_s or learner.steps >= cfg.total_steps
        if wall >= next_snap or done:
            snaps.append({"steps": learner.steps, "wall_s": round(wall, 2), "iters": iters,
                          "twin_step_success": stats["twin/step_success"], "actor": learner.actor()})
            next_snap = wall + args.snapshot_every_s
            print(f"{wall:7.1f} s  {learner.steps / 1e6:6.1f} M steps  twin step success "
                  f"{stats['twin/step_success']:.3f}", flush=True)
        if done:
            break
        stats = learner.update(learner.collect())
        iters += 1
    steps_after_first = learner.steps - cfg.num_envs * cfg.n_steps
    meta = {"config": cfg.model_dump(), "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "code_version": code_version(),
            "twin_training_randomization": env.randomization.model_dump(mode="json"),  # what the twin drew from
            "graphed_update": learner.graphed is not None, "first_iteration_s": first_iter_s, "iterations": iters, "steps": learner.steps,
            "steps_per_s": round(learner.steps / wall, 1),
            "steps_per_s_after_first_iteration": round(steps_after_first / max(1e-9, wall - first_iter_s), 1),
            "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None}
    print(json.dumps({k: v for k, v in meta.items() if k != "config"}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": meta, "snapshots": snaps}, args.out)


def judge(args) -> None:
    from simgate.policies.batched_ppo import pybullet_eval
    from simgate.policies.evaluation import seeds_for
    from simgate.policies.recipes import RecipeConfig

    blob = torch.load(args.snapshots, weights_only=False)
    cfg = RecipeConfig(**{**blob["meta"]["config"], "device": "cpu"})
    seeds = seeds_for("holdout", args.holdout)
    rows, solved = [], None
    for snap in blob["snapshots"][args.skip::args.every]:
        res = pybullet_eval(snap["actor"], cfg, seeds)
        row = {k: snap[k] for k in ("steps", "wall_s", "twin_step_success")} | {"holdout_success": res.success_rate}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if solved is None and res.success_rate >= args.bar:
            solved = row
            if args.stop:
                break
    out = {"meta": {k: v for k, v in blob["meta"].items() if k != "config"}, "config": blob["meta"]["config"],
           "holdout_goals": args.holdout, "under": cfg.randomization or "nominal",
           "bar": args.bar, "solved": solved, "curve": rows}
    print(json.dumps({"solved": solved}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


def plot(args) -> None:
    """Judged curves (``judge --json`` files) on one figure: PyBullet holdout success against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for spec in args.judged:
        label, _, path = spec.rpartition("=")
        blob = json.loads(Path(path).read_text())
        curve = blob["curve"]
        ax.plot([r["steps"] / 1e6 for r in curve], [r["holdout_success"] for r in curve], "o-",
                label=f"{label or Path(path).stem} ({blob['meta']['device_name']})")
    if args.bar is not None:
        ax.axhline(args.bar, color="grey", ls="--", lw=1, label=f"bar {args.bar:g}")
    ax.set_xlabel("twin env steps (M)")
    ax.set_ylabel(f"PyBullet success, {args.holdout_label}")
    ax.set_ylim(0, 1)
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--max-wall-s", type=float, default=300.0)
    t.add_argument("--snapshot-every-s", type=float, default=10.0)
    t.add_argument("--set", action="append", default=[], help="recipe override key=value (YAML value)")
    j = sub.add_parser("judge")
    j.add_argument("snapshots", type=Path)
    j.add_argument("--holdout", type=int, default=200)
    j.add_argument("--bar", type=float, default=0.9)
    j.add_argument("--skip", type=int, default=0, help="leave out the first N snapshots")
    j.add_argument("--every", type=int, default=1, help="judge every k-th snapshot")
    j.add_argument("--stop", action="store_true", help="stop at the first snapshot that reaches the bar")
    j.add_argument("--json", type=Path)
    p = sub.add_parser("plot", help="curves of judged JSON files, LABEL=PATH each")
    p.add_argument("judged", nargs="+")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--bar", type=float, default=None)
    p.add_argument("--title", default="Push trained on a GPU, judged in PyBullet")
    p.add_argument("--holdout-label", default="200 holdout goals")
    args = ap.parse_args()
    {"train": train, "judge": judge, "plot": plot}[args.cmd](args)


if __name__ == "__main__":
    main()
