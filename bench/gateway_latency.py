"""Gateway latency and readers-vs-actuation on loopback, the simulated backend at 200 Hz, the
gateway as its own process (`simgate serve`), clients in other processes.

1. baseline, same run: 50 concurrent clients on a trivial endpoint (``/v1/health``);
2. load: 50 concurrent clients reading ``/v1/state`` while a read-only client asks for 1280x960
   camera frames as fast as it is allowed and one WebSocket client streams set-points at 100 Hz.

Goals (issue "safety on every path", item 5): state readers get >= 50 % of the trivial endpoint's
throughput with p99 < 50 ms; the streaming client's command -> ack p99 < 5 ms; no command refused
as stale. Also: REST state and MCP read_state p50/p99 alone.

(rosbridge, the usual peer, needs a ROS 2 graph with rosbridge_server, which has no wheel here;
its users report >= 30 ms service calls.)

    python bench/gateway_latency.py --seconds 5 --json out/gateway_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _pct(xs) -> dict:
    a = np.array(xs or [0.0]) * 1000
    return {"n": len(xs), "p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(d: Path, rate_hz: float) -> tuple[subprocess.Popen, str, dict]:
    import httpx

    from simgate.gateway.access import TokenStore

    store = TokenStore(d / "t.json")
    toks = {"act": store.create("streamer", "act"), "read": store.create("readers", "read"),
            "camera": store.create("camera", "read")}
    port = _free_port()
    (d / "gw.yaml").write_text(
        f"port: {port}\nbackend: {{type: sim, robot: so101, rate_hz: {rate_hz}}}\nrate_limit_hz: 1000000\n"
        f"rate_limit_burst: 1000000\ntokens_file: {d / 't.json'}\naudit_file: {d / 'audit.jsonl'}\n")
    log = open(d / "gateway.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "simgate.cli", "serve", "--config", str(d / "gw.yaml")],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/v1/health", timeout=1).json()["status"] == "ok":
                return proc, url, toks
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gateway did not start (see {d / 'gateway.log'})")


async def _hammer(url: str, path: str, token: str, n: int, seconds: float) -> list[float]:
    """``n`` closed-loop clients on keep-alive HTTP/1.1 connections (a minimal client, like wrk: the
    load generator shares the 2 cores with the gateway, so it must cost little)."""
    host, port = url.split("//")[1].split(":")
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    lat: list[float] = []
    t_end = time.monotonic() + seconds

    async def one():
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < t_end:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.split(b"\r\n")[0].decode())
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                await reader.readexactly(length)
                lat.append(time.perf_counter() - t0)
        finally:
            writer.close()

    await asyncio.gather(*[one() for _ in range(n)])
    return lat


def readers(url, path, token, n, seconds, out) -> None:
    lat = asyncio.run(_hammer(url, path, token, n, seconds))
    out.put({**_pct(lat), "requests_per_s": round(len(lat) / seconds, 1)})


def streamer(url, token, rate_hz, seconds, out) -> None:
    """Set-points at ``rate_hz`` along a slow sine of the first joint (well inside every limit)."""
    import websockets

    async def run():
        async with websockets.connect(url.replace("http", "ws") + "/v1/stream?rate_hz=1",
                                      additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            q0 = None
            while q0 is None:
                m = json.loads(await ws.recv())
                q0 = m.get("positions") if m["type"] == "state" else None
            lat, refused, stale, k = [], 0, 0, 0
            t_start = time.perf_counter()
            while time.perf_counter() - t_start < seconds:
                k += 1
                t = k / rate_hz
                q = list(q0)
                q[0] = q0[0] + 0.2 * np.sin(2 * np.pi * 0.5 * t) if abs(q0[0]) < 1.5 else q0[0]
                t0 = time.perf_counter()
                await ws.send(json.dumps({"id": k, "positions": q}))
                while True:
                    m = json.loads(await ws.recv())
                    if m.get("type") == "ack" and m.get("id") == k:
                        break
                lat.append(time.perf_counter() - t0)
                if not m["ok"]:
                    refused += 1
                    stale += "stale" in m["reason"]
                await asyncio.sleep(max(0.0, t_start + k / rate_hz - time.perf_counter()))
            return {**_pct(lat), "refused": refused, "refused_stale": stale, "rate_hz": round(k / seconds, 1)}

    out.put(asyncio.run(run()))


def camera_client(url, token, seconds, out) -> None:
    import httpx

    n, limited = 0, 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            r = c.get("/v1/camera", params={"width": 1280, "height": 960})
            n += r.status_code == 200
            limited += r.status_code == 429
            if r.status_code == 429:
                time.sleep(0.05)
    out.put({"frames": n, "rate_limited": limited})


def solo_latencies(url, token, seconds) -> dict:
    import httpx

    res = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        lat, t_end = [], time.monotonic() + seconds
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            c.get("/v1/state").raise_for_status()
            lat.append(time.perf_counter() - t0)
        res["rest_state"] = _pct(lat)

    async def mcp():
        import httpx2
        from mcp.client.session import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as hc, \
                streamable_http_client(url + "/mcp/", http_client=hc) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            lat, t_end = [], time.monotonic() + seconds
            while time.monotonic() < t_end:
                t0 = time.perf_counter()
                await s.call_tool("read_state", {})
                lat.append(time.perf_counter() - t0)
            return lat

    res["mcp_read_state"] = _pct(asyncio.run(mcp()))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--readers", type=int, default=50)
    ap.add_argument("--rate-hz", type=float, default=200.0, help="sim backend rate")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="simgate-gwbench-"))
    proc, url, toks = start_gateway(d, args.rate_hz)
    ctx = mp.get_context("spawn")
    res: dict = {}
    try:
        res.update(solo_latencies(url, toks["read"], min(args.seconds, 3.0)))
        q = ctx.Queue()
        p = ctx.Process(target=readers, args=(url, "/v1/health", toks["read"], args.readers, args.seconds, q))
        p.start()
        res["baseline_trivial_50_clients"] = q.get()
        p.join()
        outs = {name: ctx.Queue() for name in ("readers", "stream", "camera")}
        procs = [ctx.Process(target=readers, args=(url, "/v1/state", toks["read"], args.readers, args.seconds,
                                                   outs["readers"])),
                 ctx.Process(target=streamer, args=(url, toks["act"], 100.0, args.seconds, outs["stream"])),
                 ctx.Process(target=camera_client, args=(url, toks["camera"], args.seconds, outs["camera"]))]
        for pr in procs:
            pr.start()
        res["state_50_clients_under_load"] = outs["readers"].get()
        res["ws_stream_100hz_under_load"] = outs["stream"].get()
        res["camera_1280x960_client"] = outs["camera"].get()
        for pr in procs:
            pr.join()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    base, load = res["baseline_trivial_50_clients"], res["state_50_clients_under_load"]
    ws = res["ws_stream_100hz_under_load"]
    res["readers_vs_trivial_throughput"] = round(load["requests_per_s"] / max(base["requests_per_s"], 1e-9), 3)
    res["goals"] = {"readers_at_least_half_of_trivial": res["readers_vs_trivial_throughput"] >= 0.5,
                    "readers_p99_under_50ms": load["p99_ms"] < 50,
                    "ws_ack_p99_under_5ms": ws["p99_ms"] < 5, "no_stale_refusal": ws["refused_stale"] == 0}
    print(f"{'measure':<30}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for k in ("rest_state", "mcp_read_state", "baseline_trivial_50_clients", "state_50_clients_under_load",
              "ws_stream_100hz_under_load"):
        v = res[k]
        print(f"{k:<30}{v['n']:>7}{v['p50_ms']:>9.2f}{v['p99_ms']:>9.2f}{v.get('requests_per_s', ''):>9}")
    print(f"readers / trivial throughput (same run): {res['readers_vs_trivial_throughput']:.2f}; "
          f"stream refused {ws['refused']} (stale {ws['refused_stale']}), achieved {ws['rate_hz']} Hz; "
          f"camera {res['camera_1280x960_client']}")
    print(json.dumps(res["goals"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
