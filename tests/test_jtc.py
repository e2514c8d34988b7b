"""joint_trajectory_controller semantics on their own (no ROS): validation and interpolation."""

import numpy as np
import pytest

from simgate.errors import ConfigError
from simgate.hardware.jtc import TrajPoint, accept_trajectory
from simgate.sim.robot_spec import load_robot_spec

SPEC = load_robot_spec("so101")
ARM = [j.name for j in SPEC.arm_joints]
CUR = [0.0, 0.2, 1.6, 1.2, 0.0]


def test_linear_interpolation_from_the_current_state_through_every_point():
    a = [0.5, 0.2, 1.6, 1.2, 0.0]
    b = [0.5, 0.2, 1.0, 1.2, 0.0]
    tr = accept_trajectory(SPEC, ARM, [TrajPoint(a, None, 1.0), TrajPoint(b, None, 2.0)], CUR, now_s=100.0)
    assert tr.sample(100.0)[0] == pytest.approx(CUR)
    assert tr.sample(100.5)[0] == pytest.approx([0.25, 0.2, 1.6, 1.2, 0.0])
    assert tr.sample(101.0)[0] == pytest.approx(a)
    assert tr.sample(101.5)[0] == pytest.approx([0.5, 0.2, 1.3, 1.2, 0.0])
    q, done = tr.sample(102.5)
    assert done and q == pytest.approx(b)


def test_cubic_segments_match_the_given_velocities():
    a = [0.4, 0.2, 1.6, 1.2, 0.0]
    tr = accept_trajectory(SPEC, ARM, [TrajPoint(a, [0.8, 0, 0, 0, 0], 1.0), TrajPoint(CUR, [0] * 5, 2.0)],
                           CUR, now_s=0.0)
    eps = 1e-4
    v_mid = (tr.sample(1.0 + eps)[0][0] - tr.sample(1.0 - eps)[0][0]) / (2 * eps)
    assert v_mid == pytest.approx(0.8, abs=1e-3)
    v_end = (tr.sample(2.0)[0][0] - tr.sample(2.0 - eps)[0][0]) / eps
    assert abs(v_end) < 1e-2


def test_partial_goals_hold_the_other_joints_and_reordered_names_are_mapped():
    names = ["elbow_flex", "shoulder_pan"]
    with pytest.raises(ConfigError, match="missing"):
        accept_trajectory(SPEC, names, [TrajPoint([1.0, 0.3], None, 1.0)], CUR, now_s=0.0)
    tr = accept_trajectory(SPEC, names, [TrajPoint([1.0, 0.3], None, 1.0)], CUR, now_s=0.0,
                           allow_partial_joints_goal=True)
    assert tr.sample(1.0)[0] == pytest.approx([0.3, 0.2, 1.0, 1.2, 0.0])


@pytest.mark.parametrize("names,points,match", [
    ([], [TrajPoint(CUR, None, 1.0)], "empty joint_names"),
    (ARM, [], "no points"),
    (ARM[:4] + ["nope"], [TrajPoint(CUR, None, 1.0)], "unknown joint"),
    (ARM[:4] + ARM[:1], [TrajPoint(CUR, None, 1.0)], "duplicate"),
    (ARM, [TrajPoint(CUR[:4], None, 1.0)], "4 positions for 5 joints"),
    (ARM, [TrajPoint([np.nan] + CUR[1:], None, 1.0)], "not finite"),
    (ARM, [TrajPoint(CUR, None, 1.0), TrajPoint(CUR, None, 1.0)], "not strictly increasing"),
    (ARM, [TrajPoint(CUR, [0.1, 0, 0, 0, 0], 1.0)], "non-zero velocity"),
    (ARM, [TrajPoint([0, 0.2, 9.0, 1.2, 0], None, 1.0)], "outside"),
    (ARM, [TrajPoint([1.5, 0.2, 1.6, 1.2, 0], None, 0.1)], "rad/s > limit"),
])
def test_invalid_trajectories_are_rejected_with_the_reason(names, points, match):
    with pytest.raises(ConfigError, match=match):
        accept_trajectory(SPEC, names, points, CUR, now_s=0.0)


def test_a_trajectory_ending_in_the_past_is_rejected():
    with pytest.raises(ConfigError, match="in the past"):
        accept_trajectory(SPEC, ARM, [TrajPoint(CUR, None, 1.0)], CUR, now_s=50.0, start_s=40.0)
    tr = accept_trajectory(SPEC, ARM, [TrajPoint(CUR, None, 1.0)], CUR, now_s=50.0, start_s=49.5)
    assert tr.start_s == 49.5
