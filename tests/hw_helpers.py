"""Shared fixtures' building blocks for hardware tests."""

import contextlib
import os
import tempfile
from pathlib import Path

from simgate.hardware.emulator.bus import EmulatedServoBus
from simgate.hardware.serial.backend import SerialBackend, SerialConfig
from simgate.hardware.serial.calibration import nominal_calibration
from simgate.testing import procs
from simgate.testing.rigs import wait_for


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
    """A stand-in joint_trajectory_controller process (stopped with the plugin's process rules)."""
    log = Path(tempfile.gettempdir()) / f"simgate-fake-controller-{os.getpid()}.log"
    with procs.running(procs.python_module("simgate.hardware.ros2_fake_controller", "--robot", robot), log) as proc:
        assert proc.stdout.readline().strip() == "ready", log.read_text()[-2000:]
        yield proc
    log.unlink(missing_ok=True)


__all__ = ["SerialBackend", "serial_rig", "fake_ros2_controller", "wait_for"]
