"""The gateway end to end against a real uvicorn server on loopback and the simulated backend."""

import asyncio
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from gateway_rig import wait_run

from simgate.gateway.access import AuditLog, TokenStore
from simgate.gateway.app import create_app
from simgate.gateway.service import ArmService
from simgate.hardware.config import SimConfig, make_backend


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    import uvicorn

    d = tmp_path_factory.mktemp("gw")
    tokens = TokenStore(d / "tokens.json")
    toks = {s: tokens.create(f"{s}-client", s) for s in ("read", "act", "admin")}
    service = ArmService(make_backend(SimConfig(robot="so101", rate_hz=50)), AuditLog(d / "audit.jsonl"))
    service.start()
    from simgate.gateway.access import RateLimiter

    app = create_app(service, tokens, RateLimiter(rate_hz=5000, burst=10_000))  # the fuzz tests send thousands
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    t0 = time.monotonic()
    while not server.started and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "tokens": toks, "service": service, "audit": d / "audit.jsonl"}
    server.should_exit = True
    th.join(timeout=10)
    service.close()


def H(tok):
    return {"Authorization": f"Bearer {tok}"}


def test_rest_read_move_and_see_it_arrive(gw):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    desc = c.get("/v1/robot", headers=H(gw["tokens"]["read"])).json()
    assert desc["name"] == "so101" and len(desc["joints"]) == 5
    st = c.get("/v1/state", headers=H(gw["tokens"]["read"])).json()
    assert st["health"]["status"] == "ok" and len(st["positions"]) == 5
    target = list(np.array(st["positions"]) + np.array([0.2, -0.1, 0.1, 0.1, 0.2]))
    r = c.post("/v1/joints", json={"positions": target}, headers=H(gw["tokens"]["act"]))
    assert r.status_code == 200, r.text
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5:
        now = c.get("/v1/state", headers=H(gw["tokens"]["read"])).json()["positions"]
        if np.allclose(now, target, atol=0.03):
            break
        time.sleep(0.05)
    assert np.allclose(now, target, atol=0.03)


def test_rate_limiter_per_token():
    from simgate.gateway.access import RateLimiter

    rl = RateLimiter(rate_hz=10, burst=5)
    assert [rl.allow("a") for _ in range(6)] == [True] * 5 + [False]
    assert rl.allow("b")  # per token
    time.sleep(0.25)
    assert rl.allow("a")


@pytest.mark.parametrize("route, body", [("/v1/joints", {"positions": [0, 0, 1, 1, 0]}), ("/v1/gripper", {"opening": 0.5}),
                                         ("/v1/stop", None), ("/v1/estop", {"reason": "x"})])
def test_actuating_routes_refuse_missing_wrong_and_read_tokens(gw, route, body):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    before = gw["service"].sent_commands
    assert c.post(route, json=body).status_code == 401
    assert c.post(route, json=body, headers=H("sg_wrong")).status_code == 401
    assert c.post(route, json=body, headers=H(gw["tokens"]["read"])).status_code == 403
    assert gw["service"].sent_commands == before and not gw["service"].safety.estopped


@pytest.mark.parametrize("body, field", [
    ({"positions": [0, 0, 1]}, "expected 5"),
    ({"positions": [0, 0, 9.0, 1, 0]}, "elbow_flex"),
    ({"positions": [0, 0, 1, 1]}, "positions"),
    ({"positions": ["a", 0, 1, 1, 0]}, "positions"),
    ({"positions": [0, 0, 1, 1, 0], "gripper": 3}, "gripper"),
    ({"joints": {"elbow": 1.0}}, "elbow"),
])
def test_bad_input_is_named_and_moves_nothing(gw, body, field):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    before = gw["service"].sent_commands
    r = c.post("/v1/joints", json=body, headers=H(gw["tokens"]["act"]))
    assert 400 <= r.status_code < 500 and field in r.text
    assert gw["service"].sent_commands == before


def test_estop_latches_until_admin_reset_and_audit_has_every_attempt(gw):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act, admin = H(gw["tokens"]["act"]), H(gw["tokens"]["admin"])
    pos = c.get("/v1/state", headers=act).json()["positions"]
    assert c.post("/v1/estop", json={"reason": "test"}, headers=act).status_code == 200
    r = c.post("/v1/joints", json={"positions": pos}, headers=act)
    assert r.status_code == 409 and "e-stop" in r.json()["detail"]
    assert c.post("/v1/estop/reset", headers=act).status_code == 403
    assert c.post("/v1/estop/reset", headers=admin).status_code == 200
    assert c.post("/v1/joints", json={"positions": pos}, headers=act).status_code == 200
    lines = [json.loads(x) for x in gw["audit"].read_text().splitlines()]
    moves = [x for x in lines if x["action"] == "move_joints"]
    assert any(x["outcome"] == "refused" and "e-stop" in x["reason"] for x in moves)
    assert any(x["outcome"] == "sent" for x in moves) and all(x["who"] for x in lines)


def test_mcp_agent_lists_tools_reads_and_moves(gw):
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        async with httpx2.AsyncClient(headers=H(gw["tokens"]["act"]), timeout=30) as hc, \
                streamable_http_client(gw["url"] + "/mcp/", http_client=hc) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                tools = {t.name: t for t in (await s.list_tools()).tools}
                assert {"describe_robot", "read_state", "move_joints", "stop", "emergency_stop"} <= set(tools)
                assert tools["read_state"].annotations.read_only_hint is True
                assert tools["move_joints"].annotations.destructive_hint is True
                st = json.loads((await s.call_tool("read_state", {})).content[0].text)
                target = list(st["positions"])
                target[0] += 0.15  # pan: stays in the workspace whatever the pose
                res = json.loads((await s.call_tool("move_joints", {"positions": target})).content[0].text)
                assert res["ok"], res
                img = (await s.call_tool("get_camera_image", {"width": 64, "height": 48})).content[0]
                assert img.type == "image" and img.mime_type == "image/png" and len(img.data) > 100
                target_bad = list(target)
                target_bad[2] = -1.0  # elbow_flex: within the schema's overall bounds, outside this joint's limits
                bad = await s.call_tool("move_joints", {"positions": target_bad})
                assert bad.is_error and "elbow_flex" in bad.content[0].text
                for _ in range(100):
                    now = json.loads((await s.call_tool("read_state", {})).content[0].text)["positions"]
                    if np.allclose(now, target, atol=0.03):
                        break
                    await asyncio.sleep(0.05)
                assert np.allclose(now, target, atol=0.03)

    asyncio.run(run())


def test_trajectory_and_pose_commands(gw):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    cur = c.get("/v1/state", headers=act).json()["positions"]
    mid = [q + 0.1 for q in cur]
    end = [q + 0.2 for q in cur]
    r = c.post("/v1/trajectory", json={"points": [{"positions": mid, "time_from_start_s": 0.4},
                                                  {"positions": end, "time_from_start_s": 0.8, "velocities": [0] * 5}]},
               headers=act)
    assert r.status_code == 200, r.text
    v = wait_run(c, r.json()["id"], act)
    assert v["status"] == "done"
    time.sleep(0.5)
    assert np.allclose(c.get("/v1/state", headers=act).json()["positions"], end, atol=0.03)
    bad = c.post("/v1/trajectory", json={"points": [{"positions": mid, "time_from_start_s": 0.8},
                                                    {"positions": end, "time_from_start_s": 0.4}]}, headers=act)
    assert bad.status_code == 409 and "strictly increasing" in bad.text
    goal = [-0.1, 0.05, 0.12]
    r = c.post("/v1/pose", json={"position_m": goal, "duration_s": 0.8}, headers=act)
    assert r.status_code == 200, r.text
    assert wait_run(c, r.json()["id"], act)["status"] == "done"
    time.sleep(0.6)
    assert np.linalg.norm(np.array(c.get("/v1/state", headers=act).json()["ee_position"]) - goal) < 0.02
    far = c.post("/v1/pose", json={"position_m": [2.0, 0, 0.1]}, headers=act)
    assert far.status_code == 409 and "not reachable" in far.text


def test_run_a_promoted_policy_and_cancel(gw, tmp_path_factory, monkeypatch):
    from simgate.policies.promotion import promote_run
    from simgate.policies.recipes import default_recipe
    from simgate.policies.train import train

    d = tmp_path_factory.mktemp("pol")
    train(default_recipe("simgate/SO101Reach-v0", total_steps=300, learning_starts=100, eval_every_steps=10_000),
          d / "run", progress_bar=False)
    monkeypatch.setenv("SIMGATE_REGISTRY", str(d / "reg"))
    digest = promote_run(d / "run", d / "reg", holdout_episodes=3)
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    listed = c.get("/v1/policies", headers=act).json()
    assert any(p["id"] == digest for p in listed)
    from speed_probe import SpeedProbe

    with SpeedProbe(gw["service"].backend) as probe:  # the policy path never outruns the limits either
        r = c.post(f"/v1/policies/{digest[:12]}/run", json={"goal_m": [-0.1, 0.0, 0.1], "max_steps": 15},
                   headers=act)
        assert r.status_code == 200, r.text
        v = wait_run(c, r.json()["id"], act)
    assert probe.peak_over_limit(gw["service"].vmax) <= 1.05
    assert v["status"] == "done" and {"reached", "distance_m", "steps"} <= set(v["result"])
    r = c.post(f"/v1/policies/{digest[:12]}/run", json={"goal_m": [-0.1, 0.0, 0.1], "max_steps": 500}, headers=act)
    run_id = r.json()["id"]
    assert c.delete(f"/v1/runs/{run_id}", headers=act).status_code == 200
    assert wait_run(c, run_id, act)["status"] == "cancelled"
    wrong = c.post("/v1/policies/nope/run", json={"goal_m": [0, 0, 0.1]}, headers=act)
    assert wrong.status_code == 404 and "nope" in wrong.text
    # the same through MCP, as an agent would
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def agent():
        async with httpx2.AsyncClient(headers=act, timeout=30) as hc, \
                streamable_http_client(gw["url"] + "/mcp/", http_client=hc) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            listed = json.loads((await s.call_tool("list_policies", {})).content[0].text)
            assert any(p["id"] == digest for p in (listed if isinstance(listed, list) else [listed]))
            started = json.loads((await s.call_tool("run_policy", {"policy": digest, "goal_m": [-0.1, 0.0, 0.1],
                                                                   "max_steps": 10})).content[0].text)
            assert started["ok"], started
            for _ in range(200):
                v = json.loads((await s.call_tool("get_run", {"run_id": started["id"]})).content[0].text)
                if v["status"] != "running":
                    return v
                await asyncio.sleep(0.05)
            return v

    v = asyncio.run(agent())
    assert v["status"] == "done" and "reached" in v["result"]


def test_bad_image_request_and_nan_are_4xx(gw):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    r = c.get("/v1/camera?width=5000&height=100", headers=H(gw["tokens"]["read"]))
    assert r.status_code == 422 and "width" in r.text
    ok = c.get("/v1/camera?width=64&height=48&fmt=jpeg", headers=H(gw["tokens"]["read"]))
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg" and len(ok.content) > 100
    before = gw["service"].sent_commands
    r = c.post("/v1/joints", content='{"positions": [NaN, 0, 1, 1, 0]}',
               headers={**H(gw["tokens"]["act"]), "content-type": "application/json"})
    assert 400 <= r.status_code < 500 and "shoulder_pan" in r.text
    assert gw["service"].sent_commands == before


def test_settings_file_builds_the_gateway(tmp_path):
    from simgate.errors import ConfigError
    from simgate.gateway.settings import GatewaySettings, build_app

    f = tmp_path / "gw.yaml"
    f.write_text("port: 8123\nbackend: {type: sim, robot: so101}\nsafety: {max_step_rad: 0.2}\n"
                 f"tokens_file: {tmp_path / 't.json'}\naudit_file: {tmp_path / 'a.jsonl'}\n")
    s = GatewaySettings.load(f)
    app, service = build_app(s)
    assert service.spec.name == "so101" and service.safety.config.max_step_rad == 0.2 and s.host == "127.0.0.1"
    f.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="prot"):
        GatewaySettings.load(f)


def test_schemathesis_all_checks_and_the_stateful_phase_find_nothing(gw):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is not installed (dev extra)"
    proc = subprocess.run([st, "run", gw["url"] + "/openapi.json", "--checks", "all",
                           "--phases", "examples,coverage,fuzzing,stateful",
                           "--header", f"Authorization: Bearer {gw['tokens']['admin']}", "--max-examples", "25",
                           "--no-color"],
                          capture_output=True, text=True, timeout=600)
    httpx.post(gw["url"] + "/v1/estop/reset", headers=H(gw["tokens"]["admin"]))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert " 0 passed" not in proc.stdout and "passed" in proc.stdout


def test_an_unattested_registry_entry_is_neither_served_nor_vouched_for(gw, tmp_path, monkeypatch):
    """A registry entry written by hand (right layout, recomputed content hash, no attestation from
    this machine's registry key) is listed as unverified without its claimed figures, and not run."""
    import hashlib
    import shutil

    from simgate.policies.registry import _content_hash

    reg = tmp_path / "reg"
    (reg / "x").mkdir(parents=True)
    src = next((p for p in (tmp_path.parent).rglob("policy.ts") if (p.parent / "metadata.json").exists()), None)
    if src is None:
        pytest.skip("no promoted policy from the earlier test to copy")
    for f in ("policy.ts", "policy.ts.json", "metadata.json"):
        shutil.copyfile(src.parent / f, reg / "x" / f)
    meta = json.loads((reg / "x" / "metadata.json").read_text())
    meta["holdout"] = {"success_rate": 0.99}
    (reg / "x" / "metadata.json").write_text(json.dumps(meta))
    digest = _content_hash(reg / "x")
    (reg / "x").rename(reg / digest)
    assert hashlib.sha256(b"").hexdigest() != digest
    gw["service"].motions.registry_dir = reg
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    listed = {p["id"]: p for p in c.get("/v1/policies", headers=act).json()}
    assert listed[digest]["verified"] is False and listed[digest]["holdout_success"] is None
    admin = H(gw["tokens"]["admin"])  # the client an earlier test in this module left holding the lease
    r = c.post(f"/v1/policies/{digest[:12]}/run", json={"goal_m": [-0.1, 0.0, 0.1]}, headers=admin)
    assert r.status_code == 409 and "not a verified promotion" in r.json()["detail"], r.text
