"""Typed backend choice: ``type: sim | serial | ros2`` selects the backend; heavy dependencies
(vendor SDKs, rclpy) are imported only by the backend that needs them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from simgate.errors import ConfigError
from simgate.hardware.serial.backend import SerialConfig


class SimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["sim"] = "sim"
    robot: str = "panda"
    rate_hz: float | None = Field(None, gt=0, le=1000)
    randomization: bool | str | dict | None = None
    seed: int = 0


class Ros2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ros2"] = "ros2"
    robot: str = "so101"
    joint_states_topic: str = "/joint_states"
    controller: str = "joint_trajectory_controller"
    stale_after_s: float = Field(0.5, gt=0)
    min_move_time_s: float = Field(0.1, gt=0, description="time given to reach a position command")


BackendConfig = Annotated[SimConfig | SerialConfig | Ros2Config, Field(discriminator="type")]
_adapter = TypeAdapter(BackendConfig)

BACKENDS = {
    "sim": "PyBullet arm stepping in real time (camera, randomization)",
    "serial": "Feetech STS / Dynamixel X servo bus through the vendors' SDKs (pyserial)",
    "ros2": "an arm under ros2_control: /joint_states in, joint_trajectory_controller out (rclpy)",
}


def parse_backend_config(data: dict | str | Path) -> SimConfig | SerialConfig | Ros2Config:
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.exists():
            raise ConfigError(f"backend config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"backend config: {errs}") from exc


def make_backend(config):
    """Instantiate (not connect) the backend a config describes."""
    if isinstance(config, dict | str | Path):
        config = parse_backend_config(config)
    if isinstance(config, SimConfig):
        from simgate.hardware.sim_backend import SimBackend

        return SimBackend(config.robot, config.rate_hz, config.randomization, seed=config.seed)
    if isinstance(config, SerialConfig):
        from simgate.hardware.serial.backend import SerialBackend

        return SerialBackend(config)
    from simgate.hardware.ros2_backend import Ros2Backend

    return Ros2Backend(config)
