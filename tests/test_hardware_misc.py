"""ROS 2 staleness and validation, calibration CLI, backend listing, randomized sim backend."""

import subprocess
import sys
import time

import pytest
from hw_helpers import fake_ros2_controller, wait_for

from simgate.errors import ConfigError, HardwareError
from simgate.hardware.config import Ros2Config, SimConfig, make_backend
from simgate.hardware.jtc import accept_command
from simgate.hardware.serial.calibration import Calibration
from simgate.hardware.types import JointCommand, TrajectoryCommand, TrajectoryPoint
from simgate.sim.robot_spec import load_robot_spec


def test_ros2_backend_goes_stale_when_the_node_dies_and_refuses_motion():
    be = make_backend(Ros2Config(robot="so101", stale_after_s=0.3))
    with fake_ros2_controller() as proc:
        be.connect()
        assert wait_for(lambda: be.health().status == "ok", 10.0)
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        assert wait_for(lambda: be.health().status == "stale", 2.0)
        assert time.monotonic() - t0 < 0.5 + 0.3
        assert not be.read().fresh
        with pytest.raises(HardwareError, match="stale"):
            be.write(JointCommand(positions=[0.0, 0.2, 1.6, 1.2, 0.0]))
    with fake_ros2_controller():  # a restarted controller: recovers without reconnecting
        assert wait_for(lambda: be.health().status == "ok", 10.0)
    be.close()


@pytest.mark.parametrize(
    "points, match",
    [
        ([(0.5, [0, 0, 0, 0, 0], None), (0.4, [0, 0, 0, 0, 0], None)], "strictly increasing"),
        ([(0.5, [0, 0, 0, 0], None)], "4 positions for 5 joints"),
        ([(0.5, [0, 0, 0, 0, 0], [0, 0, 0.1, 0, 0])], "non-zero velocity at the last point"),
        ([(0.5, [0, 0, 5.0, 0, 0], None)], "elbow_flex"),
        ([(0.05, [0, 0, 1.5, 0, 0], None)], "rad/s > limit"),
    ],
)
def test_trajectory_command_validation_matches_the_controller(points, match):
    """The gateway and the ROS 2 backend check a TrajectoryCommand with the driver's JTC rules."""
    spec = load_robot_spec("so101")
    traj = TrajectoryCommand(points=[TrajectoryPoint(positions=q, velocities=v, time_from_start_s=t) for t, q, v in points])
    with pytest.raises(ConfigError, match=match):
        accept_command(spec, traj, [0.0] * spec.dof, now_s=0.0)


def test_calibrate_from_flags(tmp_path):
    out = tmp_path / "cal.yaml"
    flags = []
    for name in ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]:
        flags += ["--joint", f"{name}=2000,-1,500,3500"]
    proc = subprocess.run([sys.executable, "-m", "simgate.cli", "calibrate", "--port", "/dev/null", "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    cal = Calibration.load(out)
    assert cal.joints["elbow_flex"].direction == -1
    assert abs(cal.to_rad("elbow_flex", 2000 - 1024) - 1.5707963) < 1e-6  # a quarter turn, flipped
    assert cal.to_ticks("elbow_flex", 10.0) == (500, True)  # clipped into range
    bad = subprocess.run([sys.executable, "-m", "simgate.cli", "calibrate", "--port", "/dev/null", "--out", str(out),
                          "--joint", "elbow=1,1,0,10"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "elbow" in bad.stderr


# the interactive calibration against the emulator: tests/test_calibration.py (it now refuses
# joints nobody moved, so the sweep is driven by a hand on the emulated arm)


def test_backends_listing_and_randomized_sim():
    proc = subprocess.run([sys.executable, "-m", "simgate.cli", "backends"], capture_output=True, text=True, timeout=60)
    assert [line.split("\t")[0] for line in proc.stdout.splitlines()] == ["sim", "serial", "ros2"]
    be = make_backend(SimConfig(robot="so101", randomization="preset", seed=3))
    with be:
        assert be.read().fresh and be._dr and "link_mass_scale" in be._dr
