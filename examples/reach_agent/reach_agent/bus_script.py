"""A bench script on a Feetech (STS3215) servo bus through the vendor SDK (feetech-servo-sdk):
ping the servos and read their positions, retrying lost or garbled replies a few times."""

from __future__ import annotations

import os
import time

import scservo_sdk as sdk

PRESENT_POSITION = 56  # STS3215 control table: 2 bytes


class BusLost(RuntimeError):
    """The adapter is gone (unplugged)."""


class Bus:
    def __init__(self, port: str, baud: int = 1_000_000, retries: int = 5) -> None:
        self.path, self.baud, self.retries = port, baud, retries
        self.port = sdk.PortHandler(port)
        if not self.port.openPort() or not self.port.setBaudRate(baud):
            raise BusLost(f"cannot open {port}")
        self.pk = sdk.PacketHandler(0)

    def _try(self, fn):
        result = None
        for _ in range(self.retries + 1):
            if not os.path.exists(self.path):
                raise BusLost(f"{self.path} is gone")
            self.port.is_using = False
            try:
                self.port.ser.reset_input_buffer()
                *value, result, error = fn()
            except (OSError, IndexError) as exc:  # an unplugged adapter; a stale short reply
                if not os.path.exists(self.path):
                    raise BusLost(f"{self.path} is gone") from exc
                continue
            if result == sdk.COMM_SUCCESS:
                return value[0] if value else None
            time.sleep(0.005)
        return None

    def ping(self, ids) -> list[int]:
        """The ids that answer."""
        return [i for i in ids if self._try(lambda i=i: self.pk.ping(self.port, i)) is not None]

    def positions(self, ids) -> dict[int, int | None]:
        """Raw present position (ticks) per id; None when it never answered."""
        return {i: self._try(lambda i=i: self.pk.read2ByteTxRx(self.port, i, PRESENT_POSITION)) for i in ids}

    def close(self) -> None:
        self.port.closePort()
