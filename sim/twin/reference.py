"""PyBullet as the reference: transitions recorded from the PyBullet env, and a twin set to
the same states. Used by ``fit.py`` (motor model) and ``check.py`` (fidelity figures).
Imports pybullet (through the PyBullet env): never imported by the twin itself.
"""

from __future__ import annotations

import numpy as np
import torch

from simgate.sim.twin.env import TwinVecEnv


def env_id_for(robot, task: str, dense: bool = False) -> str:
    """The PyBullet env id of ``task`` for a built-in robot or a spec file (registered here)."""
    from simgate.sim.registry import register_robot, robot_env_id

    register_robot(robot)
    env_id = robot_env_id(robot, task)
    return env_id.replace("-v0", "Dense-v0") if dense else env_id


def _scripted(env):
    from simgate.sim.scripted import scripted_policy_for

    return scripted_policy_for(env)


def record(robot, task: str, mode: str, episodes: int, seed0: int, noise: float = 0.0) -> dict[str, np.ndarray]:
    """Per control step of PyBullet episodes: the state before (arm q, qd, previous target,
    object state), the action, and after (tool position, arm q, target sent, object state).
    ``mode``: ``scripted`` (the scripted controller, plus Gaussian ``noise`` on its actions) or ``random``."""
    from simgate.sim import make

    env = make(env_id_for(robot, task))
    rng = np.random.default_rng(seed0)
    rows: dict[str, list] = {k: [] for k in ("q", "qd", "prev_target", "obj", "action", "tool_after", "q_after",
                                             "sent", "obj_after", "tool_before")}
    try:
        pol = _scripted(env)
        d = env.robot.dof
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed0 + ep)
            pol.reset()
            for _ in range(env.max_episode_steps):
                q, qd, _ = env.robot.joint_state()
                before = (q[:d].copy(), qd[:d].copy(), env.robot.target[:d].copy(), obs["observation"][6:].copy(),
                          obs["observation"][:3].copy())
                if mode == "random":
                    a = rng.uniform(-1, 1, 3).astype(np.float32)
                else:
                    a = np.clip(pol.act(obs) + rng.normal(0, noise, 3), -1, 1).astype(np.float32)
                obs, _, _, trunc, _ = env.step(a)
                qa, _, _ = env.robot.joint_state()
                for k, v in zip(("q", "qd", "prev_target", "obj", "tool_before"), before, strict=True):
                    rows[k].append(v)
                rows["action"].append(a)
                rows["tool_after"].append(obs["observation"][:3].copy())
                rows["q_after"].append(qa[:d].copy())
                rows["sent"].append(env.robot.target[:d].copy())
                rows["obj_after"].append(obs["observation"][6:].copy())
                if trunc:
                    break
    finally:
        env.close()
    return {k: np.array(v, dtype=np.float64) for k, v in rows.items()}


def twin_at(robot, task: str, data: dict[str, np.ndarray], dtype=torch.float64, params=None) -> TwinVecEnv:
    """A twin with one env per recorded transition, set to the state before it."""
    n = len(data["q"])
    twin = TwinVecEnv(robot, task, num_envs=n, dtype=dtype, max_episode_steps=10**9, params=params)
    twin.reset(seed=0)
    t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
    twin.q, twin.qd, twin.target = t(data["q"]), t(data["qd"]), t(data["prev_target"])
    twin._fk()
    if task == "push" and data["obj"].shape[1] >= 12:
        o = data["obj"]
        twin.box["xy"], twin.box["yaw"] = t(o[:, 0:2]), t(o[:, 5])
        twin.box["v"], twin.box["w"] = t(o[:, 6:8]), t(o[:, 11])
    return twin


def step_twin(twin: TwinVecEnv, actions: np.ndarray) -> None:
    twin.step(torch.tensor(actions, dtype=twin.dtype))
