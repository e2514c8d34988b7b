"""ROS 2 driver node: /joint_states latency (receive time - header stamp) p50/p99 and achieved
rate over real DDS on loopback, for simgate's driver on the sim backend and on the emulated
Feetech bus, next to a bare rclpy JointState publisher at the same rate in the same run (the
floor: what rclpy + Fast DDS cost with no backend behind them; ratio = driver / bare).

The driver stamps with the measurement time, so its latency includes the reading's age.

    python bench/ros2_joint_states.py --seconds 5 --rates 25 100 --json out/ros2_joint_states.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def _process(args):
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ))
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{args} did not start")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _receive(seconds: float) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("simgate_bench_probe", context=ctx)
    rx: list[tuple[float, float]] = []

    def on(msg):
        now = node.get_clock().now().nanoseconds * 1e-9
        rx.append((now, msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    node.create_subscription(JointState, "/joint_states", on, 100)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    # discovery first (up to 15 s: DDS on a loaded machine can take seconds), then the window
    t_found = time.monotonic() + 15.0
    while not rx and time.monotonic() < t_found:
        ex.spin_once(timeout_sec=0.05)
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        ex.spin_once(timeout_sec=0.05)
    node.destroy_node()
    ctx.try_shutdown()
    rx = rx[len(rx) // 6:]  # drop the start-up part
    if len(rx) < 3:
        return {"n": len(rx)}
    t = np.array([r[0] for r in rx])
    lat_ms = (t - np.array([r[1] for r in rx])) * 1000
    return {"n": len(rx), "rate_hz": round(float((len(t) - 1) / (t[-1] - t[0])), 2),
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 3), "p99_ms": round(float(np.percentile(lat_ms, 99)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[25.0, 100.0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    params = Path(__file__).resolve().parents[1] / "launch" / "params"
    driver = ["-m", "simgate.hardware.ros2_driver", "--ros-args"]
    res: dict = {"rates": {}}
    for rate in args.rates:
        row: dict = {}
        with _process([*driver, "--params-file", str(params / "sim_driver.yaml"), "-p", f"rate_hz:={rate}"]):
            row["driver_sim"] = _receive(args.seconds)
        from simgate.hardware.emulator.bus import EmulatedServoBus
        from simgate.hardware.serial.calibration import nominal_calibration

        with EmulatedServoBus("feetech", "so101") as bus, tempfile.TemporaryDirectory() as d:
            cal = Path(d) / "cal.yaml"
            nominal_calibration(bus.spec, bus.ids).save(cal)
            ids = [bus.ids[n] for n in bus.spec.joint_names]
            with _process([*driver, "--params-file", str(params / "serial_driver.yaml"), "-p", f"rate_hz:={rate}",
                           "-p", f"port:={bus.port}", "-p", f"calibration_file:={cal}", "-p", f"servo_ids:={ids}",
                           "-p", "latency_timer_ms:=4.0"]):
                row["driver_serial_emulated"] = _receive(args.seconds)
        with _process(["-m", "simgate.hardware.ros2_fake_controller", "--rate-hz", str(rate)]):
            row["bare_rclpy"] = _receive(args.seconds)
        base = row["bare_rclpy"].get("p50_ms")
        for k in ("driver_sim", "driver_serial_emulated"):
            if base and row[k].get("p50_ms") is not None:
                row[k]["p50_ratio_vs_bare"] = round(row[k]["p50_ms"] / base, 2)
        res["rates"][str(rate)] = row
        print(f"{rate:g} Hz target")
        for k, v in row.items():
            ratio = f"x{v['p50_ratio_vs_bare']:.2f} vs bare" if "p50_ratio_vs_bare" in v else ""
            print(f"  {k:24s} rate {v.get('rate_hz', 0):7.2f} Hz   p50 {v.get('p50_ms', float('nan')):6.3f} ms   "
                  f"p99 {v.get('p99_ms', float('nan')):6.3f} ms   {ratio}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
