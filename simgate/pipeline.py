"""The main job, end to end (``./run.sh main`` = ``simgate pipeline``), on embedded defaults:

  1. research  - the built-in ``reach-robust`` program of the AutoResearch loop (metric: success
                 under its randomized conditions; the search includes the training
                 randomization), local workers, SQLite storage, every trial judged on secret fresh
                 seeds under those conditions and recorded in the ledger;
  2. promote   - the incumbent goes to the registry only with >= 95 % holdout success; the
                 baseline trial is measured on the same secret holdout seeds and conditions
                 (paired sign test);
  3. hardware  - an emulated Feetech servo bus whose servos are a Panda in PyBullet with the
                 randomization preset's dynamics and a modelled 1 Mbaud wire, behind the *serial*
                 backend (the real SDK driver path) and the gateway (REST / WebSocket / MCP);
  4. agent     - the official MCP client drives the promoted policy through the gateway to
                 several goals, each reached or reported as not reached;
  5. summary   - trials, kept, rejected, baseline vs promoted under the program's conditions with
                 the p-values, holdout success, success on the emulated hardware, the
                 sim-to-"real" gap line (also appended to the report), report and video paths.

Ctrl-C at any stage stops every child process; running the same command again resumes (the
study continues where it stopped, a finished promotion is reused). ``SIMGATE_SMOKE=1`` shrinks
every budget (CI runs it that way); the figures it prints are then not meaningful.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from simgate.autoresearch.program import smoke_mode
from simgate.errors import SimgateError

console = Console()
ENV_ID = "simgate/PandaReach-v0"
GOAL_SEEDS = 7_000_000  # goals for the (emulated) hardware: disjoint from selection, fresh and holdout seeds

PROGRAM = "reach-robust"  # the built-in program the research stage runs (sized for this job)
MAIN_OVERRIDES: dict[str, Any] = {"name": "main-panda-reach-robust"}


def write_program(out_dir: Path) -> Path:
    """The job's program: the built-in ``reach-robust`` program under this job's study name."""
    from simgate.autoresearch.program import load_program, merge, resolve_program_path, split_front_matter

    front, prose = split_front_matter(resolve_program_path(PROGRAM))
    path = out_dir / "program.md"
    text = f"---\n{yaml.safe_dump(merge(front, MAIN_OVERRIDES), sort_keys=False)}---\n{prose}"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    load_program(path)  # validate
    return path


# ---- stages 1 + 2 ------------------------------------------------------------------------------
def research_and_promote(program: Path, out_dir: Path, workers: int) -> dict[str, Any]:
    from simgate.autoresearch.coordinator import Coordinator
    from simgate.policies.registry import Registry

    if not (out_dir / "research").exists():  # a fresh start where an earlier main job's study was removed
        from simgate.autoresearch.ledger import retire_anchor

        retired = retire_anchor(out_dir / "research" / "ledger.jsonl")
        if retired:
            console.print(f"starting a new study; the removed study's trusted anchor is kept as {retired}")
    coord = Coordinator(program, out_dir / "research", None, out_dir / "registry")
    reg = Registry(out_dir / "registry")
    done = [r for r in coord.ledger.records() if r.get("kind") == "promotion" and r.get("status") == "promoted"
            and r.get("candidate") == coord.state["incumbent"] and (reg.root / r["registry_id"]).is_dir()]
    if done:  # promotion is the research's last step: the study ended
        console.print(f"research already finished and promoted ({done[-1]['registry_id'][:12]}): reusing it")
        from simgate.autoresearch.promote import promoted_summary
        from simgate.autoresearch.report import write_report

        promoted = promoted_summary(done[-1], done[-1]["registry_id"])
        res = {**coord.summary(), "promoted": promoted, "report": str(write_report(coord.dir, coord.spec, video=True))}
    else:
        res = coord.run(workers, auto_promote=True)
    if res.get("promoted"):
        res["promoted"]["gate"] = gate_verdict(coord, res["promoted"]["trial"])
        res["promoted"]["challenger"] = best_challenger(coord)
    return res


def best_challenger(coord) -> dict[str, Any] | None:
    """The compared trial the gate found most convincing (smallest p-value against its incumbent):
    when nothing was kept after the baseline, how close the search came."""
    recs = [r for r in coord.ledger.records() if r.get("kind") == "trial" and r["verified"].get("p_value") is not None]
    if not recs:
        return None
    r = min(recs, key=lambda r: (r["verified"]["p_value"], -r["trial"]))
    v = r["verified"]
    return {"trial": r["trial"], "status": r["status"], "incumbent": v.get("incumbent"), "delta": v.get("delta"),
            "p_value": v["p_value"], "episodes": v.get("fresh_episodes")}


def gate_verdict(coord, trial: int) -> dict[str, Any]:
    """The gate's verdict that kept ``trial`` (from the verified ledger): against which incumbent,
    under which conditions, with which p-value (None for the first kept trial: nothing to beat)."""
    rec = next(r for r in reversed(coord.ledger.records()) if r.get("kind") == "trial" and r["trial"] == trial
               and r["status"] == "keep")
    v = rec["verified"]
    return {"incumbent": v.get("incumbent"), "p_value": v.get("p_value"), "delta": v.get("delta"),
            "fresh": v.get("fresh"), "incumbent_fresh": v.get("incumbent_fresh"),
            "episodes": v.get("fresh_episodes"), "conditions": v.get("conditions"), "reason": rec["reason"]}


# ---- stages 3 + 4 ------------------------------------------------------------------------------
@contextlib.contextmanager
def child(args: list[str], log: Path):
    """A child process (stdout = first line handed back, rest to ``log``); always stopped on exit."""
    with open(log, "a") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "simgate.cli", *args], stdout=subprocess.PIPE, stderr=logf,
                                text=True, env=dict(os.environ))
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def goals(n: int, env_id: str = ENV_ID) -> list[dict[str, list[float]]]:
    """``n`` reach goals with their start poses (m, world frame), from fresh env seeds."""
    from simgate.sim import make

    env = make(env_id)
    out = []
    for k in range(n):
        obs, _ = env.reset(seed=GOAL_SEEDS + k)
        out.append({"start_m": obs["achieved_goal"].tolist(), "goal_m": obs["desired_goal"].tolist()})
    env.close()
    return out


async def _agent(url: str, token: str, policy: str, targets: list[dict], on_goal, max_steps: int = 50) -> list[dict]:
    """The agent: the official MCP client over streamable HTTP, as any MCP host would connect."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def call(s, name, args=None):
        res = await s.call_tool(name, args or {})
        if res.is_error and "refused:" in res.content[0].text:  # the safety layer said no: a result, not a crash
            return {"ok": False, "refused": res.content[0].text}
        if res.is_error:
            raise SimgateError(f"MCP tool {name} failed: {res.content[0].text}")
        items = [json.loads(c.text) for c in res.content]
        return items[0] if len(items) == 1 and not name.startswith("list_") else items

    async def act(s, name, args):  # a refused motion is that goal's outcome, not the end of the job
        try:
            return await call(s, name, args)
        except SimgateError as exc:
            return {"ok": False, "refused": str(exc)}

    async def finish(s, run):
        if not run.get("ok", True):
            return {"status": "refused", "result": {"error": run["refused"]}}
        while True:
            view = await call(s, "get_run", {"run_id": run["id"]})
            if view["status"] != "running":
                return view
            await asyncio.sleep(0.1)

    results = []
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as hc, \
            streamable_http_client(url + "/mcp/", http_client=hc) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        listed = {p["id"] for p in await call(s, "list_policies")}
        if policy not in listed:
            raise SimgateError(f"the gateway does not list the promoted policy {policy[:12]}")
        for g in targets:
            home = await finish(s, await act(s, "move_to_pose", {"position_m": g["start_m"], "duration_s": 1.0}))
            run = await finish(s, await act(s, "run_policy", {"policy": policy, "goal_m": g["goal_m"], "max_steps": max_steps}))
            res = {"goal_m": g["goal_m"], "status": run["status"], "home": home["status"],
                   "reached": bool(run.get("result", {}).get("reached")),
                   "distance_m": run.get("result", {}).get("distance_m"), "error": run.get("result", {}).get("error")}
            results.append(res)
            on_goal(res)
    return results


def drive_on_emulated_hardware(out_dir: Path, policy_id: str, n_goals: int) -> dict[str, Any]:
    import httpx

    from simgate.gateway.access import TokenStore

    hw = out_dir / "hardware"
    hw.mkdir(parents=True, exist_ok=True)
    cal = hw / "calibration.yaml"
    with child(["emulate", "--protocol", "feetech", "--robot", "panda", "--randomize", "--seed", "7",
                "--calibration-out", str(cal)], hw / "emulator.log") as bus:
        port = bus.stdout.readline().strip()
        if not port:
            raise SimgateError(f"the emulated bus did not start (see {hw / 'emulator.log'})")
        from simgate.sim.robot_spec import load_robot_spec

        names = load_robot_spec("panda").joint_names
        http_port = _free_port()
        settings = {"host": "127.0.0.1", "port": http_port, "tokens_file": str(hw / "tokens.json"),
                    "audit_file": str(hw / "audit.jsonl"), "registry_dir": str(out_dir / "registry"),
                    "backend": {"type": "serial", "port": port, "protocol": "feetech", "robot": "panda",
                                "ids": {n: i + 1 for i, n in enumerate(names)}, "calibration": str(cal)}}
        (hw / "gateway.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        (hw / "tokens.json").unlink(missing_ok=True)
        token = TokenStore(hw / "tokens.json").create("main-agent", "act")
        with child(["serve", "--config", str(hw / "gateway.yaml")], hw / "gateway.log") as gw:
            url = f"http://127.0.0.1:{http_port}"
            t0 = time.monotonic()
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/v1/ready", timeout=2).status_code == 200:
                        break
                if gw.poll() is not None or time.monotonic() - t0 > 60:
                    raise SimgateError(f"the gateway did not become ready (see {hw / 'gateway.log'})")
                time.sleep(0.2)
            console.print(f"gateway {url} on the serial backend, emulated Feetech bus at {port} "
                          "(randomized Panda dynamics, 1 Mbaud wire)")
            targets = goals(n_goals)
            with Progress(console=console) as prog:
                task = prog.add_task("MCP agent: promoted policy -> goals", total=len(targets))
                reached = [0]

                def on_goal(res):
                    reached[0] += res["reached"]
                    d = res["distance_m"]
                    prog.console.print(f"  goal {[round(x, 3) for x in res['goal_m']]}: "
                                       f"{'reached' if res['reached'] else 'NOT reached'}"
                                       + (f" ({d * 100:.1f} cm)" if d is not None else f" ({res['error']})"))
                    prog.advance(task)

                results = asyncio.run(_agent(url, token, policy_id, targets, on_goal))
    ok = sum(r["reached"] for r in results)
    out = {"goals": len(results), "reached": ok, "success": ok / len(results) if results else 0.0, "results": results,
           "audit": str(hw / "audit.jsonl")}
    (hw / "results.json").write_text(json.dumps(out, indent=2))
    return out


# ---- the whole job -----------------------------------------------------------------------------
def gap_line(holdout: float, n_hold: int, hw: float, n_hw: int) -> str:
    return (f"sim-to-real gap: {holdout:.0%} in training simulation (holdout, {n_hold} goals) vs {hw:.0%} on the "
            f"emulated servo bus (randomized dynamics, modelled wire, {n_hw} goals): "
            f"{(holdout - hw) * 100:+.0f} points")


def run_pipeline(out_dir: Path = Path("runs/main"), workers: int | None = None, n_goals: int | None = None) -> dict:
    t0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = workers or max(1, os.cpu_count() or 1)
    n_goals = n_goals or (3 if smoke_mode() else 20)
    program = write_program(out_dir)
    console.rule(f"[bold]1-2 research + promotion[/bold]: {program} ({workers} workers)")
    res = research_and_promote(program, out_dir, workers)
    promoted = res.get("promoted")
    summary: dict[str, Any] = {
        "trials": res["trials"], "kept": res["keep"], "rejected": res["rejected"], "discarded": res["discard"],
        "pruned": res["pruned"], "crashed": res["crash"], "cut_at_deadline": res.get("cut", 0), "ledger_records_verified": res["ledger_records"],
        "report": res["report"], "video": str(Path(res["report"]).parent / "report" / "promoted.mp4"),
        "promoted": promoted}
    if promoted is not None:
        summary.update(robust_comparison(promoted, program))
    if promoted is None:
        summary["error"] = "no policy was promoted (see the report's promotion section)"
        _finish(out_dir, summary, t0)
        return summary
    console.rule("[bold]3-4 gateway on the emulated serial bus, MCP agent[/bold]")
    hw = drive_on_emulated_hardware(out_dir, promoted["registry_id"], n_goals)
    from simgate.autoresearch.program import load_program

    n_hold = load_program(program).spec.promotion.holdout_episodes
    summary.update(hardware_success=hw["success"], hardware_goals=hw["goals"], hardware_reached=hw["reached"],
                   gap=gap_line(promoted["holdout_success"], n_hold, hw["success"], hw["goals"]),
                   audit=hw["audit"])
    with open(summary["report"], "a") as f:
        f.write(f"\n## Sim-to-real gap\n\n{summary['gap']}.\nGoals through the gateway (MCP agent, serial backend, "
                f"emulated Feetech bus): {hw['reached']}/{hw['goals']} reached.\n")
    _finish(out_dir, summary, t0)
    return summary


def robust_comparison(promoted: dict, program: Path) -> dict[str, Any]:
    """Baseline vs promoted under the program's conditions on the promotion's secret holdout seeds
    (paired sign test), and the gate's p-value of the verdict that kept the promoted trial."""
    from simgate.autoresearch.program import load_program

    metric = load_program(program).spec.metric
    base, m, g = promoted.get("baseline") or {}, promoted.get("metric") or {}, promoted.get("gate") or {}
    return {"metric": metric.name, "conditions": metric.conditions(), "conditions_label": metric.label(),
            "baseline_trial": base.get("trial"), "baseline_under_conditions": base.get("value"),
            "promoted_under_conditions": m.get("value"), "comparison_episodes": base.get("episodes"),
            "comparison_p_value": base.get("p_value"), "gate_p_value": g.get("p_value"),
            "gate_incumbent": g.get("incumbent"), "gate_best_challenger": promoted.get("challenger")}


def _fmt(v: Any, pct: bool = True) -> str:
    return "-" if v is None else (f"{v:.0%}" if pct else f"{v:.2g}")


def _finish(out_dir: Path, summary: dict, t0: float) -> None:
    summary["wall_s"] = round(time.monotonic() - t0, 1)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    tab = Table(title="simgate main job", show_header=False)
    p = summary.get("promoted") or {}
    rows = [("trials run", str(summary["trials"])),
            ("kept / rejected / discarded / pruned", f"{summary['kept']} / {summary['rejected']} / "
                                                      f"{summary['discarded']} / {summary['pruned']}"),
            ("crashed / cut at the deadline", f"{summary['crashed']} / {summary['cut_at_deadline']}"),
            ("promoted policy", f"{p['registry_id'][:12]} (trial {p['trial']})" if p else summary.get("error", "-"))]
    if p:
        pct = summary["metric"] == "success_rate"
        gate_p = (f"p={_fmt(summary['gate_p_value'], False)} vs trial {summary['gate_incumbent']}"
                  if summary["gate_incumbent"] is not None else "kept first: nothing to beat")
        rows += [(f"{summary['metric']} under {summary['conditions_label']}",
                  f"baseline (trial {summary['baseline_trial']}) {_fmt(summary['baseline_under_conditions'], pct)} -> "
                  f"promoted {_fmt(summary['promoted_under_conditions'], pct)} on {summary['comparison_episodes']} "
                  f"secret fresh seeds (paired sign test p={_fmt(summary['comparison_p_value'], False)})"),
                 ("gate verdict of the promoted trial", gate_p)]
        c = summary.get("gate_best_challenger")
        if c:
            rows.append(("gate's most convincing comparison",
                         f"trial {c['trial']} {c['status']}: {c['delta']:+.3f} vs trial {c['incumbent']} on "
                         f"{c['episodes']} paired secret seeds, p={_fmt(c['p_value'], False)}"))
    rows += [("holdout success (nominal simulation)", f"{p['holdout_success']:.0%}" if p else "-"),
             ("robust success (randomization preset)", f"{p['robust_success']:.0%}" if p else "-")]
    if "hardware_success" in summary:
        rows += [("success on the emulated hardware",
                  f"{summary['hardware_success']:.0%} ({summary['hardware_reached']}/{summary['hardware_goals']} goals)"),
                 ("gap", summary["gap"])]
    rows += [("ledger", f"{summary['ledger_records_verified']} records, hash chain verified"),
             ("report", summary["report"]), ("video", summary["video"]), ("wall time", f"{summary['wall_s']:.0f} s")]
    for k, v in rows:
        tab.add_row(k, v)
    console.print(tab)
