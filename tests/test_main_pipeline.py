"""The README's main command end to end with shrunk budgets (SIMGATE_SMOKE=1): research ->
promotion -> gateway on the serial backend against the emulated bus -> MCP agent -> summary; and
Ctrl-C at the research and at the gateway stage leaves no process, no half-written registry entry
and a ledger that verifies, and the next run resumes."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from simgate.autoresearch.coordinator import baseline_params
from simgate.autoresearch.ledger import Ledger
from simgate.autoresearch.program import load_program
from simgate.policies.registry import Registry

ENV = {**os.environ, "SIMGATE_SMOKE": "1", "COLUMNS": "160"}


def _session_processes(sid: int) -> list[str]:
    """Processes still alive in the session the pipeline started (zombies excluded)."""
    out = subprocess.run(["ps", "-eo", "pid,sid,stat,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [ln for ln in out if ln.split()[1] == str(sid) and not ln.split()[2].startswith("Z")]


ROOT = Path(__file__).resolve().parents[1]


def _start(out: Path, via_run_sh: bool = False):
    cmd = ([str(ROOT / "run.sh"), "main"] if via_run_sh else [sys.executable, "-m", "simgate.cli", "pipeline"])
    proc = subprocess.Popen([*cmd, "--out", str(out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc, lines


def _interrupt_when(out: Path, marker: str, delay_s: float) -> list[str]:
    proc, lines = _start(out)
    t0 = time.monotonic()
    while not any(marker in ln for ln in lines):
        assert proc.poll() is None, "".join(lines)[-3000:]
        assert time.monotonic() - t0 < 240, f"never reached {marker!r}: {''.join(lines)[-3000:]}"
        time.sleep(0.1)
    time.sleep(delay_s)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    rc = proc.wait(timeout=60)
    assert rc == 130, f"rc {rc}: {''.join(lines)[-3000:]}"
    t1 = time.monotonic()
    while _session_processes(proc.pid) and time.monotonic() - t1 < 10:
        time.sleep(0.2)
    assert not _session_processes(proc.pid), f"orphaned: {_session_processes(proc.pid)}"
    return lines


def _check_consistent(out: Path) -> None:
    ledger = out / "research" / "ledger.jsonl"
    if ledger.exists():
        Ledger(ledger).verify()
    reg = out / "registry"
    if reg.exists():
        assert not [p for p in reg.iterdir() if p.name.startswith(".")], "half-written registry entry left behind"
        r = Registry(reg)
        for e in r.entries():
            r.load(e["id"])  # verifies the content hash


def test_main_command_end_to_end_with_interruptions_and_resume(tmp_path):
    out = tmp_path / "main"
    # Ctrl-C during the research, then during the gateway stage
    _interrupt_when(out, "1-2 research", delay_s=8.0)
    _check_consistent(out)
    lines = _interrupt_when(out, "on the serial backend, emulated", delay_s=1.5)  # the agent is at work
    assert any("reusing" in ln for ln in lines) or any("promoted" in ln for ln in lines), "".join(lines)[-2000:]
    _check_consistent(out)
    records_before = len(Ledger(out / "research" / "ledger.jsonl").records())
    # the README's main command again: resumes and finishes
    proc, lines = _start(out, via_run_sh=True)
    assert proc.wait(timeout=600) == 0, "".join(lines)[-3000:]
    _check_consistent(out)
    text = "".join(lines)
    assert "reusing" in text  # the finished study and its promotion are reused, not redone
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] >= 1 and summary["kept"] >= 1
    assert summary["ledger_records_verified"] >= records_before
    assert Registry(out / "registry").load(summary["promoted"]["registry_id"])
    # the research stage ran the robust program: baseline vs promoted under its conditions, from the ledger
    metric = load_program(out / "program.md").spec.metric
    assert metric.under != "nominal"  # a robust program: its conditions are not the nominal simulation
    assert summary["conditions"] == metric.conditions() and summary["metric"] == "success_rate"
    promo = [r for r in Ledger(out / "research" / "ledger.jsonl").records()
             if r["kind"] == "promotion" and r["status"] == "promoted"][-1]
    assert promo["conditions"] == metric.conditions() and promo["registry_id"] == summary["promoted"]["registry_id"]
    assert summary["promoted_under_conditions"] == promo["metric"]["value"]
    if metric.under == "preset":  # promotion's robustness figure is the preset's
        assert promo["metric"]["value"] == promo["robustness"]["success_rate"]
    base_trial = [r for r in Ledger(out / "research" / "ledger.jsonl").records() if r["kind"] == "trial"
                  and r["trial"] == promo["baseline"]["trial"]][0]  # the base recipe (re-queued if interrupted)
    assert summary["baseline_trial"] == base_trial["trial"] and base_trial["reported"]["params"] == baseline_params(
        load_program(out / "program.md").spec)
    assert summary["baseline_under_conditions"] == promo["baseline"]["value"]
    assert 0.0 <= summary["comparison_p_value"] <= 1.0 and summary["comparison_episodes"] == promo["holdout"]["episodes"]
    kept = [r for r in Ledger(out / "research" / "ledger.jsonl").records()
            if r["kind"] == "trial" and r["trial"] == summary["promoted"]["trial"] and r["status"] == "keep"][-1]
    assert kept["verified"]["conditions"] == metric.conditions() and summary["gate_p_value"] == kept["verified"].get("p_value")
    flat = " ".join(text.replace("│", " ").split())  # the summary table wraps the label over its rows
    assert "success_rate under" in flat and "paired sign" in flat and "p=" in flat
    assert all(f"{k} " in flat for k in metric.conditions()) if isinstance(metric.conditions(), dict) else metric.label() in flat
    compared = [r for r in Ledger(out / "research" / "ledger.jsonl").records()
                if r["kind"] == "trial" and r["verified"].get("p_value") is not None]
    best = summary["gate_best_challenger"]
    assert (best is None) == (not compared)
    if compared:
        assert best["p_value"] == min(r["verified"]["p_value"] for r in compared) and "most convincing" in text
    assert summary["hardware_goals"] == 3 and 0 <= summary["hardware_reached"] <= 3
    assert summary["gap"].startswith("sim-to-real gap:") and "sim-to-real gap" in text
    report = Path(summary["report"]).read_text()
    assert "## Sim-to-real gap" in report and summary["gap"] in report
    assert Path(summary["video"]).stat().st_size > 1000
    # every goal went through the gateway: the audit log has the agent's policy runs (one line per request)
    audit = [json.loads(x) for x in Path(summary["audit"]).read_text().splitlines()]
    runs = [a for a in audit if a["action"] == "run_policy" and a["via"] == "mcp" and a["outcome"] == "sent"]
    assert len(runs) >= summary["hardware_goals"]
    gw = (out / "hardware" / "gateway.yaml").read_text()
    assert "type: serial" in gw and "ttyFEETECH0" in gw
