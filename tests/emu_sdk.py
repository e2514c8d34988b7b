"""Official-SDK clients on an emulated bus, for the emulator tests (load-tolerant: a lost reply
on a loaded CI host is retried, never mistaken for the behaviour under test)."""

import contextlib
import time

from simgate.hardware.emulator.bus import EmulatedServoBus

LATENCY_TIMER_MS = 8


@contextlib.contextmanager
def sdk_on_bus(protocol, robot="so101", **bus_kwargs):
    """(bus, sdk module, port handler, packet handler) with the port open at 1 Mbaud."""
    if protocol == "feetech":
        import scservo_sdk as sdk
        import scservo_sdk.port_handler as ph
    else:
        import dynamixel_sdk as sdk
        import dynamixel_sdk.port_handler as ph
    ph.LATENCY_TIMER = LATENCY_TIMER_MS
    with EmulatedServoBus(protocol, robot, **bus_kwargs) as bus:
        port = sdk.PortHandler(bus.port)
        assert port.openPort() and port.setBaudRate(1_000_000)
        pk = sdk.PacketHandler(0 if protocol == "feetech" else 2.0)
        try:
            yield bus, sdk, port, pk
        finally:
            port.closePort()


def drain(port, quiet_s=0.005):
    t_end = time.monotonic() + 0.1
    last = time.monotonic()
    while time.monotonic() < t_end and time.monotonic() - last < quiet_s:
        if port.ser.read(4096):
            last = time.monotonic()
        time.sleep(0.0005)


def call(sdk, port, fn, tries=6):
    """Run an SDK call returning (..., result, error) until the reply arrives (not until it is
    error-free: the status error is what the tests look at)."""
    out = None
    for _ in range(tries):
        port.is_using = False
        port.ser.reset_input_buffer()
        try:
            out = fn()
        except IndexError:  # a late reply of an earlier try, shorter than this one's
            drain(port)
            continue
        result = out if isinstance(out, int) else out[-2]
        if result == sdk.COMM_SUCCESS:
            return out
        drain(port)
    raise AssertionError(f"no reply after {tries} tries: {out}")


def hold_all(sdk, port, pk, protocol, ids=range(1, 7)):
    """Torque on for every servo (each holds where it is): a limp arm would fall onto the table
    and drag the joint under test with it."""
    fee = protocol == "feetech"
    torque, goal, present = (40, 42, 56) if fee else (64, 116, 132)
    read, write = (pk.read2ByteTxRx, pk.write2ByteTxRx) if fee else (pk.read4ByteTxRx, pk.write4ByteTxRx)
    for sid in ids:  # goal = present first: the goal register still holds the power-on position
        here = call(sdk, port, lambda sid=sid: read(port, sid, present))[0]
        call(sdk, port, lambda sid=sid, here=here: write(port, sid, goal, here))
        call(sdk, port, lambda sid=sid: pk.write1ByteTxRx(port, sid, torque, 1))
    time.sleep(0.2)
