"""Fit the twin's arm to PyBullet (``simgate sim fit-twin ROBOT``).

- Link inertias: read from PyBullet as it simulates the arm (its merge of fixed links differs
  from the physical one: the Panda's hand and fingers sit 4 cm lower in PyBullet than in the
  URDF's inertials). With them the twin's mass matrix and gravity equal PyBullet's to 1e-15.
- Motor solver sweeps: PyBullet transitions (scripted Push and Reach) set the twin to each
  state before, one step is taken, the mean one-step tool-point error is measured for 1 to 8
  Gauss-Seidel sweeps; the fewest sweeps within ``SWEEP_TOLERANCE_M`` of the best of 1-8 is
  kept (each sweep costs the step ~7 small ops per joint).
- The tool's resting height on the table: the tool pressed down in PyBullet.
"""

from __future__ import annotations

import numpy as np

from simgate.sim.robot_spec import resolve_spec
from simgate.sim.twin.params import LinkInertial, TwinParams, load_params, save_params

SWEEP_TOLERANCE_M = 2e-4


def measure_links(robot) -> list[LinkInertial]:
    """Each arm link's mass, centre of mass and principal inertia as loaded by PyBullet."""
    import pybullet as p

    from simgate.sim import make
    from simgate.sim.twin.reference import env_id_for

    spec = resolve_spec(robot)
    env = make(env_id_for(robot, "push" if "push" in spec.tasks else "reach"))
    try:
        rob, cid = env.robot, env.world.cid
        out = []
        for joint in rob.arm_ids:
            info = p.getDynamicsInfo(rob.body, joint, physicsClientId=cid)
            out.append(LinkInertial(mass_kg=round(info[0], 9), com_m=tuple(round(x, 9) for x in info[3]),
                                    inertia_diag_kg_m2=tuple(round(x, 9) for x in info[2]),
                                    inertia_quat_xyzw=tuple(round(x, 9) for x in info[4])))
        return out
    finally:
        env.close()


def tool_one_step_error_m(spec, params: TwinParams, parts: list[tuple[str, dict]]) -> float:
    """Mean one-step tool-point error of the twin (these parameters) over recorded transitions."""
    from simgate.sim.twin.reference import step_twin, twin_at

    errs = []
    for task, data in parts:
        twin = twin_at(spec.spec_file or spec.name, task, data, params=params)
        step_twin(twin, data["action"])
        errs.append(np.linalg.norm(twin.tool.numpy() - data["tool_after"], axis=1))
    return float(np.concatenate(errs).mean())


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


def fit_twin(robot, episodes: int = 12, seed: int = 500_000, max_sweeps: int = 8) -> TwinParams:
    """Fitted parameters for ``robot`` (Push transitions where the robot can push, and Reach)."""
    from simgate.sim.twin.reference import record

    spec = resolve_spec(robot)
    previous = load_params(spec)  # before minutes of recording: a broken file fails now
    task = "push" if "push" in spec.tasks else "reach"
    parts = [(task, record(robot, task, "scripted", episodes, seed)),
             ("reach", record(robot, "reach", "scripted", episodes, seed + 1000))]
    base = previous.model_copy(update={"links": measure_links(robot),
                                                "tool_floor_z_m": round(tool_floor_z(robot), 5)})
    errors = {n: tool_one_step_error_m(spec, base.model_copy(update={"motor_sweeps": n}), parts)
              for n in range(1, max_sweeps + 1)}
    best = min(errors.values())
    sweeps = min(n for n, e in errors.items() if e <= best + SWEEP_TOLERANCE_M)
    fit = {"transitions": float(sum(len(d["q"]) for _, d in parts)), "tool_one_step_mean_err_m": round(errors[sweeps], 6)}
    fit.update({f"tool_one_step_mean_err_m_{n}_sweeps": round(e, 6) for n, e in errors.items()})
    return base.model_copy(update={"motor_sweeps": sweeps, "fit": fit})


def fit_and_save(robot) -> tuple[TwinParams, str]:
    params = fit_twin(robot)
    return params, str(save_params(resolve_spec(robot), params))
