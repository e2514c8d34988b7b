"""Benchmarks are not timed tests; CI only checks that they run and write their JSON."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, *args, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_sim_throughput_smoke(tmp_path):
    res = _run(["bench/sim_throughput.py", "--seconds", "3", "--rounds", "1"], tmp_path)
    for task in ("Reach", "Push", "PickAndPlace"):
        r = res["tasks"][task]
        assert r["simgate_sps"] > 0 and r["panda_gym_sps"] > 0 and r["ratio"] > 0 and r["simgate_2w_over_1w"] > 0


def test_serial_loop_smoke(tmp_path):
    res = _run(["bench/serial_loop.py", "--seconds", "0.5"], tmp_path)
    for proto in ("feetech", "dynamixel"):
        assert res[proto]["cycles_per_s"] > 10 and res[proto]["wire_only_cycles_per_s"] > res[proto]["cycles_per_s"]
