"""An emulated servo bus on a pseudo-terminal whose servos are PyBullet joints of a RobotSpec.

Each servo keeps a register table (model number, id, return delay, limits, torque enable, goal
and present position/velocity/load ...). A goal position written over the wire becomes the
motor target of the simulated joint; present position/velocity/load are read back from the
physics (stepped in real time, 2 ms). Wire time is modeled at the configured baud rate (10 bits
per byte) plus each servo's return delay. Faults can be injected while it runs.

The device path (``bus.port``) is a symlink that stays the same across ``unplug()`` /
``replug()``, like a USB adapter that comes back at the same /dev path.
"""

from __future__ import annotations

import math
import os
import select
import sys
import tempfile
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pybullet as p

from simgate.hardware.emulator import protocols as P
from simgate.sim.robot import Robot
from simgate.sim.robot_spec import RobotSpec, resolve_spec
from simgate.sim.world import RealTimePacer, World

TICKS_PER_REV = 4096
CENTER_TICKS = 2048


@dataclass(frozen=True)
class ServoModel:
    """Register map of one servo family (addresses in bytes, sizes in bytes)."""

    name: str
    model_number: int
    table_size: int
    addr: dict[str, tuple[int, int]]


FEETECH_STS3215 = ServoModel(
    "sts3215", 777, 128,
    {"model": (3, 2), "id": (5, 1), "baud": (6, 1), "return_delay": (7, 1), "min_limit": (9, 2),
     "max_limit": (11, 2), "homing_offset": (31, 2), "torque": (40, 1), "acceleration": (41, 1),
     "goal": (42, 2), "lock": (55, 1), "present_position": (56, 2), "present_velocity": (58, 2),
     "present_load": (60, 2), "voltage": (62, 1), "temperature": (63, 1), "moving": (66, 1)},
)
DYNAMIXEL_XL430 = ServoModel(
    "xl430-w250", 1060, 256,
    {"model": (0, 2), "firmware": (6, 1), "id": (7, 1), "baud": (8, 1), "return_delay": (9, 1),
     "max_limit": (48, 4), "min_limit": (52, 4), "torque": (64, 1), "goal": (116, 4), "moving": (122, 1),
     "present_load": (126, 2), "present_velocity": (128, 4), "present_position": (132, 4),
     "temperature": (146, 1)},
)


@dataclass
class Faults:
    """Fault injection; change fields while the bus runs."""

    drop_reply_prob: float = 0.0  # probability that a reply is not sent
    corrupt_prob: float = 0.0  # probability that a reply's checksum/CRC is wrong
    latency_s: float = 0.0  # added before every reply
    dead_ids: set[int] = field(default_factory=set)  # servos that stop answering
    silent: bool = False  # the whole bus stops answering (cable to the servos pulled)

    def clear(self) -> None:
        self.drop_reply_prob = self.corrupt_prob = self.latency_s = 0.0
        self.dead_ids = set()
        self.silent = False


def _enc_sm(value: int, sign_bit: int) -> int:
    """Sign-magnitude encoding used by Feetech for signed registers."""
    return (abs(value) & ((1 << sign_bit) - 1)) | ((1 << sign_bit) if value < 0 else 0)


class EmulatedServoBus:
    """See the module docstring. ``ids``: servo id per joint (arm joints then gripper)."""

    def __init__(self, protocol: Literal["feetech", "dynamixel"], robot: str | RobotSpec = "so101",
                 ids: dict[str, int] | None = None, baud: int = 1_000_000, return_delay_us: int = 0,
                 physics_hz: float = 500.0, seed: int = 0, randomization=None) -> None:
        """``randomization``: a RandomizationConfig / ``"preset"`` / dict; the arm's link masses and
        joint damping are sampled once (``seed``) and applied, so the servos are not the nominal
        model the policy was trained on. The sampled values: ``self.randomization``."""
        if protocol not in ("feetech", "dynamixel"):
            raise ValueError(f"protocol must be 'feetech' or 'dynamixel', got {protocol!r}")
        self.protocol = protocol
        self.model = FEETECH_STS3215 if protocol == "feetech" else DYNAMIXEL_XL430
        self.spec = resolve_spec(robot)
        names = self.spec.joint_names
        self.ids = ids or {n: i + 1 for i, n in enumerate(names)}
        self.joint_of = {sid: n for n, sid in self.ids.items()}
        self.baud = baud
        self.byte_time_s = 10.0 / baud
        self.physics_hz = physics_hz
        self.faults = Faults()
        self.rng = np.random.default_rng(seed)
        from simgate.sim.randomization import resolve_randomization

        rcfg = resolve_randomization(randomization)
        self.randomization: dict[str, float] = rcfg.sample(np.random.default_rng(seed)) if rcfg.enabled else {}
        self.tables: dict[int, bytearray] = {}
        for sid in self.ids.values():
            t = bytearray(self.model.table_size)
            self._put(t, "model", self.model.model_number)
            self._put(t, "id", sid)
            self._put(t, "return_delay", max(0, min(255, return_delay_us // 2)))
            self._put(t, "min_limit", 0)
            self._put(t, "max_limit", TICKS_PER_REV - 1)
            self._put(t, "goal", CENTER_TICKS)
            self._put(t, "present_position", CENTER_TICKS)
            self._put(t, "temperature", 30)
            if "voltage" in self.model.addr:
                self._put(t, "voltage", 74)
            self.tables[sid] = t
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dir = Path(tempfile.mkdtemp(prefix="simgate-bus-"))
        self.port = str(self._dir / f"tty{protocol.upper()}0")
        self._master: int | None = None
        self._slave: int | None = None
        self.packets_handled = 0

    # ---- registers ---------------------------------------------------------------------------
    def _put(self, table: bytearray, reg: str, value: int) -> None:
        a, n = self.model.addr[reg]
        table[a : a + n] = int(value & ((1 << (8 * n)) - 1)).to_bytes(n, "little")

    def _get(self, table: bytearray, reg: str) -> int:
        a, n = self.model.addr[reg]
        return int.from_bytes(table[a : a + n], "little")

    def ticks_to_rad(self, ticks: int) -> float:
        return (ticks - CENTER_TICKS) * 2 * math.pi / TICKS_PER_REV

    def rad_to_ticks(self, rad: float) -> int:
        return int(round(CENTER_TICKS + rad * TICKS_PER_REV / (2 * math.pi)))

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> EmulatedServoBus:
        # The emulator's I/O thread must answer within the host's reply timeout (a few ms) even
        # when the host runs in this same process: switch threads every 0.5 ms, not every 5 ms.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._open_pty()
        ready = threading.Event()
        phys = threading.Thread(target=self._physics, args=(ready,), daemon=True, name="simgate-bus-physics")
        phys.start()
        if not ready.wait(30):
            raise RuntimeError("emulated bus physics did not start")
        io = threading.Thread(target=self._serve, daemon=True, name="simgate-bus-io")
        io.start()
        self._threads = [phys, io]
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=3)
        self._close_pty()
        try:
            os.unlink(self.port)
            self._dir.rmdir()
        except OSError:
            pass

    def __enter__(self) -> EmulatedServoBus:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        self._master, self._slave = master, slave
        tmp = self.port + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.port)

    def _close_pty(self) -> None:
        with self._lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._master = self._slave = None

    def unplug(self) -> None:
        """The adapter disappears: the device path goes away, open handles get I/O errors."""
        self._close_pty()
        try:
            os.unlink(self.port)
        except OSError:
            pass

    def replug(self) -> None:
        """The adapter comes back at the same path (a new pseudo-terminal behind it)."""
        if self._master is None:
            self._open_pty()

    def present_positions(self) -> dict[str, float]:
        """The servos' present positions (rad, the bus's own tick mapping), by joint name."""
        with self._lock:
            return {n: self.ticks_to_rad(self._get(self.tables[self.ids[n]], "present_position"))
                    for n in self.spec.joint_names}

    # ---- physics -----------------------------------------------------------------------------
    def _physics(self, ready: threading.Event) -> None:
        world = World(time_step_s=1.0 / self.physics_hz, substeps=1, solver_iterations=10)
        robot = Robot(world, self.spec)
        robot.reset()
        if self.randomization:
            robot.randomize_dynamics(self.randomization)
        names = self.spec.joint_names
        motor_ids = robot.motor_ids
        cid, body = world.cid, robot.body
        forces = robot.forces
        period = 1.0 / self.physics_hz
        # servos start where the arm is: goal = present
        q0 = robot.joint_positions()
        with self._lock:
            for name, qi in zip(names, q0, strict=True):
                t = self.tables[self.ids[name]]
                self._put(t, "goal", self.rad_to_ticks(qi))
                self._put(t, "present_position", self.rad_to_ticks(qi))
        ready.set()
        pacer = RealTimePacer(period)
        while not self._stop.is_set():
            with self._lock:
                goals, enabled = [], []
                for name in names:
                    t = self.tables[self.ids[name]]
                    goals.append(self.ticks_to_rad(self._get(t, "goal")))
                    enabled.append(self._get(t, "torque") == 1)
            q_now = robot.joint_positions()
            targets = [g if e else q for g, e, q in zip(goals, enabled, q_now, strict=True)]
            eff = [f if e else 0.05 * f for f, e in zip(forces, enabled, strict=True)]  # limp: friction only
            p.setJointMotorControlArray(body, motor_ids, p.POSITION_CONTROL, targetPositions=targets,
                                        forces=eff, physicsClientId=cid)
            world.step(1)
            states = p.getJointStates(body, motor_ids, physicsClientId=cid)
            with self._lock:
                for name, st, f in zip(names, states, forces, strict=True):
                    t = self.tables[self.ids[name]]
                    self._put_present(t, st[0], st[1], st[3] / f if f else 0.0)
            pacer.wait()
        world.close()

    def _put_present(self, t: bytearray, q: float, qd: float, load_frac: float) -> None:
        pos = self.rad_to_ticks(q)
        vel_ticks_s = int(round(qd * TICKS_PER_REV / (2 * math.pi)))
        load = int(round(max(-1.0, min(1.0, load_frac)) * 1000))
        if self.protocol == "feetech":
            self._put(t, "present_position", max(0, min(TICKS_PER_REV - 1, pos)))
            self._put(t, "present_velocity", _enc_sm(vel_ticks_s, 15))  # ticks/s, sign bit 15
            self._put(t, "present_load", _enc_sm(load, 10))  # 0.1 % of max, sign bit 10
        else:
            self._put(t, "present_position", pos)  # signed 32-bit
            self._put(t, "present_velocity", int(round(qd * 60 / (2 * math.pi) / 0.229)))  # 0.229 rpm units
            self._put(t, "present_load", load)  # 0.1 % units
        self._put(t, "moving", 1 if abs(qd) > 0.01 else 0)

    # ---- wire --------------------------------------------------------------------------------
    def _serve(self) -> None:
        buf = bytearray()
        parse = P.feetech_parse if self.protocol == "feetech" else P.dxl_parse
        while not self._stop.is_set():
            master = self._master
            if master is None:
                time.sleep(0.01)
                buf.clear()
                continue
            try:
                r, _, _ = select.select([master], [], [], 0.05)
                if not r:
                    continue
                chunk = os.read(master, 4096)
            except OSError:
                time.sleep(0.01)
                continue
            buf += chunk
            while buf:
                inst, used, ok = parse(buf)
                if inst is None:
                    del buf[:used]
                    break
                del buf[:used]
                time.sleep(inst.raw_len * self.byte_time_s)  # the request on the wire
                if ok:
                    self._handle(inst)
                # a request with a bad checksum/CRC gets no reply from a real servo

    def _send(self, data: bytes) -> None:
        time.sleep(len(data) * self.byte_time_s + self.faults.latency_s)
        master = self._master
        if master is not None:
            try:
                os.write(master, data)
            except OSError:
                pass

    def _reply(self, sid: int, params: bytes = b"", error: int = 0) -> None:
        f = self.faults
        if f.silent or sid in f.dead_ids or self.rng.random() < f.drop_reply_prob:
            return
        delay = self._get(self.tables[sid], "return_delay") * 2e-6
        if delay:
            time.sleep(delay)
        corrupt = self.rng.random() < f.corrupt_prob
        pkt = (P.feetech_status if self.protocol == "feetech" else P.dxl_status)(sid, error, params, corrupt)
        self._send(pkt)

    def _handle(self, inst: P.Instruction) -> None:
        self.packets_handled += 1
        fee = self.protocol == "feetech"
        sid, op, prm = inst.servo_id, inst.inst, inst.params
        if op == P.PING:
            if sid in self.tables:
                if fee:
                    self._reply(sid)
                else:
                    t = self.tables[sid]
                    self._reply(sid, bytes(t[0:2]) + bytes([t[6]]))
            return
        if op == P.READ and sid in self.tables:
            addr, n = (prm[0], prm[1]) if fee else (prm[0] | prm[1] << 8, prm[2] | prm[3] << 8)
            with self._lock:
                data = bytes(self.tables[sid][addr : addr + n])
            self._reply(sid, data)
            return
        if op == P.WRITE and (sid in self.tables or sid == P.BROADCAST):
            addr, data = (prm[0], prm[1:]) if fee else (prm[0] | prm[1] << 8, prm[2:])
            targets = self.tables if sid == P.BROADCAST else {sid: self.tables[sid]}
            with self._lock:
                for t in targets.values():
                    t[addr : addr + len(data)] = data
            if sid != P.BROADCAST:
                self._reply(sid)
            return
        if op == P.SYNC_WRITE:
            if fee:
                addr, n, rest = prm[0], prm[1], prm[2:]
            else:
                addr, n, rest = prm[0] | prm[1] << 8, prm[2] | prm[3] << 8, prm[4:]
            with self._lock:
                for k in range(0, len(rest) - n + 1, n + 1):
                    tid = rest[k]
                    if tid in self.tables:
                        self.tables[tid][addr : addr + n] = rest[k + 1 : k + 1 + n]
            return
        if op == P.SYNC_READ:
            if fee:
                addr, n, ids = prm[0], prm[1], prm[2:]
            else:
                addr, n, ids = prm[0] | prm[1] << 8, prm[2] | prm[3] << 8, prm[4:]
            for tid in ids:  # each servo answers in turn
                if tid in self.tables:
                    with self._lock:
                        data = bytes(self.tables[tid][addr : addr + n])
                    self._reply(tid, data)
            return
        # other instructions (REG_WRITE/ACTION/...) are accepted silently by this emulator


def emulated_bus_for(protocol: str, robot: str | RobotSpec = "so101", **kwargs) -> EmulatedServoBus:
    return EmulatedServoBus(protocol, robot, **kwargs)  # type: ignore[arg-type]
