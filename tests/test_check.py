"""`simgate check`: passes for a promoted Reach policy, fails (exit 1, JUnit failure naming the
threshold) for the same policy deliberately degraded; reports and thresholds."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from simgate.testing.check import CheckConfig, Thresholds, verdicts
from simgate.testing.report import write_junit


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "simgate.cli", "check", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def promoted_reach(tmp_path_factory):
    """A Reach policy trained (4,000 SAC steps, ~35 s) and promoted the README's way."""
    d = tmp_path_factory.mktemp("check")
    run = subprocess.run([sys.executable, "-m", "simgate.cli", "train", "--env", "simgate/PandaReach-v0",
                          "--steps", "4000", "--out", str(d / "run")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    prom = subprocess.run([sys.executable, "-m", "simgate.cli", "policies", "promote", str(d / "run"), "--name", "reach",
                           "--holdout-episodes", "20", "--registry", str(d / "reg")], capture_output=True, text=True)
    assert prom.returncode == 0, prom.stderr[-2000:]
    return d


def _degrade(registry, out):
    """The promoted actor with its actions reversed: it drives the tool away from every goal."""
    import torch

    subprocess.run([sys.executable, "-m", "simgate.cli", "policies", "export", "reach", "--out", str(out),
                    "--registry", str(registry)], check=True, capture_output=True)

    class Reversed(torch.nn.Module):
        def __init__(self, actor):
            super().__init__()
            self.actor = actor

        def forward(self, x):
            return -self.actor(x)

    torch.jit.script(Reversed(torch.jit.load(str(out)))).save(str(out))
    return out


@pytest.mark.slow
def test_check_passes_for_promoted_reach_and_fails_degraded(promoted_reach, tmp_path):
    d = promoted_reach
    good = _cli("reach", "--registry", str(d / "reg"), "--goals", "4", "--out", str(tmp_path / "good"))
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    res = json.loads((tmp_path / "good" / "results.json").read_text())
    assert res["passed"] and res["success"] >= 0.9 and res["refusals"] == 0 and res["estops"] == 0
    assert 0 < res["peak_speed_frac"] <= 1.05
    summary = (tmp_path / "good" / "summary.md").read_text()
    for words in ("success rate", "safety refusals", "peak joint speed", "Sim-vs-emulated gap", "e-stops"):
        assert words in summary
    suite = ET.parse(tmp_path / "good" / "junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("tests") == "4"

    bad_ts = _degrade(d / "reg", tmp_path / "degraded.ts")
    bad = _cli(str(bad_ts), "--goals", "3", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1, bad.stdout[-3000:] + bad.stderr[-3000:]
    assert "success_rate" in bad.stderr
    suite = ET.parse(tmp_path / "bad" / "junit.xml").getroot().find("testsuite")
    failed = {c.get("name"): c.find("failure").get("message") for c in suite.iter("testcase")
              if c.find("failure") is not None}
    assert "success_rate" in failed and "threshold success_rate not met" in failed["success_rate"]
    res = json.loads((tmp_path / "bad" / "results.json").read_text())
    assert res["success"] < 0.9 and res["gap_points"] == pytest.approx((res["sim_success"] - res["success"]) * 100)


def test_verdicts_and_junit_name_the_threshold(tmp_path):
    cfg = CheckConfig(policy="x", thresholds=Thresholds(min_success=0.8, max_refusals=1, max_peak_speed_frac=1.0))
    hw = {"success": 0.5, "reached": 1, "goals": 2, "refusals": 2, "refusal_reasons": ["joint limit"], "estops": 0,
          "peak_speed_frac": 1.2, "peak_joint": "j1", "peak_speed_rad_s": 2.4}
    vs = verdicts(cfg, hw)
    assert [v.name for v in vs if not v.ok] == ["success_rate", "safety_refusals", "peak_joint_speed"]
    write_junit(tmp_path / "j.xml", vs, 1.0)
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    msgs = [c.find("failure").get("message") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert suite.get("failures") == "3" and any("peak_joint_speed" in m and "1.20 x limit" in m for m in msgs)
    with pytest.raises(ValueError):
        CheckConfig(policy="x", goals=0)
