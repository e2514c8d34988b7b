"""The agent against a live simgate gateway on the simulated arm (fixture `simgate_gateway`)."""

import httpx
import pytest
from reach_agent.agent import ReachAgent, describe_robot_over_mcp


def test_reaches_a_goal_over_rest(simgate_gateway):
    agent = ReachAgent(simgate_gateway.url, simgate_gateway.tokens["act"])
    try:
        assert agent.state()["health"]["status"] == "ok"
        assert agent.reach([-0.1, 0.0, 0.12]) < 0.02
    finally:
        agent.close()


def test_a_read_only_token_cannot_move_the_arm(simgate_gateway):
    agent = ReachAgent(simgate_gateway.url, simgate_gateway.tokens["read"])
    with pytest.raises(httpx.HTTPStatusError) as err:
        agent.reach([-0.1, 0.0, 0.12])
    assert err.value.response.status_code == 403
    assert any(rec["outcome"] == "refused" for rec in simgate_gateway.audit())


def test_describe_robot_over_mcp(simgate_gateway):
    robot = describe_robot_over_mcp(simgate_gateway.mcp_url, simgate_gateway.tokens["read"])
    assert robot["name"] == "so101"
