"""Servo configuration written on connect, per protocol and model, and verified by reading back.

:class:`ServoSettings` (one per joint, every field optional) holds what a user may change; the
defaults are the vendors' / LeRobot's documented set-up:

* position control (Feetech Operating_Mode 0, Dynamixel 3), return delay 0 us;
* profile limits from the spec: speed = the joint's velocity limit, acceleration = that speed
  reached in ``ramp_s`` (0.1 s) (Feetech Goal_Velocity / Acceleration, Dynamixel
  Profile_Velocity / Profile_Acceleration);
* EEPROM position limits = the calibrated tick range, Homing_Offset = the calibration's
  ``servo_homing_offset``; Feetech EEPROM writes under the Lock protocol (Lock 0, write, Lock 1),
  Dynamixel EEPROM writes with torque off;
* Feetech P/I/D coefficients 16/0/32 and Maximum_Acceleration 254 (LeRobot's SO-100/101 set-up);
* grippers limited to half torque (Feetech Max_Torque_Limit / Torque_Limit 500, Protection_Current
  250, Overload_Torque 25; Dynamixel PWM_Limit 442) so they cannot burn out while squeezing.

Only registers that differ are written (EEPROM wears); every register is then read back and a
mismatch raises :class:`ServoConfigError` naming the joint, servo and register.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from simgate.errors import HardwareError

DXL_RPM_UNIT = 0.229  # rev/min per Profile_Velocity unit
DXL_ACC_UNIT = 214.577  # rev/min^2 per Profile_Acceleration unit
STS_ACC_UNIT = 100.0  # ticks/s^2 per Acceleration unit


class ServoConfigError(HardwareError):
    """A servo did not take its configuration (read-back mismatch or refused write)."""


class ServoSettings(BaseModel):
    """Per-joint servo settings (all optional; None = the documented default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_velocity_rad_s: float | None = Field(None, gt=0, description="profile speed; None: the spec's velocity limit")
    max_acceleration_rad_s2: float | None = Field(None, gt=0, description="profile acceleration; None: speed / ramp_s")
    ramp_s: float = Field(0.1, gt=0, le=5, description="time to reach full speed when no acceleration is given")
    return_delay_us: int = Field(0, ge=0, le=508)
    torque_limit: float | None = Field(None, gt=0, le=1, description="fraction of full torque; None: 1, gripper 0.5")
    p_gain: int | None = Field(None, ge=0, le=16383, description="None: Feetech 16, Dynamixel unchanged")
    i_gain: int | None = Field(None, ge=0, le=16383, description="None: Feetech 0, Dynamixel unchanged")
    d_gain: int | None = Field(None, ge=0, le=16383, description="None: Feetech 32, Dynamixel unchanged")


@dataclass(frozen=True)
class RegWrite:
    name: str
    addr: int
    size: int
    value: int
    eeprom: bool
    sign_bit: int | None = None  # Feetech sign-magnitude

    def encode(self) -> bytes:
        v = self.value
        if self.sign_bit is not None and v < 0:
            v = (-v) | (1 << self.sign_bit)
        return int(v & ((1 << (8 * self.size)) - 1)).to_bytes(self.size, "little")


# ---- SI <-> servo units ------------------------------------------------------------------------
def velocity_to_raw(protocol: str, rad_s: float, ticks_per_rev: int = 4096) -> int:
    """Profile speed register value for ``rad_s`` (at least 1: 0 means unlimited)."""
    if protocol == "feetech":
        return max(1, min(32767, round(rad_s * ticks_per_rev / (2 * math.pi))))
    return max(1, min(32767, round(rad_s * 60 / (2 * math.pi) / DXL_RPM_UNIT)))


def velocity_from_raw(protocol: str, raw: int, ticks_per_rev: int = 4096) -> float:
    if protocol == "feetech":
        return raw * 2 * math.pi / ticks_per_rev
    return raw * DXL_RPM_UNIT * 2 * math.pi / 60


def acceleration_to_raw(protocol: str, rad_s2: float, ticks_per_rev: int = 4096) -> int:
    """Profile acceleration register value (at least 1; Feetech at most 254)."""
    if protocol == "feetech":
        return max(1, min(254, round(rad_s2 * ticks_per_rev / (2 * math.pi) / STS_ACC_UNIT)))
    return max(1, min(32767, round(rad_s2 * 3600 / (2 * math.pi) / DXL_ACC_UNIT)))


def acceleration_from_raw(protocol: str, raw: int, ticks_per_rev: int = 4096) -> float:
    if protocol == "feetech":
        return raw * STS_ACC_UNIT * 2 * math.pi / ticks_per_rev
    return raw * DXL_ACC_UNIT * 2 * math.pi / 3600


# ---- the plan ----------------------------------------------------------------------------------
def default_profile(settings: ServoSettings, spec_velocity: float) -> tuple[float, float]:
    """(speed rad/s, acceleration rad/s^2) this joint's profile uses unless a write says otherwise."""
    v = settings.max_velocity_rad_s or spec_velocity
    return v, settings.max_acceleration_rad_s2 or v / settings.ramp_s


def plan(protocol: str, settings: ServoSettings, *, spec_velocity: float, min_ticks: int, max_ticks: int,
         servo_homing_offset: int, gripper: bool, ticks_per_rev: int = 4096) -> list[RegWrite]:
    """The registers to write for one servo, EEPROM first."""
    v, a = default_profile(settings, spec_velocity)
    v_raw, a_raw = velocity_to_raw(protocol, v, ticks_per_rev), acceleration_to_raw(protocol, a, ticks_per_rev)
    torque = settings.torque_limit or (0.5 if gripper else 1.0)
    lo, hi = max(0, min_ticks), min(ticks_per_rev - 1, max_ticks)
    rd = settings.return_delay_us // 2
    if protocol == "feetech":
        w = [RegWrite("Return_Delay_Time", 7, 1, rd, True), RegWrite("Min_Position_Limit", 9, 2, lo, True),
             RegWrite("Max_Position_Limit", 11, 2, hi, True), RegWrite("Max_Torque_Limit", 16, 2, round(1000 * torque), True),
             RegWrite("P_Coefficient", 21, 1, 16 if settings.p_gain is None else settings.p_gain, True),
             RegWrite("D_Coefficient", 22, 1, 32 if settings.d_gain is None else settings.d_gain, True),
             RegWrite("I_Coefficient", 23, 1, 0 if settings.i_gain is None else settings.i_gain, True),
             RegWrite("Homing_Offset", 31, 2, servo_homing_offset, True, sign_bit=11),
             RegWrite("Operating_Mode", 33, 1, 0, True), RegWrite("Maximum_Acceleration", 85, 1, 254, True)]
        if gripper:
            w += [RegWrite("Protection_Current", 28, 2, round(500 * torque), True),
                  RegWrite("Overload_Torque", 36, 1, round(50 * torque), True)]
        return w + [RegWrite("Acceleration", 41, 1, a_raw, False), RegWrite("Goal_Velocity", 46, 2, v_raw, False, sign_bit=15),
                    RegWrite("Torque_Limit", 48, 2, round(1000 * torque), False)]
    w = [RegWrite("Return_Delay_Time", 9, 1, rd, True), RegWrite("Drive_Mode", 10, 1, 0, True),
         RegWrite("Operating_Mode", 11, 1, 3, True), RegWrite("Homing_Offset", 20, 4, servo_homing_offset, True),
         RegWrite("PWM_Limit", 36, 2, round(885 * torque), True), RegWrite("Max_Position_Limit", 48, 4, hi, True),
         RegWrite("Min_Position_Limit", 52, 4, lo, True)]
    gains = [("Position_D_Gain", 80, settings.d_gain), ("Position_I_Gain", 82, settings.i_gain),
             ("Position_P_Gain", 84, settings.p_gain)]
    w += [RegWrite(n, addr, 2, g, False) for n, addr, g in gains if g is not None]
    return w + [RegWrite("Profile_Acceleration", 108, 4, a_raw, False), RegWrite("Profile_Velocity", 112, 4, v_raw, False)]


# ---- applying it -------------------------------------------------------------------------------
FEETECH_LOCK = 55
CONNECT_RETRIES = 20  # connecting is not time-critical: ride out a loaded host (~0.4 s of silence)


def _read_all(bus, sid: int, writes: list[RegWrite]) -> dict[str, bytes]:
    """Every register of ``writes``, in one block read (one transaction: a late reply of another
    transaction cannot be mistaken for one register's value, its length differs)."""
    lo = min(w.addr for w in writes)
    hi = max(w.addr + w.size for w in writes)
    block = bus.read(sid, lo, hi - lo, retries=CONNECT_RETRIES)
    return {w.name: block[w.addr - lo : w.addr - lo + w.size] for w in writes}


def apply(bus, joint: str, sid: int, writes: list[RegWrite]) -> list[str]:
    """Write what differs on one servo, then verify every register; returns the names written.

    Feetech: EEPROM under Lock 0 ... Lock 1. Dynamixel: EEPROM with torque off (the caller holds
    the arm again afterwards)."""
    from simgate.hardware.serial.sdk_bus import ServoStatusError

    current = _read_all(bus, sid, writes)
    todo = [w for w in writes if current[w.name] != w.encode()]
    eeprom = [w for w in todo if w.eeprom]
    try:
        if eeprom and bus.fee:
            bus.write(sid, FEETECH_LOCK, b"\x00", retries=CONNECT_RETRIES)
        elif eeprom:
            bus.set_torque(sid, False, retries=CONNECT_RETRIES)
        for w in eeprom:
            bus.write(sid, w.addr, w.encode(), retries=CONNECT_RETRIES)
        if eeprom and bus.fee:
            bus.write(sid, FEETECH_LOCK, b"\x01", retries=CONNECT_RETRIES)
        for w in todo:
            if not w.eeprom:
                bus.write(sid, w.addr, w.encode(), retries=CONNECT_RETRIES)
    except ServoStatusError as exc:
        raise ServoConfigError(f"joint {joint!r} (servo id {sid}): configuration refused: {exc}") from exc
    after = _read_all(bus, sid, writes)
    bad = [w for w in writes if after[w.name] != w.encode()]
    if bad:
        w = bad[0]
        got = int.from_bytes(after[w.name], "little")
        raise ServoConfigError(f"joint {joint!r} (servo id {sid}): {w.name} (address {w.addr}) wrote {w.value}, "
                               f"reads back {got}" + (" (EEPROM locked?)" if w.eeprom else ""))
    return [w.name for w in todo]
