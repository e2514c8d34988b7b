"""Connecting configures the servos (written, read back, verified) on both emulated protocols,
and a write can carry per-joint speed / acceleration limits."""

import math
import time

import pytest
from hw_helpers import serial_rig, wait_for

from simgate.hardware.serial.backend import SerialBackend
from simgate.hardware.serial.servo_config import ServoConfigError, ServoSettings
from simgate.hardware.types import JointCommand

TICKS_PER_RAD = 4096 / (2 * math.pi)


@pytest.mark.parametrize("protocol", ["feetech", "dynamixel"])
def test_connect_writes_and_verifies_the_configuration(protocol, tmp_path):
    with serial_rig(protocol, tmp_path) as (bus, cfg):
        with SerialBackend(cfg) as be:
            cal = be.calibration
            assert "Return_Delay_Time" in be.configured["elbow_flex"]  # the power-on default was 500 us
            for n in bus.spec.joint_names:
                c = cal.joints[n]
                assert bus.peek(n, "Return_Delay_Time") == 0
                assert bus.peek(n, "Min_Position_Limit") == c.min_ticks
                assert bus.peek(n, "Max_Position_Limit") == c.max_ticks
                assert bus.peek(n, "Homing_Offset") == 0
                assert bus.peek(n, "Torque_Enable") == 1
            if protocol == "feetech":
                assert bus.peek("elbow_flex", "Operating_Mode") == 0 and bus.peek("elbow_flex", "Lock") == 1
                assert bus.peek("elbow_flex", "Goal_Velocity") == round(4.7 * TICKS_PER_RAD)  # spec velocity
                assert bus.peek("elbow_flex", "Acceleration") == 254  # 47 rad/s^2 asked, the register's max
                assert bus.peek("gripper", "Max_Torque_Limit") == 500 and bus.peek("elbow_flex", "Max_Torque_Limit") == 1000
                assert bus.peek("gripper", "Torque_Limit") == 500 and bus.peek("gripper", "Protection_Current") == 250
                assert bus.peek("elbow_flex", "P_Coefficient") == 16
            else:
                assert bus.peek("elbow_flex", "Operating_Mode") == 3
                assert bus.peek("elbow_flex", "Profile_Velocity") == round(4.7 * 60 / (2 * math.pi) / 0.229)
                assert bus.peek("gripper", "PWM_Limit") == 442 and bus.peek("elbow_flex", "PWM_Limit") == 885
            assert be.read().fresh
        with SerialBackend(cfg) as be:  # nothing differs the second time: nothing is written (EEPROM wear)
            assert all(v == [] for v in be.configured.values())


def test_per_joint_settings_and_unknown_joint(tmp_path):
    from simgate.errors import ConfigError

    with serial_rig("feetech", tmp_path) as (bus, cfg):
        slow = ServoSettings(max_velocity_rad_s=1.0, torque_limit=0.8)
        with SerialBackend(cfg.model_copy(update={"servos": {"wrist_flex": slow}})):
            assert bus.peek("wrist_flex", "Goal_Velocity") == round(1.0 * TICKS_PER_RAD)
            assert bus.peek("wrist_flex", "Max_Torque_Limit") == 800
        with pytest.raises(ConfigError, match="wrist"):
            SerialBackend(cfg.model_copy(update={"servos": {"wrist": slow}}))
    with pytest.raises(ValueError, match="extra"):
        ServoSettings(speed=3)


@pytest.mark.parametrize("protocol", ["feetech", "dynamixel"])
def test_a_register_that_does_not_take_its_value_is_a_named_error(protocol, tmp_path, monkeypatch):
    with serial_rig(protocol, tmp_path) as (bus, cfg):
        servo = bus.joint_servos[bus.spec.joint_names.index("elbow_flex")]
        apply = servo._apply

        def stuck_limit(name, reg, raw):  # this servo's Min_Position_Limit cell does not change
            if name != "Min_Position_Limit":
                apply(name, reg, raw)

        monkeypatch.setattr(servo, "_apply", stuck_limit)
        with pytest.raises(ServoConfigError, match=r"'elbow_flex' \(servo id 3\): Min_Position_Limit .* reads back 0"):
            SerialBackend(cfg).connect()
        assert bus.peek("elbow_flex", "Torque_Enable") == 0  # refused before anything was switched on


@pytest.mark.parametrize("protocol", ["feetech", "dynamixel"])
def test_write_with_speed_limit_moves_at_that_speed(protocol, tmp_path):
    with serial_rig(protocol, tmp_path) as (bus, cfg), SerialBackend(cfg) as be:
        q0 = be.read().positions
        target = [q0[0] + 0.6] + q0[1:]
        limits = [0.5] + [4.7] * 4
        sent = be.write(JointCommand(positions=target, max_velocity_rad_s=limits, max_acceleration_rad_s2=[20.0] * 5))
        assert sent.max_velocity_rad_s is not None and abs(sent.max_velocity_rad_s[0] - 0.5) < 0.02
        assert sent.max_acceleration_rad_s2 is not None and all(0 < a <= 20.5 for a in sent.max_acceleration_rad_s2)
        time.sleep(0.6)
        moved = bus.present_positions()["shoulder_pan"] - q0[0]
        assert 0.15 < moved < 0.42, moved  # 0.5 rad/s for 0.6 s, not all 0.6 rad at 4.7 rad/s
        assert wait_for(lambda: abs(bus.present_positions()["shoulder_pan"] - target[0]) < 0.03, 3.0)
        be.write(JointCommand(positions=q0))  # no limits: back to the spec's speed
        reg = "Goal_Velocity" if protocol == "feetech" else "Profile_Velocity"
        t0 = time.monotonic()
        assert wait_for(lambda: bus.peek("shoulder_pan", reg) == bus.peek("shoulder_lift", reg), 1.0)  # sync write: no reply
        assert wait_for(lambda: abs(bus.present_positions()["shoulder_pan"] - q0[0]) < 0.03, 3.0)
        assert time.monotonic() - t0 < 0.8
        with pytest.raises(Exception, match="max_velocity_rad_s"):
            be.write(JointCommand(positions=q0, max_velocity_rad_s=[1.0, -1.0, 1.0, 1.0, 1.0]))
