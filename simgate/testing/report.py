"""``simgate check``'s reports: JUnit XML (one test case per threshold, a failure names it) and
a Markdown summary (also appended to ``$GITHUB_STEP_SUMMARY`` when a GitHub job runs it)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Verdict:
    name: str  # the threshold's id: success_rate | safety_refusals | peak_joint_speed | estops
    rule: str  # what it asks, e.g. "success rate >= 90%"
    ok: bool
    measured: str


def write_junit(path: Path, verdicts: list[Verdict], wall_s: float) -> None:
    fails = sum(not v.ok for v in verdicts)
    suite = ET.Element("testsuite", name="simgate-check", tests=str(len(verdicts)), failures=str(fails),
                       errors="0", time=f"{wall_s:.1f}")
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", classname="simgate.check", name=v.name, time="0")
        if not v.ok:
            f = ET.SubElement(case, "failure", message=f"threshold {v.name} not met: {v.rule}, measured {v.measured}",
                              type="ThresholdNotMet")
            f.text = f"{v.rule}\nmeasured: {v.measured}\n"
        else:
            ET.SubElement(case, "system-out").text = f"{v.rule}: {v.measured}"
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def write_summary(path: Path, out: dict[str, Any], verdicts: list[Verdict]) -> None:
    cfg = out["config"]
    faults = {k: v for k, v in cfg["faults"].items() if v not in (0, 0.0, False, [], None)}
    lines = [f"# simgate check: {'PASSED' if out['passed'] else 'FAILED'}", "",
             f"Policy `{out['policy']}` (registry id `{out['registry_id'][:12]}`, {out['env_id']}, robot "
             f"{out['robot']}) on {out['goals']} goals: emulated {cfg['protocol']} bus "
             f"({'randomized' if cfg['randomize'] else 'nominal'} dynamics, faults: {faults or 'none'}"
             + (f", unplugged after goal {cfg['unplug_after_goal']} for {cfg['unplug_s']} s" if cfg["unplug_after_goal"]
                else "") + "), serial backend, gateway, MCP agent.", "",
             "| threshold | measured | |", "|---|---|---|"]
    lines += [f"| {v.rule} | {v.measured} | {'pass' if v.ok else '**FAIL**'} |" for v in verdicts]
    lines += ["", "| | success |", "|---|---|",
              f"| simulation, same goals | {_pct(out['sim_success'])} |",
              f"| registry holdout | {_pct(out['holdout_success'])} |",
              f"| emulated hardware | {_pct(out['success'])} |",
              "", f"Sim-vs-emulated gap: {out['gap_points']:+.0f} points "
              f"({_pct(out['sim_success'])} in simulation vs {_pct(out['success'])} on the emulated bus).", "",
              "| goal (m) | status | reached | distance (cm) |", "|---|---|---|---|"]
    for r in out["results"]:
        d = r.get("distance_m")
        lines.append(f"| {[round(x, 3) for x in r['goal_m']]} | {r['status']} | {'yes' if r['reached'] else 'no'} | "
                     f"{'-' if d is None else f'{d * 100:.1f}'} |")
    lines += ["", f"Wall time {out['wall_s']:.0f} s. Audit log: `{out['audit']}`."]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        with open(step, "a") as f:
            f.write(text)
