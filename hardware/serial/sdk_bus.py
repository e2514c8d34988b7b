"""A thin, uniform client over the two official SDKs (``scservo_sdk`` from feetech-servo-sdk,
``dynamixel_sdk``): ping, register read / write, group sync write and group sync read.
Imported lazily by the serial backend.

Every transaction clears stale input first (the Feetech SDK only flushes output), runs the SDK
call, and turns each way it can fail into a named :class:`BusError`:

* :class:`BusTimeout` - no reply; :class:`BusCorrupt` - a reply with a bad checksum / CRC;
* :class:`ShortReply` - a reply too short for what was asked (the SDKs index past its end and
  raise ``IndexError``, e.g. ping during a reconnect picking up an old write's status);
* :class:`PortError` - the port itself failed (unplugged adapter: ``OSError`` / ``SerialException``);
* :class:`ServoStatusError` - the servo answered with an error in its status packet.

Timeouts, corrupt and short replies are retried (``retries``); port and status errors are not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simgate.errors import HardwareError


class BusError(HardwareError):
    """A bus transaction failed (base of the named faults below)."""


class BusTimeout(BusError):
    """No status packet within the SDK's timeout."""


class BusCorrupt(BusError):
    """A status packet with a bad checksum / CRC or a garbled frame."""


class ShortReply(BusError):
    """A status packet shorter than the data asked for."""


class PortError(BusError):
    """The serial port failed (adapter unplugged, I/O error)."""


class ServoStatusError(BusError):
    """The servo answered with an error (Dynamixel: access / range / limit / ...)."""

    def __init__(self, msg: str, error: int) -> None:
        super().__init__(msg)
        self.error = error


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
    # goal together with speed / acceleration limits: one contiguous block
    motion_start: int
    motion_len: int


FEETECH = Registers(torque=40, goal=42, goal_len=2, present_start=56, present_len=6, pos_off=0, pos_len=2,
                    vel_off=2, vel_len=2, load_off=4, load_len=2, model_numbers=(777,),
                    motion_start=41, motion_len=7)  # Acceleration 41, Goal_Position 42, Goal_Time 44, Goal_Velocity 46
DYNAMIXEL = Registers(torque=64, goal=116, goal_len=4, present_start=126, present_len=10, pos_off=6, pos_len=4,
                      vel_off=2, vel_len=4, load_off=0, load_len=2, model_numbers=(1060, 1020, 1200, 1190, 1090),
                      motion_start=108, motion_len=12)  # Profile_Acceleration 108, Profile_Velocity 112, Goal 116


READ_BLOCK_S = 0.0005  # longest a single port read blocks
QUIET_S = 0.003  # before a retry: the line must be silent this long (late replies drained)
DRAIN_MAX_S = 0.05


def _signed(value: int, nbytes: int) -> int:
    bits = 8 * nbytes
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _sign_magnitude(value: int, sign_bit: int) -> int:
    mag = value & ((1 << sign_bit) - 1)
    return -mag if value & (1 << sign_bit) else mag


def _port_exceptions() -> tuple[type[BaseException], ...]:
    import termios

    import serial

    # AttributeError: a closed port (the SDK's ser is None); termios.error: tcflush on a gone pty
    return (OSError, serial.SerialException, termios.error, AttributeError)


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
        self.fee = protocol == "feetech"
        self.regs = FEETECH if self.fee else DYNAMIXEL
        self.port_name, self.baud = port, baud
        self.port = sdk.PortHandler(port)
        self.packet = sdk.PacketHandler(0 if self.fee else 2.0)
        self._opened = False
        self._port_errors = _port_exceptions()

    def open(self) -> None:
        try:
            ok = self.port.openPort() and self.port.setBaudRate(self.baud)
        except Exception as exc:  # noqa: BLE001 - pyserial raises several types
            raise PortError(f"cannot open serial port {self.port_name!r}: {exc}") from exc
        if not ok:
            raise PortError(f"cannot open serial port {self.port_name!r} at {self.baud} baud")
        # The SDKs poll the port in a tight loop (pyserial timeout 0), burning a core while they
        # wait for a reply and starving whoever must produce it on a loaded host. A short
        # blocking read waits in the kernel instead; the SDK's own deadline is unchanged.
        self.port.ser.timeout = READ_BLOCK_S
        self._opened = True

    def close(self) -> None:
        if self._opened:
            try:
                self.port.closePort()
            except Exception:  # noqa: BLE001
                pass
            self._opened = False

    # ---- one transaction, its failure modes named ---------------------------------------------
    def _clear_input(self) -> None:
        self.port.is_using = False
        self.port.ser.reset_input_buffer()

    def _result_error(self, result: int, what: str) -> BusError:
        text = f"{what}: {self.packet.getTxRxResult(result)}"
        if result == self.sdk.COMM_RX_TIMEOUT:
            return BusTimeout(text)
        if result == self.sdk.COMM_RX_CORRUPT:
            return BusCorrupt(text)
        return BusError(text)

    def _status_error(self, error: int, what: str) -> ServoStatusError:
        return ServoStatusError(f"{what}: servo error {self.packet.getRxPacketError(error) or error}", error)

    def transact(self, call: Callable[[], tuple], what: str, retries: int = 2):
        """Run ``call`` (an SDK call returning ``(..., result, error)`` or ``result``) with the
        input cleared first; retry timeouts, corrupt and short replies ``retries`` times."""
        err: BusError | None = None
        for _ in range(retries + 1):
            try:
                self._clear_input()
                out = call()
            except self._port_errors as exc:
                raise PortError(f"{what}: port error {exc}") from exc
            except (IndexError, TypeError, ValueError) as exc:  # the SDK read past a short reply
                err = ShortReply(f"{what}: short reply ({type(exc).__name__}: {exc})")
                self._drain()
                continue
            result, error = (out, 0) if isinstance(out, int) else (out[-2], out[-1])
            if result == self.sdk.COMM_SUCCESS:
                # Dynamixel: the low 7 bits say the instruction failed (bit 7 is a hardware alert);
                # Feetech status bits are alarms (voltage, overload ...), not a failed transaction
                if not self.fee and error & 0x7F:
                    raise self._status_error(error, what)
                return out
            err = self._result_error(result, what)
            if result not in (self.sdk.COMM_RX_TIMEOUT, self.sdk.COMM_RX_CORRUPT):
                break
            self._drain()
        raise err  # type: ignore[misc]

    def _drain(self) -> None:
        """Wait until the line is quiet, discarding what arrives: a late reply to the failed
        attempt must not be taken for the reply to the retry (which would leave every later
        transaction one reply behind)."""
        import time

        t_end = time.monotonic() + DRAIN_MAX_S
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < t_end:
                if self.port.ser.read(4096):
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= QUIET_S:
                    return
        except self._port_errors as exc:
            raise PortError(f"port error {exc}") from exc

    # ---- operations ---------------------------------------------------------------------------
    def ping(self, servo_id: int, retries: int = 2) -> int:
        """The servo's model number."""
        model, _, _ = self.transact(lambda: self.packet.ping(self.port, servo_id), f"ping servo {servo_id}", retries)
        return model

    def read(self, servo_id: int, addr: int, size: int, retries: int = 2) -> bytes:
        """``size`` bytes from ``addr``. The reply's length is checked: a late status packet of an
        earlier transaction (same id, other length) is a :class:`ShortReply`, retried."""
        what = f"read servo {servo_id} @{addr}+{size}"

        def call():
            rx, result, error = self.packet.txRxPacket(self.port, self._read_packet(servo_id, addr, size))
            if result == self.sdk.COMM_SUCCESS:
                n = rx[3] - 2 if self.fee else (rx[5] | rx[6] << 8) - 4
                if n != size:
                    raise ValueError(f"reply carries {n} bytes, asked for {size}")
            return rx, result, error

        rx, _, _ = self.transact(call, what, retries)
        start = 5 if self.fee else 9
        return bytes(rx[start : start + size])

    def _read_packet(self, servo_id: int, addr: int, size: int) -> list[int]:
        if self.fee:  # FF FF ID LEN=4 READ addr size CHK (the SDK fills header and checksum)
            return [0, 0, servo_id, 4, 0x02, addr, size, 0]
        # FF FF FD 00 ID LEN=7 READ addr_L addr_H len_L len_H CRC CRC
        return [0, 0, 0, 0, servo_id, 7, 0, 0x02, addr & 0xFF, addr >> 8, size & 0xFF, size >> 8, 0, 0]

    def write(self, servo_id: int, addr: int, data: bytes, retries: int = 2) -> None:
        """Write bytes and wait for the status reply (a lost reply is retried: writes are idempotent)."""
        self.transact(lambda: self.packet.writeTxRx(self.port, servo_id, addr, len(data), list(data)),
                      f"write servo {servo_id} @{addr}", retries)

    def set_torque(self, servo_id: int, on: bool, retries: int = 2) -> None:
        self.write(servo_id, self.regs.torque, bytes([1 if on else 0]), retries)

    def sync_write(self, addr: int, size: int, data: dict[int, bytes]) -> None:
        group = self.sdk.GroupSyncWrite(self.port, self.packet, addr, size)
        for sid, payload in data.items():
            group.addParam(sid, list(payload))
        self.transact(group.txPacket, f"sync write @{addr}", retries=0)

    def sync_write_goal(self, goals: dict[int, int]) -> None:
        r = self.regs
        mask = (1 << (8 * r.goal_len)) - 1
        self.sync_write(r.goal, r.goal_len, {sid: int(t & mask).to_bytes(r.goal_len, "little") for sid, t in goals.items()})

    def sync_read_present(self, ids: list[int], retries: int = 0) -> dict[int, tuple[int, int, int]]:
        """{id: (position ticks, velocity raw, load raw)} for every id, or BusError."""
        r = self.regs
        group = self.sdk.GroupSyncRead(self.port, self.packet, r.present_start, r.present_len)
        for sid in ids:
            group.addParam(sid)
        self.transact(group.txRxPacket, f"sync read of servos {ids}", retries)
        out = {}
        for sid in ids:
            if not group.isAvailable(sid, r.present_start, r.present_len):
                raise ShortReply(f"sync read: no data from servo {sid}")
            pos = group.getData(sid, r.present_start + r.pos_off, r.pos_len)
            vel = group.getData(sid, r.present_start + r.vel_off, r.vel_len)
            load = group.getData(sid, r.present_start + r.load_off, r.load_len)
            if self.fee:
                pos, vel, load = _sign_magnitude(pos, 15), _sign_magnitude(vel, 15), _sign_magnitude(load, 10)
            else:
                pos, vel, load = _signed(pos, 4), _signed(vel, 4), _signed(load, 2)
            out[sid] = (pos, vel, load)
        return out
