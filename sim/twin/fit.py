"""Fit the twin's joint motor model to PyBullet (``simgate sim fit-twin ROBOT``).

PyBullet transitions (scripted Reach/Push with action noise, and uniform random actions) give,
per control step, the joint state before, the target the robot sent and the joints after. The
motor model is per joint, so each joint's acceleration limit is fitted on its own: a log-spaced
grid, then a finer one around the best, minimizing the mean one-step joint error. The tool's
resting height on the table is measured by pressing the tool down in PyBullet.
"""

from __future__ import annotations

import numpy as np
import torch

from simgate.sim.robot_spec import resolve_spec
from simgate.sim.twin.params import TwinParams, load_params, save_params
from simgate.sim.twin.physics import motor_substep


def _rollout_joints(data, gain: float, accel: np.ndarray, accel_neg: np.ndarray, substeps: int, dt_s: float) -> np.ndarray:
    """Joints after one control step for every transition (N, dof) and every accel row (A, dof)."""
    n, a = len(data["q"]), len(accel)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    q = t(data["q"]).repeat(a, 1)
    v = t(data["qd"]).repeat(a, 1)
    tgt = t(data["sent"]).repeat(a, 1)
    acc, acc_neg = t(np.repeat(accel, n, axis=0)), t(np.repeat(accel_neg, n, axis=0))
    for _ in range(substeps):
        q, v = motor_substep(q, v, tgt, gain, acc, dt_s, accel_max_neg=acc_neg)
    return q.numpy().reshape(a, n, -1)


def fit_accel(data, gain: float, substeps: int, dt_s: float = 0.002) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-joint acceleration limits (+ and - direction, rad/s^2) and the mean one-step joint error (rad).
    Coordinate descent: each direction on a log grid with the other fixed, then finer grids."""
    dof = data["q"].shape[1]
    pos, neg = np.full(dof, 100.0), np.full(dof, 100.0)
    err = None
    for rnd in range(4):
        for which in (0, 1):
            centre = pos if which == 0 else neg
            grid = np.geomspace(2.0, 3000.0, 36)[:, None] * np.ones(dof) if rnd == 0 else \
                centre[None] * np.geomspace(1 / 1.6 ** (1 / rnd), 1.6 ** (1 / rnd), 13)[:, None]
            cp = grid if which == 0 else np.repeat(pos[None], len(grid), 0)
            cn = grid if which == 1 else np.repeat(neg[None], len(grid), 0)
            e = np.abs(_rollout_joints(data, gain, cp, cn, substeps, dt_s) - data["q_after"][None]).mean(1)
            best = grid[e.argmin(0), np.arange(dof)]
            if which == 0:
                pos = best
            else:
                neg = best
            err = e.min(0)
    return pos, neg, err


def refine_for_tool(spec, data, gain: float, pos, neg, substeps: int, dt_s: float = 0.002, rounds: int = 2):
    """Coordinate descent on the mean one-step tool-point error (m) through the FK, from the
    joint-wise fit: joints matter by their lever arm, which the joint-space error ignores."""
    from simgate.sim.twin.kinematics import Kinematics

    kin = Kinematics(spec, dtype=torch.float64)
    tool_after = torch.tensor(data["tool_after"])
    factors = np.geomspace(1 / 2.5, 2.5, 15)

    def tool_err(cp, cn):
        q = torch.tensor(_rollout_joints(data, gain, cp, cn, substeps, dt_s).reshape(-1, cp.shape[1]))
        tool = kin.forward(q, jacobian=False)[0].reshape(len(cp), -1, 3)
        return torch.linalg.vector_norm(tool - tool_after[None], dim=-1).mean(1).numpy()

    for _ in range(rounds):
        for j in range(len(pos)):
            for which in (0, 1):
                cp, cn = np.repeat(pos[None], len(factors), 0), np.repeat(neg[None], len(factors), 0)
                (cp if which == 0 else cn)[:, j] *= factors
                e = tool_err(cp, cn)
                (pos if which == 0 else neg)[j] *= factors[e.argmin()]
    return pos, neg, float(tool_err(pos[None], neg[None])[0])


def tool_floor_z(robot) -> float:
    """Lowest tool height when the tool is pressed onto the table at the task origin (m)."""
    from simgate.sim import make
    from simgate.sim.twin.reference import env_id_for

    env = make(env_id_for(robot, "reach"))
    try:
        env.reset(seed=0)
        zs = []
        for _ in range(40):
            obs, *_ = env.step(np.array([0.0, 0.0, -1.0], dtype=np.float32))
            zs.append(float(obs["observation"][2]))
        return float(np.min(zs[-10:]))
    finally:
        env.close()


def fit_twin(robot, episodes: int = 12, seed: int = 500_000, noise: float = 0.0, random_episodes: int = 0) -> TwinParams:
    """Fitted parameters for ``robot`` (Push transitions where the robot can push, else Reach)."""
    from simgate.sim.twin.reference import record

    spec = resolve_spec(robot)
    task = "push" if "push" in spec.tasks else "reach"
    parts = [record(spec.name, task, "scripted", episodes, seed, noise=noise),
             record(spec.name, "reach", "scripted", episodes, seed + 1000, noise=noise)]
    if random_episodes:
        parts.append(record(spec.name, task, "random", random_episodes, seed + 2000))
    keys = ("q", "qd", "sent", "q_after", "tool_after")
    data = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    substeps = max(1, int(round(spec.control_period_s / 0.002)))
    base = load_params(spec)
    best = None
    for gain in (0.1,):  # Bullet's default position gain; kept fixed (one parameter per joint is fitted)
        accel, accel_neg, err = fit_accel(data, gain, substeps)
        if best is None or err.mean() < best[3].mean():
            best = (gain, accel, accel_neg, err)
    gain, accel, accel_neg, err = best
    accel, accel_neg, tool_err = refine_for_tool(spec, data, gain, accel.copy(), accel_neg.copy(), substeps)
    floor = tool_floor_z(spec.name)
    return base.model_copy(update={
        "position_gain": gain, "accel_limit_rad_s2": [round(float(a), 3) for a in accel],
        "accel_limit_neg_rad_s2": [round(float(a), 3) for a in accel_neg],
        "tool_floor_z_m": round(floor, 5),
        "fit": {"transitions": float(len(data["q"])), "joint_one_step_mean_err_rad": round(float(err.mean()), 6),
                "tool_one_step_mean_err_m": round(tool_err, 6)}})


def fit_and_save(robot) -> tuple[TwinParams, str]:
    params = fit_twin(robot)
    return params, str(save_params(resolve_spec(robot), params))
