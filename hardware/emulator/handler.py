"""What the emulated servos do with one instruction packet (both protocols).

Replies follow the status-return level (Dynamixel Status_Return_Level 68, Feetech
Response_Status_Level 8: 0 = ping only, 1 = ping and read, 2 = all; Feetech 0 = ping and read);
broadcast instructions get no reply except PING, which every servo answers in id order.
Dynamixel servos answer a bad CRC with the CRC error, an unknown instruction with the
instruction error; a Feetech servo ignores both, as the real ones do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simgate.hardware.emulator import protocols as P
from simgate.hardware.emulator.servo import ERR_CRC, ERR_INSTRUCTION, Servo

if TYPE_CHECKING:
    from simgate.hardware.emulator.bus import EmulatedServoBus


class InstructionHandler:
    def __init__(self, bus: EmulatedServoBus) -> None:
        self.bus = bus
        self.fee = bus.protocol == "feetech"

    # ---- helpers ------------------------------------------------------------------------------
    def _addr_len(self, prm: bytes) -> tuple[int, int, bytes]:
        if self.fee:
            return prm[0], prm[1], prm[2:]
        return prm[0] | prm[1] << 8, prm[2] | prm[3] << 8, prm[4:]

    def _answers(self, servo: Servo, op: int) -> bool:
        if op == P.PING:
            return True
        level = servo.get("Response_Status_Level" if self.fee else "Status_Return_Level")
        if self.fee:
            return op == P.READ or level >= 1
        return level >= 2 or (level == 1 and op == P.READ)

    def _reply(self, servo: Servo, sid: int, op: int, params: bytes = b"", error: int = 0) -> None:
        if self._answers(servo, op):
            self.bus.reply(servo, sid, params, error)

    # ---- dispatch -----------------------------------------------------------------------------
    def handle(self, inst: P.Instruction, checksum_ok: bool) -> None:
        sid, op, prm = inst.servo_id, inst.inst, inst.params
        servo = self.bus.servos.get(sid)
        if not checksum_ok:
            if servo is not None and not self.fee:
                self.bus.reply(servo, sid, b"", ERR_CRC)
            return  # a Feetech servo drops a packet with a bad checksum silently
        if op == P.PING:
            return self._ping(sid)
        try:
            if op == P.SYNC_WRITE:
                return self._sync_write(prm)
            if op == P.SYNC_READ:
                return self._sync_read(prm)
            if sid == P.BROADCAST:
                return self._broadcast(op, prm)
            if servo is None:
                return
            self._one(servo, sid, op, prm)
        except IndexError:  # a packet too short for its instruction: real servos ignore it
            return

    def _ping(self, sid: int) -> None:
        with self.bus._lock:
            targets = sorted(self.bus.servos.items()) if sid == P.BROADCAST else (
                [(sid, self.bus.servos[sid])] if sid in self.bus.servos else [])
        for tid, servo in targets:
            if self.fee:
                self.bus.reply(servo, tid)
            else:
                t = servo.table
                self.bus.reply(servo, tid, bytes(t[0:2]) + bytes([t[6]]))

    def _one(self, servo: Servo, sid: int, op: int, prm: bytes) -> None:
        bus = self.bus
        if op == P.READ:
            addr, n, _ = self._addr_len(prm)
            with bus._lock:
                data, err = servo.read(addr, n)
            return self._reply(servo, sid, op, data if not err else b"", 0 if self.fee else err)
        if op in (P.WRITE, P.REG_WRITE):
            addr = prm[0] if self.fee else prm[0] | prm[1] << 8
            data = prm[1:] if self.fee else prm[2:]
            with bus._lock:
                if op == P.REG_WRITE:
                    servo.pending, err = (addr, bytes(data)), 0
                else:
                    err = servo.write(addr, data)
                    bus.renumber()
            return self._reply(servo, sid, op, b"", 0 if self.fee else err)
        if op == P.ACTION:
            err = self._action(servo)
            return self._reply(servo, sid, op, b"", 0 if self.fee else err)
        if op == P.REBOOT and not self.fee:
            self._reply(servo, sid, op)
            with bus._lock:
                servo.put("Torque_Enable", 0)
            return
        if not self.fee:  # FACTORY_RESET / CLEAR / BULK_* / unknown: not emulated
            self._reply(servo, sid, op, b"", ERR_INSTRUCTION)

    def _action(self, servo: Servo) -> int:
        with self.bus._lock:
            if servo.pending is None:
                return ERR_INSTRUCTION
            addr, data = servo.pending
            servo.pending = None
            err = servo.write(addr, data)
            self.bus.renumber()
        return err

    def _broadcast(self, op: int, prm: bytes) -> None:
        with self.bus._lock:
            servos = list(self.bus.servos.values())
        if op == P.ACTION:
            for servo in servos:
                if servo.pending is not None:
                    self._action(servo)
        elif op == P.WRITE:
            addr = prm[0] if self.fee else prm[0] | prm[1] << 8
            data = prm[1:] if self.fee else prm[2:]
            with self.bus._lock:
                for servo in servos:
                    servo.write(addr, data)
                self.bus.renumber()

    def _sync_write(self, prm: bytes) -> None:
        addr, n, rest = self._addr_len(prm)
        with self.bus._lock:
            for k in range(0, len(rest) - n, n + 1):
                servo = self.bus.servos.get(rest[k])
                if servo is not None:
                    servo.write(addr, rest[k + 1 : k + 1 + n])
            self.bus.renumber()

    def _sync_read(self, prm: bytes) -> None:
        addr, n, ids = self._addr_len(prm)
        for tid in ids:  # each servo answers in turn
            servo = self.bus.servos.get(tid)
            if servo is None:
                continue
            with self.bus._lock:
                data, err = servo.read(addr, n)
            self.bus.reply(servo, tid, data if not err else b"", 0 if self.fee else err)
