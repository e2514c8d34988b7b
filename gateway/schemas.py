"""Request bodies of the gateway's REST routes and WebSocket frames: strict types (no bool or
string where a number is expected), unknown fields refused, units in the descriptions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from simgate.hardware.types import TrajectoryCommand, TrajectoryPoint

MAX_POINTS = 1000
MAX_JOINTS = 64


def _whole_number(v):
    """JSON Schema counts 5000.0 as an integer; booleans and strings are not numbers here."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("expected an integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("expected an integer")
        return int(v)
    return v


Int = Annotated[int, BeforeValidator(_whole_number)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class MoveJoints(Strict):
    positions: list[float] | None = Field(None, max_length=MAX_JOINTS,
                                          description="arm joint targets, rad, in the robot's joint order")
    joints: dict[str, float] | None = Field(None, max_length=MAX_JOINTS,
                                            description="or targets by joint name (rad); the others hold")
    gripper: float | None = Field(None, ge=0.0, le=1.0, description="gripper opening, 0 closed .. 1 open")
    clip: bool = Field(False, description="clip the target to the joint limits instead of refusing (the reply says so)")


class Gripper(Strict):
    opening: float = Field(ge=0.0, le=1.0, description="gripper opening, 0 closed .. 1 open")


class Point(Strict):
    positions: list[float] = Field(min_length=1, max_length=MAX_JOINTS, description="arm joint positions, rad")
    velocities: list[float] | None = Field(None, max_length=MAX_JOINTS, description="joint velocities, rad/s")
    time_from_start_s: float = Field(ge=0.0, le=120.0, description="s after the start of the motion")


class Trajectory(Strict):
    points: list[Point] = Field(min_length=1, max_length=MAX_POINTS,
                                description="strictly increasing in time; linear interpolation, cubic with velocities")

    def command(self) -> TrajectoryCommand:
        return TrajectoryCommand(points=[TrajectoryPoint(**p.model_dump()) for p in self.points])


class PoseCommand(Strict):
    position_m: list[float] = Field(min_length=3, max_length=3, description="tool position [x, y, z], world frame, m")
    duration_s: float = Field(1.0, gt=0, le=60, description="shortest duration of the motion, s")


class PolicyRunRequest(Strict):
    goal_m: list[float] = Field(min_length=3, max_length=3, description="goal position, world frame, m")
    max_steps: Int = Field(100, ge=1, le=5000, description="control steps before the run gives up")
    tolerance_m: float | None = Field(None, gt=0, le=0.5, description="distance that counts as reached, m")


class EstopRequest(Strict):
    reason: str = Field("requested", max_length=200)


class StreamCommand(Strict):
    """One WebSocket frame from the client."""

    type: Literal["command", "ping", "auth"] = "command"
    id: Int | str | None = Field(None, description="echoed in the ack")
    positions: list[float] | None = Field(None, max_length=MAX_JOINTS, description="joint set-point, rad")
    gripper: float | None = Field(None, ge=0.0, le=1.0)
    clip: bool = False
    token: str | None = Field(None, max_length=200, description="only in the first frame (type auth)")
