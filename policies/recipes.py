"""Training recipes: one typed config per run (every hyperparameter, network size, reward
variant via the env id, randomization, number of envs, total env steps, seed).

Defaults: SAC/TQC + HER for the goal-conditioned sparse tasks, PPO for dense rewards.
``default_recipe(env_id, algo)`` gives simgate's tuned starting point; ``RL_ZOO_TQC_HER`` is
rl-baselines3-zoo's published PandaReach hyperparameters (used by the time-to-solve benchmark).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simgate.errors import ConfigError

Algo = Literal["sac", "tqc", "ppo", "twin_ppo"]


class RecipeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    env_id: str = "simgate/PandaReach-v0"
    robot: str | None = Field(None, description="robot spec (built-in name or .yaml path) the env id belongs to; "
                                                "a spec you bring registers its ids (simgate/<Name><Task>-v0)")
    algo: Algo = "sac"
    total_steps: int = Field(20_000, gt=0, description="env steps")
    seed: int = 0
    num_envs: int = Field(1, ge=1)
    num_workers: int = Field(1, ge=1, description="processes stepping the envs (the trainer is one)")
    randomization: bool | str | dict | None = None
    train_randomization: bool | str | dict | None = Field(
        None, description="twin_ppo: randomization of the twin's training envs only (robustness to the twin's own "
                          "model error); evaluations, in PyBullet, use `randomization`. None = `randomization`")
    net_arch: list[int] = Field(default_factory=lambda: [64, 64])
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(256, ge=1)
    gamma: float = Field(0.95, gt=0, le=1)
    tau: float = Field(0.05, gt=0, le=1)
    buffer_size: int = Field(1_000_000, ge=1)
    learning_starts: int = Field(1000, ge=0)
    train_freq: int = Field(1, ge=1, description="env steps between updates (off-policy)")
    gradient_steps: int = Field(1, ge=1, description="gradient steps per update (off-policy)")
    her_n_sampled_goal: int = Field(4, ge=0, description="0 = no HER")
    normalize_obs: bool = False
    norm_obs_epsilon: float = Field(
        1e-8, gt=0, description="variance floor of the observation normalization (SB3's epsilon): 1e-4 gives every "
                                "input a scale of at least 0.01 (m, rad, m/s), so an input that never varies in "
                                "training (Push's goal height) cannot blow up when randomization moves it")
    n_critics: int = Field(2, ge=1)
    # PPO
    n_steps: int = Field(512, ge=8)
    n_epochs: int = Field(10, ge=1)
    ent_coef: float = 0.0
    gae_lambda: float = Field(0.95, gt=0, le=1, description="twin_ppo: GAE lambda")
    clip_range: float = Field(0.2, gt=0, description="twin_ppo: PPO ratio clip")
    ignore_constant_features: bool = Field(
        False, description="twin_ppo: observation features the twin never varies in training (a planar box's roll, "
                           "pitch and vertical speeds, the goal height) read 0 in the policy, so PyBullet's small "
                           "non-zero values cannot steer a policy that never learned what they mean")
    push_speed_limit_m_s: float | None = Field(
        None, gt=0, description="twin_ppo, Push: the learner's reward loses (speed - limit) per step while the object "
                                "slides faster than this (m/s). PyBullet tips a box pushed faster than ~0.5 m/s, "
                                "which the planar twin cannot represent; None = no such term")
    # bookkeeping
    eval_every_steps: int = Field(1000, ge=1)
    eval_episodes: int = Field(20, ge=1)
    stop_at_success: float | None = Field(None, gt=0, le=1, description="stop early at this selection success")
    checkpoint_every_steps: int = Field(5000, ge=1)
    init_from: str | None = Field(None, description="fine-tune: start from this run's latest checkpoint (weights, "
                                                   "replay buffer, normalization); steps continue from its count")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cuda_graph: bool = Field(False, description="twin_ppo on CUDA: capture one twin step (sim/twin/graph.py) and "
                                                "the PPO minibatch update (policies/ppo_graph.py) in CUDA graphs "
                                                "and replay them; ignored on CPU")
    compile_twin: bool = Field(False, description="twin_ppo: run the twin's step through torch.compile (fused "
                                                  "kernels; the first step pays the compile)")
    torch_threads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _train_randomization_is_twin_only(self) -> RecipeConfig:
        if self.train_randomization is not None and self.algo != "twin_ppo":
            raise ValueError(f"train_randomization applies to algo twin_ppo only (this recipe's algo is {self.algo}); "
                             "use `randomization`")
        return self


def default_recipe(env_id: str = "simgate/PandaReach-v0", algo: Algo | None = None, **overrides) -> RecipeConfig:
    """simgate's default recipe for an env (PPO for dense ids, SAC + HER otherwise)."""
    dense = "Dense" in env_id
    algo = algo or ("ppo" if dense else "sac")
    base: dict = {"env_id": env_id, "algo": algo}
    if algo == "twin_ppo":  # batched PPO in the twin, judged in PyBullet (docs/recipes/*twin*)
        base.update(num_envs=512, n_steps=50, n_epochs=5, batch_size=4096, learning_rate=1e-3, gamma=0.98,
                    net_arch=[128, 128], her_n_sampled_goal=0, total_steps=50_000_000, eval_every_steps=1_000_000,
                    eval_episodes=100, checkpoint_every_steps=2_000_000, norm_obs_epsilon=0.01,
                    ignore_constant_features=True)
        if "Push" in env_id:  # docs/twin.md: gentle pushes transfer to PyBullet
            base.update(push_speed_limit_m_s=0.4)
    elif algo == "ppo":
        base.update(learning_rate=3e-4, batch_size=64, gamma=0.98, net_arch=[64, 64], n_steps=512,
                    her_n_sampled_goal=0, num_envs=4, num_workers=1)
    elif "Reach" in env_id:
        # Reach is learner-bound: SAC (cheaper per update than TQC), normalized observations, and
        # half a gradient step per env step reach 95 % sooner in wall time (bench/time_to_solve.py:
        # 4,000 steps / 12.5 s vs 3,000 / 15.6 s with one update per step, same machine)
        base.update(learning_rate=1e-3, batch_size=256, gamma=0.95, net_arch=[64, 64], learning_starts=1000,
                    train_freq=2, gradient_steps=1, normalize_obs=True)
    else:  # Push / PickAndPlace: rl-zoo's v1 budget and network
        base.update(total_steps=1_000_000, learning_rate=1e-3, batch_size=2048, gamma=0.95, tau=0.05,
                    net_arch=[512, 512, 512], learning_starts=1000, eval_every_steps=20_000, eval_episodes=50,
                    checkpoint_every_steps=50_000)
    base.update(overrides)
    return RecipeConfig(**base)


# rl-baselines3-zoo 2.x hyperparams/tqc.yml, PandaReach-v1 (HER, sparse)
RL_ZOO_TQC_HER = {
    "algo": "tqc", "learning_rate": 1e-3, "batch_size": 256, "gamma": 0.95, "tau": 0.005,
    "buffer_size": 1_000_000, "learning_starts": 1000, "train_freq": 1, "gradient_steps": 1,
    "net_arch": [64, 64], "her_n_sampled_goal": 4, "normalize_obs": True, "n_critics": 2,
}


def load_recipe(path: str | Path | None, **overrides) -> RecipeConfig:
    """Read a recipe YAML (any subset of fields) and apply overrides; clear error per field."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"recipe file not found: {p}")
        data = yaml.safe_load(p.read_text()) or {}
        if isinstance(data.get("robot"), str) and Path(data["robot"]).suffix:  # a spec path: from the recipe's folder
            data["robot"] = str((p.parent / data["robot"]).resolve())
    env_id = overrides.get("env_id") or data.get("env_id") or "simgate/PandaReach-v0"
    algo = overrides.get("algo") or data.get("algo")
    merged = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    if isinstance(merged.get("robot"), str) and Path(merged["robot"]).suffix:  # recorded where it lies
        merged["robot"] = str(Path(merged["robot"]).resolve())
    if os.environ.get("SIMGATE_SMOKE", "") not in ("", "0"):  # CI / README commands: a smoke-sized run
        total = min(int(merged.get("total_steps") or 1500), 1500)
        merged.update(total_steps=total, learning_starts=min(int(merged.get("learning_starts", 1000)), 500),
                      eval_every_steps=500, eval_episodes=3, checkpoint_every_steps=500)
    try:
        base = default_recipe(env_id, algo).model_dump()
        base.update(merged)
        return RecipeConfig(**base)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"recipe: {errs}") from exc
