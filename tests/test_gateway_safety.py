"""Safety properties: nothing outside the limits reaches the backend, the e-stop latches within
one control period, the watchdog stops the arm when a streaming client goes silent."""

import asyncio
import json
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gateway import H, gw  # noqa: F401  (the uvicorn fixture)

from simgate.hardware.safety import SafetyConfig, SafetyLayer
from simgate.sim.robot_spec import load_robot_spec

SPEC = load_robot_spec("so101")
LAYER = SafetyLayer(SPEC, SafetyConfig(command_period_s=0.04))
LOWER = np.array([j.lower for j in SPEC.arm_joints])
UPPER = np.array([j.upper for j in SPEC.arm_joints])
HOME = [j.home for j in SPEC.arm_joints]

joint = st.one_of(st.floats(min_value=-8, max_value=8), st.sampled_from([float("nan"), float("inf"), -float("inf")]))
command = st.lists(joint, min_size=3, max_size=7)


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(positions=command, clip=st.booleans(), current_noise=st.lists(st.floats(-0.3, 0.3), min_size=5, max_size=5))
def test_no_command_outside_the_limits_is_ever_allowed(positions, clip, current_noise):
    current = list(np.clip(np.array(HOME) + np.array(current_noise), LOWER, UPPER))
    LAYER._last_cmd = None  # judge each command on its own (velocity history off)
    d = LAYER.check(positions, None, current, clip)
    if not d.allowed:
        assert d.reason
        return
    sent = np.array(d.positions)
    assert sent.shape == (SPEC.dof,) and np.all(np.isfinite(sent))
    assert np.all(sent >= LOWER - 1e-9) and np.all(sent <= UPPER + 1e-9)
    assert np.all(np.abs(sent - np.array(current)) <= LAYER.config.max_step_rad + 1e-9)
    tcp = np.array(d.details["tcp_m"])
    assert np.all(tcp >= np.array(LAYER.config.workspace_min_m)) and np.all(tcp <= np.array(LAYER.config.workspace_max_m))
    if not clip:
        np.testing.assert_allclose(sent, positions)  # accepted unclipped = exactly what was asked


def test_10k_random_commands_through_rest_ws_and_mcp_never_reach_the_backend_outside_limits(gw):  # noqa: F811
    """4,000 REST + 3,000 WebSocket + 3,000 MCP random commands; a spy on the backend checks every
    command that reaches it, and the audit log has exactly one line per attempt."""
    import httpx
    import httpx2
    import websockets
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    svc = gw["service"]
    sent_log = []
    orig = svc.backend.write

    def spy(cmd):
        sent_log.append(cmd.positions)
        return orig(cmd)

    rng = np.random.default_rng(0)

    def random_command():
        cur = np.array(svc.backend.read().positions)
        kind = rng.integers(4)
        if kind == 0:
            q = cur + rng.normal(0, 0.6, SPEC.dof)
        elif kind == 1:
            q = rng.uniform(-4, 4, SPEC.dof)
        elif kind == 2:
            q = cur + rng.normal(0, 0.05, SPEC.dof)
        else:
            q = rng.uniform(-4, 4, int(rng.integers(1, 8)))
        return {"positions": q.tolist(), "clip": bool(rng.random() < 0.5)}

    audit_before = len(gw["audit"].read_text().splitlines()) if gw["audit"].exists() else 0
    attempts = 0
    svc.backend.write = spy
    try:
        c = httpx.Client(base_url=gw["url"], timeout=10)
        for _ in range(4000):
            r = c.post("/v1/joints", json=random_command(), headers=H(gw["tokens"]["act"]))
            attempts += 1  # every attempt is audited, refused (409, 422) or sent
            assert r.status_code in (200, 409, 422), r.text

        async def ws_and_mcp():
            n = 0
            url = gw["url"].replace("http", "ws") + "/v1/stream?rate_hz=1"
            async with websockets.connect(url, additional_headers=H(gw["tokens"]["act"])) as ws:
                for k in range(3000):
                    await ws.send(json.dumps({"id": k, **random_command()}))
                    while True:
                        m = json.loads(await ws.recv())
                        if m.get("type") == "ack" and m.get("id") == k:
                            n += 1
                            break
            async with httpx2.AsyncClient(headers=H(gw["tokens"]["act"]), timeout=30) as hc, \
                    streamable_http_client(gw["url"] + "/mcp/", http_client=hc) as (r, w), ClientSession(r, w) as s:
                await s.initialize()
                for _ in range(3000):
                    cmd = random_command()
                    if len(cmd["positions"]) != SPEC.dof:
                        cmd["positions"] = cmd["positions"][:1] * SPEC.dof
                    await s.call_tool("move_joints", cmd)
                    n += 1
            return n

        attempts += asyncio.run(ws_and_mcp())
    finally:
        svc.backend.write = orig
    assert len(sent_log) > 100
    for q in sent_log:
        if q is not None:
            assert np.all(np.array(q) >= LOWER - 1e-9) and np.all(np.array(q) <= UPPER + 1e-9)
    moves = [json.loads(x) for x in gw["audit"].read_text().splitlines()[audit_before:]]
    assert sum(1 for m in moves if m["action"] in ("move_joints", "setpoint", "frame")) == attempts


def test_every_actuating_tool_refuses_missing_wrong_and_read_tokens(gw):  # noqa: F811
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    svc = gw["service"]
    cur = svc.backend.read().positions
    calls = {"move_joints": {"positions": cur}, "set_gripper": {"opening": 0.5}, "stop": {},
             "emergency_stop": {"reason": "x"}, "move_to_pose": {"position_m": [-0.1, 0, 0.1]},
             "run_policy": {"policy": "x", "goal_m": [0, 0, 0.1]}}

    async def run(headers):
        async with httpx2.AsyncClient(headers=headers, timeout=30) as hc, \
                streamable_http_client(gw["url"] + "/mcp/", http_client=hc) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            for tool, args in calls.items():
                res = await s.call_tool(tool, args)
                assert res.is_error, (tool, res)
                text = res.content[0].text
                assert "token" in text or "scope" in text, text

    before = svc.sent_commands
    for headers in ({}, H("sg_wrong"), H(gw["tokens"]["read"])):
        asyncio.run(run(headers))
    assert svc.sent_commands == before and not svc.safety.estopped


def test_estop_latches_within_one_control_period(gw):  # noqa: F811
    import httpx

    c = httpx.Client(base_url=gw["url"], timeout=10)
    act, admin = H(gw["tokens"]["act"]), H(gw["tokens"]["admin"])
    period = 1.0 / 50  # the fixture's backend rate
    t0 = time.monotonic()
    assert c.post("/v1/estop", json={"reason": "latency"}, headers=act).status_code == 200
    pos = c.get("/v1/state", headers=act).json()["positions"]
    r = c.post("/v1/joints", json={"positions": pos}, headers=act)
    assert r.status_code == 409 and time.monotonic() - t0 < period + 0.05
    assert gw["service"].safety.estopped
    c.post("/v1/estop/reset", headers=admin)


def test_websocket_acks_and_watchdog_stops_a_silent_client(gw):  # noqa: F811
    import websockets

    svc = gw["service"]

    async def run():
        url = gw["url"].replace("http", "ws") + "/v1/stream?rate_hz=50"
        async with websockets.connect(url, additional_headers=H(gw["tokens"]["act"])) as ws:
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome" and welcome["scope"] == "act"
            first = json.loads(await ws.recv())
            assert first["type"] == "state"
            cur = first["positions"]
            target = list(cur)
            target[0] += 0.05  # pan only, a set-point reachable within one command period from rest
            await ws.send(json.dumps({"id": 1, "positions": target}))
            ack = None
            while ack is None:
                m = json.loads(await ws.recv())
                if m["type"] == "ack":
                    ack = m
            assert ack["ok"] and ack["id"] == 1, ack
            await ws.send(json.dumps({"id": 2, "positions": [0, 0, 9, 0, 0]}))
            while True:
                m = json.loads(await ws.recv())
                if m["type"] == "ack":
                    assert not m["ok"] and "elbow_flex" in m["reason"]
                    break
            # go silent: within 2 watchdog-poll periods after the timeout the arm is stopped (held)
            t_silent = time.monotonic()
            stops_before = sum(1 for line in gw["audit"].read_text().splitlines() if "\"watchdog_stop\"" in line) if gw["audit"].exists() else 0
            while time.monotonic() - t_silent < 2.0:
                stops = sum(1 for line in gw["audit"].read_text().splitlines() if '"watchdog_stop"' in line)
                if stops > stops_before:
                    break
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - t_silent
            assert stops > stops_before, "watchdog did not stop the arm"
            timeout = svc.safety.config.watchdog_timeout_s
            assert elapsed <= timeout + 2 * (1.0 / 50) + 0.1, elapsed
            await asyncio.sleep(0.3)
            held = svc.backend.read().positions
            await asyncio.sleep(0.3)
            assert np.allclose(held, svc.backend.read().positions, atol=0.02)  # not moving any more

    asyncio.run(run())
