"""The emulated servos behave like the real ones, checked through the vendors' official SDK
clients (``scservo_sdk``, ``dynamixel_sdk``) over the pseudo-terminal, never through emulator
internals."""

import os
import signal
import subprocess
import sys
import time

import pytest
from emu_sdk import call, drain, hold_all, sdk_on_bus

# Dynamixel status error numbers
RANGE, LENGTH, LIMIT, ACCESS, INSTRUCTION, CRC = 4, 5, 6, 7, 2, 3
PAN = 1  # shoulder_pan: a vertical axis, gravity does not move it


def wait_until(pred, timeout_s):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


# ---- access rights ---------------------------------------------------------------------------
def test_dynamixel_access_rules_and_status_errors():
    with sdk_on_bus("dynamixel") as (_, sdk, port, pk):
        w1 = lambda a, v: call(sdk, port, lambda: pk.write1ByteTxRx(port, 2, a, v))  # noqa: E731
        w4 = lambda a, v: call(sdk, port, lambda: pk.write4ByteTxRx(port, 2, a, v))  # noqa: E731
        assert call(sdk, port, lambda: pk.write2ByteTxRx(port, 2, 0, 1234))[1] == ACCESS  # Model_Number: read-only
        assert call(sdk, port, lambda: pk.read2ByteTxRx(port, 2, 0))[0] == 1060
        assert w1(11, 2)[1] == RANGE  # XL430 has no current mode
        assert w1(116, 7)[1] == LENGTH  # one byte of the 4-byte Goal_Position
        assert w4(48, 3000) == (sdk.COMM_SUCCESS, 0)  # EEPROM with torque off: fine
        assert w1(64, 1) == (sdk.COMM_SUCCESS, 0)  # torque on
        assert w4(48, 2500)[1] == ACCESS  # EEPROM with torque on
        assert call(sdk, port, lambda: pk.read4ByteTxRx(port, 2, 48))[0] == 3000
        assert w4(116, 3500)[1] == LIMIT  # goal beyond Max_Position_Limit
        # an instruction the servo does not know
        tx = [0] * 10
        tx[4], tx[5], tx[7] = 2, 3, 0x7F
        assert call(sdk, port, lambda: pk.txRxPacket(port, tx))[2] == INSTRUCTION
        # a packet with a bad CRC gets the CRC error
        good = [0xFF, 0xFF, 0xFD, 0x00, 2, 3, 0, 0x01]
        crc = pk.updateCRC(0, good, len(good))
        port.ser.reset_input_buffer()
        port.writePort(good + [(crc & 0xFF) ^ 0x55, crc >> 8])
        port.setPacketTimeoutMillis(100)
        rx, result = pk.rxPacket(port, False)
        assert result == sdk.COMM_SUCCESS and rx[8] == CRC


def test_feetech_read_only_and_lock_protocol():
    with sdk_on_bus("feetech") as (_, sdk, port, pk):
        r2 = lambda a: call(sdk, port, lambda: pk.read2ByteTxRx(port, 3, a))[0]  # noqa: E731
        w = lambda a, v, n=2: call(sdk, port, lambda: (pk.write2ByteTxRx if n == 2 else pk.write1ByteTxRx)(port, 3, a, v))  # noqa: E731
        w(3, 1234)
        assert r2(3) == 777  # Model_Number is read-only
        assert call(sdk, port, lambda: pk.read1ByteTxRx(port, 3, 55))[0] == 1  # Lock: EEPROM locked at power-on
        w(11, 3000)
        assert r2(11) == 4095  # locked: the EEPROM write is not applied
        w(55, 0, 1)
        w(11, 3000)
        w(55, 1, 1)
        assert r2(11) == 3000
        assert call(sdk, port, lambda: pk.read1ByteTxRx(port, 3, 33))[0] == 0  # Operating_Mode: position


@pytest.mark.parametrize("model, number", [("xl430-w250", 1060), ("xm430-w350", 1020), ("xl330-m288", 1200)])
def test_dynamixel_operating_mode_default_is_position(model, number):
    with sdk_on_bus("dynamixel", model=model) as (_, sdk, port, pk):
        assert call(sdk, port, lambda: pk.ping(port, 1))[0] == number
        assert call(sdk, port, lambda: pk.read1ByteTxRx(port, 1, 11))[0] == 3


# ---- positions -------------------------------------------------------------------------------
def test_homing_offset_shifts_present_position_both_protocols():
    with sdk_on_bus("feetech") as (_, sdk, port, pk):
        hold_all(sdk, port, pk, "feetech", ids=range(2, 7))  # the arm held up, the pan servo limp
        before = call(sdk, port, lambda: pk.read2ByteTxRx(port, PAN, 56))[0]
        call(sdk, port, lambda: pk.write1ByteTxRx(port, PAN, 55, 0))
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 31, 0x800 | 100))  # -100, sign-magnitude bit 11
        assert wait_until(lambda: abs(call(sdk, port, lambda: pk.read2ByteTxRx(port, PAN, 56))[0] - (before + 100)) <= 2, 1.0)
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 31, 100))  # +100
        assert wait_until(lambda: abs(call(sdk, port, lambda: pk.read2ByteTxRx(port, PAN, 56))[0] - (before - 100)) <= 2, 1.0)
    with sdk_on_bus("dynamixel") as (_, sdk, port, pk):
        hold_all(sdk, port, pk, "dynamixel", ids=range(2, 7))
        before = call(sdk, port, lambda: pk.read4ByteTxRx(port, PAN, 132))[0]
        call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 20, (-300) & 0xFFFFFFFF))
        assert wait_until(lambda: abs(call(sdk, port, lambda: pk.read4ByteTxRx(port, PAN, 132))[0] - (before - 300)) <= 2, 1.0)


def _stopped_at(sdk, port, pk, addr, size, target, moving_addr):
    """At ``target`` (within 10 ticks) AND stopped (Moving = 0): near the goal is not arrived, the
    profile may still run at full speed there (the tracking lag is ~5 ticks), and a new goal
    written then starts by braking that speed: seen as ~107 ticks the wrong way 0.5 s later."""
    if call(sdk, port, lambda: pk.read1ByteTxRx(port, PAN, moving_addr))[0] != 0:
        return False
    return abs(_moved_after(sdk, port, pk, addr, size, target, 0)) <= 10


def _moved_after(sdk, port, pk, addr, size, start, t_s):
    time.sleep(t_s)
    read = pk.read2ByteTxRx if size == 2 else pk.read4ByteTxRx
    return call(sdk, port, lambda: read(port, PAN, addr))[0] - start


def test_feetech_speed_and_acceleration_limits():
    with sdk_on_bus("feetech") as (_, sdk, port, pk):
        hold_all(sdk, port, pk, "feetech")
        start = call(sdk, port, lambda: pk.read2ByteTxRx(port, PAN, 56))[0]
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 46, 300))  # Goal_Velocity 300 ticks/s
        t0 = time.monotonic()
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 42, start + 600))
        moved = _moved_after(sdk, port, pk, 56, 2, start, 1.0 - (time.monotonic() - t0))
        assert 200 <= moved <= 400, moved  # 300 ticks/s for 1 s, not the whole 600 at once
        assert wait_until(lambda: _stopped_at(sdk, port, pk, 56, 2, start + 600, 66), 3.0)
        # Acceleration 3 = 300 ticks/s^2, speed unlimited: 0.5 s -> ~37 ticks
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 46, 0))
        call(sdk, port, lambda: pk.write1ByteTxRx(port, PAN, 41, 3))
        start = start + 600
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 42, start - 600))
        moved = -_moved_after(sdk, port, pk, 56, 2, start, 0.5)
        assert 10 <= moved <= 120, moved
        assert wait_until(lambda: abs(_moved_after(sdk, port, pk, 56, 2, start, 0) + 600) <= 10, 4.0)


def test_dynamixel_profile_velocity_and_acceleration():
    with sdk_on_bus("dynamixel") as (_, sdk, port, pk):
        hold_all(sdk, port, pk, "dynamixel")
        start = call(sdk, port, lambda: pk.read4ByteTxRx(port, PAN, 132))[0]
        call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 112, 20))  # 20 x 0.229 rpm = 312 ticks/s
        t0 = time.monotonic()
        call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 116, start + 600))
        moved = _moved_after(sdk, port, pk, 132, 4, start, 1.0 - (time.monotonic() - t0))
        assert 200 <= moved <= 420, moved
        assert wait_until(lambda: _stopped_at(sdk, port, pk, 132, 4, start + 600, 122), 3.0)
        call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 112, 0))
        call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 108, 5))  # 5 x 214.577 rev/min^2 = 1221 ticks/s^2
        start += 600
        call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 116, start - 600))
        moved = -_moved_after(sdk, port, pk, 132, 4, start, 0.3)
        assert 15 <= moved <= 150, moved  # 1221 * 0.3^2 / 2 = 55 ticks


def test_position_limits_enforced():
    with sdk_on_bus("feetech") as (_, sdk, port, pk):
        call(sdk, port, lambda: pk.write1ByteTxRx(port, PAN, 55, 0))
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 9, 1900))
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 11, 2200))
        call(sdk, port, lambda: pk.write1ByteTxRx(port, PAN, 55, 1))
        hold_all(sdk, port, pk, "feetech")
        call(sdk, port, lambda: pk.write2ByteTxRx(port, PAN, 42, 3000))
        assert call(sdk, port, lambda: pk.read2ByteTxRx(port, PAN, 42))[0] == 2200  # clipped into the limits
        assert wait_until(lambda: abs(call(sdk, port, lambda: pk.read2ByteTxRx(port, PAN, 56))[0] - 2200) <= 5, 3.0)
    with sdk_on_bus("dynamixel") as (_, sdk, port, pk):
        call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 52, 1900))
        call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 48, 2200))
        assert call(sdk, port, lambda: pk.write4ByteTxRx(port, PAN, 116, 3000))[1] == LIMIT
        assert call(sdk, port, lambda: pk.read4ByteTxRx(port, PAN, 116))[0] != 3000


# ---- ids and ping ----------------------------------------------------------------------------
def test_id_change_is_honoured():
    with sdk_on_bus("dynamixel") as (_, sdk, port, pk):
        assert call(sdk, port, lambda: pk.write1ByteTxRx(port, 5, 7, 25)) == (sdk.COMM_SUCCESS, 0)
        assert call(sdk, port, lambda: pk.ping(port, 25))[0] == 1060
        port.ser.reset_input_buffer()
        assert pk.ping(port, 5)[1] == sdk.COMM_RX_TIMEOUT
    with sdk_on_bus("feetech") as (_, sdk, port, pk):
        call(sdk, port, lambda: pk.write1ByteTxRx(port, 5, 55, 0))
        call(sdk, port, lambda: pk.write1ByteTxRx(port, 5, 5, 25))
        assert call(sdk, port, lambda: pk.ping(port, 25))[0] == 777
        port.ser.reset_input_buffer()
        assert pk.ping(port, 5)[1] == sdk.COMM_RX_TIMEOUT


def test_broadcast_ping():
    with sdk_on_bus("dynamixel") as (_, sdk, port, pk):
        found, result = {}, None
        for _ in range(3):
            port.ser.reset_input_buffer()
            found, result = pk.broadcastPing(port)
            if len(found) == 6:
                break
        assert result == sdk.COMM_SUCCESS and found == {i: [1060, 45] for i in range(1, 7)}
    with sdk_on_bus("feetech") as (_, sdk, port, pk):  # the Feetech SDK has no broadcast ping: send one
        port.ser.reset_input_buffer()
        assert pk.txPacket(port, [0, 0, 0xFE, 2, 0x01, 0]) == sdk.COMM_SUCCESS
        ids = []
        for _ in range(6):
            port.setPacketTimeoutMillis(100)
            rx, result = pk.rxPacket(port)
            assert result == sdk.COMM_SUCCESS
            ids.append(rx[2])
        assert ids == [1, 2, 3, 4, 5, 6]


# ---- the receiver ----------------------------------------------------------------------------
def _ping_after_garbage(protocol, garbage):
    with sdk_on_bus(protocol) as (_, sdk, port, pk):
        call(sdk, port, lambda: pk.ping(port, 1))
        port.writePort(garbage)
        t0 = time.monotonic()
        while True:
            port.ser.reset_input_buffer()
            try:
                model, result, _ = pk.ping(port, 1)
            except IndexError:  # the ping's READ got the ping's own late status: not answered yet
                continue
            if result == sdk.COMM_SUCCESS:
                return time.monotonic() - t0
            assert time.monotonic() - t0 < 1.0, "the bus stayed wedged"


@pytest.mark.parametrize("protocol, garbage, what", [
    ("dynamixel", [0xFF, 0xFF, 0xFD, 0x00, 1, 0xFF, 0xFF], "65,535-byte length: skipped at once"),
    ("dynamixel", [0xFF, 0xFF, 0xFD, 0x00, 1, 200, 0, 0x03, 116, 0], "200 bytes that never come: inter-byte timeout"),
    ("feetech", [0xFF, 0xFF, 1, 0xFF], "255-byte length: skipped at once"),
    ("feetech", [0xFF, 0xFF, 1, 200, 0x03, 42], "200 bytes that never come: inter-byte timeout"),
])
def test_a_bogus_header_does_not_wedge_the_bus(protocol, garbage, what):
    latencies = sorted(_ping_after_garbage(protocol, garbage) for _ in range(3))
    print(f"{protocol} {what}: ping answered {latencies[1] * 1e3:.1f} ms after (median of 3)")
    assert latencies[1] < 0.05, f"{what}: {latencies}"


# ---- the CLI ---------------------------------------------------------------------------------
def test_emulate_removes_its_pty_symlink_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "simgate.cli", "emulate", "--protocol", "dynamixel"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        assert os.path.islink(path)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not os.path.lexists(path) and not os.path.exists(os.path.dirname(path))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_status_return_level_zero_answers_only_ping():
    with sdk_on_bus("dynamixel") as (_, sdk, port, pk):
        assert pk.write1ByteTxOnly(port, 3, 68, 0) == sdk.COMM_SUCCESS  # level 0: no status even for this write
        time.sleep(0.01)
        port.ser.reset_input_buffer()
        assert pk.write1ByteTxRx(port, 3, 65, 1)[0] == sdk.COMM_RX_TIMEOUT  # no status for a write
        drain(port)
        assert call(sdk, port, lambda: pk.ping(port, 3))[0] == 1060
