"""Per-robot twin parameters: the joint motor model (fitted against PyBullet by
``simgate sim fit-twin ROBOT``) and the planar push contact. Stored next to the robot spec as
``<spec name>.twin.yaml``; a spec without one runs on these defaults (Bullet's position gain,
generous acceleration limits) and `twin-check` says how well that does.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from simgate.errors import ConfigError
from simgate.sim.robot_spec import ROBOTS_DIR, RobotSpec


class TwinParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    robot: str
    position_gain: float = Field(0.1, gt=0, le=1, description="motor velocity target = gain * error / dt (Bullet's kp)")
    accel_limit_rad_s2: list[float] = Field(description="per arm joint, fitted: limit of speeding up in + direction")
    accel_limit_neg_rad_s2: list[float] | None = Field(None, description="per arm joint, in - direction (None: same)")
    tool_floor_z_m: float = Field(0.0083, description="lowest tool-point height with the fingers on the table")
    pusher_offsets_m: list[float] = Field(default_factory=lambda: [0.0, -0.012, 0.012],
                                          description="disk centres along the tool's y axis")
    pusher_radius_m: float = Field(0.012, gt=0)
    table_friction: float = Field(0.25, ge=0, description="box-table Coulomb coefficient (Bullet: 0.5 x 0.5)")
    finger_friction: float = Field(0.5, ge=0, description="finger-box coefficient (Bullet: 1.0 x 0.5)")
    contact_bias: float = Field(0.2, ge=0, le=1, description="fraction of a penetration resolved per substep")
    contact_substeps: int = Field(5, ge=1, description="box/contact updates per control step (motor: every 2 ms)")
    tip_min_z_m: float = Field(0.03, description="tip rule: contact with the tool at least this high ...")
    tip_penetration_m: float = Field(0.006, description="... and deeper than this freezes the box (PyBullet tilts it)")
    finger_table_stick_mu: float = Field(0.5, gt=0, description="finger-table coefficient at and above which fingers "
                                         "pressed on the table stick (Panda in PyBullet: stuck at 0.64-1.44 in some poses, pressing down or not)")
    fit: dict[str, float] = Field(default_factory=dict, description="fit figures (one-step errors vs PyBullet)")


def params_path(spec: RobotSpec) -> Path:
    return Path(spec.spec_dir or ROBOTS_DIR) / f"{spec.name}.twin.yaml"


def default_params(spec: RobotSpec) -> TwinParams:
    return TwinParams(robot=spec.name, accel_limit_rad_s2=[50.0] * spec.dof,
                      tool_floor_z_m=0.0083 * spec.workspace_scale)


def load_params(spec: RobotSpec) -> TwinParams:
    path = params_path(spec)
    if not path.exists():
        return default_params(spec)
    try:
        params = TwinParams.model_validate(yaml.safe_load(path.read_text()))
    except Exception as exc:  # pydantic / yaml: name the file
        raise ConfigError(f"twin parameters {path}: {exc}") from exc
    if len(params.accel_limit_rad_s2) != spec.dof:
        raise ConfigError(f"twin parameters {path}: {len(params.accel_limit_rad_s2)} acceleration limits for {spec.dof} joints")
    if params.accel_limit_neg_rad_s2 is not None and len(params.accel_limit_neg_rad_s2) != spec.dof:
        raise ConfigError(f"twin parameters {path}: accel_limit_neg_rad_s2 needs {spec.dof} values")
    return params


def save_params(spec: RobotSpec, params: TwinParams) -> Path:
    path = params_path(spec)
    header = f"# Twin parameters of {spec.name}, fitted against PyBullet by `simgate sim fit-twin {spec.name}`.\n"
    path.write_text(header + yaml.safe_dump(params.model_dump(), sort_keys=False))
    return path
