"""control_msgs/FollowJointTrajectory on simgate's driver node, over real DDS (loopback, the run's
own ROS_DOMAIN_ID), driven by an independent MoveIt-style client in its own process; the URDF on
/robot_description for a late subscriber; the control_msgs build's cache and its error."""

import json
import math
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from hw_helpers import wait_for
from ros2_helpers import driver_process, probe

from simgate.errors import ConfigError
from simgate.hardware import ros2_action_build as build
from simgate.hardware.jtc import TrajPoint, accept_trajectory
from simgate.hardware.ros2_action_server import (
    INVALID_GOAL,
    INVALID_JOINTS,
    OLD_HEADER_TIMESTAMP,
    error_code_for,
    tolerances,
)
from simgate.hardware.ros2_driver import robot_description
from simgate.sim.robot_spec import load_robot_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_robot_spec("so101")
ARM = [j.name for j in SPEC.arm_joints]
HOME = [j.home for j in SPEC.arm_joints]
SUCCEEDED, CANCELED, ABORTED = 4, 5, 6  # action_msgs/GoalStatus


# ---- without DDS ---------------------------------------------------------------------------------
def _reason(names, points, **kw):
    with pytest.raises(ConfigError) as e:
        accept_trajectory(SPEC, names, points, HOME, 100.0, **kw)
    return str(e.value)


def test_error_codes_follow_the_topic_rule_set():
    pt = [TrajPoint(HOME, None, 1.0)]
    assert error_code_for(_reason(ARM[:4] + ["nope"], pt)) == INVALID_JOINTS
    assert error_code_for(_reason(ARM[:4], [TrajPoint(HOME[:4], None, 1.0)])) == INVALID_JOINTS
    assert error_code_for(_reason([ARM[0], *ARM[:4]], pt)) == INVALID_JOINTS
    assert error_code_for(_reason([], pt)) == INVALID_JOINTS
    assert error_code_for(_reason(ARM, pt, start_s=50.0)) == OLD_HEADER_TIMESTAMP
    assert error_code_for(_reason(ARM, [TrajPoint(HOME, None, 1.0), TrajPoint(HOME, None, 0.5)])) == INVALID_GOAL
    assert error_code_for(_reason(ARM, [TrajPoint([9.0] * 5, None, 1.0)])) == INVALID_GOAL


def test_tolerances_goal_over_parameters():
    tol = SimpleNamespace
    dur = SimpleNamespace(sec=0, nanosec=0)
    p = {"path_tolerance_rad": 0.0, "goal_tolerance_rad": 0.05, "goal_time_s": 1.0}
    goal = tol(path_tolerance=[tol(name=ARM[1], position=0.1, velocity=0.0, acceleration=0.0)],
               goal_tolerance=[tol(name=ARM[0], position=-1.0, velocity=0.0, acceleration=0.0),
                               tol(name=ARM[2], position=0.001, velocity=0.2, acceleration=0.0)],
               goal_time_tolerance=dur)
    t = tolerances(ARM, p, goal)
    assert math.isinf(t.path_rad[0]) and t.path_rad[1] == 0.1  # parameter 0 = not checked
    assert math.isinf(t.goal_rad[0]) and t.goal_rad[1] == 0.05 and t.goal_rad[2] == 0.001  # -1 erases
    assert t.goal_rad_s[2] == 0.2 and t.goal_time_s == 1.0
    goal.goal_time_tolerance = SimpleNamespace(sec=0, nanosec=250_000_000)
    assert tolerances(ARM, p, goal).goal_time_s == 0.25
    goal.goal_tolerance = [tol(name="nope", position=0.1, velocity=0.0, acceleration=0.0)]
    with pytest.raises(ConfigError, match="nope"):
        tolerances(ARM, p, goal)


def test_robot_description_resolves_mesh_paths():
    urdf = robot_description(load_robot_spec("panda"))
    meshes = [m.get("filename") for m in ET.fromstring(urdf).iter("mesh")]
    assert meshes and all(m.startswith("file:///") and Path(m[7:]).is_file() for m in meshes), meshes[:3]


# ---- the control_msgs build ------------------------------------------------------------------------
def test_control_msgs_build_is_cached_and_names_missing_tools(monkeypatch):
    kind, detail = build.source()
    assert kind in ("built", "ros2"), detail
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "simgate.hardware.ros2_action_build"], capture_output=True, text=True)
    assert r.returncode == 0 and "built control_msgs" not in r.stderr, r.stderr  # nothing rebuilt
    assert time.monotonic() - t0 < 5.0
    from simgate.doctor import check_control_msgs

    doc = check_control_msgs()
    assert doc.status == "ok" and (("built by simgate" in doc.detail) == (kind == "built")), doc
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    missing = build.missing_tools()
    assert any("cmake" in m for m in missing) and any("C++ compiler" in m for m in missing)
    with pytest.raises(ConfigError, match="missing cmake"):
        build.build()


# ---- over DDS --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    log = tmp_path_factory.mktemp("action") / "driver.log"
    with driver_process(log) as proc:
        yield SimpleNamespace(proc=proc, log=log)


def test_moveit_style_client_in_its_own_process(driver):
    scenarios = ["succeed", "unknown_joint", "tight_tolerance", "cancel", "preempt", "estop"]
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "ros2_fjt_client.py"), *scenarios],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-2000:] + driver.log.read_text()[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    ok = out["succeed"]
    assert ok["status"] == SUCCEEDED and ok["error_code"] == 0, ok
    assert ok["feedback"] >= 10 and ok["fb_names"] == ARM and ok["final_error"] < 0.05, ok
    assert ok["latency_s"] < 0.5, ok  # result after the trajectory's end
    bad = out["unknown_joint"]
    assert bad["status"] == ABORTED and bad["error_code"] == INVALID_JOINTS and "nope" in bad["error_string"], bad
    tight = out["tight_tolerance"]
    assert tight["status"] == ABORTED and tight["error_code"] == -5, tight  # GOAL_TOLERANCE_VIOLATED
    cancel = out["cancel"]
    assert cancel["status"] == CANCELED and cancel["moved_before_cancel"] > 0.1, cancel
    assert cancel["drift_after"] < 0.005, cancel
    first, second = out["preempt"]["first"], out["preempt"]["second"]
    assert first["status"] == ABORTED and first["error_string"].startswith("preempted"), first
    assert second["status"] == SUCCEEDED, second
    stop = out["estop"]
    assert stop["status"] == ABORTED and stop["error_string"].startswith("e-stop"), stop
    assert stop["while_latched"]["status"] == ABORTED and "e-stop is latched" in stop["while_latched"]["error_string"]


def test_late_subscriber_gets_the_robot_description(driver):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    with probe() as p:
        assert wait_for(lambda: len(p.states) > 3, timeout_s=10)  # the driver has long published it
        got = []
        p.node.create_subscription(String, "/robot_description", lambda m: got.append(m.data),
                                   QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        assert wait_for(lambda: got, timeout_s=5), "no /robot_description for a late subscriber"
    root = ET.fromstring(got[0])
    joints = {j.get("name") for j in root.iter("joint") if j.get("type") != "fixed"}
    assert joints == set(SPEC.joint_names), (joints, SPEC.joint_names)


def test_a_vanished_action_server_reads_as_stale():
    """Joint states still arrive, but the controller's action server that was seen is gone."""
    from simgate.hardware.config import Ros2Config
    from simgate.hardware.ros2_backend import Ros2Backend
    from simgate.hardware.types import RobotState

    b = Ros2Backend(Ros2Config(robot="so101"))
    b._ctx = object()  # as if connected
    b._last = RobotState(joint_names=ARM, positions=HOME, velocities=[0.0] * 5, efforts=[0.0] * 5,
                         stamp_s=time.monotonic())
    b._last_rx = time.monotonic()
    b._action = SimpleNamespace(seen=True, ready=lambda: True, name="/jtc/follow_joint_trajectory")
    assert b.health().status == "ok"
    b._action.ready = lambda: False
    h = b.health()
    assert h.status == "stale" and "/jtc/follow_joint_trajectory" in h.reason, h
