"""`simgate calibrate`: record homing offsets, directions and tick ranges.

Interactive: torque off; the user puts the arm in its zero pose (the spec's zero angles) and
presses Enter (homing offsets); then moves every joint through its full range for ``sweep_s``
seconds (min / max ticks); a joint whose range stays under a quarter of the spec's range was not
moved, and the calibration is refused naming it. Directions default to +1 (flip one with --joint flags if a joint
turns the wrong way). From flags: ``--joint NAME=OFFSET,DIRECTION,MIN,MAX`` for every joint.
"""

from __future__ import annotations

import time

from simgate.errors import ConfigError
from simgate.hardware.serial.calibration import Calibration, JointCalibration, check_spans
from simgate.hardware.serial.sdk_bus import BusError, SdkBus
from simgate.sim.robot_spec import load_robot_spec


def _ids(spec, id_map):
    return id_map or {n: i + 1 for i, n in enumerate(spec.joint_names)}


def calibrate_from_flags(robot: str, flags: list[str], id_map: dict[str, int] | None = None) -> Calibration:
    spec = load_robot_spec(robot)
    ids = _ids(spec, id_map)
    joints = {}
    for flag in flags:
        try:
            name, rest = flag.split("=", 1)
            off, direction, lo, hi = (int(x) for x in rest.split(","))
        except ValueError as exc:
            raise ConfigError(f"--joint {flag!r}: expected NAME=OFFSET,DIRECTION,MIN,MAX") from exc
        if name not in spec.joint_names:
            raise ConfigError(f"--joint {flag!r}: robot {spec.name!r} has no joint {name!r}")
        joints[name] = JointCalibration(id=ids[name], homing_offset=off, direction=direction, min_ticks=lo, max_ticks=hi)
    cal = Calibration(robot=spec.name, joints=joints)
    cal.check_covers(spec, "from --joint flags")
    return cal


def calibrate_interactive(port, protocol, robot, id_map, baud, sweep_s, prompt, echo) -> Calibration:
    spec = load_robot_spec(robot)
    ids = _ids(spec, id_map)
    bus = SdkBus(protocol, port, baud, latency_timer_ms=4.0)
    bus.open()
    try:
        offsets = {}
        for n in spec.joint_names:  # set-up, before anyone moves the arm: worth a few more tries
            bus.ping(ids[n], retries=4)
            bus.set_torque(ids[n], False, retries=4)
            offsets[n] = _servo_homing_offset(bus, ids[n])
        prompt("Torque is off. Put the arm in its zero pose, then press Enter", default="", show_default=False)
        zero = bus.sync_read_present([ids[n] for n in spec.joint_names], retries=4)
        echo(f"Now move every joint through its full range for {sweep_s:.0f} s ...")
        lo = {n: zero[ids[n]][0] for n in spec.joint_names}
        hi = dict(lo)
        t_end = time.monotonic() + sweep_s
        while time.monotonic() < t_end:
            try:  # a lost reply during the sweep costs one sample, not the calibration
                now = bus.sync_read_present([ids[n] for n in spec.joint_names])
            except BusError:
                continue
            for n in spec.joint_names:
                lo[n] = min(lo[n], now[ids[n]][0])
                hi[n] = max(hi[n], now[ids[n]][0])
            time.sleep(0.02)
    finally:
        bus.close()
    joints = {n: JointCalibration(id=ids[n], homing_offset=zero[ids[n]][0], direction=1, min_ticks=lo[n],
                                  max_ticks=max(hi[n], lo[n] + 1), servo_homing_offset=offsets[n])
              for n in spec.joint_names}
    cal = Calibration(robot=spec.name, joints=joints)
    check_spans(cal, spec, "calibration sweep",
                "move every joint through its whole range during the sweep (nothing was saved)")
    return cal


def _servo_homing_offset(bus: SdkBus, sid: int) -> int:
    """The Homing_Offset register: the recorded ticks already include it."""
    if bus.fee:
        raw = int.from_bytes(bus.read(sid, 31, 2), "little")
        return -(raw & 0x7FF) if raw & 0x800 else raw & 0x7FF
    return int.from_bytes(bus.read(sid, 20, 4), "little", signed=True)
