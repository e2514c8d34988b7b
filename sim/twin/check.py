"""Fidelity of the twin against PyBullet on the same seeds (``simgate sim twin-check ROBOT TASK``).

Figures: FK error (random configurations), IK target error (the shared DLS step on the twin's
FK/Jacobian vs PyBullet's), the arm's mass matrix and gravity torques against PyBullet's, one-step tool-point error under scripted and random actions, one-step
object error on steps where PyBullet's object moves (Push), and closed-loop scripted success
and median first-success step in both simulators. ``THRESHOLDS`` are the issue's bars (and 1e-6 for the dynamics, which use PyBullet's link inertias).
"""

from __future__ import annotations

import numpy as np
import torch

from simgate.sim.control_rules import ik_step
from simgate.sim.robot_spec import resolve_spec
from simgate.sim.twin.dynamics import ArmDynamics
from simgate.sim.twin.kinematics import Kinematics
from simgate.sim.twin.params import load_params
from simgate.sim.twin.reference import env_id_for, record, step_twin, twin_at

THRESHOLDS = {
    "fk_max_err_m": 1e-5,
    "ik_max_err_rad": 2e-3,
    "mass_matrix_max_rel_err": 1e-6,
    "gravity_max_rel_err": 1e-6,
    "tool_one_step_scripted_mean_m": 1e-3,
    "object_one_step_median_m": 1e-3,
    "object_one_step_mean_m": 3e-3,
    "scripted_success_gap_points": 2.0,
    "first_success_step_gap": 2.0,
}


def kinematics_errors(robot: str, n: int = 200, seed: int = 0) -> dict[str, float]:
    """FK and IK against PyBullet, and the arm's dynamics: mass matrix and gravity torques against
    PyBullet's ``calculateMassMatrix`` / ``calculateInverseDynamics`` (relative to their largest entry)."""
    import pybullet as p

    from simgate.sim import make

    env = make(env_id_for(robot, "push" if "push" in resolve_spec(robot).tasks else "reach"))
    rob = env.robot
    kin = Kinematics(env.spec_robot, dtype=torch.float64)
    dyn = ArmDynamics(env.spec_robot, kin, dtype=torch.float64, bodies=load_params(env.spec_robot).bodies())
    rng = np.random.default_rng(seed)
    d = rob.dof
    qs = np.clip(rob.home[:d] + rng.normal(0, 0.3, (n, d)), rob.lower[:d], rob.upper[:d])
    tool_pb, ik_pb, targets, mass_pb, grav_pb = [], [], [], [], []
    try:
        movable = len(rob._movable)
        for q in qs:
            rob.reset(q)
            pos = rob.ee_state()[0]
            tgt = pos + rng.uniform(-0.05, 0.05, 3)
            tool_pb.append(pos)
            targets.append(tgt)
            ik_pb.append(rob.ik(tgt))
            full, zero = list(q) + [0.0] * (movable - d), [0.0] * movable
            mass_pb.append(np.array(p.calculateMassMatrix(rob.body, full, physicsClientId=env.world.cid))[:d, :d])
            grav_pb.append(np.array(p.calculateInverseDynamics(rob.body, full, zero, zero, physicsClientId=env.world.cid))[:d])
    finally:
        env.close()
    t = torch.tensor(qs)
    tool, quat, jl, ja, frames = kin.forward(t, frames=True)
    mass, grav = (x.numpy() for x in dyn.mass_and_gravity(frames))
    mass_pb, grav_pb = np.array(mass_pb), np.array(grav_pb)
    down = env.spec_robot.ee_down_orientation
    ik_tw = ik_step(t, tool, quat, jl, ja, torch.tensor(np.array(targets)),
                    None if down is None else torch.tensor(down, dtype=torch.float64))
    return {"fk_max_err_m": float(np.abs(tool.numpy() - np.array(tool_pb)).max()),
            "ik_max_err_rad": float(np.abs(ik_tw.numpy() - np.array(ik_pb)).max()),
            "ik_mean_err_rad": float(np.abs(ik_tw.numpy() - np.array(ik_pb)).mean()),
            "mass_matrix_max_rel_err": float(np.abs(mass - mass_pb).max() / np.abs(mass_pb).max()),
            "gravity_max_rel_err": float(np.abs(grav - grav_pb).max() / max(np.abs(grav_pb).max(), 1e-12))}


def one_step_errors(robot: str, task: str, episodes: int = 10, seed: int = 700_000) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode in ("scripted", "random"):
        data = record(robot, task, mode, episodes if mode == "scripted" else max(2, episodes // 2), seed)
        twin = twin_at(robot, task, data)
        step_twin(twin, data["action"])
        err = np.linalg.norm(twin.tool.numpy() - data["tool_after"], axis=1)
        out[f"tool_one_step_{mode}_mean_m"] = float(err.mean())
        out[f"tool_one_step_{mode}_p99_m"] = float(np.percentile(err, 99))
        if task == "push" and mode == "scripted":
            moved = np.linalg.norm(data["obj_after"][:, :2] - data["obj"][:, :2], axis=1) > 5e-4
            e_obj = np.linalg.norm(twin.box["xy"].numpy() - data["obj_after"][:, :2], axis=1)[moved]
            stay = np.linalg.norm(data["obj_after"][:, :2] - data["obj"][:, :2], axis=1)[moved]
            out.update(object_one_step_median_m=float(np.median(e_obj)), object_one_step_mean_m=float(e_obj.mean()),
                       object_one_step_p90_m=float(np.percentile(e_obj, 90)),
                       object_stays_put_mean_m=float(stay.mean()), object_moving_steps=float(moved.sum()))
    return out


def _first_success(successes: np.ndarray) -> np.ndarray:
    """(episodes, steps) bool -> first step (1-based) with success, or -1."""
    hit = successes.any(1)
    return np.where(hit, successes.argmax(1) + 1, -1)


def closed_loop(robot: str, task: str, seeds: list[int]) -> dict[str, float]:
    """Scripted controller, same seeds, in PyBullet (one env) and the twin (one env per seed)."""
    from simgate.sim import make
    from simgate.sim.scripted import scripted_policy_for
    from simgate.sim.twin.env import TwinVecEnv

    env = make(env_id_for(robot, task))
    pb_succ = []
    try:
        pol = scripted_policy_for(env)
        for s in seeds:
            obs, _ = env.reset(seed=s)
            pol.reset()
            row = []
            for _ in range(env.max_episode_steps):
                obs, _, _, _, info = env.step(pol.act(obs))
                row.append(info["is_success"])
            pb_succ.append(row)
        pols = [scripted_policy_for(env) for _ in seeds]
    finally:
        env.close()
    twin = TwinVecEnv(robot, task, num_envs=len(seeds))
    obs, _ = twin.reset(seed=list(seeds))
    tw_succ = []
    for _ in range(twin.max_episode_steps):
        np_obs = {k: v.numpy() for k, v in obs.items()}
        acts = np.stack([p.act({k: v[i] for k, v in np_obs.items()}) for i, p in enumerate(pols)])
        obs, _, _, trunc, info = twin.step(torch.tensor(acts))
        fin = info["final_info"]["is_success"] if bool(trunc.any()) else info["is_success"]
        tw_succ.append(fin.numpy())
    pb, tw = np.array(pb_succ, bool), np.array(tw_succ, bool).T
    fs_pb, fs_tw = _first_success(pb), _first_success(tw)
    med = lambda f: float(np.median(f[f > 0])) if (f > 0).any() else float("nan")  # noqa: E731
    return {"scripted_success_pybullet": float(pb[:, -1].mean()), "scripted_success_twin": float(tw[:, -1].mean()),
            "scripted_success_gap_points": round(float(abs(pb[:, -1].mean() - tw[:, -1].mean()) * 100), 6),
            "first_success_step_pybullet": med(fs_pb), "first_success_step_twin": med(fs_tw),
            "first_success_step_gap": abs(med(fs_pb) - med(fs_tw))}


def twin_check(robot: str, task: str, episodes: int = 200, seed: int = 9_000_000) -> dict:
    """All figures, and the thresholds each one failed (``failed``: empty when the twin passes)."""
    report = {"robot": robot, "task": task}
    report.update(kinematics_errors(robot))
    report.update(one_step_errors(robot, task))
    report.update(closed_loop(robot, task, [seed + k for k in range(episodes)]))
    report["failed"] = [k for k, lim in THRESHOLDS.items() if k in report and not report[k] <= lim]
    return report
