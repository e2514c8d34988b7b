"""Time-to-solve on PandaReach: wall time and env steps until the holdout success rate reaches
95 %, simgate's default recipe (SAC + HER on simgate/PandaReach-v0) next to rl-baselines3-zoo's
published TQC + HER hyperparameters (PandaReach-v1 entry) on panda-gym's PandaReach-v3, the
peer's usual setting. Same machine, same run, alternating per seed.

Protocol (both sides): evaluate every ``--eval-every`` env steps on the first ``--eval-episodes``
holdout seeds, deterministic actions; the clock counts training only (evaluation time is
excluded); torch on ``--threads`` threads.

    python bench/time_to_solve.py --seeds 3 --json out/time_to_solve.json

``--task push``: wall time to >= 90 % on 200 PyBullet holdout goals, the twin recipe
(docs/recipes/panda_push_twin_ppo.yaml, trained in the batched twin, selected on PyBullet) next to
the PyBullet SAC + HER recipe (docs/recipes/panda_push_sac_her.yaml). Each side trains with
``simgate train`` under ``--max-wall-s``; every selection evaluation's policy is checked on the
holdout goals, and the clock (training wall time, as run.json counts it) stops at the first
holdout result >= 90 %.

    python bench/time_to_solve.py --task push --sides twin_ppo --seeds 1 --json out/push_tts.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def _eval(model, make_env, seeds, vecnorm=None) -> float:
    env = make_env()
    ok = 0
    for s in seeds:
        obs, _ = env.reset(seed=int(s))
        info = {}
        for _ in range(50):
            o = vecnorm.normalize_obs({k: v[None] for k, v in obs.items()}) if vecnorm is not None else obs
            a, _ = model.predict(o, deterministic=True)
            obs, _, term, trunc, info = env.step(np.asarray(a).reshape(-1))
            if term or trunc:
                break
        ok += bool(info.get("is_success"))
    env.close()
    return ok / len(seeds)


def run_one(side: str, seed: int, max_steps: int, eval_every: int, eval_episodes: int,
            overrides: dict | None = None) -> dict:
    import gymnasium as gym
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.callbacks import BaseCallback

    from simgate.policies.evaluation import seeds_for
    from simgate.policies.recipes import RL_ZOO_TQC_HER, default_recipe
    from simgate.policies.train import build_model, make_training_env

    hold = seeds_for("holdout", eval_episodes)
    if side == "simgate":
        cfg = default_recipe("simgate/PandaReach-v0", **{"total_steps": max_steps, "seed": seed, **(overrides or {})})
        venv = make_training_env(cfg)
        model = build_model(cfg, venv, "cpu", None)
        from stable_baselines3.common.vec_env import VecNormalize

        vecnorm = venv if isinstance(venv, VecNormalize) else None

        def make_env():
            from simgate.sim import make

            return make("simgate/PandaReach-v0")
    else:
        import panda_gym  # noqa: F401
        from sb3_contrib import TQC
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        z = RL_ZOO_TQC_HER
        venv = VecNormalize(DummyVecEnv([lambda: gym.make("PandaReach-v3")]), norm_obs=True, norm_reward=False,
                            gamma=z["gamma"])
        model = TQC("MultiInputPolicy", venv, learning_rate=z["learning_rate"], batch_size=z["batch_size"],
                    gamma=z["gamma"], tau=z["tau"], buffer_size=z["buffer_size"], learning_starts=z["learning_starts"],
                    train_freq=z["train_freq"], gradient_steps=z["gradient_steps"],
                    replay_buffer_class=HerReplayBuffer,
                    replay_buffer_kwargs={"n_sampled_goal": z["her_n_sampled_goal"], "goal_selection_strategy": "future"},
                    policy_kwargs={"net_arch": z["net_arch"], "n_critics": z["n_critics"]}, seed=seed, device="cpu")
        vecnorm = venv

        def make_env():
            return gym.make("PandaReach-v3")

    result = {"side": side, "seed": seed, "solved": False, "steps": None, "wall_s": None, "curve": []}
    clock = {"train": 0.0, "t": time.perf_counter()}

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            n = self.model.num_timesteps
            if n % eval_every:
                return True
            clock["train"] += time.perf_counter() - clock["t"]
            if vecnorm is not None:
                vecnorm.training = False
            sr = _eval(self.model, make_env, hold, vecnorm)
            if vecnorm is not None:
                vecnorm.training = True
            result["curve"].append([n, round(clock["train"], 2), sr])
            clock["t"] = time.perf_counter()
            if sr >= 0.95:
                result.update(solved=True, steps=n, wall_s=round(clock["train"], 2))
                return False
            return True

    model.learn(max_steps, callback=Stop())
    venv.close()
    return result


PUSH_RECIPES = {"twin_ppo": "docs/recipes/panda_push_twin_ppo.yaml", "sac_her": "docs/recipes/panda_push_sac_her.yaml"}


def run_push(side: str, seed: int, max_wall_s: float, holdout: int, out_root: Path) -> dict:
    """Train one side; check each new best selection policy on the PyBullet holdout goals."""
    from simgate.policies.evaluation import evaluate, seeds_for
    from simgate.policies.export import TorchPolicy
    from simgate.policies.recipes import load_recipe
    from simgate.policies.train import train

    root = Path(__file__).resolve().parent.parent
    cfg = load_recipe(root / PUSH_RECIPES[side], seed=seed, stop_at_success=None)
    out = out_root / f"{side}_seed{seed}"
    result = {"side": side, "seed": seed, "solved": False, "wall_s": None, "steps": None, "curve": []}
    hold = seeds_for("holdout", holdout)

    def on_eval(steps: int, success: float) -> bool:
        if not (out / "policy.ts").exists() or success < 0.85:
            return False
        state = json.loads((out / "checkpoints" / "state.json").read_text()) if side == "sac_her" else None
        wall = (state or {}).get("wall_s") or time.perf_counter() - clock
        res = evaluate(TorchPolicy(out / "policy.ts"), cfg.env_id, hold)
        result["curve"].append([steps, round(wall, 1), success, res.success_rate])
        if res.success_rate >= 0.9:
            result.update(solved=True, wall_s=round(wall, 1), steps=steps, holdout_success=res.success_rate)
            return True
        return False

    clock = time.perf_counter()
    run = train(cfg, out, progress_bar=False, max_wall_s=max_wall_s, on_eval=on_eval)
    result["status"] = run["status"]
    return result


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 (split "
                                                               "seeds over processes, one per core)")
    ap.add_argument("--max-steps", type=int, default=20_000)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--override", action="append", default=[], help="simgate recipe field=value (YAML value)")
    ap.add_argument("--sides", default=None, help="reach: rl_zoo_tqc_her,simgate; push: twin_ppo,sac_her")
    ap.add_argument("--task", choices=["reach", "push"], default="reach")
    ap.add_argument("--max-wall-s", type=float, default=1800.0, help="push: training budget per run")
    ap.add_argument("--holdout", type=int, default=200, help="push: PyBullet holdout goals")
    ap.add_argument("--out", type=Path, default=Path("runs/time_to_solve"))
    args = ap.parse_args()
    if args.task == "push":
        torch.set_num_threads(args.threads)
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = [run_push(side, seed, args.max_wall_s, args.holdout, args.out) for seed in seeds
                for side in (args.sides or "twin_ppo,sac_her").split(",")]
        for r in runs:
            print(f"seed {r['seed']} {r['side']:<9} solved={r['solved']} wall_s={r['wall_s']} steps={r['steps']}", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"task": "push", "runs": runs}, indent=2))
        return
    args.sides = args.sides or "rl_zoo_tqc_her,simgate"
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.override)}
    torch.set_num_threads(args.threads)
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for side in args.sides.split(","):
            r = run_one(side, seed, args.max_steps, args.eval_every, args.eval_episodes, overrides)
            runs.append(r)
            print(f"seed {seed} {side:<15} solved={r['solved']} steps={r['steps']} wall_s={r['wall_s']}", flush=True)

    def med(side, key):
        vals = [r[key] for r in runs if r["side"] == side and r["solved"]]
        return statistics.median(vals) if vals else None

    summary = {s: {"median_steps": med(s, "steps"), "median_wall_s": med(s, "wall_s"),
                   "solved": sum(r["solved"] for r in runs if r["side"] == s)} for s in ("rl_zoo_tqc_her", "simgate")}
    zoo, sg = summary["rl_zoo_tqc_her"], summary["simgate"]
    if zoo["median_wall_s"] and sg["median_wall_s"]:
        summary["wall_ratio_simgate_over_zoo"] = round(sg["median_wall_s"] / zoo["median_wall_s"], 3)
        summary["steps_ratio_simgate_over_zoo"] = round(sg["median_steps"] / zoo["median_steps"], 3)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
