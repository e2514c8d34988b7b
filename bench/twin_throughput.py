"""Twin throughput next to PyBullet, same run: env steps/s of the batched torch twin at
1 / 256 / 4,096 / 65,536 envs (CPU, one torch thread; and, when a GPU is present, CUDA eager and
CUDA graphs: one captured step replayed, ``make_twin(..., cuda_graph=True)``), PyBullet's
per-process rate on the same task, their ratio at 4,096 envs (once, then the median of
``--ratio-rounds`` back-to-back pairs: the figure to quote where the machine's load drifts), the PPO learner's minibatch
updates/s (eager, and graphed on CUDA) and, on CUDA, peak GPU memory and the graph's capture time. Random actions in [-1, 1], a new one every step on
both sides.

    python bench/twin_throughput.py --json out/twin_throughput.json

A machine without pybullet (the GPU image) reports ``pybullet_steps_per_s: null``; compare its
twin rates with PyBullet's rate measured on the CPU machine, and say so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

TASKS = {"reach": "simgate/PandaReach-v0", "push": "simgate/PandaPush-v0"}


def pybullet_rate(env_id: str, steps: int) -> float | None:
    try:
        import pybullet  # noqa: F401
    except ImportError:
        return None
    from simgate.sim import make

    env = make(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (steps, 3)).astype(np.float32)
    t = time.perf_counter()
    for a in acts:
        _, _, _, trunc, _ = env.step(a)
        if trunc:
            env.reset()
    rate = steps / (time.perf_counter() - t)
    env.close()
    return rate


def twin_rate(env_id: str, n: int, device: str, min_s: float = 1.0, cuda_graph: bool = False,
              compile: bool = False) -> tuple[float, float]:
    """(env steps/s, seconds of the first three steps: compile, the graph's capture and warm-up)."""
    from simgate.sim.twin.env import make_twin

    env = make_twin(env_id, n, device=device, cuda_graph=cuda_graph, compile=compile)
    env.reset(seed=0)
    # a new random action every step, as PyBullet gets (drawn beforehand, cycled: no RNG in the timing)
    gen = torch.Generator(device=device).manual_seed(0)
    acts = torch.rand(50, n, 3, device=device, generator=gen) * 2 - 1
    t0 = time.perf_counter()
    for i in range(3):
        env.step(acts[i])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    first_s = time.perf_counter() - t0
    k, t = 0, time.perf_counter()
    while time.perf_counter() - t < min_s or k < 3:
        env.step(acts[k % len(acts)])
        k += 1
        sync()
    return n * k / (time.perf_counter() - t), first_s


def scripted_push_rates(env_id: str, n: int = 4096, steps: int = 49, pybullet_episodes: int = 10) -> dict:
    """Steps/s while every env is pushing its box (PyBullet's scripted pusher, ``sim/scripted.py``):
    its actions are recorded first (``pybullet_episodes`` PyBullet episodes; the twin's N envs from
    their own observations), then replayed from the same resets under the clock, so the timing holds
    no policy. The random-action rows barely touch the boxes; this is the contact-heavy case. Needs
    pybullet (the scripted policy reads the PyBullet env's layout): without it, no row."""
    try:
        import pybullet  # noqa: F401
    except ImportError:
        return {}
    from simgate.sim import make
    from simgate.sim.scripted import scripted_policy_for
    from simgate.sim.twin.env import make_twin

    out: dict = {}
    env = make(env_id)
    policy = scripted_policy_for(env)
    episodes = []
    for seed in range(pybullet_episodes):
        obs, _ = env.reset(seed=seed)
        policy.reset()
        episodes.append([])
        for _ in range(steps):
            episodes[-1].append(policy.act(obs))
            obs, *_ = env.step(episodes[-1][-1])
    elapsed = 0.0
    for seed, acts in enumerate(episodes):
        env.reset(seed=seed)
        t = time.perf_counter()
        for a in acts:
            env.step(a)
        elapsed += time.perf_counter() - t
    out["pybullet_scripted_steps_per_s"] = round(pybullet_episodes * steps / elapsed, 1)
    policies = [scripted_policy_for(env) for _ in range(n)]  # one per twin env (each keeps its phase)
    env.close()
    twin = make_twin(env_id, n)
    obs, _ = twin.reset(seed=0)
    acts = []
    for _ in range(steps):
        o = {k: v.numpy() for k, v in obs.items()}
        acts.append(torch.tensor(np.stack([p.act({k: v[i] for k, v in o.items()}) for i, p in enumerate(policies)])))
        obs, *_ = twin.step(acts[-1])
    twin.reset(seed=0)
    t = time.perf_counter()
    for a in acts:
        twin.step(a)
    out[f"twin_cpu_{n}_scripted_steps_per_s"] = round(n * steps / (time.perf_counter() - t), 1)
    out[f"ratio_cpu_{n}_scripted_over_pybullet"] = round(out[f"twin_cpu_{n}_scripted_steps_per_s"]
                                                        / out["pybullet_scripted_steps_per_s"], 1)
    return out


def paired_ratios(env_id: str, rounds: int, pybullet_steps: int, n: int = 4096) -> list[float]:
    """Twin (CPU, ``n`` envs) over PyBullet steps/s, measured back to back ``rounds`` times: the
    machine's load drifts (the other core's work, clocks), a pair sees the same load."""
    out = []
    for _ in range(rounds):
        pb = pybullet_rate(env_id, pybullet_steps)
        if pb is None:
            return []
        out.append(twin_rate(env_id, n, "cpu")[0] / pb)
    return out


def learner_rate(env_id: str, device: str, num_envs: int = 1024, iters: int = 2, graph: bool = False) -> float:
    """PPO minibatch updates/s on one collected rollout (``graph``: the update captured in a CUDA graph)."""
    from simgate.policies.batched_ppo import Learner
    from simgate.policies.recipes import default_recipe
    from simgate.sim.twin.env import make_twin

    cfg = default_recipe(env_id, "twin_ppo", n_epochs=1, num_envs=num_envs, batch_size=min(8192, num_envs * 50),
                         cuda_graph=graph)
    env = make_twin(env_id, cfg.num_envs, device=device)
    learner = Learner(cfg, env, device)
    batch = learner.collect()
    learner.update(batch)
    t = time.perf_counter()
    for _ in range(iters):
        learner.update(batch)
    per_update = cfg.n_steps * cfg.num_envs // cfg.batch_size
    return iters * per_update / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", default="1,256,4096,65536")
    ap.add_argument("--pybullet-steps", type=int, default=1500)
    ap.add_argument("--tasks", default="reach,push")
    ap.add_argument("--learner-envs", type=int, default=1024, help="envs of the rollout the PPO update timing uses")
    ap.add_argument("--cpu-envs", default=None, help="env counts on CPU (default: --envs)")
    ap.add_argument("--compile-envs", default="", help="CUDA: env counts for torch.compile + CUDA graph rows "
                                                       "(each compiles the step once, ~1-2 min)")
    ap.add_argument("--compile-tasks", default="push", help="tasks that get the compile rows")
    ap.add_argument("--ratio-rounds", type=int, default=5, help="paired PyBullet / twin (CPU, 4,096 envs) "
                                                                  "measurements; their median is the ratio to quote")
    ap.add_argument("--scripted-envs", type=int, default=4096, help="push: envs of the scripted-pusher row "
                                                                   "(0: skip; recording takes ~10 s per 1,000 envs)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    devices = ["cpu"] + (["cuda", "cuda_graph"] if torch.cuda.is_available() else [])
    if args.compile_envs and torch.cuda.is_available():
        devices.append("cuda_compile_graph")
    out: dict = {"torch_threads": 1, "devices": devices, "tasks": {}}
    for task in args.tasks.split(","):
        env_id = TASKS[task]
        pb = pybullet_rate(env_id, args.pybullet_steps)
        row: dict = {"pybullet_steps_per_s": None if pb is None else round(pb, 1)}
        for dev in devices:
            if dev == "cuda_compile_graph" and task not in args.compile_tasks.split(","):
                continue
            device, graph, comp = ("cuda", dev != "cuda", dev == "cuda_compile_graph") if "cuda" in dev else (dev, False, False)
            counts = args.cpu_envs if dev == "cpu" and args.cpu_envs else args.envs
            counts = args.compile_envs if comp else counts
            for n in (int(x) for x in counts.split(",")):
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                try:
                    rate, first_s = twin_rate(env_id, n, device, cuda_graph=graph, compile=comp)
                except Exception as exc:  # noqa: BLE001 - a failed mode is reported, the others still run
                    row[f"twin_{dev}_{n}_error"] = f"{type(exc).__name__}: {exc}"[:300]
                    continue
                row[f"twin_{dev}_{n}_steps_per_s"] = round(rate, 1)
                if device == "cuda":
                    row[f"twin_{dev}_{n}_peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                    row[f"twin_{dev}_{n}_first_3_steps_s"] = round(first_s, 3)
            if not comp:
                try:
                    row[f"learner_{dev}_updates_per_s"] = round(learner_rate(env_id, device, args.learner_envs, graph=graph), 2)
                except Exception as exc:  # noqa: BLE001 - reported; the other rows still run
                    row[f"learner_{dev}_error"] = f"{type(exc).__name__}: {exc}"[:300]
        for dev in ("cpu", "cuda", "cuda_graph", "cuda_compile_graph"):
            if pb and f"twin_{dev}_4096_steps_per_s" in row:
                row[f"ratio_{dev}_4096_over_pybullet"] = round(row[f"twin_{dev}_4096_steps_per_s"] / pb, 1)
        rounds = paired_ratios(env_id, args.ratio_rounds, args.pybullet_steps) if args.ratio_rounds > 0 else []
        if rounds:
            row["ratio_cpu_4096_over_pybullet_rounds"] = [round(r, 1) for r in rounds]
            row["ratio_cpu_4096_over_pybullet_median"] = round(statistics.median(rounds), 1)
        if task == "push" and args.scripted_envs > 0:
            row.update(scripted_push_rates(env_id, args.scripted_envs))
        out["tasks"][task] = row
        print(json.dumps({task: row}, indent=2), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
