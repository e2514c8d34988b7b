"""The evaluation harness every component uses (scripted baselines, training, the research loop,
promotion): run a policy for N episodes on given seeds and report success with a 95 %
confidence interval, returns, lengths and safety counters.

Seed sets are named and disjoint: ``selection`` seeds are what tuning may look at; ``holdout``
seeds are used only for promotion and final reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from simgate.policies.base import Policy

# Disjoint seed ranges (the research loop's trusted evaluator draws "fresh" seeds elsewhere).
SEED_SETS: dict[str, range] = {
    "selection": range(1_000_000, 1_100_000),
    "holdout": range(9_000_000, 9_100_000),
}


def seeds_for(name: str, n: int, offset: int = 0) -> list[int]:
    """The first ``n`` seeds (from ``offset``) of a named seed set."""
    if name not in SEED_SETS:
        raise ValueError(f"unknown seed set {name!r}; choose one of {sorted(SEED_SETS)}")
    r = SEED_SETS[name]
    if offset + n > len(r):
        raise ValueError(f"seed set {name!r} has only {len(r)} seeds")
    return list(r[offset : offset + n])


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 0.0
    phat = successes / n
    denom = 1 + z * z / n
    center = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, center - half), min(1.0, center + half)
    # all or none: the interval ends at the observed rate exactly (rounding put it a hair inside)
    return (0.0 if successes == 0 else lo), (1.0 if successes == n else hi)


class EvalResult(BaseModel):
    """Metrics of one evaluation. ``per_episode_success`` is in seed order (for paired tests)."""

    env: str
    episodes: int
    seeds: list[int]
    success_rate: float
    success_ci95: tuple[float, float]
    mean_return: float
    mean_episode_length: float
    joint_limit_hits: int
    commands_clipped: int
    self_collision_steps: int
    per_episode_success: list[bool]
    per_episode_return: list[float]

    def summary(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "episodes": self.episodes,
            "seeds": self.seeds,
            "success_rate": self.success_rate,
            "success_ci95": list(self.success_ci95),
            "mean_return": self.mean_return,
            "mean_episode_length": self.mean_episode_length,
            "joint_limit_hits": self.joint_limit_hits,
            "commands_clipped": self.commands_clipped,
            "self_collision_steps": self.self_collision_steps,
        }


def evaluate(
    policy: Policy | Callable[[Any], Policy],
    env_id: str,
    seeds: Sequence[int],
    env_kwargs: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Run ``policy`` for one episode per seed on ``env_id``; deterministic given the seeds.

    ``policy`` may be a Policy or a factory ``env -> Policy`` (e.g. scripted controllers).
    """
    from simgate.sim import make

    env = make(env_id, **(env_kwargs or {}))
    try:
        pol = policy(env) if callable(policy) and not hasattr(policy, "act") else policy
        successes, returns, lengths = [], [], []
        limit_hits = clipped = self_coll = 0
        robot = getattr(env, "unwrapped", env).robot
        for k, seed in enumerate(seeds):
            obs, info = env.reset(seed=int(seed))
            pol.reset()
            total, steps = 0.0, 0
            while True:
                action = np.asarray(pol.act(obs), dtype=np.float32)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                steps += 1
                self_coll += robot.in_self_collision(margin_m=0.001)
                if terminated or truncated:
                    break
            successes.append(bool(info["is_success"]))
            returns.append(total)
            lengths.append(steps)
            limit_hits += int(info.get("joint_limit_hits", 0))
            clipped += int(info.get("commands_clipped", 0))
            if progress:
                progress(k + 1, len(seeds))
        n = len(seeds)
        s = int(sum(successes))
        return EvalResult(
            env=env_id,
            episodes=n,
            seeds=[int(x) for x in seeds],
            success_rate=s / n if n else 0.0,
            success_ci95=wilson_interval(s, n),
            mean_return=float(np.mean(returns)) if n else 0.0,
            mean_episode_length=float(np.mean(lengths)) if n else 0.0,
            joint_limit_hits=limit_hits,
            commands_clipped=clipped,
            self_collision_steps=self_coll,
            per_episode_success=successes,
            per_episode_return=returns,
        )
    finally:
        env.close()
