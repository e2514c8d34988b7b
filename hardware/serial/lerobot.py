"""Import a LeRobot calibration (``{motor: {id, drive_mode, homing_offset, range_min, range_max}}``).

LeRobot writes ``homing_offset`` into each servo's Homing_Offset register so that the middle of
the joint's range reads 2047, and measures angles from that middle ("half-turn homing"; in
degrees mode ``deg = (ticks - (range_min + range_max) / 2) * 360 / 4096``, sign flipped when
``drive_mode`` is 1). simgate measures angles from the URDF zero. The import keeps LeRobot's
register offset (``servo_homing_offset``: connecting writes it, so the servo reports the same
ticks as under LeRobot) and adds the **zero-pose step**: the middle of the recorded range is
taken to be the middle of the spec's joint range, ``(lower + upper) / 2`` (where the joint's
physical stops are the spec's limits, this is exact); ``zero_pose`` overrides that angle per
joint (the URDF angle, rad, at which the joint sits in the middle of its recorded range). Then

    homing_offset (ticks at the URDF zero) = mid - direction * angle_at_mid * 4096 / (2 pi)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simgate.errors import ConfigError
from simgate.hardware.serial.calibration import Calibration, JointCalibration, check_spans, one_line
from simgate.sim.robot_spec import RobotSpec


class LeRobotMotor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=0, le=252)
    drive_mode: int = Field(0, ge=0, le=1)
    homing_offset: int = Field(ge=-1_044_479, le=1_044_479)
    range_min: int = Field(ge=0)
    range_max: int = Field(ge=0)


def _load(path: Path) -> dict[str, LeRobotMotor]:
    if not path.exists():
        raise ConfigError(f"LeRobot calibration {path}: file not found")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"LeRobot calibration {path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"LeRobot calibration {path}: expected an object {{motor_name: {{id, drive_mode, "
                          "homing_offset, range_min, range_max}}}}")
    motors = {}
    for name, entry in raw.items():
        try:
            motors[name] = LeRobotMotor.model_validate(entry)
        except ValidationError as exc:
            raise ConfigError(f"LeRobot calibration {path}: motor {name!r}: {one_line(exc)}") from exc
        m = motors[name]
        if m.range_min >= m.range_max:
            raise ConfigError(f"LeRobot calibration {path}: motor {name!r}: range_min ({m.range_min}) must be "
                              f"< range_max ({m.range_max})")
    return motors


def import_lerobot(path: str | Path, spec: RobotSpec, zero_pose: dict[str, float] | None = None,
                   ticks_per_rev: int = 4096) -> Calibration:
    """A simgate calibration from a LeRobot calibration file (see the module docstring)."""
    path = Path(path)
    motors = _load(path)
    zero_pose = zero_pose or {}
    missing = [n for n in spec.joint_names if n not in motors]
    extra = [n for n in motors if n not in spec.joint_names]
    if missing or extra:
        raise ConfigError(f"LeRobot calibration {path}: motors {sorted(motors)} do not match robot "
                          f"{spec.name!r} joints {spec.joint_names} (missing {missing}, unknown {extra})")
    odd = [n for n in zero_pose if n not in spec.joint_names]
    if odd:
        raise ConfigError(f"--zero-pose names joint(s) {odd} that robot {spec.name!r} does not have")
    joints = {}
    for j in spec.all_joints:
        m = motors[j.name]
        direction = -1 if m.drive_mode else 1
        mid = (m.range_min + m.range_max) / 2
        angle_at_mid = zero_pose.get(j.name, (j.lower + j.upper) / 2)
        joints[j.name] = JointCalibration(
            id=m.id, homing_offset=round(mid - direction * angle_at_mid * ticks_per_rev / (2 * math.pi)),
            direction=direction, min_ticks=m.range_min, max_ticks=m.range_max, servo_homing_offset=m.homing_offset)
    cal = Calibration(robot=spec.name, ticks_per_rev=ticks_per_rev, joints=joints)
    check_spans(cal, spec, f"LeRobot calibration {path}", "recalibrate those joints through their whole range")
    return cal


def span_report(cal: Calibration, spec: RobotSpec) -> list[str]:
    """Per joint: the recorded range against the spec's range (a large mismatch means the
    zero-pose step's assumption, recorded middle = spec middle, needs --zero-pose)."""
    lines = []
    for j in spec.all_joints:
        c = cal.joints[j.name]
        span = (c.max_ticks - c.min_ticks) * 2 * math.pi / cal.ticks_per_rev
        lines.append(f"{j.name}: recorded {span:.2f} rad, spec {j.upper - j.lower:.2f} rad")
    return lines
