"""Gymnasium ids: ``simgate/<Robot><Task>[Joints][Dense]-v0`` for every robot that can do the task.

``Joints`` selects joint-position-delta control (default: end-effector displacement via IK);
``Dense`` selects the dense reward (default: sparse).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import gymnasium as gym

from simgate.errors import ConfigError, RobotLoadError, UnknownEnvError
from simgate.sim.robot_spec import ROBOTS_DIR, RobotSpec, builtin_robots, load_robot_spec

ROBOT_PREFIX = {"panda": "Panda", "xarm6": "XArm6", "so101": "SO101"}
TASK_SUFFIX = {"reach": "Reach", "push": "Push", "pick_and_place": "PickAndPlace"}
NAMESPACE = "simgate"
# spec files registered with --robot in this process; child processes (vector-env workers,
# research trials) inherit the variable and register the same ids when they import simgate.sim
SPECS_ENV_VAR = "SIMGATE_ROBOT_SPECS"


def robot_prefix(spec: RobotSpec) -> str:
    """``Panda`` for a built-in robot, else the spec's name in CamelCase (``kuka_iiwa`` -> ``KukaIiwa``)."""
    if spec.name in ROBOT_PREFIX:
        return ROBOT_PREFIX[spec.name]
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^0-9A-Za-z]+", spec.name) if w)


def _ids_of(spec: RobotSpec) -> list[tuple[str, dict]]:
    out = []
    for task, tname in TASK_SUFFIX.items():
        if task not in spec.tasks:
            continue
        for control, csuf in (("ee", ""), ("joints", "Joints")):
            for reward, rsuf in (("sparse", ""), ("dense", "Dense")):
                kwargs = {"task": task, "control": control, "reward_type": reward}
                out.append((f"{NAMESPACE}/{robot_prefix(spec)}{tname}{csuf}{rsuf}-v0", kwargs))
    return out


def _registered_specs() -> list[str]:
    return [x for x in os.environ.get(SPECS_ENV_VAR, "").split(os.pathsep) if x]


def env_ids(robot: str | Path | None = None) -> list[str]:
    """Every id (built-in robots and those registered with --robot), or those of one robot."""
    if robot is not None:
        return [i for i, _ in _ids_of(load_robot_spec(robot))]
    ids = [i for r in ROBOT_PREFIX for i, _ in _ids_of(load_robot_spec(r))]
    return ids + [i for i in gym.envs.registry if i.startswith(NAMESPACE + "/") and i not in ids]


def robot_env_id(robot: str | Path, task: str = "reach") -> str:
    """The ee-control, sparse-reward id of ``task`` for a robot (built-in name or spec path)."""
    spec = load_robot_spec(robot)
    return f"{NAMESPACE}/{robot_prefix(spec)}{TASK_SUFFIX[task]}-v0"


def env_robot(env_id: str) -> str:
    """The robot of a registered id: a built-in name or a spec file's absolute path."""
    return str(parse_env_id(env_id)["robot"])


def register_robot(robot: str | Path) -> RobotSpec:
    """Register the ids of a robot given by name or spec path (`--robot`); returns its spec.

    Its ids are named after the spec (``simgate/KukaIiwaReach-v0``); a name that another spec
    already holds (a built-in robot, or a second file) is refused naming both."""
    spec = load_robot_spec(robot)
    if str(robot) in builtin_robots() or Path(spec.spec_file).parent == ROBOTS_DIR.resolve():
        return spec  # a built-in robot (by name or by its file): registered with the others
    if spec.name in ROBOT_PREFIX:
        raise ConfigError(f"robot spec {spec.spec_file}: name {spec.name!r} is a built-in robot's; "
                          "give your spec another name")
    for env_id, kwargs in _ids_of(spec):
        have = gym.envs.registry.get(env_id)
        if have is not None and have.kwargs.get("robot") != spec.spec_file:
            raise ConfigError(f"robot spec {spec.spec_file}: its ids ({env_id}) are already those of "
                              f"{have.kwargs.get('robot')}; give one of the specs another name")
        if have is None:
            _register(env_id, {"robot": spec.spec_file, **kwargs})
    if spec.spec_file not in _registered_specs():
        os.environ[SPECS_ENV_VAR] = os.pathsep.join([*_registered_specs(), spec.spec_file])
    return spec


def _register(env_id: str, kwargs: dict) -> None:
    gym.register(id=env_id, entry_point="simgate.sim.env:ArmEnv", kwargs=kwargs, max_episode_steps=None,
                 disable_env_checker=True)


def parse_env_id(env_id: str) -> dict:
    """Keyword arguments of :class:`ArmEnv` for a registered id; clear error otherwise."""
    spec = gym.envs.registry.get(env_id)
    if spec is None or not env_id.startswith(NAMESPACE + "/"):
        close = [i for i in env_ids() if env_id.split("/")[-1].lower()[:6] in i.lower()]
        hint = f" Did you mean one of {close[:4]}?" if close else " Run `simgate envs` for the list"
        hint += "; the ids of a robot you bring exist once it is given: --robot SPEC.yaml (`simgate envs --robot SPEC.yaml`)."
        raise UnknownEnvError(f"unknown environment id {env_id!r}.{hint}")
    return dict(spec.kwargs)


def register_all() -> None:
    for robot in ROBOT_PREFIX:
        for env_id, kwargs in _ids_of(load_robot_spec(robot)):
            if env_id not in gym.envs.registry:
                _register(env_id, {"robot": robot, **kwargs})
    for path in _registered_specs():
        try:
            register_robot(path)
        except (RobotLoadError, ConfigError):
            continue  # the process that registered it checked it; a file gone since is its user's error


def make(env_id: str, **kwargs):
    """``gym.make`` with a clear :class:`UnknownEnvError` for unknown ids."""
    base = parse_env_id(env_id)
    base.update(kwargs)
    from simgate.sim.env import ArmEnv

    return ArmEnv(**base)


register_all()  # importing this module registers the ids (simgate.sim imports it once Gymnasium is loaded)
