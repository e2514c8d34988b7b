"""Learner throughput of the off-policy recipes: SAC/TQC gradient steps per second, HER replay
sampling included, on the CPU and (when present) on CUDA, same machine, same run.

Why: off-policy training on the Panda tasks is learner-bound (one gradient step per env step),
so this decides which recipe a machine can afford. Rows: simgate's PandaPush recipe
(docs/recipes/panda_push_sac_her.yaml, SAC 2x256, batch 256) and the peer, rl-baselines3-zoo's
Push recipe (TQC 3x512, batch 2048, 2 critics). The ratio column is each row's steps/s over the
peer's on the same device.

The replay buffer is filled with random-action episodes of a stand-in env that has PandaPush's
spaces and success rule (0.05 m) but no physics: the learner's cost does not depend on the
simulator, and the bench runs where PyBullet is not installed (a GPU box). Each trained model also
checks the deployment path: the model (CUDA-trained where CUDA is used) exported with ``export_torchscript`` and run on
the CPU with torch alone reproduces the SB3 policy's actions to 1e-5 on 1,000 observations.

    python bench/learner_throughput.py --grad-steps 300 --json out/learner.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

PUSH_OBS, GOAL, ACT, EPISODE_STEPS, THRESHOLD_M = 18, 3, 3, 50, 0.05
RECIPE = Path(__file__).resolve().parents[1] / "docs" / "recipes" / "panda_push_sac_her.yaml"
RL_ZOO_PUSH = {"algo": "tqc", "net_arch": [512, 512, 512], "batch_size": 2048, "learning_rate": 1e-3,
               "gamma": 0.95, "tau": 0.05, "n_critics": 2, "her_n_sampled_goal": 4, "normalize_obs": False}


class PushSpacesEnv(gym.Env):
    """PandaPush's observation/action spaces and sparse reward on a random walk (no physics)."""

    def __init__(self) -> None:
        box = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        self.observation_space = gym.spaces.Dict({"achieved_goal": box(GOAL), "desired_goal": box(GOAL),
                                                  "observation": box(PUSH_OBS)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32)
        self._t, self._obs = 0, None

    def _observe(self) -> dict:
        return {k: v.copy() for k, v in self._obs.items()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        r = self.np_random
        self._obs = {"observation": r.normal(0, 0.1, PUSH_OBS).astype(np.float32),
                     "achieved_goal": r.uniform(-0.15, 0.15, GOAL).astype(np.float32),
                     "desired_goal": r.uniform(-0.15, 0.15, GOAL).astype(np.float32)}
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        self._t += 1
        a = np.asarray(action, dtype=np.float32)
        self._obs["observation"][:ACT] += 0.01 * a
        self._obs["achieved_goal"] += 0.005 * a * (self.np_random.random() < 0.3)
        r = float(self.compute_reward(self._obs["achieved_goal"], self._obs["desired_goal"], None))
        return self._observe(), r, False, self._t >= EPISODE_STEPS, {"is_success": r == 0.0}

    def compute_reward(self, achieved_goal, desired_goal, info) -> np.ndarray:
        d = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return -(d >= THRESHOLD_M).astype(np.float32)


def _cfg(name: str):
    import yaml

    from simgate.policies.recipes import RecipeConfig

    base = yaml.safe_load(RECIPE.read_text())
    if name == "rl-zoo push (TQC 3x512, batch 2048)":
        base.update(RL_ZOO_PUSH)
    base.update(env_id="bench/PushSpaces", learning_starts=0, total_steps=10**6)
    return RecipeConfig(**base)


def measure(name: str, device: str, grad_steps: int, fill_steps: int, threads: int, max_s: float) -> tuple[dict, object]:
    import torch
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from simgate.policies.train import build_model

    torch.set_num_threads(threads)
    cfg = _cfg(name)
    venv = DummyVecEnv([PushSpacesEnv])
    if cfg.normalize_obs:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False, gamma=cfg.gamma)
    cfg.learning_starts = fill_steps  # learn() below only collects random-action episodes
    model = build_model(cfg, venv, device, None)
    model.learn(fill_steps, progress_bar=False)
    model.train(gradient_steps=5, batch_size=cfg.batch_size)  # warm-up (CUDA context, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    t0, done = time.perf_counter(), 0
    while done < grad_steps and time.perf_counter() - t0 < max_s:  # time-boxed: a slow row stops early
        chunk = min(10, grad_steps - done)
        model.train(gradient_steps=chunk, batch_size=cfg.batch_size)
        done += chunk
        if device == "cuda":
            torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    grad_steps = done
    row = {"recipe": name, "device": device, "grad_steps": grad_steps, "wall_s": round(dt, 3),
           "grad_steps_per_s": round(grad_steps / dt, 1), "ms_per_grad_step": round(1000 * dt / grad_steps, 3)}
    return row, (model, venv if isinstance(venv, VecNormalize) else None)


def export_check(model, vecnorm, n_obs: int = 1000) -> dict:
    """CUDA (or any) model -> TorchScript -> CPU, torch only: max |action difference| on n_obs."""
    from simgate.policies.export import SB3Policy, TorchPolicy, export_torchscript

    if vecnorm is not None:
        vecnorm.training = False
    rng = np.random.default_rng(0)
    obs = {"observation": rng.normal(0, 0.2, (n_obs, PUSH_OBS)).astype(np.float32),
           "achieved_goal": rng.uniform(-0.2, 0.2, (n_obs, GOAL)).astype(np.float32),
           "desired_goal": rng.uniform(-0.2, 0.2, (n_obs, GOAL)).astype(np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        export_torchscript(model, Path(tmp) / "policy.ts", vecnorm)
        exported = TorchPolicy(Path(tmp) / "policy.ts").act(obs)
    reference = SB3Policy(model, vecnorm).act(obs)
    diff = float(np.max(np.abs(exported - reference)))
    return {"trained_on": str(model.device), "runs_on": "cpu (torch only)", "observations": n_obs,
            "max_abs_action_diff": diff, "within_1e-5": diff <= 1e-5}


def main() -> int:
    import torch

    from simgate.policies.train import pick_device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grad-steps", type=int, default=300)
    ap.add_argument("--max-s", type=float, default=30.0, help="time box per row (s)")
    ap.add_argument("--fill-steps", type=int, default=5000, help="random-action env steps in the buffer")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--devices", default="auto", help="comma list of cpu,cuda; auto = cpu plus cuda if present")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    auto = pick_device("auto")
    devices = ["cpu"] + (["cuda"] if auto == "cuda" else []) if args.devices == "auto" else args.devices.split(",")
    names = ["simgate push (SAC 2x256, batch 256)", "rl-zoo push (TQC 3x512, batch 2048)"]
    print(f"torch {torch.__version__}; pick_device('auto') = {auto}"
          + (f" ({torch.cuda.get_device_name(0)})" if auto == "cuda" else ""))
    rows, checks = [], []
    for device in devices:
        peer = None
        for name in reversed(names):  # peer first, so its rate is known for the ratio
            row, (model, vecnorm) = measure(name, device, args.grad_steps, args.fill_steps, args.threads, args.max_s)
            peer = peer or row["grad_steps_per_s"]
            row["vs_rl_zoo"] = round(row["grad_steps_per_s"] / peer, 2)
            rows.append(row)
            print(f"{device:5s} {name:40s} {row['grad_steps_per_s']:9.1f} grad steps/s "
                  f"({row['ms_per_grad_step']:.2f} ms)  {row['vs_rl_zoo']:.2f}x rl-zoo", flush=True)
            checks.append({"recipe": name, **export_check(model, vecnorm)})
            print(f"      exported to CPU: max |diff| {checks[-1]['max_abs_action_diff']:.2e} "
                  f"on 1000 observations (within 1e-5: {checks[-1]['within_1e-5']})", flush=True)
    by = {(r["recipe"], r["device"]): r["grad_steps_per_s"] for r in rows}
    for name in names:
        if (name, "cuda") in by:
            print(f"cuda vs cpu, {name}: {by[(name, 'cuda')] / by[(name, 'cpu')]:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"pick_device_auto": auto, "rows": rows, "export_checks": checks}, indent=2))
    return 0 if all(c["within_1e-5"] for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
