"""A small agent: reads the arm's state and moves its tool to goals through the gateway's REST
API; asks the robot's description over MCP, as an LLM host would."""

from __future__ import annotations

import asyncio
import json
import time

import httpx


class ReachAgent:
    def __init__(self, url: str, token: str, timeout_s: float = 10.0) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)

    def state(self) -> dict:
        r = self.http.get("/v1/state")
        r.raise_for_status()
        return r.json()

    def reach(self, goal_m: list[float], duration_s: float = 1.5, timeout_s: float = 20.0) -> float:
        """Move the tool to ``goal_m`` (m, world frame); returns the distance left (m)."""
        r = self.http.post("/v1/pose", json={"position_m": goal_m, "duration_s": duration_s})
        r.raise_for_status()
        run_id = r.json()["id"]
        t0 = time.monotonic()
        while self.http.get(f"/v1/runs/{run_id}").json()["status"] == "running":
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"run {run_id} still running after {timeout_s} s")
            time.sleep(0.05)
        time.sleep(0.3)  # let the arm settle
        ee = self.state()["ee_position"]
        return sum((a - b) ** 2 for a, b in zip(ee, goal_m, strict=True)) ** 0.5

    def close(self) -> None:
        self.http.close()


def describe_robot_over_mcp(mcp_url: str, token: str) -> dict:
    """The gateway's ``describe_robot`` MCP tool, through the official MCP client."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def go() -> dict:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as hc, \
                streamable_http_client(mcp_url, http_client=hc) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            res = await s.call_tool("describe_robot", {})
            return json.loads(res.content[0].text)

    return asyncio.run(go())
