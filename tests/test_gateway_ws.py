"""The WebSocket stream attacked from outside: `simgate serve` as a process (its own logs), tokens
made and revoked with the CLI, a raw websockets client."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

SIMGATE = [sys.executable, "-m", "simgate.cli"]


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args, cwd):
    return subprocess.run([*SIMGATE, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("ws")
    tokens = {s: _cli("tokens", "create", f"{s}-ws", "--scope", s, "--file", str(d / "t.json"), cwd=d).strip()
              for s in ("read", "act")}
    port = _port()
    log = open(d / "server.log", "w")
    proc = subprocess.Popen([*SIMGATE, "serve", "--backend", "sim", "--robot", "so101", "--port", str(port),
                             "--tokens", str(d / "t.json"), "--audit", str(d / "audit.jsonl")],
                            cwd=d, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield {"url": url, "ws": url.replace("http", "ws") + "/v1/stream", "tokens": tokens, "dir": d,
               "log": d / "server.log"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


async def _next(ws, kind="ack"):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if m["type"] == kind:
            return m


def test_token_never_in_the_url_nor_the_log(served):
    tok = served["tokens"]["act"]

    async def run():
        async with websockets.connect(served["ws"], additional_headers={"Authorization": f"Bearer {tok}"}) as ws:
            assert (await _next(ws, "welcome"))["scope"] == "act"
        async with websockets.connect(served["ws"]) as ws:  # the token in the first frame
            await ws.send(json.dumps({"type": "auth", "token": tok}))
            assert (await _next(ws, "welcome"))["who"] == "act-ws"
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:  # no token at all
            async with websockets.connect(served["ws"]) as ws:
                await ws.send(json.dumps({"type": "auth", "token": "sg_wrong"}))
                await _next(ws, "welcome")
        assert closed.value.rcvd.code == 4401

    asyncio.run(run())
    time.sleep(0.5)
    text = Path(served["log"]).read_text() + Path(served["dir"] / "audit.jsonl").read_text()
    assert "/v1/stream" in Path(served["log"]).read_text()  # the access log does log the stream...
    assert tok not in text and tok[3:20] not in text  # ...never the token


def test_a_token_in_the_url_is_refused_and_redacted_from_the_log(served):
    tok = served["tokens"]["read"]

    async def run():
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(served["ws"] + f"?rate_hz=5&token={tok}"):
                pass

    asyncio.run(run())
    time.sleep(0.5)
    log = Path(served["log"]).read_text()
    assert "token=[redacted]" in log and tok not in log


def test_revoking_a_token_closes_its_open_stream_within_a_second(served):
    d = served["dir"]
    tok = _cli("tokens", "create", "doomed", "--scope", "act", "--file", str(d / "t.json"), cwd=d).strip()

    async def run():
        async with websockets.connect(served["ws"], additional_headers={"Authorization": f"Bearer {tok}"}) as ws:
            await _next(ws, "welcome")
            await asyncio.to_thread(_cli, "tokens", "revoke", "doomed", "--file", str(d / "t.json"), cwd=d)
            t0 = time.monotonic()
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 2)
            return time.monotonic() - t0

    assert asyncio.run(run()) < 1.0


MALFORMED = [
    b"\x00\x01binary",
    "not json",
    "[]",
    '"a string"',
    "123",
    "null",
    "true",
    '{"positions": "abc"}',
    '{"positions": [true, false, true, false, true]}',
    '{"positions": [1, 2]}',
    '{"positions": ["0", 0, 0, 0, 0]}',
    '{"gripper": 2}',
    '{"gripper": "open"}',
    '{"type": "bogus"}',
    '{"id": {"nested": 1}, "positions": [0, 0, 0, 0, 0]}',
    '{"clip": "yes", "positions": [0, 0, 0, 0, 0]}',
    '{"unknown_field": 1}',
    '{"positions": [NaN, 0, 0, 0, 0]}',
    '{"positions": [1e400, 0, 0, 0, 0]}',
    '{"positions": [' + "[" * 500 + "]" * 500 + "]}",
]


def test_every_malformed_frame_gets_a_refusal_and_the_stream_stays_up(served):
    tok = served["tokens"]["act"]
    assert len(MALFORMED) == 20

    async def run():
        async with websockets.connect(served["ws"] + "?rate_hz=2",
                                      additional_headers={"Authorization": f"Bearer {tok}"}) as ws:
            await _next(ws, "welcome")
            for frame in MALFORMED:
                await ws.send(frame)
                ack = await _next(ws)
                assert ack["ok"] is False and ack["reason"], (frame, ack)
            st = await _next(ws, "state")
            await ws.send(json.dumps({"id": "good", "positions": st["positions"]}))
            ack = await _next(ws)
            assert ack["id"] == "good" and ack["ok"], ack

    asyncio.run(run())
