"""Calibration: how each servo's raw ticks map to its joint's angle.

    rad = direction * (ticks - homing_offset) * 2*pi / ticks_per_rev,  ticks clipped to [min_ticks, max_ticks]

Ticks are what the servo reports (its Homing_Offset register, ``servo_homing_offset``, already
applied). Stored as YAML: ``joints: {name: {id, homing_offset, direction, min_ticks, max_ticks,
servo_homing_offset}}``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simgate.errors import ConfigError
from simgate.sim.robot_spec import RobotSpec


class JointCalibration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=0, le=252)
    homing_offset: int = Field(description="raw ticks at the joint's zero angle")
    direction: Literal[1, -1] = 1
    min_ticks: int = Field(ge=0)
    max_ticks: int = Field(ge=0)
    servo_homing_offset: int = Field(0, description="the servo's Homing_Offset register this calibration was "
                                     "recorded with (written on connect; LeRobot calibrations keep theirs)")

    @model_validator(mode="after")
    def _order(self) -> JointCalibration:
        if self.min_ticks >= self.max_ticks:
            raise ValueError(f"min_ticks ({self.min_ticks}) must be < max_ticks ({self.max_ticks})")
        return self


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    robot: str
    ticks_per_rev: int = 4096
    joints: dict[str, JointCalibration]

    # ---- conversions -------------------------------------------------------------------------
    def to_rad(self, joint: str, ticks: int) -> float:
        c = self.joints[joint]
        return c.direction * (ticks - c.homing_offset) * 2 * math.pi / self.ticks_per_rev

    def to_ticks(self, joint: str, rad: float) -> tuple[int, bool]:
        """Ticks for ``rad`` and whether it had to be clipped into [min_ticks, max_ticks]."""
        c = self.joints[joint]
        raw = int(round(c.homing_offset + c.direction * rad * self.ticks_per_rev / (2 * math.pi)))
        clipped = min(c.max_ticks, max(c.min_ticks, raw))
        return clipped, clipped != raw

    def check_covers(self, spec: RobotSpec, source: str) -> None:
        missing = [j for j in spec.joint_names if j not in self.joints]
        if missing:
            raise ConfigError(f"calibration {source}: no entry for joint(s) {missing} of robot {spec.name!r}")

    # ---- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(self.model_dump(), sort_keys=False))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"calibration file not found: {path} (record one with `simgate calibrate`)")
        try:
            return cls.model_validate(yaml.safe_load(path.read_text()))
        except yaml.YAMLError as exc:
            raise ConfigError(f"calibration file {path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
        except ValidationError as exc:
            raise ConfigError(f"calibration file {path}: {one_line(exc)}") from exc


def one_line(exc: ValidationError) -> str:
    """A pydantic error as ``field.path: message; ...`` on one line."""
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())


MIN_SPAN_FRACTION = 0.25  # a calibrated range must cover at least this much of the spec's joint range


def min_span_ticks(lower: float, upper: float, ticks_per_rev: int = 4096) -> int:
    """Smallest tick range accepted for a joint whose spec range is [lower, upper]."""
    return max(8, math.ceil(MIN_SPAN_FRACTION * (upper - lower) * ticks_per_rev / (2 * math.pi)))


def check_spans(cal: Calibration, spec: RobotSpec, source: str, hint: str) -> None:
    """Refuse joints whose recorded range is too small to be real (a joint nobody moved)."""
    short = []
    for j in spec.all_joints:
        c = cal.joints.get(j.name)
        if c is not None and c.max_ticks - c.min_ticks < min_span_ticks(j.lower, j.upper, cal.ticks_per_rev):
            short.append(f"{j.name} ({c.max_ticks - c.min_ticks} ticks, need >= "
                         f"{min_span_ticks(j.lower, j.upper, cal.ticks_per_rev)})")
    if short:
        raise ConfigError(f"{source}: range too small for joint(s) {', '.join(short)}: {hint}")


def nominal_calibration(spec: RobotSpec, ids: dict[str, int], ticks_per_rev: int = 4096) -> Calibration:
    """Servo centre (2048) = joint zero, direction +1, tick limits from the spec's joint limits
    (how the emulated bus mounts its servos; a real arm needs `simgate calibrate`)."""
    joints = {}
    for j in spec.all_joints:
        if j.name not in ids:
            raise ConfigError(f"joint {j.name!r} has no servo id")
        lo = int(math.floor(2048 + j.lower * ticks_per_rev / (2 * math.pi)))
        hi = int(math.ceil(2048 + j.upper * ticks_per_rev / (2 * math.pi)))
        joints[j.name] = JointCalibration(id=ids[j.name], homing_offset=2048, direction=1,
                                          min_ticks=max(0, lo), max_ticks=min(ticks_per_rev - 1, hi))
    return Calibration(robot=spec.name, ticks_per_rev=ticks_per_rev, joints=joints)
