"""stable-baselines3 adapter for :class:`ArmVectorEnv` (SB3 has its own VecEnv API).

Autoreset semantics already match SB3's (same step); the final observation of an episode is in
``info["terminal_observation"]`` and time-limit ends are flagged ``TimeLimit.truncated``.
``env_method("compute_reward", ...)`` (used by HER) runs here without a worker round trip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from simgate.sim.vector import ArmVectorEnv, make_vec


class SB3VecEnv(VecEnv):
    """Wraps an :class:`ArmVectorEnv` as an SB3 ``VecEnv``."""

    def __init__(self, venv: ArmVectorEnv) -> None:
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self):
        seeds = [s if s is not None else None for s in self._seeds]
        seed_arg = seeds if any(s is not None for s in seeds) else None
        obs, _ = self.venv.reset(seed=seed_arg, options=self._options[0] if self._options else None)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, rew, term, trunc, infos = self.venv.step(self._actions)
        dones = term | trunc
        out: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            info: dict[str, Any] = {"is_success": bool(infos["is_success"][i])}
            if dones[i]:
                fo = infos["final_obs"][i]
                info["terminal_observation"] = fo
                info["is_success"] = bool(infos["final_info"][i].get("is_success", False))
                info["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
            out.append(info)
        return obs, rew.astype(np.float32), dones, out

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        idx = self._get_indices(indices)
        vals = self.venv.call(attr_name) if attr_name not in ("render_mode",) else [None] * self.num_envs
        return [vals[i] for i in idx]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        self.venv.set_attr(attr_name, [value] * self.num_envs)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "compute_reward":
            r = self.venv.compute_reward(*method_args, **method_kwargs)
            return [r for _ in idx]
        vals = self.venv.call(method_name, *method_args, **method_kwargs)
        return [vals[i] for i in idx]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def make_sb3_vec(env_id: str, num_envs: int, num_workers: int | None = None, **env_kwargs) -> SB3VecEnv:
    """SB3 VecEnv of ``num_envs`` envs in ``num_workers`` processes (see :func:`make_vec`)."""
    return SB3VecEnv(make_vec(env_id, num_envs, num_workers, **env_kwargs))
