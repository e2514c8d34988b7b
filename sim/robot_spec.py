"""RobotSpec: one typed description of an arm, used by simulation and by hardware backends.

A spec is a YAML file next to (or pointing at) a URDF. Adding a robot needs no code: write a
URDF and a spec file, then pass the spec path wherever a robot name is accepted.

Units: positions in rad (revolute) or m (prismatic), velocities in rad/s or m/s, efforts in
N*m or N, lengths in m, rates in Hz.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simgate.errors import RobotLoadError

ROBOTS_DIR = Path(__file__).parent / "robots"
PYBULLET_DATA_PREFIX = "pybullet_data:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JointSpec(_Strict):
    """One actuated joint with its limits (SI units)."""

    name: str
    lower: float = Field(description="lower position limit, rad or m")
    upper: float = Field(description="upper position limit, rad or m")
    velocity: float = Field(gt=0, description="max speed, rad/s or m/s")
    effort: float = Field(gt=0, description="max torque/force, N*m or N")
    home: float = Field(0.0, description="home position, rad or m")

    @model_validator(mode="after")
    def _check(self) -> JointSpec:
        if not self.lower < self.upper:
            raise ValueError(f"joint {self.name!r}: lower ({self.lower}) must be < upper ({self.upper})")
        if not self.lower <= self.home <= self.upper:
            raise ValueError(f"joint {self.name!r}: home {self.home} outside [{self.lower}, {self.upper}]")
        return self


class GripperSpec(_Strict):
    """A gripper driven by one or more joints moving together.

    ``open``/``closed`` are the joint positions of the first joint; every joint i is driven to
    ``position * multipliers[i]`` (mimic joints).
    """

    joints: list[JointSpec] = Field(min_length=1)
    multipliers: list[float] | None = None
    open: float
    closed: float
    finger_links: list[str] = Field(default_factory=list, description="links given high friction")

    @model_validator(mode="after")
    def _check(self) -> GripperSpec:
        if self.multipliers is not None and len(self.multipliers) != len(self.joints):
            raise ValueError("gripper.multipliers must have one entry per gripper joint")
        return self

    @property
    def mults(self) -> list[float]:
        return self.multipliers or [1.0] * len(self.joints)


class RobotSpec(_Strict):
    """Typed description of an arm: URDF, joints, limits, end effector, gripper, home pose."""

    name: str
    urdf: str = Field(description="URDF path, relative to the spec file, or 'pybullet_data:<path>'")
    base_position: tuple[float, float, float] = (-0.6, 0.0, 0.0)
    arm_joints: list[JointSpec] = Field(min_length=1)
    gripper: GripperSpec | None = None
    ee_link: str
    ee_offset: tuple[float, float, float] = Field(
        (0.0, 0.0, 0.0), description="tool centre point in the ee_link frame, m"
    )
    ee_down_orientation: tuple[float, float, float, float] | None = Field(
        None, description="xyzw quaternion of a downward tool; None = position-only IK (<6 DoF arms)"
    )
    collision_links: list[str] | None = Field(
        None, description="links that keep collision geometry (None = all); others never touch anything"
    )
    control_rate_hz: float = Field(25.0, gt=0, le=2000)
    workspace_scale: float = Field(1.0, gt=0, le=2, description="task ranges are scaled by this")
    tasks: list[Literal["reach", "push", "pick_and_place"]] = Field(
        default=None, description="tasks this robot can do; default: all its hardware allows"
    )
    spec_dir: str | None = Field(None, description="filled in by the loader")
    spec_file: str | None = Field(None, description="filled in by the loader: the spec's absolute path")

    @model_validator(mode="before")
    @classmethod
    def _default_tasks(cls, data):
        if isinstance(data, dict) and data.get("tasks") is None:
            data = {**data, "tasks": ["reach", "push"] + (["pick_and_place"] if data.get("gripper") else [])}
        return data

    @field_validator("arm_joints")
    @classmethod
    def _unique(cls, joints: list[JointSpec]) -> list[JointSpec]:
        names = [j.name for j in joints]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate joint names in arm_joints: {names}")
        return joints

    @model_validator(mode="after")
    def _gripper_tasks(self) -> RobotSpec:
        if "pick_and_place" in self.tasks and self.gripper is None:
            raise ValueError("task 'pick_and_place' needs a gripper: the object is grasped by closing gripper "
                             "joints, and this spec has no 'gripper:' section (describe the gripper, or drop "
                             "pick_and_place from 'tasks')")
        return self

    # ---- derived -------------------------------------------------------------------------
    @property
    def dof(self) -> int:
        return len(self.arm_joints)

    @property
    def joint_names(self) -> list[str]:
        """Arm joints then gripper joints."""
        names = [j.name for j in self.arm_joints]
        if self.gripper:
            names += [j.name for j in self.gripper.joints]
        return names

    @property
    def all_joints(self) -> list[JointSpec]:
        return list(self.arm_joints) + (list(self.gripper.joints) if self.gripper else [])

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    def urdf_path(self) -> Path:
        """Absolute path of the URDF file."""
        if self.urdf.startswith(PYBULLET_DATA_PREFIX):
            import pybullet_data

            return Path(pybullet_data.getDataPath()) / self.urdf[len(PYBULLET_DATA_PREFIX) :]
        p = Path(self.urdf)
        if not p.is_absolute():
            p = Path(self.spec_dir or ROBOTS_DIR) / p
        return p


def builtin_robots() -> list[str]:
    """Names of the robot specs shipped with simgate."""
    return sorted(p.stem for p in ROBOTS_DIR.glob("*.yaml") if "." not in p.stem)  # not the twin's *.twin.yaml


def load_robot_spec(name_or_path: str | Path) -> RobotSpec:
    """Load a spec by built-in name (``panda``, ``xarm6``, ``so101``) or by YAML path.

    Raises :class:`RobotLoadError` naming the file and the bad field.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = ROBOTS_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise RobotLoadError(
                f"unknown robot {str(name_or_path)!r}; built-in robots: {', '.join(builtin_robots())} "
                "(or pass a path to a spec .yaml)"
            )
    if not path.exists():
        raise RobotLoadError(f"robot spec file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RobotLoadError(f"robot spec {path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RobotLoadError(f"robot spec {path}: expected a mapping at top level")
    raw.setdefault("spec_dir", str(path.parent.resolve()))
    raw["spec_file"] = str(path.resolve())
    try:
        spec = RobotSpec.model_validate(raw)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RobotLoadError(f"robot spec {path}: {errs}") from exc
    if not spec.urdf_path().exists():
        raise RobotLoadError(f"robot spec {path}: urdf file not found: {spec.urdf_path()}")
    _check_names_in_urdf(spec, path)
    return spec


def _urdf_names(urdf: Path) -> tuple[list[str], list[str]]:
    """(movable joint names, link names) of a URDF, read as XML (no physics engine)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(urdf).getroot()
    except (OSError, ET.ParseError):
        return [], []  # unreadable: the loader in sim/robot.py names the parse error
    joints = [j.get("name") for j in root.iter("joint") if j.get("type") not in ("fixed", None)]
    return joints, [lk.get("name") for lk in root.iter("link")]


def _check_names_in_urdf(spec: RobotSpec, path: Path) -> None:
    """Every joint and link the spec names is in its URDF; a typo lists what the URDF has."""
    joints, links = _urdf_names(spec.urdf_path())
    if not joints and not links:
        return
    where = f"robot spec {path}"
    for field, names in (("arm_joints", [j.name for j in spec.arm_joints]),
                         ("gripper.joints", [j.name for j in spec.gripper.joints] if spec.gripper else [])):
        for i, name in enumerate(names):
            if name not in joints:
                raise RobotLoadError(f"{where}: {field}[{i}].name {name!r} is not a movable joint of "
                                     f"{spec.urdf_path().name}; its movable joints: {', '.join(joints)}")
    named_links = [("ee_link", spec.ee_link)] + [(f"collision_links[{i}]", n) for i, n in enumerate(spec.collision_links or [])]
    named_links += [(f"gripper.finger_links[{i}]", n) for i, n in enumerate(spec.gripper.finger_links if spec.gripper else [])]
    for field, name in named_links:
        if name not in links:
            raise RobotLoadError(f"{where}: {field} {name!r} is not a link of {spec.urdf_path().name}; "
                                 f"its links: {', '.join(links)}")


TOOL_ORIENTATION_TOLERANCE_DEG = 30.0


def check_tool_orientation(spec: RobotSpec, home_orientation_xyzw) -> None:
    """``ee_down_orientation`` must be (close to) the tool's orientation at the home pose: IK pulls
    the tool towards it from the first step, so a value copied from another arm (Panda's on a
    KUKA iiwa: 180 deg about the vertical) winds the wrist towards its limit."""
    down = spec.ee_down_orientation
    if down is None:
        return
    dot = abs(sum(a * b for a, b in zip(down, home_orientation_xyzw, strict=True)))
    angle_deg = 2.0 * math.degrees(math.acos(min(1.0, dot)))
    if angle_deg > TOOL_ORIENTATION_TOLERANCE_DEG:
        at_home = [round(float(x), 3) + 0.0 for x in home_orientation_xyzw]
        raise RobotLoadError(
            f"robot spec {spec.spec_file or spec.name}: ee_down_orientation {list(down)} is {angle_deg:.0f} deg "
            f"from the tool's orientation at the home pose {at_home} (xyzw); IK would turn the wrist by that "
            f"much: set ee_down_orientation to {at_home}, or change the home pose")


def resolve_spec(robot: str | Path | RobotSpec) -> RobotSpec:
    """A spec given as itself, a built-in name or a YAML path."""
    return robot if isinstance(robot, RobotSpec) else load_robot_spec(robot)


def robot_identity(spec: RobotSpec) -> dict:
    """What a run or registry entry records of its robot: the name, the sha256 of the spec's
    content (canonical JSON of every field, so comments and layout do not count; not where the
    file lies) and of the URDF file, and where the spec file was."""
    import hashlib
    import json

    content = spec.model_dump(mode="json", exclude={"spec_dir", "spec_file"})
    return {"name": spec.name,
            "spec_sha256": hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest(),
            "urdf_sha256": hashlib.sha256(spec.urdf_path().read_bytes()).hexdigest(),
            "spec_file": spec.spec_file}
