"""Per-robot twin parameters: the arm's link inertias and the motor solver's sweeps (measured
and fitted against PyBullet by ``simgate sim fit-twin ROBOT``) and the planar push contact.
Stored next to the robot spec as ``<spec name>.twin.yaml``; a spec without one runs on these
defaults (inertias merged from the URDF, 2 sweeps) and `twin-check` says how well that does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from simgate.errors import ConfigError
from simgate.sim.robot_spec import ROBOTS_DIR, RobotSpec
from simgate.sim.twin.dynamics import RigidBody


class LinkInertial(BaseModel):
    """One arm link's rigid body as PyBullet simulates it (fixed children merged), in the frame
    of the joint that moves it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mass_kg: float = Field(ge=0)
    com_m: tuple[float, float, float]
    inertia_diag_kg_m2: tuple[float, float, float] = Field(description="principal moments about the centre of mass (>= 0)")
    inertia_quat_xyzw: tuple[float, float, float, float] = Field((0.0, 0.0, 0.0, 1.0),
                                                                  description="principal axes in the joint frame")

    @field_validator("inertia_diag_kg_m2")
    @classmethod
    def _moments_not_negative(cls, v):
        if min(v) < 0:
            raise ValueError(f"principal moments must be >= 0, got {v}")
        return v

    @field_validator("inertia_quat_xyzw")
    @classmethod
    def _unit_quaternion(cls, v):
        if abs(sum(x * x for x in v) - 1.0) > 1e-6:
            raise ValueError(f"must be a unit quaternion, got {v}")
        return v

    def body(self) -> RigidBody:
        x, y, z, w = self.inertia_quat_xyzw
        rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        return RigidBody(self.mass_kg, np.array(self.com_m), rot @ np.diag(self.inertia_diag_kg_m2) @ rot.T)


class TwinParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    robot: str
    position_gain: float = Field(0.1, gt=0, le=1, description="motor velocity target = gain * error / dt (Bullet's kp)")
    motor_sweeps: int = Field(2, ge=1, le=8, description="Gauss-Seidel sweeps of the motor solve per 2-ms substep")
    links: list[LinkInertial] | None = Field(None, description="per arm joint, measured in PyBullet (None: from the URDF)")
    tool_floor_z_m: float = Field(0.0083, description="lowest tool-point height with the fingers on the table")
    pusher_offsets_m: list[float] = Field(default_factory=lambda: [0.0, -0.012, 0.012],
                                          description="disk centres along the tool's y axis")
    pusher_radius_m: float = Field(0.012, gt=0)
    table_friction: float = Field(0.25, ge=0, description="box-table Coulomb coefficient (Bullet: 0.5 x 0.5)")
    finger_friction: float = Field(0.5, ge=0, description="finger-box coefficient (Bullet: 1.0 x 0.5)")
    contact_bias: float = Field(0.2, ge=0, le=1, description="fraction of a penetration resolved per substep")
    contact_substeps: int = Field(5, ge=1, description="box/contact updates per control step (motor: every 2 ms)")
    tip_min_z_m: float = Field(0.03, description="tip rule: contact with the tool at least this high ...")
    tip_penetration_m: float = Field(0.02, description="... and deeper than this freezes the box (PyBullet tilts it). "
                                     "With the coupled arm, 6 mm froze 15 of 300 scripted pushes (seeds 500000+) that PyBullet "
                                     "completed; 20 mm froze 2")
    finger_table_stick_mu: float = Field(0.5, gt=0, description="finger-table coefficient at and above which fingers "
                                         "pressed on the table stick (Panda in PyBullet: stuck at 0.64-1.44 in some poses, pressing down or not)")
    fit: dict[str, float] = Field(default_factory=dict, description="fit figures (one-step errors vs PyBullet)")

    def bodies(self) -> list[RigidBody] | None:
        return None if self.links is None else [link.body() for link in self.links]


REMOVED_FIELDS = ("accel_limit_rad_s2", "accel_limit_neg_rad_s2")


def params_path(spec: RobotSpec) -> Path:
    return Path(spec.spec_dir or ROBOTS_DIR) / f"{spec.name}.twin.yaml"


def default_params(spec: RobotSpec) -> TwinParams:
    return TwinParams(robot=spec.name, tool_floor_z_m=0.0083 * spec.workspace_scale)


def load_params(spec: RobotSpec) -> TwinParams:
    path = params_path(spec)
    if not path.exists():
        return default_params(spec)
    raw = yaml.safe_load(path.read_text())
    old = [k for k in REMOVED_FIELDS if isinstance(raw, dict) and k in raw]
    if old:  # the per-joint motor model's fields: `fit-twin` replaces them
        warnings.warn(f"twin parameters {path}: {', '.join(old)} belong to the earlier per-joint motor model and are "
                      f"ignored; run `simgate sim fit-twin {spec.name}` to measure the link inertias", stacklevel=2)
        raw = {k: v for k, v in raw.items() if k not in old}
    try:
        params = TwinParams.model_validate(raw)
    except Exception as exc:  # pydantic / yaml: name the file
        raise ConfigError(f"twin parameters {path}: {exc}") from exc
    if params.links is not None and len(params.links) != spec.dof:
        raise ConfigError(f"twin parameters {path}: links has {len(params.links)} entries for {spec.dof} arm joints")
    return params


def save_params(spec: RobotSpec, params: TwinParams) -> Path:
    path = params_path(spec)
    header = f"# Twin parameters of {spec.name}, fitted against PyBullet by `simgate sim fit-twin {spec.name}`.\n"
    path.write_text(header + yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    return path
