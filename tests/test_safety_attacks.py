"""Attacks an outside reviewer found against the gateway's safety promise, kept as regressions:
a refused motion that still moved the gripper, MCP accepting bools/strings as numbers, a read-only
stream tripping the watchdog, preemption ignoring the acceleration limit, a run continuing through
a backend fault, chunked bodies over the limit, sub-period trajectory segments, unaudited refusals."""

import asyncio
import json
import socket
import time

import httpx
import numpy as np
import pytest
from gateway_rig import H, live_gateway, mcp_calls, wait_run

from simgate.hardware.config import SimConfig, make_backend
from simgate.hardware.types import Health


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    d = tmp_path_factory.mktemp("attacks")
    with live_gateway(make_backend(SimConfig(robot="so101", rate_hz=50)), d) as g:
        yield g


def _state(gw):
    return gw["service"].backend.read()


def _audit(gw):
    return [json.loads(x) for x in gw["audit"].read_text().splitlines()]


def _settle(c, act):
    c.post("/v1/stop", headers=act)
    time.sleep(0.4)


def test_a_refused_motion_moves_nothing_not_even_the_gripper(gw):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    _settle(c, act)
    c.post("/v1/gripper", json={"opening": 0.0}, headers=act)
    time.sleep(0.8)
    before = _state(gw)
    bad = list(before.positions)
    bad[4] = 5.0  # wrist_roll far outside its limits
    r = c.post("/v1/joints", json={"positions": bad, "gripper": 1.0}, headers=act)
    assert r.status_code == 409 and "wrist_roll" in r.json()["detail"]
    res = asyncio.run(mcp_calls(gw, gw["tokens"]["act"], [("move_joints", {"positions": bad, "gripper": 1.0})]))[0]
    assert res.is_error and "wrist_roll" in res.content[0].text
    time.sleep(0.6)
    after = _state(gw)
    assert abs(after.gripper - before.gripper) < 0.02
    assert np.max(np.abs(np.array(after.positions) - before.positions)) < 0.005


@pytest.mark.parametrize("args", [
    {"positions": [True, 0.2, 1.6, 1.2, 0.0]},
    {"positions": ["0.1", 0.2, 1.6, 1.2, 0.0]},
    {"positions": [0.0, 0.2, 1.6, 1.2, 0.0], "clip": "yes"},
    {"positions": [0.0, 0.2, 1.6, 1.2, 0.0], "gripper": True},
])
def test_mcp_refuses_bools_and_strings_as_numbers_and_audits_it(gw, args):
    before_lines = len(_audit(gw))
    before = np.array(_state(gw).positions)
    res = asyncio.run(mcp_calls(gw, gw["tokens"]["act"], [("move_joints", args)]))[0]
    assert res.is_error and "invalid arguments" in res.content[0].text, res.content[0].text
    time.sleep(0.3)
    assert np.max(np.abs(np.array(_state(gw).positions) - before)) < 0.005
    new = _audit(gw)[before_lines:]
    assert any(a["outcome"] == "refused" and a["who"] == "act-client" and "invalid arguments" in a["reason"]
               for a in new)


def test_mcp_and_rest_auth_refusals_are_audited_under_the_right_name(gw):
    before_lines = len(_audit(gw))
    res = asyncio.run(mcp_calls(gw, gw["tokens"]["read"], [("move_joints", {"positions": [0.0] * 5}),
                                                       ("emergency_stop", {})]))
    assert all(r.is_error for r in res) and not gw["service"].safety.estopped
    httpx.post(gw["url"] + "/v1/estop/reset", headers=H(gw["tokens"]["act"]))
    new = _audit(gw)[before_lines:]
    assert sum(1 for a in new if a["who"] == "read-client" and a["via"] == "mcp" and "403" in a["reason"]) == 2
    assert any(a["who"] == "act-client" and "403" in a["reason"] and "/v1/estop/reset" in a["action"] for a in new)


def test_a_read_only_stream_going_silent_does_not_stop_the_actuating_client(gw):
    import websockets

    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    _settle(c, act)
    q = np.array(_state(gw).positions)
    end = q.copy()
    end[0] += 0.6
    r = c.post("/v1/trajectory", json={"points": [{"positions": end.tolist(), "time_from_start_s": 1.5}]}, headers=act)
    assert r.status_code == 200, r.text

    async def lurk():
        async with websockets.connect(gw["url"].replace("http", "ws") + "/v1/stream?rate_hz=1",
                                      additional_headers=H(gw["tokens"]["read"])) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            await asyncio.sleep(0.8)  # longer than the watchdog timeout

    before_lines = len(_audit(gw))
    asyncio.run(lurk())
    assert not any(a["action"] == "watchdog_stop" for a in _audit(gw)[before_lines:])
    assert wait_run(c, r.json()["id"], act, timeout_s=5)["status"] == "done"


def test_preempting_a_fast_motion_brakes_within_the_acceleration_limit(gw):
    """What the gateway sends (a spy on the backend) while moves reverse each other mid-motion: the
    commanded acceleration stays within max_accel_rad_s2 (a new plan continues from the set-point
    the arm follows, braking first)."""
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    svc = gw["service"]
    _settle(c, act)
    q = np.array(_state(gw).positions)
    sent = []
    orig = svc.backend.write

    def spy(cmd):
        if cmd.positions is not None:
            sent.append(cmd.positions[4])
        return orig(cmd)

    svc.backend.write = spy
    try:
        for k in range(6):  # reverse wrist_roll every 0.35 s, mid-motion
            tgt = q.copy()
            tgt[4] = 2.4 if k % 2 == 0 else -2.4
            r = c.post("/v1/joints", json={"positions": tgt.tolist()}, headers=act)
            assert r.status_code == 200, r.text
            time.sleep(0.35)
    finally:
        svc.backend.write = orig
    v = np.diff(sent) / svc.period_s
    a = np.diff(v) / svc.period_s
    assert np.max(np.abs(v)) > 0.9 * svc.vmax[4]  # it did move at full speed
    assert np.max(np.abs(a)) <= 1.05 * svc.safety.config.max_accel_rad_s2, np.max(np.abs(a))  # was ~137


def test_a_running_motion_stops_when_the_backend_faults(gw):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    svc = gw["service"]
    _settle(c, act)
    q = np.array(_state(gw).positions)
    end = q.copy()
    end[0] += 0.8
    r = c.post("/v1/trajectory", json={"points": [{"positions": end.tolist(), "time_from_start_s": 3.0}]}, headers=act)
    assert r.status_code == 200
    time.sleep(0.5)
    orig = svc.backend.health
    svc.backend.health = lambda: Health.fault("test: the bus stopped answering")
    try:
        time.sleep(0.3)
        v = c.get(f"/v1/runs/{r.json()['id']}", headers=act).json()
        assert v["status"] == "refused" and "fault" in v["result"]["error"], v
    finally:
        svc.backend.health = orig


def test_a_too_fast_segment_between_two_control_ticks_is_refused(gw):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    _settle(c, act)
    q = np.array(_state(gw).positions)
    spike = q.copy()
    spike[0] += 1.0
    r = c.post("/v1/trajectory", json={"points": [{"positions": spike.tolist(), "time_from_start_s": 0.001},
                                                  {"positions": q.tolist(), "time_from_start_s": 0.002}]}, headers=act)
    assert r.status_code == 409 and "shoulder_pan" in r.json()["detail"], r.text
    r = c.post("/v1/joints", json={"positions": q.tolist(), "joints": {"shoulder_pan": 0.0}}, headers=act)
    assert r.status_code == 409 and "not both" in r.json()["detail"]


def _chunked(url, path, headers, size):
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n" \
               f"Content-Type: application/json\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s.sendall(head.encode())
        chunk = b"x" * 65536
        try:
            for _ in range(size // len(chunk)):
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed early
        return int(s.recv(4096).split(b" ")[1])


@pytest.mark.parametrize("path", ["/v1/joints", "/v1/stop", "/v1/estop", "/mcp/"])
def test_chunked_bodies_over_the_limit_get_413_and_do_nothing(gw, path):
    before = len(_audit(gw))
    assert _chunked(gw["url"], path, H(gw["tokens"]["act"]), 2 << 20) == 413
    assert not gw["service"].safety.estopped
    assert not any(a["action"] == "stop" for a in _audit(gw)[before:])
    assert any("413" in a["reason"] for a in _audit(gw)[before:])
