"""simgate's ROS 2 driver node over real DDS (loopback, the run's own ROS_DOMAIN_ID): joint-state
rate, trajectories with joint_trajectory_controller semantics, rejections, e-stop latch - on the
PyBullet backend and on the emulated serial servo bus through the vendors' SDKs."""

import time

import numpy as np
import pytest
from hw_helpers import serial_rig, wait_for
from ros2_helpers import driver_process, probe, rate_hz

from simgate.hardware.ros2_driver import DRIVER_PARAMETERS
from simgate.sim.robot_spec import load_robot_spec

SPEC = load_robot_spec("so101")
ARM = [j.name for j in SPEC.arm_joints]
HOME = np.array([j.home for j in SPEC.arm_joints])


def arm_positions(state):
    names, pos = state[2], state[3]
    return np.array([pos[names.index(n)] for n in ARM])


def measure_rate(p, seconds=3.0):
    t0 = p.now_s()
    time.sleep(seconds)
    with p.lock:
        times = [s[0] for s in p.states if s[0] >= t0]
    return rate_hz(times)


def check_trajectory_moves_through_points(p, start):
    """Two points: the pan joint goes out to +0.6 then back to -0.4 while the elbow bends. The
    points keep the other joints where they are, pulled just inside the limits (an arm resting on
    a hard stop reads a tick beyond it, and the controller rejects a point outside the limits)."""
    lower = np.array([j.lower for j in SPEC.arm_joints])
    upper = np.array([j.upper for j in SPEC.arm_joints])
    start = np.clip(start, lower + 0.02, upper - 0.02)
    p1 = start.copy()
    p1[0] = 0.6
    p2 = start.copy()
    p2[0], p2[2] = -0.4, start[2] - 0.5
    t_sent = p.send(ARM, [(p1, 1.0, None), (p2, 2.0, None)])
    assert wait_for(lambda: np.abs(arm_positions(p.latest()) - p2).max() < 0.03, timeout_s=6.0), \
        f"did not reach the last point: {arm_positions(p.latest())} vs {p2}"
    seen = np.array([[pos[st_names.index(n)] for n in ARM]
                     for st_names, pos in ((s[2], s[3]) for s in p.states if s[0] >= t_sent)])
    near = np.abs(seen[:, 0] - 0.6).min()
    assert near < 0.05, f"never passed the first point (pan came within {near:.3f} rad of 0.6)"
    # interpolated, not a jump: many distinct samples between start and the first point (either side)
    lo, hi = sorted((start[0], 0.6))
    assert ((seen[:, 0] > lo + 0.1) & (seen[:, 0] < hi - 0.1)).sum() >= 5
    return p2


def test_driver_on_sim_backend_rate_trajectories_rejection_and_estop(tmp_path):
    log = tmp_path / "driver.log"
    with driver_process(log) as _proc, probe() as p:
        assert wait_for(lambda: len(p.states) > 5, timeout_s=10)
        # rate: the spec's control rate (params file says rate_hz 0)
        rate = measure_rate(p)
        assert abs(rate - SPEC.control_rate_hz) / SPEC.control_rate_hz < 0.10, f"{rate:.2f} Hz"
        st = p.latest()
        assert st[2] == ARM + [j.name for j in SPEC.gripper.joints]
        assert 0 <= st[0] - st[1] < 0.2, "stamp is the measurement time (recent)"

        # the node declares every parameter of the table (what launch files may set)
        from rcl_interfaces.srv import ListParameters
        cli = p.node.create_client(ListParameters, "/simgate_driver/list_parameters")
        assert cli.wait_for_service(timeout_sec=5)
        fut = cli.call_async(ListParameters.Request())
        assert wait_for(fut.done, timeout_s=5)
        assert set(DRIVER_PARAMETERS) <= set(fut.result().result.names)

        start = arm_positions(p.latest())
        assert np.abs(start - HOME).max() < 0.05
        at = check_trajectory_moves_through_points(p, start)
        # the driver path never outruns the joints' velocity limits (+5 %), measured on /joint_states
        fastest = max(p.peak_velocity[j.name] / j.velocity for j in SPEC.arm_joints)
        assert 0.05 < fastest <= 1.05, p.peak_velocity

        # invalid trajectories: rejected with a logged reason; nothing moves
        bad = at.copy()
        bad[0] = 0.2
        t0 = p.now_s()
        p.send(ARM, [(bad, 1.0, None), (at, 0.5, None)])               # time not increasing
        p.send(ARM, [(bad, 1.0, [0.3, 0, 0, 0, 0])])                  # non-zero final velocity
        p.send(ARM[:3], [(bad[:3], 1.0, None)])                       # missing joints
        far = at.copy()
        far[2] = 5.0
        p.send(ARM, [(far, 1.0, None)])                               # outside the joint limits
        p.send(ARM, [(bad, 0.02, None)])                              # faster than the velocity limits
        p.send(ARM, [(bad, 0.5, None)], stamp_s=p.now_s() - 5.0)      # ends in the past
        time.sleep(1.0)
        moved = np.abs(np.array([[pos for pos in s] for s in p.positions_since(t0)])[:, :5] - at).max()
        assert moved < 0.01, f"a rejected trajectory moved the arm by {moved:.4f} rad"
        text = log.read_text()
        for reason in ("not strictly increasing", "non-zero velocity at the last point", "missing",
                       "outside [", "rad/s > limit", "in the past"):
            assert "rejected trajectory" in text and reason in text, f"no log for {reason!r}:\n{text[-1500:]}"

        # e-stop latches: motion refused until reset
        res = p.call(p.estop_client)
        assert res.success and "latched" in res.message
        assert wait_for(lambda: p.estopped and p.estopped[-1] is True, timeout_s=2)
        t0 = p.now_s()
        p.send(ARM, [(HOME, 1.0, None)])
        time.sleep(1.2)
        moved = np.abs(np.array(p.positions_since(t0))[:, :5] - at).max()
        assert moved < 0.01 and "e-stop is latched" in log.read_text()
        assert p.call(p.reset_client).success
        assert wait_for(lambda: p.estopped[-1] is False, timeout_s=2)
        p.send(ARM, [(HOME, 1.0, None)])
        assert wait_for(lambda: np.abs(arm_positions(p.latest()) - HOME).max() < 0.03, timeout_s=5)


def test_driver_at_a_configured_rate_and_cubic_segments(tmp_path):
    with driver_process(tmp_path / "driver.log", rate_hz=100.0) as _proc, probe() as p:
        assert wait_for(lambda: len(p.states) > 20, timeout_s=10)
        rate = measure_rate(p)
        assert abs(rate - 100.0) / 100.0 < 0.10, f"{rate:.2f} Hz"
        start = arm_positions(p.latest())
        mid = start.copy()
        mid[0] = 0.4
        end = start.copy()
        end[0] = 0.8
        # velocities given on every point: cubic Hermite segments, through the middle at 0.8 rad/s
        p.send(ARM, [(mid, 0.8, [0.8, 0, 0, 0, 0]), (end, 1.3, [0, 0, 0, 0, 0])])
        assert wait_for(lambda: abs(arm_positions(p.latest())[0] - 0.8) < 0.02, timeout_s=5)


@pytest.mark.parametrize("protocol", ["feetech"])
def test_driver_on_emulated_serial_bus(tmp_path, protocol):
    with serial_rig(protocol, tmp_path) as (bus, cfg):
        ids = [cfg.ids[n] for n in SPEC.joint_names]
        with driver_process(tmp_path / "driver.log", "serial_driver.yaml", port=bus.port, protocol=protocol,
                            calibration_file=cfg.calibration, servo_ids=str(ids), latency_timer_ms=4.0) as _proc, \
                probe() as p:
            assert wait_for(lambda: len(p.states) > 5, timeout_s=10)
            rate = measure_rate(p)
            assert abs(rate - SPEC.control_rate_hz) / SPEC.control_rate_hz < 0.10, f"{rate:.2f} Hz"
            start = arm_positions(p.latest())
            check_trajectory_moves_through_points(p, start)
            # the servos (PyBullet joints behind the emulated bus) really moved there
            q_bus = np.array([bus.present_positions()[n] for n in ARM])
            assert np.abs(q_bus - arm_positions(p.latest())).max() < 0.03
