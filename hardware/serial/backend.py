"""Serial-servo backend (Feetech STS3215 / Dynamixel X over the official SDKs).

* connect: open the port, ping every servo (model number checked), write and verify each servo's
  configuration (:mod:`.servo_config`: operating mode, return delay, profile limits, EEPROM
  position limits, Homing_Offset, gripper torque limits), then hold the arm where it is
  (goal = present) and switch torque on. Bad config fails here, naming the joint or field,
  before anything moves.
* read: one group sync read of present position / velocity / load, bounded retries; when the
  bus stops answering the state comes back with ``health = fault`` and the time of the last
  good reading (never a stale value marked fresh); a lost port is reopened when it returns.
* write: radians -> ticks through the calibration, clipped to the calibrated range, one group
  sync write; returns what was actually sent (quantized and clipped, in radians). A command may
  carry per-joint speed / acceleration limits (rad/s, rad/s^2): they go out with the goal in the
  same sync write (Feetech Acceleration..Goal_Velocity, Dynamixel Profile_Acceleration..Goal),
  and stay in force until a write changes them (a write without them restores the defaults).
* close: torque off unless ``torque_off_on_close`` is false.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simgate.errors import ConfigError, HardwareError
from simgate.hardware.serial import servo_config as sc
from simgate.hardware.serial.calibration import Calibration
from simgate.hardware.serial.sdk_bus import BusError, PortError, SdkBus
from simgate.hardware.types import BackendBase, Capabilities, Health, JointCommand, RobotState
from simgate.sim.robot_spec import load_robot_spec


class SerialConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["serial"] = "serial"
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or /dev/ttyACM0")
    protocol: Literal["feetech", "dynamixel"] = "feetech"
    baud: int = Field(1_000_000, gt=0)
    robot: str = "so101"
    ids: dict[str, int] = Field(description="servo id per joint (arm joints and gripper)")
    calibration: str = Field(description="calibration YAML written by `simgate calibrate`")
    read_retries: int = Field(2, ge=0, le=10)
    latency_timer_ms: float = Field(2.0, gt=0, le=32, description="USB adapter latency timer (SDK timeouts)")
    torque_off_on_close: bool = True
    reconnect_interval_s: float = Field(0.2, gt=0)
    configure_servos: bool = Field(True, description="write and verify each servo's configuration on connect")
    servos: dict[str, sc.ServoSettings] = Field(default_factory=dict, description="per-joint servo settings")


class SerialBackend(BackendBase):
    def __init__(self, config: SerialConfig) -> None:
        self.config = config
        self.spec = load_robot_spec(config.robot)
        names = self.spec.joint_names
        missing = [n for n in names if n not in config.ids]
        if missing:
            raise ConfigError(f"serial config: joint(s) {missing} have no servo id (field 'ids')")
        unknown = [n for n in config.ids if n not in names]
        if unknown:
            raise ConfigError(f"serial config: 'ids' names joint(s) {unknown} that robot {self.spec.name!r} does not have")
        odd = [n for n in config.servos if n not in names]
        if odd:
            raise ConfigError(f"serial config: 'servos' names joint(s) {odd} that robot {self.spec.name!r} does not have")
        if len(set(config.ids.values())) != len(config.ids):
            raise ConfigError(f"serial config: servo ids must be unique, got {config.ids}")
        self.calibration = Calibration.load(config.calibration)
        self.calibration.check_covers(self.spec, config.calibration)
        for n in names:
            if self.calibration.joints[n].id != config.ids[n]:
                raise ConfigError(f"calibration {config.calibration}: joint {n!r} is servo id "
                                  f"{self.calibration.joints[n].id}, config 'ids' says {config.ids[n]}")
        self.names = names
        self.arm = [j.name for j in self.spec.arm_joints]
        self.grip = self.spec.gripper.joints[0].name if self.spec.gripper else None
        caps = ["joint_positions"] + (["gripper"] if self.grip else [])
        self.capabilities = Capabilities(command_modes=caps, sensors=["joint_state"])
        self.bus: SdkBus | None = None
        self._lock = threading.RLock()
        self._last: RobotState | None = None
        self._health = Health.fault("not connected")
        self._next_reconnect = 0.0
        self.read_failures = 0
        self.configured: dict[str, list[str]] = {}  # joint -> registers written at the last connect
        self._profile: dict[int, tuple[int, int]] = {}  # servo id -> (speed, acceleration) raw in force

    # ---- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        cfg = self.config
        if not os.path.exists(cfg.port):
            raise HardwareError(f"serial port {cfg.port!r} not found (is the adapter plugged in? `simgate doctor`)")
        with self._lock:
            self._open_and_check(ping_retries=sc.CONNECT_RETRIES)
            try:
                if cfg.configure_servos:
                    self._configure()
                self._hold()
            except Exception:
                self.bus.close()
                self.bus = None
                raise
            self._health = Health.ok()

    def _settings(self, name: str) -> sc.ServoSettings:
        return self.config.servos.get(name) or sc.ServoSettings()

    def _spec_joint(self, name: str):
        return next(j for j in self.spec.all_joints if j.name == name)

    def _default_profile_raw(self, name: str) -> tuple[int, int]:
        v, a = sc.default_profile(self._settings(name), self._spec_joint(name).velocity)
        p, tpr = self.config.protocol, self.calibration.ticks_per_rev
        return sc.velocity_to_raw(p, v, tpr), sc.acceleration_to_raw(p, a, tpr)

    def _configure(self) -> None:
        """Write and verify every servo's configuration (see :mod:`.servo_config`)."""
        cal = self.calibration
        for n in self.names:
            c = cal.joints[n]
            writes = sc.plan(self.config.protocol, self._settings(n), spec_velocity=self._spec_joint(n).velocity,
                             min_ticks=c.min_ticks, max_ticks=c.max_ticks, servo_homing_offset=c.servo_homing_offset,
                             gripper=n == self.grip, ticks_per_rev=cal.ticks_per_rev)
            self.configured[n] = sc.apply(self.bus, n, self.config.ids[n], writes)
            self._profile[self.config.ids[n]] = self._default_profile_raw(n)

    def _hold(self) -> None:
        """Goal = present position, then torque on: connecting never moves the arm (a joint that
        rests a little outside its calibrated range, e.g. sagged onto its stop, is held at the
        range's end; further out is refused)."""
        cfg, cal = self.config, self.calibration
        present = self.bus.sync_read_present([cfg.ids[n] for n in self.names], retries=sc.CONNECT_RETRIES)
        goals = {}
        for n in self.names:
            c, ticks = cal.joints[n], present[cfg.ids[n]][0]
            goal = min(c.max_ticks, max(c.min_ticks, ticks)) if cfg.configure_servos else ticks
            slack = max(32, (c.max_ticks - c.min_ticks) // 20)
            if abs(goal - ticks) > slack:
                raise HardwareError(f"joint {n!r} (servo id {cfg.ids[n]}) reads {ticks} ticks, outside its calibrated "
                                    f"range [{c.min_ticks}, {c.max_ticks}]: move it into range by hand (torque is off) "
                                    "or recalibrate")
            goals[cfg.ids[n]] = goal
        self.bus.sync_write_goal(goals)
        for n in self.names:
            self.bus.set_torque(cfg.ids[n], True, retries=sc.CONNECT_RETRIES)

    def _open_and_check(self, ping_retries: int | None = None) -> None:
        cfg = self.config
        bus = SdkBus(cfg.protocol, cfg.port, cfg.baud, cfg.latency_timer_ms)
        bus.open()
        try:
            for n in self.names:
                sid = cfg.ids[n]
                try:
                    model = bus.ping(sid, retries=cfg.read_retries if ping_retries is None else ping_retries)
                except BusError as exc:
                    raise HardwareError(f"joint {n!r} (servo id {sid}) does not answer on {cfg.port}: {exc}") from exc
                if model not in bus.regs.model_numbers:
                    raise HardwareError(f"joint {n!r} (servo id {sid}): model number {model} is not a "
                                        f"{cfg.protocol} servo simgate knows {bus.regs.model_numbers}")
        except Exception:
            bus.close()
            raise
        self.bus = bus

    def close(self) -> None:
        with self._lock:
            if self.bus is None:
                return
            if self.config.torque_off_on_close:
                for n in self.names:
                    try:  # torque off matters: ride out a loaded host
                        self.bus.set_torque(self.config.ids[n], False, retries=5)
                    except BusError:
                        pass
            self.bus.close()
            self.bus = None
            self._health = Health.fault("closed")

    # ---- reading -----------------------------------------------------------------------------
    def _read_raw(self) -> dict[int, tuple[int, int, int]]:
        ids = [self.config.ids[n] for n in self.names]
        return self.bus.sync_read_present(ids, retries=self.config.read_retries)

    def _try_reconnect(self) -> None:
        now = time.monotonic()
        if now < self._next_reconnect:
            return
        self._next_reconnect = now + self.config.reconnect_interval_s
        if self.bus is not None:
            self.bus.close()
            self.bus = None
        if not os.path.exists(self.config.port):
            return
        try:
            self._open_and_check()
        except HardwareError:  # BusError included: the next read tries again
            if self.bus is not None:
                self.bus.close()
            self.bus = None

    def health(self) -> Health:
        return self._health

    def read(self) -> RobotState:
        with self._lock:
            if self.bus is None:
                self._try_reconnect()
            if self.bus is None:
                self._health = Health.fault(f"serial port {self.config.port!r} unavailable")
                return self._stale_state()
            try:
                raw = self._read_raw()
            except BusError as exc:
                self.read_failures += 1
                if isinstance(exc, PortError):
                    self.bus.close()
                    self.bus = None
                self._health = Health.fault(f"bus not answering: {exc}")
                return self._stale_state()
            cal, ids = self.calibration, self.config.ids
            pos, vel, eff = [], [], []
            scale = 2 * math.pi / cal.ticks_per_rev
            for n in self.names:
                p_ticks, v_raw, load = raw[ids[n]]
                d = cal.joints[n].direction
                pos.append(cal.to_rad(n, p_ticks))
                # Feetech reports ticks/s; Dynamixel 0.229 rpm units
                v = v_raw * scale if self.config.protocol == "feetech" else v_raw * 0.229 * 2 * math.pi / 60
                vel.append(d * v)
                eff.append(d * load / 1000.0)
            n_arm = len(self.arm)
            gripper = None
            if self.grip:
                g = self.spec.gripper
                gripper = min(1.0, max(0.0, (pos[n_arm] - g.closed) / (g.open - g.closed)))
            self._health = Health.ok()
            self._last = RobotState(joint_names=self.arm, positions=pos[:n_arm], velocities=vel[:n_arm],
                                    efforts=eff[:n_arm], effort_unit="load_fraction", gripper=gripper,
                                    stamp_s=time.monotonic(), health=self._health)
            return self._last

    def _stale_state(self) -> RobotState:
        if self._last is None:
            raise HardwareError(f"no reading from the bus yet: {self._health.reason}")
        return self._last.model_copy(update={"health": self._health})

    # ---- writing -----------------------------------------------------------------------------
    def write(self, command: JointCommand) -> JointCommand:
        cal, ids = self.calibration, self.config.ids
        goals: dict[int, int] = {}
        sent_pos = None
        if command.positions is not None:
            if len(command.positions) != len(self.arm) or not all(math.isfinite(x) for x in command.positions):
                raise ConfigError(f"positions must be {len(self.arm)} finite values (joints {self.arm})")
            sent_pos = []
            for n, rad in zip(self.arm, command.positions, strict=True):
                ticks, _ = cal.to_ticks(n, rad)
                goals[ids[n]] = ticks
                sent_pos.append(cal.to_rad(n, ticks))
        sent_grip = None
        if command.gripper is not None and self.grip:
            g = self.spec.gripper
            ticks, _ = cal.to_ticks(self.grip, g.closed + command.gripper * (g.open - g.closed))
            goals[ids[self.grip]] = ticks
            sent_grip = min(1.0, max(0.0, (cal.to_rad(self.grip, ticks) - g.closed) / (g.open - g.closed)))
        if not goals:
            return JointCommand()
        profile = self._profile_for(command, goals)
        with self._lock:
            if self.bus is None:
                raise HardwareError(f"serial bus unavailable: {self._health.reason}; command not sent")
            try:
                if profile:
                    self._write_with_profile(goals, profile)
                else:
                    self.bus.sync_write_goal(goals)
            except BusError as exc:
                self._health = Health.fault(f"write failed: {exc}")
                raise HardwareError(f"command not sent: {exc}") from exc
        return JointCommand(positions=sent_pos, gripper=sent_grip, **self._sent_limits(command, profile))

    # ---- speed / acceleration limits with a goal ----------------------------------------------
    def _limit_list(self, values: list[float] | None, field: str) -> list[float] | None:
        if values is None:
            return None
        if len(values) != len(self.arm) or not all(math.isfinite(x) and x > 0 for x in values):
            raise ConfigError(f"{field} must be {len(self.arm)} positive finite values (joints {self.arm})")
        return values

    def _profile_for(self, command: JointCommand, goals: dict[int, int]) -> dict[int, tuple[int, int]]:
        """{servo id: (speed, acceleration) raw} to send with the goals, or {} when the servos
        already have them (goal-only write: fewer bytes on the wire)."""
        v_req = self._limit_list(command.max_velocity_rad_s, "max_velocity_rad_s")
        a_req = self._limit_list(command.max_acceleration_rad_s2, "max_acceleration_rad_s2")
        if v_req is None and a_req is None and not self.config.configure_servos and not self._profile:
            return {}
        p, tpr, ids = self.config.protocol, self.calibration.ticks_per_rev, self.config.ids
        want = {}
        for n in self.names:
            sid = ids[n]
            if sid not in goals:
                continue
            v_raw, a_raw = self._default_profile_raw(n)
            if n in self.arm:
                i = self.arm.index(n)
                if v_req is not None:
                    v_raw = sc.velocity_to_raw(p, v_req[i], tpr)
                if a_req is not None:
                    a_raw = sc.acceleration_to_raw(p, a_req[i], tpr)
            want[sid] = (v_raw, a_raw)
        if all(self._profile.get(sid) == va for sid, va in want.items()):
            return {}
        return want

    def _write_with_profile(self, goals: dict[int, int], profile: dict[int, tuple[int, int]]) -> None:
        r = self.bus.regs
        data = {}
        for sid, ticks in goals.items():
            v_raw, a_raw = profile[sid]
            if self.config.protocol == "feetech":  # Acceleration, Goal_Position, Goal_Time (0), Goal_Velocity
                data[sid] = bytes([a_raw]) + int(ticks & 0xFFFF).to_bytes(2, "little") + b"\x00\x00" + v_raw.to_bytes(2, "little")
            else:  # Profile_Acceleration, Profile_Velocity, Goal_Position
                data[sid] = a_raw.to_bytes(4, "little") + v_raw.to_bytes(4, "little") + int(ticks & 0xFFFFFFFF).to_bytes(4, "little")
        self.bus.sync_write(r.motion_start, r.motion_len, data)
        self._profile.update(profile)

    def _sent_limits(self, command: JointCommand, profile: dict[int, tuple[int, int]]) -> dict:
        """The limits in force after this write, in SI units (quantized), for the fields the command set."""
        p, tpr, ids = self.config.protocol, self.calibration.ticks_per_rev, self.config.ids
        out = {}
        in_force = [self._profile.get(ids[n]) for n in self.arm]
        if command.max_velocity_rad_s is not None and all(in_force):
            out["max_velocity_rad_s"] = [sc.velocity_from_raw(p, va[0], tpr) for va in in_force]
        if command.max_acceleration_rad_s2 is not None and all(in_force):
            out["max_acceleration_rad_s2"] = [sc.acceleration_from_raw(p, va[1], tpr) for va in in_force]
        return out
