"""Calibration: interactive sweeps must move every joint; LeRobot calibrations import (with the
zero-pose step) and drive the emulated SO-101 to the same physical pose as a native one."""

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hw_helpers import serial_rig, wait_for

from simgate.hardware.serial.backend import SerialBackend
from simgate.hardware.serial.calibration import Calibration
from simgate.hardware.types import JointCommand
from simgate.sim.robot_spec import load_robot_spec

K = 4096 / (2 * math.pi)  # ticks per rad


def _calibrate(port, out, sweep_s, during_sweep):
    proc = subprocess.Popen([sys.executable, "-m", "simgate.cli", "calibrate", "--port", port, "--out", str(out),
                             "--sweep-s", str(sweep_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdin.write("\n")
    proc.stdin.flush()
    for line in proc.stderr:  # the console writes to stderr
        if "move every joint" in line:
            during_sweep()
            break
    out_text, err = proc.communicate(timeout=60)
    return proc.returncode, line + err


def test_interactive_calibration_refuses_joints_nobody_moved(tmp_path):
    with serial_rig("feetech", tmp_path) as (bus, _):
        bus.move_by_hand({n: 0.0 for n in bus.spec.joint_names})  # a hand holds the arm still
        rc, err = _calibrate(bus.port, tmp_path / "c.yaml", 0.5, lambda: None)
        assert rc == 2 and "shoulder_pan" in err and "range too small" in err and "nothing was saved" in err
        assert not (tmp_path / "c.yaml").exists()


def test_interactive_calibration_records_zero_and_ranges(tmp_path):
    spec = load_robot_spec("so101")
    with serial_rig("feetech", tmp_path) as (bus, _):
        bus.move_by_hand({n: 0.0 for n in spec.joint_names})  # zero pose, held while Enter is pressed
        time.sleep(0.5)

        def sweep():
            for frac in (0.9, 0.0):  # 1.2 s per stroke: the emulated arm lags on a loaded machine
                bus.move_by_hand({j.name: frac * j.lower for j in spec.all_joints})
                time.sleep(1.2)
                bus.move_by_hand({j.name: frac * j.upper for j in spec.all_joints})
                time.sleep(1.2)

        rc, err = _calibrate(bus.port, tmp_path / "c.yaml", 5.5, sweep)
        assert rc == 0, err
        cal = Calibration.load(tmp_path / "c.yaml")
        for j in spec.all_joints:
            c = cal.joints[j.name]
            assert abs(c.homing_offset - 2048) <= 20, (j.name, c.homing_offset)
            assert c.max_ticks - c.min_ticks >= 0.8 * 0.9 * (j.upper - j.lower) * K, j.name
            assert c.servo_homing_offset == 0


def _lerobot_file(spec, path, drive_mode=0):
    """What LeRobot records on the emulated arm (servo raw 2048 = joint angle 0, Feetech): the
    arm placed mid-range, Homing_Offset = raw - 2047 there, then the range swept to the stops."""
    data = {}
    for i, j in enumerate(spec.all_joints):
        raw = lambda q: 2048 + q * K  # noqa: E731
        offset = round(raw((j.lower + j.upper) / 2)) - 2047
        data[j.name] = {"id": i + 1, "drive_mode": drive_mode, "homing_offset": offset,
                        "range_min": round(raw(j.lower)) - offset, "range_max": round(raw(j.upper)) - offset}
    path.write_text(json.dumps(data, indent=2))
    return data


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "simgate.cli", *args], capture_output=True, text=True, timeout=60)


def test_lerobot_calibration_drives_the_arm_to_the_same_pose_as_a_native_one(tmp_path):
    spec = load_robot_spec("so101")
    lerobot = tmp_path / "so101_follower.json"
    data = _lerobot_file(spec, lerobot)
    out = tmp_path / "from-lerobot.yaml"
    proc = _run_cli("calibrate", "--from-lerobot", str(lerobot), "--robot", "so101", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    cal = Calibration.load(out)
    assert cal.joints["elbow_flex"].servo_homing_offset == data["elbow_flex"]["homing_offset"]
    target = [0.4, 0.5, 1.2, -0.6, 0.8]
    arm = [j.name for j in spec.arm_joints]
    reached = {}
    for name, cal_path in (("native", None), ("lerobot", out)):
        with serial_rig("feetech", tmp_path) as (bus, cfg):
            if cal_path is not None:
                cfg = cfg.model_copy(update={"calibration": str(cal_path)})
            with SerialBackend(cfg) as be:
                if cal_path is not None:  # the servo reports LeRobot's ticks: its Homing_Offset was written
                    assert bus.peek("elbow_flex", "Homing_Offset") == data["elbow_flex"]["homing_offset"]
                be.write(JointCommand(positions=target))
                assert wait_for(lambda: np.allclose([bus.present_positions()[n] for n in arm], target, atol=0.03), 5.0)
                reached[name] = [bus.present_positions()[n] for n in arm]
                assert np.allclose(be.read().positions, target, atol=0.03)
    assert np.allclose(reached["native"], reached["lerobot"], atol=0.03), reached


def test_lerobot_zero_pose_override_and_drive_mode(tmp_path):
    spec = load_robot_spec("so101")
    lerobot = tmp_path / "cal.json"
    data = _lerobot_file(spec, lerobot, drive_mode=1)
    out = tmp_path / "c.yaml"
    proc = _run_cli("calibrate", "--from-lerobot", str(lerobot), "--robot", "so101", "--out", str(out),
                    "--zero-pose", "elbow_flex=0.0")
    assert proc.returncode == 0, proc.stderr
    cal = Calibration.load(out)
    e = data["elbow_flex"]
    assert cal.joints["elbow_flex"].direction == -1
    assert cal.joints["elbow_flex"].homing_offset == round((e["range_min"] + e["range_max"]) / 2)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["elbow_flex"].pop("range_max"), r"motor 'elbow_flex': range_max: Field required"),
    (lambda d: d["wrist_flex"].update(range_min="low"), r"motor 'wrist_flex': range_min: Input should be a valid integer"),
    (lambda d: d["gripper"].update(range_max=d["gripper"]["range_min"]), r"motor 'gripper': range_min .* must be < range_max"),
    (lambda d: d["wrist_roll"].update(range_max=d["wrist_roll"]["range_min"] + 40), r"range too small for joint\(s\) wrist_roll"),
    (lambda d: d.update(elbow=d.pop("elbow_flex")), r"missing \['elbow_flex'\], unknown \['elbow'\]"),
    (lambda d: d["shoulder_pan"].update(colour="red"), r"motor 'shoulder_pan': colour: Extra inputs are not permitted"),
])
def test_lerobot_errors_name_file_and_field_in_one_line(tmp_path, edit, match):
    spec = load_robot_spec("so101")
    path = tmp_path / "bad.json"
    data = _lerobot_file(spec, path)
    edit(data)
    path.write_text(json.dumps(data))
    proc = _run_cli("calibrate", "--from-lerobot", str(path), "--robot", "so101", "--out", str(tmp_path / "x.yaml"))
    assert proc.returncode == 2
    msg = " ".join(proc.stderr.split())  # rich wraps long lines on narrow terminals
    assert str(path) in msg and __import__("re").search(match, msg), proc.stderr
    assert "validation error" not in msg and "pydantic" not in msg  # no pydantic dump
