"""Wire formats of the two servo protocols, servo side: parse instruction packets, build status
packets. (The host side uses the vendors' SDKs; these are written from the protocol documents.)

Feetech SCS/STS:  FF FF | ID | LEN | INST | params | CHK      CHK = ~(ID+LEN+INST+sum(params)) & 0xFF
Dynamixel P2.0:   FF FF FD 00 | ID | LEN_L LEN_H | INST | params | CRC_L CRC_H   (CRC-16/BUYPASS,
                  byte stuffing FF FF FD -> FF FF FD FD after the header)
"""

from __future__ import annotations

from dataclasses import dataclass

PING, READ, WRITE, REG_WRITE, ACTION, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x04, 0x05, 0x82, 0x83
FACTORY_RESET, REBOOT, CLEAR, BULK_READ, BULK_WRITE, FAST_SYNC_READ = 0x06, 0x08, 0x10, 0x92, 0x93, 0x8A
BROADCAST = 0xFE
# the longest instruction packet a servo buffers (bytes after the length field); a header that
# announces more is garbage: it is skipped at once instead of waiting for bytes that never come
FEETECH_MAX_LEN = 250
DXL_MAX_LEN = 1024


@dataclass
class Instruction:
    servo_id: int
    inst: int
    params: bytes
    raw_len: int  # bytes on the wire


# ---- Feetech -----------------------------------------------------------------------------------
def feetech_checksum(body: bytes) -> int:
    return (~sum(body)) & 0xFF


def feetech_parse(buf: bytearray) -> tuple[Instruction | None, int, bool]:
    """Try to take one packet from the front of ``buf``.

    Returns (instruction or None, bytes consumed, checksum_ok). (None, 0, True) = need more bytes.
    """
    i = buf.find(b"\xff\xff")
    if i < 0:
        keep = 1 if buf[-1:] == b"\xff" else 0
        return None, len(buf) - keep, True
    while i + 2 < len(buf) and buf[i + 2] == 0xFF:  # FF FF FF ...: the header starts later (id 0xFF is invalid)
        i += 1
    if len(buf) < i + 4:
        return None, i, True
    length = buf[i + 3]
    total = i + 4 + length
    if length < 2 or length > FEETECH_MAX_LEN:
        return None, i + 2, True
    if len(buf) < total:
        return None, i, True
    body = bytes(buf[i + 2 : total - 1])
    ok = feetech_checksum(body) == buf[total - 1]
    return Instruction(body[0], body[2], body[3:], total - i), total, ok


def feetech_status(servo_id: int, error: int, params: bytes = b"", corrupt: bool = False) -> bytes:
    body = bytes([servo_id, len(params) + 2, error]) + params
    chk = feetech_checksum(body) ^ (0xFF if corrupt else 0)
    return b"\xff\xff" + body + bytes([chk])


# ---- Dynamixel Protocol 2.0 ---------------------------------------------------------------------
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC = _crc_table()


def dxl_crc(data: bytes) -> int:
    """CRC-16/BUYPASS (poly 0x8005, init 0, no reflection, no final xor)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) ^ _CRC[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def dxl_stuff(payload: bytes) -> bytes:
    out = bytearray()
    for b in payload:
        out.append(b)
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def dxl_unstuff(payload: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(payload):
        out.append(payload[i])
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd" and i + 1 < len(payload) and payload[i + 1] == 0xFD:
            i += 1  # drop the stuffed byte
        i += 1
    return bytes(out)


def dxl_parse(buf: bytearray) -> tuple[Instruction | None, int, bool]:
    i = buf.find(b"\xff\xff\xfd\x00")
    if i < 0:
        return None, max(0, len(buf) - 3), True
    if len(buf) < i + 7:
        return None, i, True
    length = buf[i + 5] | (buf[i + 6] << 8)
    total = i + 7 + length
    if length < 3 or length > DXL_MAX_LEN:
        return None, i + 4, True
    if len(buf) < total:
        return None, i, True
    pkt = bytes(buf[i:total])
    crc_ok = dxl_crc(pkt[:-2]) == (pkt[-2] | (pkt[-1] << 8))
    inst = pkt[7]
    params = dxl_unstuff(pkt[8:-2])
    return Instruction(pkt[4], inst, params, total - i), total, crc_ok


def dxl_status(servo_id: int, error: int, params: bytes = b"", corrupt: bool = False) -> bytes:
    payload = dxl_stuff(bytes([0x55, error]) + params)
    n = len(payload) + 2
    head = bytes([0xFF, 0xFF, 0xFD, 0x00, servo_id, n & 0xFF, n >> 8])
    crc = dxl_crc(head + payload) ^ (0xFFFF if corrupt else 0)
    return head + payload + bytes([crc & 0xFF, crc >> 8])
