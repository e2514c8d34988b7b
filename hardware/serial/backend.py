"""Serial-servo backend (Feetech STS3215 / Dynamixel X over the official SDKs).

* connect: open the port, ping every servo (model number checked), hold the arm where it is
  (goal = present) and switch torque on. Bad config fails here, naming the joint or field,
  before anything moves.
* read: one group sync read of present position / velocity / load, bounded retries; when the
  bus stops answering the state comes back with ``health = fault`` and the time of the last
  good reading (never a stale value marked fresh); a lost port is reopened when it returns.
* write: radians -> ticks through the calibration, clipped to the calibrated range, one group
  sync write; returns what was actually sent (quantized and clipped, in radians).
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
from simgate.hardware.serial.calibration import Calibration
from simgate.hardware.serial.sdk_bus import BusError, SdkBus
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

    # ---- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        cfg = self.config
        if not os.path.exists(cfg.port):
            raise HardwareError(f"serial port {cfg.port!r} not found (is the adapter plugged in? `simgate doctor`)")
        with self._lock:
            self._open_and_check()
            present = self._read_raw()
            # hold where the arm is, then torque on: connecting never moves the arm
            self.bus.sync_write_goal({cfg.ids[n]: present[cfg.ids[n]][0] for n in self.names})
            for n in self.names:
                self.bus.set_torque(cfg.ids[n], True)
            self._health = Health.ok()

    def _open_and_check(self) -> None:
        cfg = self.config
        bus = SdkBus(cfg.protocol, cfg.port, cfg.baud, cfg.latency_timer_ms)
        bus.open()
        try:
            for n in self.names:
                sid = cfg.ids[n]
                for attempt in range(cfg.read_retries + 1):
                    try:
                        model = bus.ping(sid)
                        break
                    except BusError as exc:
                        if attempt == cfg.read_retries:
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
                    try:
                        self.bus.set_torque(self.config.ids[n], False)
                    except BusError:
                        pass
            self.bus.close()
            self.bus = None
            self._health = Health.fault("closed")

    # ---- reading -----------------------------------------------------------------------------
    def _read_raw(self) -> dict[int, tuple[int, int, int]]:
        ids = [self.config.ids[n] for n in self.names]
        err: BusError | None = None
        for _ in range(self.config.read_retries + 1):
            try:
                return self.bus.sync_read_present(ids)
            except BusError as exc:
                err = exc
                if "port error" in str(exc):
                    break
        raise err  # type: ignore[misc]

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
        except HardwareError:
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
                if "port error" in str(exc):
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
        with self._lock:
            if self.bus is None:
                raise HardwareError(f"serial bus unavailable: {self._health.reason}; command not sent")
            try:
                self.bus.sync_write_goal(goals)
            except BusError as exc:
                self._health = Health.fault(f"write failed: {exc}")
                raise HardwareError(f"command not sent: {exc}") from exc
        return JointCommand(positions=sent_pos, gripper=sent_grip)
