"""Gymnasium ids: ``simgate/<Robot><Task>[Joints][Dense]-v0`` for every robot that can do the task.

``Joints`` selects joint-position-delta control (default: end-effector displacement via IK);
``Dense`` selects the dense reward (default: sparse).
"""

from __future__ import annotations

import gymnasium as gym

from simgate.errors import UnknownEnvError
from simgate.sim.robot_spec import load_robot_spec

ROBOT_PREFIX = {"panda": "Panda", "xarm6": "XArm6", "so101": "SO101"}
TASK_SUFFIX = {"reach": "Reach", "push": "Push", "pick_and_place": "PickAndPlace"}
NAMESPACE = "simgate"


def env_ids() -> list[str]:
    ids = []
    for robot, rname in ROBOT_PREFIX.items():
        spec = load_robot_spec(robot)
        for task, tname in TASK_SUFFIX.items():
            if task not in spec.tasks:
                continue
            for control in ("", "Joints"):
                for reward in ("", "Dense"):
                    ids.append(f"{NAMESPACE}/{rname}{tname}{control}{reward}-v0")
    return ids


def parse_env_id(env_id: str) -> dict:
    """Keyword arguments of :class:`ArmEnv` for a registered id; clear error otherwise."""
    spec = gym.envs.registry.get(env_id)
    if spec is None or not env_id.startswith(NAMESPACE + "/"):
        close = [i for i in env_ids() if env_id.split("/")[-1].lower()[:6] in i.lower()]
        hint = f" Did you mean one of {close[:4]}?" if close else " Run `simgate envs` for the list."
        raise UnknownEnvError(f"unknown environment id {env_id!r}.{hint}")
    return dict(spec.kwargs)


def register_all() -> None:
    for robot, rname in ROBOT_PREFIX.items():
        spec = load_robot_spec(robot)
        for task, tname in TASK_SUFFIX.items():
            if task not in spec.tasks:
                continue
            for control, csuf in (("ee", ""), ("joints", "Joints")):
                for reward, rsuf in (("sparse", ""), ("dense", "Dense")):
                    env_id = f"{NAMESPACE}/{rname}{tname}{csuf}{rsuf}-v0"
                    if env_id in gym.envs.registry:
                        continue
                    gym.register(
                        id=env_id,
                        entry_point="simgate.sim.env:ArmEnv",
                        kwargs={"robot": robot, "task": task, "control": control, "reward_type": reward},
                        max_episode_steps=None,
                        disable_env_checker=True,
                    )


def make(env_id: str, **kwargs):
    """``gym.make`` with a clear :class:`UnknownEnvError` for unknown ids."""
    base = parse_env_id(env_id)
    base.update(kwargs)
    from simgate.sim.env import ArmEnv

    return ArmEnv(**base)


register_all()  # importing this module registers the ids (simgate.sim imports it once Gymnasium is loaded)
