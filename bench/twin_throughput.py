"""Twin throughput next to PyBullet, same run: env steps/s of the batched torch twin at
1 / 256 / 4,096 / 65,536 envs (CPU, one torch thread; and CUDA eager when a GPU is present),
PyBullet's per-process rate on the same task, their ratio at 4,096 envs, the PPO learner's
minibatch updates/s and, on CUDA, peak GPU memory. Random actions in [-1, 1].

    python bench/twin_throughput.py --json out/twin_throughput.json
CUDA graphs / torch.compile are not implemented yet: the CUDA row is eager mode.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

TASKS = {"reach": "simgate/PandaReach-v0", "push": "simgate/PandaPush-v0"}


def pybullet_rate(env_id: str, steps: int) -> float:
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


def twin_rate(env_id: str, n: int, device: str, min_s: float = 1.0) -> float:
    from simgate.sim.twin.env import make_twin

    env = make_twin(env_id, n, device=device)
    env.reset(seed=0)
    a = torch.rand(n, 3, device=device) * 2 - 1
    for _ in range(3):
        env.step(a)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    k, t = 0, time.perf_counter()
    while time.perf_counter() - t < min_s or k < 3:
        env.step(a)
        k += 1
        sync()
    return n * k / (time.perf_counter() - t)


def learner_rate(env_id: str, device: str, num_envs: int = 1024, iters: int = 2) -> float:
    from simgate.policies.batched_ppo import Learner
    from simgate.policies.recipes import default_recipe
    from simgate.sim.twin.env import make_twin

    cfg = default_recipe(env_id, "twin_ppo", n_epochs=1, num_envs=num_envs, batch_size=min(8192, num_envs * 50))
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
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out: dict = {"torch_threads": 1, "devices": devices, "tasks": {}}
    for task in args.tasks.split(","):
        env_id = TASKS[task]
        row: dict = {"pybullet_steps_per_s": round(pybullet_rate(env_id, args.pybullet_steps), 1)}
        for dev in devices:
            for n in (int(x) for x in args.envs.split(",")):
                if dev == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                row[f"twin_{dev}_{n}_steps_per_s"] = round(twin_rate(env_id, n, dev), 1)
                if dev == "cuda":
                    row[f"twin_cuda_{n}_peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            row[f"learner_{dev}_updates_per_s"] = round(learner_rate(env_id, dev, args.learner_envs), 2)
        if "twin_cpu_4096_steps_per_s" in row:
            row["ratio_cpu_4096_over_pybullet"] = round(row["twin_cpu_4096_steps_per_s"] / row["pybullet_steps_per_s"], 1)
        out["tasks"][task] = row
        print(json.dumps({task: row}, indent=2), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
