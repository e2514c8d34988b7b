"""An emulated servo bus on a pseudo-terminal whose servos are PyBullet joints of a RobotSpec.

Each servo (:mod:`.servo`) keeps the control table of its model (:mod:`.registers`) with the
vendors' access rules. Goal positions written over the wire drive the simulated joints through
each servo's speed / acceleration profile (Feetech Goal_Velocity / Acceleration, Dynamixel
Profile_Velocity / Profile_Acceleration), inside its position limits and with its torque
limit; present position / velocity / load are read back from the physics (stepped in real time,
2 ms), through Homing_Offset. Wire time is modeled at the configured baud rate (10 bits per
byte) plus each servo's return delay. Faults can be injected while it runs.

The receiver drops a partial packet when no byte arrives for ``rx_timeout_s`` and skips a
header announcing more bytes than a servo buffers, so no garbage can wedge the bus.

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
from simgate.hardware.emulator.handler import InstructionHandler
from simgate.hardware.emulator.registers import DEFAULT_MODEL, MODELS
from simgate.hardware.emulator.servo import TICKS_PER_REV, Servo
from simgate.sim.robot import Robot
from simgate.sim.robot_spec import RobotSpec, resolve_spec
from simgate.sim.world import RealTimePacer, World

CENTER_TICKS = 2048  # raw encoder ticks at the joint's zero angle (how the servos are mounted)


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


def ticks_to_rad(ticks: float) -> float:
    return (ticks - CENTER_TICKS) * 2 * math.pi / TICKS_PER_REV


def rad_to_ticks(rad: float) -> float:
    return CENTER_TICKS + rad * TICKS_PER_REV / (2 * math.pi)


class EmulatedServoBus:
    """See the module docstring. ``ids``: servo id per joint (arm joints then gripper);
    ``model``: servo model name (default: STS3215 / XL430-W250); ``return_delay_us``: None keeps
    the model's power-on default (500 us)."""

    def __init__(self, protocol: Literal["feetech", "dynamixel"], robot: str | RobotSpec = "so101",
                 ids: dict[str, int] | None = None, baud: int = 1_000_000, return_delay_us: int | None = None,
                 physics_hz: float = 500.0, seed: int = 0, randomization=None, model: str | None = None,
                 rx_timeout_s: float = 0.008) -> None:
        """``randomization``: a RandomizationConfig / ``"preset"`` / dict; the arm's link masses and
        joint damping are sampled once (``seed``) and applied, so the servos are not the nominal
        model the policy was trained on. The sampled values: ``self.randomization``."""
        if protocol not in ("feetech", "dynamixel"):
            raise ValueError(f"protocol must be 'feetech' or 'dynamixel', got {protocol!r}")
        self.protocol = protocol
        self.model = MODELS[model or DEFAULT_MODEL[protocol]]
        if self.model.protocol != protocol:
            raise ValueError(f"servo model {self.model.name!r} is not a {protocol} servo")
        self.spec = resolve_spec(robot)
        names = self.spec.joint_names
        self.ids = dict(ids or {n: i + 1 for i, n in enumerate(names)})
        self.baud = baud
        self.byte_time_s = 10.0 / baud
        self.physics_hz = physics_hz
        self.rx_timeout_s = rx_timeout_s
        self.faults = Faults()
        self.rng = np.random.default_rng(seed)
        from simgate.sim.randomization import resolve_randomization

        rcfg = resolve_randomization(randomization)
        self.randomization: dict[str, float] = rcfg.sample(np.random.default_rng(seed)) if rcfg.enabled else {}
        self.joint_servos = [Servo(self.model, self.ids[n], return_delay_us) for n in names]  # joint order
        self.servos: dict[int, Servo] = {s.id: s for s in self.joint_servos}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dir = Path(tempfile.mkdtemp(prefix="simgate-bus-"))
        self.port = str(self._dir / f"tty{protocol.upper()}0")
        self._master: int | None = None
        self._slave: int | None = None
        self._q = [0.0] * len(names)
        self._hand: dict[int, float] = {}
        self.handler = InstructionHandler(self)
        self.packets_handled = 0
        self.partial_packets_dropped = 0
        self._wire_free_at = 0.0  # monotonic time the modeled wire is idle again

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
        for path in (self.port, self.port + ".new"):
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
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

    # ---- observation and outside forces (what a person at the bench sees and does) -----------
    def present_positions(self) -> dict[str, float]:
        """The joints' physical angles (rad, the servos' mounting: raw 2048 = 0), by joint name."""
        with self._lock:
            return dict(zip(self.spec.joint_names, self._q, strict=True))

    def move_by_hand(self, targets: dict[str, float]) -> None:
        """Push joints to these angles (rad) whatever the servos do, like a hand on the arm."""
        idx = {n: i for i, n in enumerate(self.spec.joint_names)}
        with self._lock:
            self._hand.update({idx[n]: q for n, q in targets.items()})

    def release_hand(self) -> None:
        with self._lock:
            self._hand.clear()

    def peek(self, joint: str, register: str) -> int:
        """A register's value (decoded) of the servo on ``joint``, without touching the wire."""
        with self._lock:
            return self.joint_servos[self.spec.joint_names.index(joint)].get(register)

    # ---- physics -----------------------------------------------------------------------------
    def _physics(self, ready: threading.Event) -> None:
        world = World(time_step_s=1.0 / self.physics_hz, substeps=1, solver_iterations=10)
        robot = Robot(world, self.spec)
        robot.reset()
        if self.randomization:
            robot.randomize_dynamics(self.randomization)
        motor_ids, cid, body, forces = robot.motor_ids, world.cid, robot.body, robot.forces
        dt_s = 1.0 / self.physics_hz
        with self._lock:
            self._q = list(robot.joint_positions())
            for s, qi in zip(self.joint_servos, self._q, strict=True):
                self._put_present(s, qi, 0.0, 0.0)
                s.put("Goal_Position", s.get("Present_Position"))
        ready.set()
        pacer = RealTimePacer(dt_s)
        while not self._stop.is_set():
            q_now = robot.joint_positions()
            with self._lock:
                targets, eff = [], []
                for i, (s, q, f) in enumerate(zip(self.joint_servos, q_now, forces, strict=True)):
                    raw_target = s.step(rad_to_ticks(q), dt_s)
                    if i in self._hand:
                        targets.append(self._hand[i])
                        eff.append(3 * f)
                    elif raw_target is None:
                        targets.append(q)
                        eff.append(0.05 * f)  # limp: friction only
                    else:
                        targets.append(ticks_to_rad(raw_target))
                        eff.append(f * s.force_scale())
            p.setJointMotorControlArray(body, motor_ids, p.POSITION_CONTROL, targetPositions=targets,
                                        forces=eff, physicsClientId=cid)
            world.step(1)
            states = self._mechanical_stops(p.getJointStates(body, motor_ids, physicsClientId=cid), body, motor_ids, cid)
            with self._lock:
                self._q = [st[0] for st in states]
                for s, st, f in zip(self.joint_servos, states, forces, strict=True):
                    self._put_present(s, st[0], st[1], st[3] / f if f else 0.0)
            pacer.wait()
        world.close()

    def _mechanical_stops(self, states, body: int, motor_ids: list[int], cid: int) -> list[tuple]:
        """Joints end at hard stops (the spec's limits): a limp joint rests on its stop, not past it."""
        out = []
        for st, j, mid in zip(states, self.spec.all_joints, motor_ids, strict=True):
            q = min(j.upper, max(j.lower, st[0]))
            if q != st[0]:
                p.resetJointState(body, mid, q, 0.0, physicsClientId=cid)
                st = (q, 0.0, st[2], st[3])
            out.append(st)
        return out

    def _put_present(self, s: Servo, q: float, qd: float, load_frac: float) -> None:
        present = s.present_from_raw(int(round(rad_to_ticks(q))))
        vel_ticks_s = int(round(qd * TICKS_PER_REV / (2 * math.pi)))
        load = int(round(max(-1.0, min(1.0, load_frac)) * 1000))
        if self.protocol == "feetech":
            s.put("Present_Position", max(0, min(TICKS_PER_REV - 1, present)))
            s.put("Present_Velocity", vel_ticks_s)  # ticks/s, sign bit 15
            s.put("Present_Load", load)  # 0.1 % of max, sign bit 10
        else:
            s.put("Present_Position", present)  # signed 32-bit
            s.put("Present_Velocity", int(round(qd * 60 / (2 * math.pi) / 0.229)))  # 0.229 rpm units
            s.put("Present_Load", load)  # 0.1 % units
        # as the real servos do: Moving while the profile still travels, not only while the shaft turns
        s.put("Moving", 1 if abs(qd) > 0.01 or s.setpoint_vel != 0.0 else 0)

    # ---- wire --------------------------------------------------------------------------------
    def _serve(self) -> None:
        buf = bytearray()
        last_rx = 0.0
        parse = P.feetech_parse if self.protocol == "feetech" else P.dxl_parse
        while not self._stop.is_set():
            master = self._master
            if master is None:
                time.sleep(0.01)
                buf.clear()
                continue
            try:
                r, _, _ = select.select([master], [], [], self.rx_timeout_s if buf else 0.05)
                now = time.monotonic()
                if buf and now - last_rx > self.rx_timeout_s:
                    buf.clear()  # the line went quiet inside a packet: drop the partial packet
                    self.partial_packets_dropped += 1
                if not r:
                    continue
                chunk = os.read(master, 4096)
            except OSError:
                time.sleep(0.01)
                continue
            buf += chunk
            last_rx = now
            while buf:
                inst, used, ok = parse(buf)
                del buf[:used]
                if inst is None:
                    if used == 0:
                        break
                    continue
                # the request on the wire: replies start after it (one sleep per reply, not per
                # packet: on a loaded host every sleep may oversleep by a scheduler slice)
                self._wire_free_at = max(time.monotonic(), self._wire_free_at) + inst.raw_len * self.byte_time_s
                self.packets_handled += 1
                self.handler.handle(inst, ok)

    def reply(self, servo: Servo, sid: int, params: bytes = b"", error: int = 0) -> None:
        """Send a status packet from ``servo`` (as id ``sid``) when the wire is free, after its
        return delay, taking the packet's wire time."""
        f = self.faults
        if f.silent or sid in f.dead_ids or self.rng.random() < f.drop_reply_prob:
            return
        corrupt = self.rng.random() < f.corrupt_prob
        pkt = (P.feetech_status if self.protocol == "feetech" else P.dxl_status)(sid, error, params, corrupt)
        start = max(time.monotonic(), self._wire_free_at) + servo.get("Return_Delay_Time") * 2e-6
        done = start + len(pkt) * self.byte_time_s
        self._wire_free_at = done
        delay = done + f.latency_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        master = self._master
        if master is not None:
            try:
                os.write(master, pkt)
            except OSError:
                pass

    def renumber(self) -> None:
        """After an ID write: the servos answer to their new ids."""
        self.servos = {s.id: s for s in self.joint_servos}
        self.ids = {n: s.id for n, s in zip(self.spec.joint_names, self.joint_servos, strict=True)}


def emulated_bus_for(protocol: str, robot: str | RobotSpec = "so101", **kwargs) -> EmulatedServoBus:
    return EmulatedServoBus(protocol, robot, **kwargs)  # type: ignore[arg-type]
