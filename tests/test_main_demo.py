"""The README's main command (today a tour of the simulation layer) runs and writes its summary."""

import json
import subprocess
import sys


def test_demo_runs_and_writes_summary(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "simgate.cli", "demo", "--episodes", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "demo" / "summary.json").read_text())
    assert set(summary["scripted"]) == {"simgate/PandaReach-v0", "simgate/PandaPush-v0", "simgate/PandaPickAndPlace-v0"}
    assert all(v == 1.0 for v in summary["scripted"].values())
    assert (tmp_path / "out" / "demo" / "pick_and_place.mp4").stat().st_size > 1000
