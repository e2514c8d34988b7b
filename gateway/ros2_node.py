"""The gateway as a ROS 2 node (``simgate serve --backend ros2``, ``simgate-ros2-gateway``): one
process runs uvicorn (REST, WebSocket, MCP) and rclpy, spinning in its own executor thread. The
node ``simgate_gateway`` declares ``GATEWAY_PARAMETERS`` (read from ``--params-file``, e.g.
launch/params/gateway.yaml); its ROS 2 backend subscribes to ``joint_states_topic`` and sends
trajectories as goals of the controller's ``/<controller>/follow_joint_trajectory`` action (runs
carry its result), or on ``/<controller>/joint_trajectory`` when the action is not offered - an arm
under ros2_control or simgate's driver node.

    simgate serve --backend ros2 --ros-args --params-file launch/params/gateway.yaml -p port:=8010
"""

from __future__ import annotations

import sys
import threading

from simgate.hardware.ros2_params import Param, declare_all

NODE_NAME = "simgate_gateway"

GATEWAY_PARAMETERS: dict[str, Param] = {
    "host": Param("127.0.0.1", "HTTP bind address (REST, WebSocket, MCP); localhost unless you mean it"),
    "port": Param(8000, "HTTP port", (1, 65535)),
    "robot": Param("so101", "robot spec the arm matches: built-in name or spec YAML path"),
    "controller": Param("joint_trajectory_controller", "joint_trajectory_controller name (topic namespace)"),
    "joint_states_topic": Param("/joint_states", "sensor_msgs/JointState topic"),
    "stale_after_s": Param(0.25, "joint states older than this mark the arm stale; motion is refused", (0.01, 10.0)),
    "min_move_time_s": Param(0.1, "shortest trajectory duration given to a position command (s)", (0.01, 10.0)),
    "tokens_file": Param("gateway-tokens.json", "scoped API tokens (create with `simgate tokens create`)"),
    "audit_file": Param("gateway-audit.jsonl", "append-only audit log of every command"),
    "registry_dir": Param("", "promoted-policy registry ('' = SIMGATE_REGISTRY or ./registry)"),
    "max_step_rad": Param(0.35, "safety: largest joint change per command (rad)", (0.001, 3.2)),
    "velocity_scale": Param(1.0, "safety: fraction of the spec's joint velocity limits allowed", (0.01, 1.0)),
    "watchdog_timeout_s": Param(0.25, "safety: a silent streaming client stops the arm after this (s)", (0.01, 10.0)),
    "rate_limit_hz": Param(250.0, "per-token request rate limit (requests/s)", (0.1, 100000.0)),
    "lease_ttl_s": Param(5.0, "an idle actuation lease expires after this (s)", (0.1, 3600.0)),
}


def settings_from_parameters(p: dict, **overrides):
    """GatewaySettings for the node's parameter values (CLI flags in ``overrides`` win)."""
    from simgate.gateway.settings import GatewaySettings
    from simgate.hardware.safety import SafetyConfig

    data = {"host": p["host"], "port": p["port"], "tokens_file": p["tokens_file"], "audit_file": p["audit_file"],
            "registry_dir": p["registry_dir"] or None, "rate_limit_hz": p["rate_limit_hz"], "lease_ttl_s": p["lease_ttl_s"],
            "backend": {"type": "ros2", "robot": p["robot"], "controller": p["controller"],
                        "joint_states_topic": p["joint_states_topic"], "stale_after_s": p["stale_after_s"],
                        "min_move_time_s": p["min_move_time_s"]},
            "safety": SafetyConfig(max_step_rad=p["max_step_rad"], velocity_scale=p["velocity_scale"],
                                   watchdog_timeout_s=p["watchdog_timeout_s"]).model_dump()}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return GatewaySettings.load(None, **data)


def _merge_cli(params: dict, robot: str | None, config) -> dict:
    """The node's parameter values with ``--robot`` / ``--config`` applied. Either may set what the
    params file left at its default; contradicting a value the params file set is an error naming both."""
    from simgate.errors import ConfigError
    from simgate.gateway.settings import GatewaySettings

    p = dict(params)
    wanted = {}
    if config is not None:
        s = GatewaySettings.load(config)
        if s.backend.get("type", "ros2") != "ros2":
            raise ConfigError(f"{config}: backend.type is {s.backend.get('type')!r}, but --backend ros2 was given")
        wanted = {k: v for k, v in s.backend.items() if k in p}
    if robot is not None:
        wanted["robot"] = robot
    for key, value in wanted.items():
        default = GATEWAY_PARAMETERS[key].default
        if p[key] != default and p[key] != value:
            raise ConfigError(f"{key}: {value!r} (from --robot/--config) contradicts {p[key]!r} in the ROS 2 "
                              "parameters; give one of them")
        p[key] = value
    return p


def serve_ros2(ros_args: list[str], robot: str | None = None, config=None, **overrides) -> None:
    """Run the gateway node until Ctrl-C / SIGTERM. ``robot`` / ``config``: the CLI's --robot and
    --config (a gateway settings YAML), merged into the node's parameters (see ``_merge_cli``)."""
    import rclpy
    import uvicorn
    from rclpy.executors import SingleThreadedExecutor

    from simgate.gateway.settings import build_app
    from simgate.hardware.config import parse_backend_config
    from simgate.hardware.ros2_backend import Ros2Backend

    rclpy.init(args=["simgate-ros2-gateway", *ros_args])
    node = rclpy.create_node(NODE_NAME)
    # one thread: every callback here (joint states, goal responses and results) is short. rclpy's
    # MultiThreadedExecutor took 35-85 % of a core at idle, which on a 2-core machine starved the
    # subscription and made the arm look stale mid-motion
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=_spin, args=(executor,), daemon=True, name="simgate-ros2-gateway")
    service = None
    try:
        params = _merge_cli(declare_all(node, GATEWAY_PARAMETERS), robot, config)
        settings = settings_from_parameters(params, **overrides)
        backend = Ros2Backend(parse_backend_config(settings.backend), node=node)
        app, service = build_app(settings, backend=backend)
        spin.start()
        service.start()
        node.get_logger().info(f"gateway on http://{settings.host}:{settings.port} (ROS 2 backend, controller "
                               f"{settings.backend['controller']})")
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        if service is not None:
            service.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


def _spin(executor) -> None:
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except (ExternalShutdownException, KeyboardInterrupt):
        pass


def main() -> None:
    """ROS 2 executable ``simgate-ros2-gateway [--ros-args ...]``."""
    args = sys.argv[1:]
    serve_ros2(args)
