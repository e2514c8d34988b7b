"""Full control cycles per second over a servo bus: group sync read (position, velocity, load)
+ group sync write (goal position) of 6 servos at 1 Mbaud, through simgate's serial backend and
the vendors' SDKs, against the emulated bus (which models wire time at 10 bits per byte), next
to the rate the wire time alone allows. Same run, both protocols.

    python bench/serial_loop.py --seconds 5 --json out/serial_loop.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from simgate.hardware.emulator import protocols as P
from simgate.hardware.emulator.bus import EmulatedServoBus
from simgate.hardware.serial.backend import SerialBackend, SerialConfig
from simgate.hardware.serial.calibration import nominal_calibration
from simgate.hardware.serial.sdk_bus import DYNAMIXEL, FEETECH
from simgate.hardware.types import JointCommand


def wire_bytes_per_cycle(protocol: str, n: int) -> int:
    """Bytes on the wire for one sync read (request + n replies) and one sync write."""
    regs = FEETECH if protocol == "feetech" else DYNAMIXEL
    if protocol == "feetech":
        req = 2 + 3 + 2 + n + 1  # FF FF ID LEN INST | addr len ids | CHK
        reply = len(P.feetech_status(1, 0, bytes(regs.present_len)))
        write = 2 + 3 + 2 + n * (1 + regs.goal_len) + 1
    else:
        req = 4 + 1 + 2 + 1 + 4 + n + 2  # header ID LEN INST | addr16 len16 ids | CRC
        reply = len(P.dxl_status(1, 0, bytes(regs.present_len)))
        write = 4 + 1 + 2 + 1 + 4 + n * (1 + regs.goal_len) + 2
    return req + n * reply + write


def run(protocol: str, seconds: float, baud: int = 1_000_000) -> dict:
    ids = {"shoulder_pan": 1, "shoulder_lift": 2, "elbow_flex": 3, "wrist_flex": 4, "wrist_roll": 5, "gripper": 6}
    with EmulatedServoBus(protocol, "so101", ids=ids, baud=baud) as bus, tempfile.TemporaryDirectory() as d:
        cal = Path(d) / "cal.yaml"
        nominal_calibration(bus.spec, ids).save(cal)
        cfg = SerialConfig(port=bus.port, protocol=protocol, baud=baud, ids=ids, calibration=str(cal))
        with SerialBackend(cfg) as be:
            q = be.read().positions
            cmd = JointCommand(positions=q)
            n, fails, t0 = 0, 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                st = be.read()
                fails += not st.fresh
                be.write(cmd)
                n += 1
            rate = n / (time.perf_counter() - t0)
    nbytes = wire_bytes_per_cycle(protocol, len(ids))
    wire_rate = baud / 10 / nbytes
    return {"cycles_per_s": round(rate, 1), "wire_only_cycles_per_s": round(wire_rate, 1),
            "ratio_to_wire": round(rate / wire_rate, 3), "bytes_per_cycle": nbytes, "failed_reads": fails}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = {p: run(p, args.seconds) for p in ("feetech", "dynamixel")}
    print(f"{'protocol':<11}{'cycles/s':>10}{'wire-only':>11}{'ratio':>8}{'bytes':>7}")
    for p, r in res.items():
        print(f"{p:<11}{r['cycles_per_s']:>10.0f}{r['wire_only_cycles_per_s']:>11.0f}{r['ratio_to_wire']:>8.2f}{r['bytes_per_cycle']:>7}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
