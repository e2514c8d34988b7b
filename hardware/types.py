"""The Backend seam: one interface for simulated, serial-servo and ROS 2 arms.

Units: joint positions rad (or m for prismatic joints), velocities rad/s, efforts N*m (or a
normalized load where the hardware only reports that, see ``effort_unit``), time in seconds
(``time.monotonic()`` clock), gripper opening in [0, 1] (0 closed).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from simgate.sim.robot_spec import RobotSpec


class Health(BaseModel):
    """``ok``: fresh data; ``stale``: no fresh data within the staleness window; ``fault``: the
    backend failed (``reason`` says how)."""

    model_config = ConfigDict(frozen=True)
    status: Literal["ok", "stale", "fault"] = "ok"
    reason: str = ""

    @classmethod
    def ok(cls) -> Health:
        return cls()

    @classmethod
    def stale(cls, reason: str) -> Health:
        return cls(status="stale", reason=reason)

    @classmethod
    def fault(cls, reason: str) -> Health:
        return cls(status="fault", reason=reason)


class RobotState(BaseModel):
    """One reading. ``stamp_s`` is when the data was measured (monotonic clock), so a caller can
    tell fresh from old; ``health`` says whether this reading is fresh."""

    joint_names: list[str]
    positions: list[float]
    velocities: list[float]
    efforts: list[float]
    effort_unit: Literal["N*m", "load_fraction"] = "N*m"
    gripper: float | None = Field(None, description="gripper opening in [0, 1], None without gripper")
    ee_position: list[float] | None = Field(None, description="tool centre point (m), world frame, when known")
    ee_orientation: list[float] | None = Field(None, description="xyzw quaternion, when known")
    stamp_s: float
    health: Health = Health()

    @property
    def fresh(self) -> bool:
        return self.health.status == "ok"


class JointCommand(BaseModel):
    """Arm joint position targets (rad, in the spec's arm joint order) and/or a gripper opening,
    optionally with per-joint speed / acceleration limits for the move (serial backend)."""

    positions: list[float] | None = None
    gripper: float | None = Field(None, ge=0.0, le=1.0)
    max_velocity_rad_s: list[float] | None = Field(
        None, description="per arm joint speed limit for this move (rad/s or m/s); None: the backend's default "
        "(serial: the servos' profile speed, the spec's velocity limits); backends without it ignore it")
    max_acceleration_rad_s2: list[float] | None = Field(
        None, description="per arm joint acceleration limit for this move (rad/s^2 or m/s^2); None: the default")
    max_velocity_rad_s: list[float] | None = Field(
        None, description="per arm joint speed limit for reaching ``positions`` (rad/s); backends whose actuators "
                          "take one (servo Goal_Velocity / Profile_Velocity) apply it, None = the backend's default")


class TrajectoryPoint(BaseModel):
    positions: list[float]
    velocities: list[float] | None = None
    time_from_start_s: float = Field(ge=0.0)


class TrajectoryCommand(BaseModel):
    """Joint trajectory (arm joints, spec order); points strictly increasing in time."""

    points: list[TrajectoryPoint] = Field(min_length=1)


class Capabilities(BaseModel):
    command_modes: list[Literal["joint_positions", "joint_trajectory", "gripper"]]
    sensors: list[Literal["joint_state", "camera", "ee_pose"]]


@runtime_checkable
class Backend(Protocol):
    """What every arm backend provides. Use as a context manager (connect / close)."""

    spec: RobotSpec
    capabilities: Capabilities

    def connect(self) -> None: ...

    def read(self) -> RobotState: ...

    def write(self, command: JointCommand) -> JointCommand:
        """Send a command; returns the command actually sent (after clipping to limits)."""
        ...

    def health(self) -> Health: ...

    def close(self) -> None: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc) -> None: ...


class BackendBase:
    """Context-manager plumbing shared by the implementations."""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
