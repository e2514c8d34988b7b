"""The serial fault tests under CPU load: ``--hogs`` busy-loop processes (``while 1: pass``, one
per core by default) run beside ``pytest tests/test_hardware_serial.py``, ``--runs`` times in a
row; prints how many runs passed (and the failures' summaries).

    python bench/serial_under_load.py --runs 5 --json out/serial_under_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(runs: int, hogs: int, tests: str) -> dict:
    hog_procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(hogs)]
    results = []
    try:
        for i in range(runs):
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests],
                                  cwd=ROOT, capture_output=True, text=True)
            tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
            failed = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILED")]
            results.append({"run": i + 1, "passed": proc.returncode == 0, "seconds": round(time.monotonic() - t0, 1),
                            "summary": tail, "failed": failed})
            print(f"run {i + 1}: {'PASS' if proc.returncode == 0 else 'FAIL'} ({tail})", flush=True)
            for ln in failed:
                print(f"    {ln}", flush=True)
    finally:
        for p in hog_procs:
            p.kill()
            p.wait()
    return {"runs": runs, "hogs": hogs, "cores": os.cpu_count(), "passed": sum(r["passed"] for r in results),
            "results": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--tests", default="tests/test_hardware_serial.py")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = run(args.runs, args.hogs, args.tests)
    print(f"{res['passed']}/{res['runs']} runs passed with {res['hogs']} CPU hogs on {res['cores']} cores")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
