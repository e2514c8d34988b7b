"""A live gateway (uvicorn on loopback, in this process) around any backend, with tokens of each
scope - for tests that attack it from outside. simgate's pytest plugin builds it
(:func:`simgate.testing.rigs.in_process_gateway`); this keeps the dict the tests index."""

import asyncio
import contextlib
import socket
import time

from simgate.gateway.access import TokenStore
from simgate.testing.rigs import in_process_gateway


@contextlib.contextmanager
def live_gateway(backend, tmp_path, safety=None):
    with in_process_gateway(backend, tmp_path, safety) as gw:
        yield {"url": gw.url, "tokens": gw.tokens, "service": gw.service, "token_store": TokenStore(gw.tokens_path),
               "audit": gw.audit_path}


def free_port() -> int:
    """A TCP port free on loopback now (for a server a test starts as a process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mcp_session(endpoint: str, token: str, calls, timeout_s: float = 30.0):
    """Run ``await calls(session)`` in an official MCP client session on ``endpoint`` (streamable
    HTTP, bearer ``token``); returns its result."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        async with httpx2.AsyncClient(headers=H(token), timeout=timeout_s) as hc, \
                streamable_http_client(endpoint, http_client=hc) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            return await calls(s)

    return asyncio.run(run())


def H(tok):
    return {"Authorization": f"Bearer {tok}"}


async def mcp_calls(g, token, calls):
    """Results of ``calls`` ([(tool, args), ...]) made by the official MCP client with ``token``."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    out = []
    async with httpx2.AsyncClient(headers=H(token), timeout=30) as hc, \
            streamable_http_client(g["url"] + "/mcp/", http_client=hc) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        for name, args in calls:
            out.append(await s.call_tool(name, args))
    return out


def wait_run(client, run_id, headers, timeout_s=20.0):
    """The run's view once it stopped running (or the last one seen after ``timeout_s``)."""
    t0 = time.monotonic()
    v = None
    while time.monotonic() - t0 < timeout_s:
        v = client.get(f"/v1/runs/{run_id}", headers=headers).json()
        if v["status"] != "running":
            return v
        time.sleep(0.05)
    return v
