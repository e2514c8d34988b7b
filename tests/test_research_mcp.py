"""Agents as proposers: `simgate research serve` as a real process on a loopback port, the official
MCP client playing the agent - reads the program (no seeds), submits candidates (one outside the
boundaries, refused with the reason), waits for the trusted gate's verdicts, narrows the search
space (accepted, pinned in the ledger) and tries to widen it past a protected boundary (refused).
Plus the revision rules and the workers' use of a revision, without a server."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import optuna
import pytest
from gateway_rig import free_port, mcp_session

from simgate.autoresearch.ledger import Ledger
from simgate.autoresearch.program import load_program
from simgate.autoresearch.revisions import (
    STUDY_ATTR,
    RevisionRefused,
    current_space,
    proposal_spec,
    propose,
    study_attr,
)
from simgate.gateway.access import TokenStore

PROGRAM = """---
name: {name}
task: {{env_id: simgate/PandaReach-v0}}
budgets: {{trial_env_steps: 700, trial_wall_s: 60, total_wall_s: 600, max_trials: 2}}
base_recipe: {{algo: sac, normalize_obs: true, learning_starts: 200, batch_size: 64}}
search_space:
  learning_rate: {{type: float, low: 0.0003, high: 0.003, log: true}}
  train_freq: {{type: int, low: 1, high: 4}}
  gradient_steps: {{type: categorical, choices: [1, 2, 4]}}
acceptance: {{selection_episodes: 10, fresh_episodes: 10, max_fresh_episodes: 40}}
promotion: {{holdout_episodes: 10, min_holdout_success: 0.0, auto_promote: false, max_attempts: 2, audit: false}}
proposer: {{sampler: random, prune: false}}
---
Reach the goal with a SAC arm policy trained for a few hundred steps (a test study: seconds a trial).
"""


@pytest.fixture(autouse=True)
def _keys(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMGATE_KEY_DIR", str(tmp_path / "keys"))


def _program(tmp_path, name="agentic"):
    p = tmp_path / f"{name}.md"
    p.write_text(PROGRAM.format(name=name))
    return p


# ---- the revision rules (no server) ---------------------------------------------------------------
def test_revisions_narrow_within_the_boundaries_and_refuse_the_rest(tmp_path):
    prog = load_program(_program(tmp_path))
    rec = propose(prog, [], {"learning_rate": {"low": 0.0005, "high": 0.002}, "gradient_steps": {"choices": [1, 2]}},
                  "lower rates were steadier", "mcp:t")
    assert rec.version == 1 and rec.parent_version == 0 and rec.base_program_sha256 == prog.sha256
    assert rec.changes == ["learning_rate: [0.0003, 0.003] -> [0.0005, 0.002]",
                           "gradient_steps: choices [1, 2, 4] -> [1, 2]"]
    assert "low: 0.0005" in rec.program_text and "name: agentic" in rec.program_text  # a program.md, revised
    recs = [rec.model_dump(mode="json") | {"seq": 1}]
    version, space = current_space(recs, prog.spec)
    assert version == 1 and space["learning_rate"].high == 0.002 and space["train_freq"].high == 4
    # re-widening up to the original boundary is a revision too
    assert propose(prog, recs, {"learning_rate": {"high": 0.003}}, "back", "mcp:t").version == 2
    for changes, named in [
        ({"learning_rate": {"low": 0.0001}}, "learning_rate.low: 0.0001 is below the program's boundary 0.0003"),
        ({"train_freq": {"high": 8}}, "train_freq.high: 8.0 is above the program's boundary 4.0"),
        ({"gradient_steps": {"choices": [1, 8]}}, "gradient_steps.choices: 8 is not one of the program's choices"),
        ({"gradient_steps": {"choices": ["1"]}}, "gradient_steps.choices: '1' is not one of"),
        ({"gamma": {"low": 0.9, "high": 0.99}}, "gamma: not in the pinned search space; adding parameters is refused"),
        ({"holdout_seeds": {"low": 0, "high": 1}}, "holdout_seeds: protected"),
        ({"budgets": {"low": 0, "high": 1}}, "budgets: protected"),
        ({"train_freq": {"low": 1.5}}, "train_freq: an int parameter needs integer bounds"),
        ({"learning_rate": {"low": 0.002, "high": 0.001}}, "learning_rate: low (0.002) must be < high (0.001)"),
        ({"learning_rate": {"choices": [0.001]}}, "learning_rate.choices: a float parameter is revised by 'low'/'high'"),
        ({"learning_rate": {"log": False}}, "learning_rate.log: Extra inputs are not permitted"),
        ({"learning_rate": {"low": 0.0005, "high": 0.002}}, "changes nothing"),
        ({}, "give at least one parameter"),
    ]:
        with pytest.raises(RevisionRefused) as exc:
            propose(prog, recs, changes, "x", "mcp:t")
        assert named in str(exc.value), (changes, str(exc.value))


def test_workers_sample_a_valid_revision_and_ignore_a_widened_one(tmp_path):
    prog = load_program(_program(tmp_path))
    spec = prog.spec
    rec = propose(prog, [], {"learning_rate": {"low": 0.001, "high": 0.0012}, "gradient_steps": {"choices": [4]}},
                  "x", "mcp:t")
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(STUDY_ATTR, study_attr(rec))
    sampled = proposal_spec(spec, study, study.ask())
    assert sampled.search_space["learning_rate"].high == 0.0012 and sampled.search_space["gradient_steps"].choices == [4]
    study.enqueue_trial({"learning_rate": 0.0025, "train_freq": 3, "gradient_steps": "1"})
    assert proposal_spec(spec, study, study.ask()) is spec  # a queued candidate keeps its values (the pinned space)
    forged = study_attr(rec) | {"search_space": {**rec.search_space, "train_freq": {**rec.search_space["train_freq"],
                                                                                     "high": 40.0}}}
    study.set_user_attr(STUDY_ATTR, forged)  # anyone with storage access could write this: checked, ignored
    assert proposal_spec(spec, study, study.ask()) is spec


# ---- the server, end to end ------------------------------------------------------------------------
def _session(url, token, calls):
    """Run ``calls(session)`` with the official MCP client over streamable HTTP."""
    return mcp_session(url + "/mcp", token, calls, timeout_s=60)


async def _tool(s, name, args=None):
    res = await s.call_tool(name, args or {})
    if res.is_error:
        return {"refused": res.content[0].text}
    return json.loads(res.content[0].text)


def _keys_named(obj, word):
    if isinstance(obj, dict):
        return [k for k in obj if word in k.lower()] + [x for v in obj.values() for x in _keys_named(v, word)]
    if isinstance(obj, list):
        return [x for v in obj for x in _keys_named(v, word)]
    return []


@contextlib.contextmanager
def _served(tmp_path, prog, port, *args):
    """`simgate research serve PROG` as a process, listening on ``port``; SIGINT on the way out."""
    proc = subprocess.Popen([sys.executable, "-m", "simgate.cli", "research", "serve", str(prog), "--tokens",
                             str(tmp_path / "tokens.json"), "--port", str(port), "--workers", "1", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "SIMGATE_SMOKE": ""})
    try:
        _wait_port(port, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_port(port, proc, timeout_s=120.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        assert proc.poll() is None, proc.stdout.read()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"research serve did not listen within {timeout_s} s")


@pytest.mark.slow
def test_an_agent_researches_through_mcp(tmp_path):
    prog = _program(tmp_path)
    store = TokenStore(tmp_path / "tokens.json")
    agent, reader = store.create("agent", "act"), store.create("reader", "read")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    with _served(tmp_path, prog, port) as proc:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
        hdr = {"Accept": "application/json, text/event-stream"}
        for auth in ({}, {"Authorization": "Bearer sg_wrong"}, {"Authorization": f"Basic {agent}"}):
            r = httpx.post(url + "/mcp", json=init, headers={**hdr, **auth}, timeout=10)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (auth, r.status_code)

        async def research(s):
            out = {"tools": sorted(t.name for t in (await s.list_tools()).tools)}
            out["program"] = await _tool(s, "read_program")
            a = await _tool(s, "submit_candidate", {"params": {"learning_rate": 0.001, "train_freq": 1,
                                                               "gradient_steps": 1},
                                                    "rationale": "a middle rate, one update per step"})
            b = await _tool(s, "submit_candidate", {"params": {"learning_rate": 0.002, "train_freq": 2,
                                                               "gradient_steps": 2},
                                                    "rationale": "a higher rate with two gradient steps"})
            out["outside"] = await _tool(s, "submit_candidate", {"params": {"learning_rate": 0.05, "train_freq": 1},
                                                                 "rationale": "a bold rate"})
            out["queued"] = [a, b]
            verdicts = []
            for q in (a, b):  # an agent waits in slices
                v = {"status": "pending"}
                while v["status"] == "pending" and time.monotonic() - t0 < 170:
                    v = await _tool(s, "wait_for_verdict", {"trial": q["trial"], "timeout_s": 20})
                verdicts.append(v)
            out["verdicts"] = verdicts
            out["narrow"] = await _tool(s, "revise_search_space", {
                "search_space": {"learning_rate": {"low": 0.0005, "high": 0.002}, "gradient_steps": {"choices": [1, 2]}},
                "rationale": "both candidates were judged alike; search the middle of the range"})
            out["widen"] = await _tool(s, "revise_search_space", {
                "search_space": {"learning_rate": {"low": 0.0001, "high": 0.002}}, "rationale": "try lower rates"})
            out["after_revision"] = await _tool(s, "submit_candidate", {"params": {"learning_rate": 0.0025},
                                                                        "rationale": "inside the program, outside v1"})
            out["program_v1"] = await _tool(s, "read_program")
            out["trials"] = await _tool(s, "list_trials")
            res = await s.call_tool("read_report", {})
            out["report"] = [(c.type, getattr(c, "text", "")[:200]) for c in res.content]
            return out

        out = _session(url, agent, research)
        print(json.dumps({k: out[k] for k in ("queued", "verdicts", "narrow", "widen")}, indent=1)[:4000])
        assert out["tools"] == ["list_trials", "read_program", "read_report", "revise_search_space",
                                "submit_candidate", "wait_for_verdict"]
        p = out["program"]
        assert p["name"] == "agentic" and p["metric"]["name"] == "success_rate" and "Reach the goal" in p["goal"]
        assert p["search_space"]["version"] == 0 and p["boundaries"]["search_space"]["learning_rate"]["high"] == 0.003
        assert p["budgets"]["total_wall_s"] == 600 and "holdout_seeds" in p["boundaries"]["protected"]
        assert "learning_rate" in out["outside"]["refused"] and "outside" in out["outside"]["refused"]
        for q, v in zip(out["queued"], out["verdicts"], strict=True):  # judged by the gate on fresh episodes
            assert v["trial"] == q["trial"] and v["status"] in ("keep", "discard", "rejected"), v
            assert v["gate"]["fresh"] is not None and v["gate"]["fresh_episodes"] >= 10, v
            assert v["reported"]["proposer"] == "mcp:agent" and v["reported"]["rationale"], v
        n = out["narrow"]
        assert n["accepted"] and n["version"] == 1 and n["search_space"]["learning_rate"]["high"] == 0.002
        assert "below the program's boundary" in out["widen"]["refused"]
        assert "outside the search space (version 1)" in out["after_revision"]["refused"]
        assert out["program_v1"]["search_space"]["version"] == 1
        assert out["program_v1"]["search_space"]["params"]["gradient_steps"]["choices"] == [1, 2]
        judged = {t["trial"]: t for t in out["trials"]["judged"]}
        assert {0, 1, *(q["trial"] for q in out["queued"])} <= set(judged)
        assert out["report"][0][0] == "text" and "Research report" in out["report"][0][1]
        assert sum(t == "image" for t, _ in out["report"]) >= 2

        # a read token reads but cannot act
        ro = _session(url, reader, lambda s: _tool(s, "submit_candidate", {"params": {"train_freq": 1},
                                                                          "rationale": "x"}))
        assert "'act' scope" in ro["refused"]

        # the ledger: the revision is a pinned program version; no answer carried a seed
        sd = tmp_path / "runs" / "research" / "agentic"
        v = subprocess.run([sys.executable, "-m", "simgate.cli", "research", "verify-ledger", str(sd)],
                           capture_output=True, text=True, cwd=tmp_path)
        assert v.returncode == 0 and v.stdout.startswith("ok:"), v.stderr
        recs = Ledger(sd / "ledger.jsonl").records()
        revs = [r for r in recs if r["kind"] == "revision"]
        assert len(revs) == 1 and revs[0]["version"] == 1 and revs[0]["proposer"] == "mcp:agent"
        assert revs[0]["search_space"]["learning_rate"]["low"] == 0.0005 and "low: 0.0005" in revs[0]["program_text"]
        trials = {r["trial"]: r for r in recs if r["kind"] == "trial"}
        for q in out["queued"]:
            assert trials[q["trial"]]["reported"]["proposer"] == "mcp:agent"
        seeds = {s for r in trials.values() for s in r["verified"]["fresh_seeds"]}
        assert seeds and min(seeds) >= 1000
        text = json.dumps(out)
        assert not _keys_named(out, "seed"), _keys_named(out, "seed")
        assert not [s for s in seeds if str(s) in text]
        audit = [json.loads(x) for x in (sd / "mcp-audit.jsonl").read_text().splitlines()]
        assert any(a["action"] == "revise_search_space" and a["outcome"] == "refused" for a in audit)
        assert sum(a["via"] == "http" and "401" in a["reason"] for a in audit) == 3
    print(f"agent session: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout.read()[-3000:]
    from simgate.autoresearch.coordinator import Coordinator

    coord = Coordinator(prog, tmp_path / "runs" / "research" / "agentic")
    coord.lock()  # refused while a coordinator still holds the study: the server stopped its child
    coord.unlock()


def _raw_call(url, token, tool, arguments_json: str) -> dict:
    """One tools/call as raw JSON-RPC (the body written by hand: NaN is not valid JSON but Python reads it)."""
    hdr = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}",
           "Content-Type": "application/json"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    with httpx.Client(timeout=30) as c:
        r = c.post(url + "/mcp", json=init, headers=hdr)
        sid = r.headers["mcp-session-id"]
        hdr["mcp-session-id"] = sid
        c.post(url + "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=hdr)
        head = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool}})
        body = head[:-2] + ', "arguments": ' + arguments_json + "}}"
        r = c.post(url + "/mcp", content=body, headers=hdr)
    data = r.text
    if data.startswith("event:") or "data:" in data:
        data = next(line[5:] for line in data.splitlines() if line.startswith("data:"))
    return json.loads(data)


@pytest.mark.slow
def test_research_server_attacks_are_refused(tmp_path):
    """What an outside review found, kept as regressions: a NaN bound in a revision (once accepted, it
    locked the study), parallel submissions past --max-pending, many waits holding every thread, a
    list choice with a float inside ([64, 64.0]) and the CLI's submit ignoring a revision."""
    prog = tmp_path / "attacked.md"
    prog.write_text(PROGRAM.format(name="attacked").replace(
        "  gradient_steps: {type: categorical, choices: [1, 2, 4]}",
        "  gradient_steps: {type: categorical, choices: [1, 2, 4]}\n  net_arch: {type: categorical, choices: [[64, 64], [128, 128]]}"))
    store = TokenStore(tmp_path / "tokens.json")
    agent, reader = store.create("agent", "act"), store.create("reader", "read")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _served(tmp_path, prog, port, "--max-pending", "2"):
        for bad in ('{"search_space": {"learning_rate": {"low": NaN}}, "rationale": "nan"}',
                    '{"search_space": {"learning_rate": {"low": 0.001, "high": Infinity}}, "rationale": "inf"}'):
            res = _raw_call(url, agent, "revise_search_space", bad)
            assert res.get("error") or res["result"]["isError"], res

        async def attack(s):
            out = {"nested_float": await _tool(s, "submit_candidate", {"params": {"net_arch": [64, 64.0]},
                                                                      "rationale": "a float in a list"}),
                   "nested_revision": await _tool(s, "revise_search_space", {
                       "search_space": {"net_arch": {"choices": [[64, 64.0]]}}, "rationale": "same but float"})}
            subs = await asyncio.gather(*[_tool(s, "submit_candidate", {"params": {"train_freq": 1 + k % 4},
                                                                       "rationale": f"parallel {k}"})
                                          for k in range(8)])
            out["queued"] = [x for x in subs if "trial" in x]
            out["refused_subs"] = [x for x in subs if "refused" in x]
            out["no_such_trial"] = await asyncio.gather(*[
                _tool(s, "wait_for_verdict", {"trial": 10_000 + k, "timeout_s": 0}) for k in range(2)])
            long = [asyncio.create_task(_tool(s, "wait_for_verdict", {"trial": out["queued"][0]["trial"],
                                                                      "timeout_s": 20})) for _ in range(8)]
            await asyncio.sleep(1.0)
            t = time.monotonic()
            out["reader_program"] = await asyncio.to_thread(_session, url, reader, lambda r: _tool(r, "read_program"))
            out["reader_s"] = time.monotonic() - t
            out["long"] = await asyncio.gather(*long)
            out["narrow"] = await _tool(s, "revise_search_space", {"search_space": {"learning_rate": {"high": 0.001}},
                                                                   "rationale": "lower rates"})
            out["after"] = await _tool(s, "read_program")
            return out

        out = _session(url, agent, attack)
        assert "net_arch" in out["nested_float"]["refused"], out["nested_float"]
        assert "not one of the program's choices" in out["nested_revision"]["refused"], out["nested_revision"]
        assert len(out["queued"]) <= 2 and len(out["queued"]) + len(out["refused_subs"]) == 8, out
        assert all("waiting or running" in x["refused"] for x in out["refused_subs"])
        assert all("no trial" in x["refused"] for x in out["no_such_trial"])
        busy = [x for x in out["long"] if "already waiting" in x.get("refused", "")]
        assert len(busy) == 4, out["long"]  # 4 waits per token at once; the others refused at once
        assert out["reader_program"]["name"] == "attacked" and out["reader_s"] < 10, out["reader_s"]
        assert out["narrow"]["accepted"] and out["after"]["search_space"]["version"] == 1  # the study still works
        # the operator's CLI submit respects the agent's revision too
        r = subprocess.run([sys.executable, "-m", "simgate.cli", "research", "submit", str(prog), "--params",
                            '{"learning_rate": 0.002}', "--rationale", "past the revision"],
                           capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "SIMGATE_SMOKE": ""})
        assert r.returncode != 0 and "revision 1" in r.stdout + r.stderr, r.stdout + r.stderr
