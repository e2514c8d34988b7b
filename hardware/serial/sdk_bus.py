"""A thin, uniform client over the two official SDKs (``scservo_sdk`` from feetech-servo-sdk,
``dynamixel_sdk``): ping, torque, group sync write of goal position, group sync read of present
position / velocity / load. Imported lazily by the serial backend.

Errors come back as :class:`BusError` with the servo id and the SDK's own message.
"""

from __future__ import annotations

from dataclasses import dataclass

from simgate.errors import HardwareError


class BusError(HardwareError):
    """A bus transaction failed (timeout, corrupt reply, port error)."""


@dataclass(frozen=True)
class Registers:
    torque: int
    goal: int
    goal_len: int
    present_start: int  # one contiguous block read per servo
    present_len: int
    pos_off: int
    pos_len: int
    vel_off: int
    vel_len: int
    load_off: int
    load_len: int
    model_numbers: tuple[int, ...]


FEETECH = Registers(torque=40, goal=42, goal_len=2, present_start=56, present_len=6, pos_off=0, pos_len=2,
                    vel_off=2, vel_len=2, load_off=4, load_len=2, model_numbers=(777,))
DYNAMIXEL = Registers(torque=64, goal=116, goal_len=4, present_start=126, present_len=10, pos_off=6, pos_len=4,
                      vel_off=2, vel_len=4, load_off=0, load_len=2, model_numbers=(1060, 1020, 1200, 1190, 1090))


def _signed(value: int, nbytes: int) -> int:
    bits = 8 * nbytes
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _sign_magnitude(value: int, sign_bit: int) -> int:
    mag = value & ((1 << sign_bit) - 1)
    return -mag if value & (1 << sign_bit) else mag


class SdkBus:
    """One open port on one protocol."""

    def __init__(self, protocol: str, port: str, baud: int, latency_timer_ms: float = 2.0) -> None:
        if protocol == "feetech":
            import scservo_sdk as sdk
            import scservo_sdk.port_handler as ph_mod
        elif protocol == "dynamixel":
            import dynamixel_sdk as sdk
            import dynamixel_sdk.port_handler as ph_mod
        else:
            raise HardwareError(f"unknown protocol {protocol!r}; choose 'feetech' or 'dynamixel'")
        # The SDKs size every reply timeout as wire time + 2 x LATENCY_TIMER (ms) + 2 ms, with the
        # FTDI default of 16 ms. Adapters set to low latency (and the pty emulator) answer in
        # well under 1 ms, so the timer is configurable to detect a dead bus in a few ms.
        ph_mod.LATENCY_TIMER = latency_timer_ms
        self.sdk, self.protocol = sdk, protocol
        self.regs = FEETECH if protocol == "feetech" else DYNAMIXEL
        self.port_name, self.baud = port, baud
        self.port = sdk.PortHandler(port)
        self.packet = sdk.PacketHandler(0 if protocol == "feetech" else 2.0)
        self._opened = False

    def open(self) -> None:
        try:
            ok = self.port.openPort() and self.port.setBaudRate(self.baud)
        except Exception as exc:  # noqa: BLE001 - pyserial raises several types
            raise BusError(f"cannot open serial port {self.port_name!r}: {exc}") from exc
        if not ok:
            raise BusError(f"cannot open serial port {self.port_name!r} at {self.baud} baud")
        self._opened = True

    def close(self) -> None:
        if self._opened:
            try:
                self.port.closePort()
            except Exception:  # noqa: BLE001
                pass
            self._opened = False

    def _check(self, result: int, error: int, what: str) -> None:
        if result != self.sdk.COMM_SUCCESS:
            raise BusError(f"{what}: {self.packet.getTxRxResult(result)}")
        if error:
            raise BusError(f"{what}: servo error {self.packet.getRxPacketError(error)}")

    def ping(self, servo_id: int, retries: int = 2) -> int:
        """The servo's model number; a lost or garbled reply is retried ``retries`` times."""
        for attempt in range(retries + 1):
            try:
                model, result, error = self.packet.ping(self.port, servo_id)
                self._check(result, error, f"ping servo {servo_id}")
                return model
            except Exception as exc:  # noqa: BLE001 - the SDKs raise IndexError etc. on short replies
                if attempt == retries:
                    if isinstance(exc, BusError):
                        raise
                    raise BusError(f"ping servo {servo_id}: port error {exc}") from exc
                self.port.clearPort()
        raise AssertionError("unreachable")

    def set_torque(self, servo_id: int, on: bool, retries: int = 2) -> None:
        """Write Torque_Enable and wait for the status reply (retried: a lost reply is not a fault)."""
        for attempt in range(retries + 1):
            try:
                result, error = self.packet.write1ByteTxRx(self.port, servo_id, self.regs.torque, 1 if on else 0)
            except Exception as exc:  # noqa: BLE001
                raise BusError(f"torque servo {servo_id}: port error {exc}") from exc
            if result == self.sdk.COMM_SUCCESS or attempt == retries:
                break
        self._check(result, error, f"torque {'on' if on else 'off'} servo {servo_id}")

    def sync_write_goal(self, goals: dict[int, int]) -> None:
        r = self.regs
        group = self.sdk.GroupSyncWrite(self.port, self.packet, r.goal, r.goal_len)
        for sid, ticks in goals.items():
            group.addParam(sid, list(int(ticks & ((1 << (8 * r.goal_len)) - 1)).to_bytes(r.goal_len, "little")))
        try:
            result = group.txPacket()
        except Exception as exc:  # noqa: BLE001
            raise BusError(f"sync write: port error {exc}") from exc
        if result != self.sdk.COMM_SUCCESS:
            raise BusError(f"sync write: {self.packet.getTxRxResult(result)}")

    def sync_read_present(self, ids: list[int]) -> dict[int, tuple[int, int, int]]:
        """{id: (position ticks, velocity raw, load raw)} for every id, or BusError."""
        r = self.regs
        group = self.sdk.GroupSyncRead(self.port, self.packet, r.present_start, r.present_len)
        for sid in ids:
            group.addParam(sid)
        try:
            result = group.txRxPacket()
        except Exception as exc:  # noqa: BLE001
            raise BusError(f"sync read: port error {exc}") from exc
        if result != self.sdk.COMM_SUCCESS:
            raise BusError(f"sync read of servos {ids}: {self.packet.getTxRxResult(result)}")
        out = {}
        for sid in ids:
            if not group.isAvailable(sid, r.present_start, r.present_len):
                raise BusError(f"sync read: no data from servo {sid}")
            pos = group.getData(sid, r.present_start + r.pos_off, r.pos_len)
            vel = group.getData(sid, r.present_start + r.vel_off, r.vel_len)
            load = group.getData(sid, r.present_start + r.load_off, r.load_len)
            if self.protocol == "feetech":
                pos, vel, load = _sign_magnitude(pos, 15), _sign_magnitude(vel, 15), _sign_magnitude(load, 10)
            else:
                pos, vel, load = _signed(pos, 4), _signed(vel, 4), _signed(load, 2)
            out[sid] = (pos, vel, load)
        return out
