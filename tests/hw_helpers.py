"""Shared fixtures' building blocks for hardware tests."""

import contextlib
import os
import subprocess
import sys
import time

from simgate.hardware.emulator.bus import EmulatedServoBus
from simgate.hardware.serial.backend import SerialBackend, SerialConfig
from simgate.hardware.serial.calibration import nominal_calibration


@contextlib.contextmanager
def serial_rig(protocol, tmp_path, emulator_process=False, **cfg):
    """An emulated so101 bus and a SerialConfig for it. ``emulator_process``: the emulator runs
    in its own process (tests/emu_process.py), independent of this interpreter's GIL: for tests
    that must hold under CPU load."""
    if emulator_process:
        from emu_process import EmulatorProcess

        rig = EmulatorProcess(protocol, "so101")
    else:
        rig = EmulatedServoBus(protocol, "so101")
    with rig as bus:
        cal = tmp_path / f"cal-{protocol}.yaml"
        nominal_calibration(bus.spec, bus.ids).save(cal)
        # 4 ms latency timer: SDK reply timeouts of ~10 ms, robust on a loaded 2-core CI machine and
        # still well inside the 3-control-period fault-detection budget
        cfg = {"latency_timer_ms": 4.0, **cfg}
        config = SerialConfig(port=bus.port, protocol=protocol, ids=bus.ids, calibration=str(cal), **cfg)
        yield bus, config


@contextlib.contextmanager
def fake_ros2_controller(robot="so101"):
    proc = subprocess.Popen([sys.executable, "-m", "simgate.hardware.ros2_fake_controller", "--robot", robot],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def wait_for(pred, timeout_s=5.0, period_s=0.02):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        v = pred()
        if v:
            return v
        time.sleep(period_s)
    return pred()


__all__ = ["SerialBackend", "serial_rig", "fake_ros2_controller", "wait_for"]
