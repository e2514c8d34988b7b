"""One emulated servo: its control table with the vendors' access rules, the position frames
(Homing_Offset), and the motion profile that limits speed and acceleration.

Access rules
* read-only registers are never written (Dynamixel: access error);
* EEPROM (below Torque_Enable): Dynamixel only with torque off (else access error); Feetech only
  while Lock = 0 (a locked EEPROM write is not applied, the reply carries no error bit);
* a value outside the register's range: Dynamixel data-range error; Feetech not applied;
* a write covering part of a register: Dynamixel data-length error; a goal outside
  Min/Max_Position_Limit: Dynamixel data-limit error, Feetech clips it into the limits.
A Dynamixel write is all or nothing; a Feetech write applies every register it may.

Position frames (``raw`` = the encoder, one turn = 4096 ticks):
Feetech ``present = (raw - Homing_Offset) mod 4096``; Dynamixel ``present = raw + Homing_Offset``.
Goal_Position and the position limits are in the present frame.
"""

from __future__ import annotations

import math

from simgate.hardware.emulator.registers import Reg, ServoModel, decode, encode, fresh_table

# Dynamixel Protocol 2.0 status error numbers
ERR_RESULT, ERR_INSTRUCTION, ERR_CRC, ERR_RANGE, ERR_LENGTH, ERR_LIMIT, ERR_ACCESS = 1, 2, 3, 4, 5, 6, 7
TICKS_PER_REV = 4096
DXL_RPM_UNIT = 0.229  # Profile_Velocity / Goal_Velocity, rev/min
DXL_ACC_UNIT = 214.577  # Profile_Acceleration, rev/min^2
STS_ACC_UNIT = 100.0  # Acceleration, ticks/s^2


class Servo:
    def __init__(self, model: ServoModel, servo_id: int, return_delay_us: int | None = None) -> None:
        self.model = model
        self.table = fresh_table(model, servo_id)
        if return_delay_us is not None:
            self.put("Return_Delay_Time", max(0, min(254, return_delay_us // 2)))
        self.fee = model.protocol == "feetech"
        self.setpoint_raw: float | None = None  # the profile's position, raw ticks
        self.setpoint_vel = 0.0  # raw ticks/s
        self.pending: tuple[int, bytes] | None = None  # REG_WRITE

    # ---- plain register access (no rules) ---------------------------------------------------
    def get(self, name: str) -> int:
        r = self.model.regs[name]
        return decode(r, bytes(self.table[r.addr : r.addr + r.size]))

    def put(self, name: str, value: int) -> None:
        r = self.model.regs[name]
        self.table[r.addr : r.addr + r.size] = encode(r, value)

    @property
    def id(self) -> int:
        return self.get("ID")

    @property
    def torque_on(self) -> bool:
        return self.get("Torque_Enable") == 1

    def read(self, addr: int, n: int) -> tuple[bytes, int]:
        if n < 1 or addr + n > self.model.table_size:
            return b"", ERR_ACCESS
        return bytes(self.table[addr : addr + n]), 0

    # ---- writes under the vendors' rules ------------------------------------------------------
    def write(self, addr: int, data: bytes) -> int:
        """Apply a WRITE; returns the Dynamixel error number (0 = done). Feetech never errors."""
        if addr + len(data) > self.model.table_size or not data:
            return 0 if self.fee else ERR_ACCESS
        plan: list[tuple[str, Reg, bytes]] = []
        i = 0
        while i < len(data):
            hit = self.model.covering(addr + i)
            if hit is None:
                if not self.fee:
                    return ERR_ACCESS
                i += 1
                continue
            name, r = hit
            start, end = r.addr - addr, r.addr - addr + r.size
            if start < 0 or end > len(data):
                if not self.fee:
                    return ERR_LENGTH
                i = end
                continue
            plan.append((name, r, bytes(data[start:end])))
            i = end
        accepted = []
        for name, r, raw in plan:
            err = self._check(name, r, decode(r, raw))
            if err and not self.fee:
                return err
            if not err:
                accepted.append((name, r, raw))
        for name, r, raw in accepted:
            self._apply(name, r, raw)
        return 0

    def _check(self, name: str, r: Reg, value: int) -> int:
        if r.access == "ro":
            return ERR_ACCESS
        if r.access == "eeprom":
            if self.fee and self.get("Lock") != 0:
                return ERR_ACCESS
            if not self.fee and self.torque_on:
                return ERR_ACCESS
        if name == "Operating_Mode" and value not in self.model.operating_modes:
            return ERR_RANGE
        if name == "Torque_Enable" and self.fee and value not in (0, 1, 128):
            return ERR_RANGE
        if (r.lo is not None and value < r.lo) or (r.hi is not None and value > r.hi):
            return ERR_RANGE
        if name == "Goal_Position" and not self.fee and self._limited():
            if not self.get("Min_Position_Limit") <= value <= self.get("Max_Position_Limit"):
                return ERR_LIMIT
        return 0

    def _apply(self, name: str, r: Reg, raw: bytes) -> None:
        if name == "Torque_Enable" and self.fee and decode(r, raw) == 128:
            # STS: 128 makes the present position read 2048 (writes Homing_Offset), torque unchanged
            raw_now = (self.present_to_raw(self.get("Present_Position")))
            self.put("Homing_Offset", max(-2047, min(2047, raw_now - 2048)))
            return
        if name == "Goal_Position" and self.fee and self._limited():
            lo, hi = self.get("Min_Position_Limit"), self.get("Max_Position_Limit")
            raw = encode(r, max(lo, min(hi, decode(r, raw))))
        self.table[r.addr : r.addr + r.size] = raw

    def _limited(self) -> bool:
        if self.fee:
            return self.get("Max_Position_Limit") > self.get("Min_Position_Limit")
        return self.get("Operating_Mode") == 3

    # ---- position frames ----------------------------------------------------------------------
    def present_from_raw(self, raw: int) -> int:
        ofs = self.get("Homing_Offset")
        return (raw - ofs) % TICKS_PER_REV if self.fee else raw + ofs

    def present_to_raw(self, present: int) -> int:
        ofs = self.get("Homing_Offset")
        return present + ofs if self.fee else present - ofs

    # ---- motion -------------------------------------------------------------------------------
    def limits_ticks(self) -> tuple[float, float]:
        """(max speed ticks/s, max acceleration ticks/s^2) of the profile; inf = unlimited."""
        if self.fee:
            v = abs(self.get("Goal_Velocity"))
            a = self.get("Acceleration")
            return (float(v) if v else math.inf), (a * STS_ACC_UNIT if a else math.inf)
        v = self.get("Profile_Velocity") or self.get("Velocity_Limit")
        a = self.get("Profile_Acceleration")
        v_ticks = v * DXL_RPM_UNIT / 60 * TICKS_PER_REV if v else math.inf
        a_ticks = a * DXL_ACC_UNIT / 3600 * TICKS_PER_REV if a else math.inf
        return v_ticks, a_ticks

    def force_scale(self) -> float:
        """Fraction of the motor's torque available (torque / PWM limits)."""
        if self.fee:
            return min(self.get("Torque_Limit"), self.get("Max_Torque_Limit")) / 1000.0
        return self.get("PWM_Limit") / 885.0

    def step(self, raw_now: float, dt_s: float) -> float | None:
        """Advance the profile by ``dt_s``; the raw target the motor drives to, None when limp."""
        if not self.torque_on:
            self.setpoint_raw, self.setpoint_vel = None, 0.0
            return None
        if self.setpoint_raw is None:
            self.setpoint_raw = raw_now
        if self.get("Operating_Mode") not in self.model.position_modes:
            v = self.get("Goal_Velocity") * (1.0 if self.fee else DXL_RPM_UNIT / 60 * TICKS_PER_REV)
            self.setpoint_raw += v * dt_s
            return self.setpoint_raw
        goal = float(self.present_to_raw(self.get("Goal_Position")))
        self.setpoint_raw, self.setpoint_vel = profile_step(self.setpoint_raw, self.setpoint_vel, goal,
                                                            *self.limits_ticks(), dt_s)
        return self.setpoint_raw


def profile_step(s: float, v: float, goal: float, v_max: float, a_max: float, dt_s: float) -> tuple[float, float]:
    """One step of a trapezoidal profile from (s, v) toward ``goal``: (new s, new v)."""
    e = goal - s
    if math.isinf(v_max) and math.isinf(a_max):
        return goal, 0.0
    v_stop = math.sqrt(2 * a_max * abs(e)) if not math.isinf(a_max) else math.inf
    v_des = math.copysign(min(v_max, v_stop), e)
    dv = v_des - v
    if not math.isinf(a_max):
        dv = max(-a_max * dt_s, min(a_max * dt_s, dv))
    v += dv
    s_new = s + v * dt_s
    if (goal - s_new) * e <= 0 or abs(goal - s_new) < 0.5 and abs(v) * dt_s < 1.0:
        return goal, 0.0
    return s_new, v
