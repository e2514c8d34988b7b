"""Acting: joint moves, gripper, trajectories, poses, stop, e-stop. Every route calls one
``ArmService`` method; refusals are 409 with the reason, nothing moves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from simgate.gateway.deps import ACT_ERRORS, Actor, Admin, Service, errors
from simgate.gateway.schemas import EstopRequest, Gripper, MoveJoints, PoseCommand, Trajectory

router = APIRouter(prefix="/v1", tags=["motion"])


@router.post("/joints", responses=ACT_ERRORS)
def move_joints(cmd: MoveJoints, who: Actor, service: Service) -> dict[str, Any]:
    """Move to joint targets: a synchronized motion within each joint's velocity limit and the
    acceleration limit, checked whole before it starts (returns at once with its run)."""
    return service.move_joints(who, "rest", cmd.positions, cmd.joints, cmd.gripper, cmd.clip)


@router.post("/gripper", responses=ACT_ERRORS)
def gripper(cmd: Gripper, who: Actor, service: Service) -> dict[str, Any]:
    return service.set_gripper(who, "rest", cmd.opening)


@router.post("/trajectory", responses=ACT_ERRORS)
def trajectory(cmd: Trajectory, who: Actor, service: Service) -> dict[str, Any]:
    """Follow a joint trajectory from the current positions; checked whole before it starts."""
    return service.trajectory(who, "rest", cmd.command())


@router.post("/pose", responses=ACT_ERRORS)
def pose(cmd: PoseCommand, who: Actor, service: Service) -> dict[str, Any]:
    """Move the tool to a position (IK); the tool path must stay in the workspace box."""
    return service.pose(who, "rest", cmd.position_m, cmd.duration_s)


@router.post("/stop", responses=errors(401, 403, 429, 503))
def stop(who: Actor, service: Service) -> dict[str, Any]:
    return service.stop(who, "rest")


@router.post("/estop", responses=errors(400, 401, 403, 413, 422, 429))
def estop(req: EstopRequest, who: Actor, service: Service) -> dict[str, Any]:
    return service.estop(who, "rest", req.reason)


@router.post("/estop/reset", responses=errors(401, 403, 429))
def estop_reset(who: Admin, service: Service) -> dict[str, Any]:
    return service.reset_estop(who, "rest")
