"""simgate's ROS 2 driver node (``simgate-ros2-driver``): brings an arm without a ROS driver (a
serial servo bus, or the PyBullet simulation) into ROS 2 the way ros2_control would.

  /joint_states                    sensor_msgs/JointState at ``rate_hz`` (stamp = measurement time)
  /<controller>/joint_trajectory   trajectory_msgs/JointTrajectory, joint_trajectory_controller
                                   semantics (see hardware/jtc.py); rejections are logged
  /<controller>/follow_joint_trajectory  control_msgs/action/FollowJointTrajectory: the same rules,
                                   plus tolerances, feedback, cancel -> hold, result codes
                                   (hardware/ros2_action_server.py); absent without control_msgs
  /robot_description               std_msgs/String (transient local): the spec's URDF, mesh paths
                                   resolved to file:// URIs
  ~/gripper                        std_msgs/Float64, gripper opening in [0, 1]
  ~/estop, ~/reset_estop           std_srvs/Trigger; the e-stop latches until reset
  ~/estopped                       std_msgs/Bool (transient local), the latch state
  /diagnostics                     diagnostic_msgs/DiagnosticArray at 1 Hz

Every command it sends (each interpolated trajectory sample, each hold) passes the SafetyLayer.
Parameters: ``DRIVER_PARAMETERS`` (files in launch/params/).

    simgate-ros2-driver --ros-args --params-file launch/params/sim_driver.yaml -p robot:=so101
"""

from __future__ import annotations

import collections
import re
import sys
import time
from pathlib import Path

from simgate.errors import ConfigError, SimgateError
from simgate.hardware.jtc import ActiveTrajectory, TrajPoint, accept_trajectory
from simgate.hardware.ros2_params import Param, declare_all

NODE_NAME = "simgate_driver"

DRIVER_PARAMETERS: dict[str, Param] = {
    "backend": Param("sim", "hardware backend to drive: sim (PyBullet in real time) or serial (servo bus)"),
    "robot": Param("so101", "robot spec: a built-in name (panda, xarm6, so101) or a spec YAML path"),
    "rate_hz": Param(0.0, "joint-state publish and command rate (Hz); 0 = the spec's control rate", (0.0, 1000.0)),
    "controller": Param("joint_trajectory_controller", "trajectory topic namespace: /<controller>/joint_trajectory"),
    "allow_partial_joints_goal": Param(False, "accept trajectories naming a subset of the joints"),
    "allow_nonzero_velocity_at_trajectory_end": Param(False, "accept a non-zero velocity at the last point"),
    "max_step_rad": Param(0.35, "safety: largest joint change per command (rad)", (0.001, 3.2)),
    "velocity_scale": Param(1.0, "safety: fraction of the spec's joint velocity limits allowed", (0.01, 1.0)),
    "max_accel_rad_s2": Param(40.0, "safety: joint acceleration limit between commands (rad/s^2)", (0.1, 1000.0)),
    "workspace_min_m": Param([-0.6, -0.6, -0.005], "safety: tool workspace box, lower corner (m, world frame)"),
    "workspace_max_m": Param([0.6, 0.6, 0.9], "safety: tool workspace box, upper corner (m, world frame)"),
    "diagnostics_rate_hz": Param(1.0, "/diagnostics publish rate (Hz)", (0.1, 100.0)),
    # FollowJointTrajectory action (defaults for what a goal leaves at 0)
    "feedback_rate_hz": Param(20.0, "action: feedback (desired / actual / error) rate (Hz)", (0.1, 1000.0)),
    "path_tolerance_rad": Param(0.0, "action: default largest set-point error while moving (rad); 0 = not checked",
                                (0.0, 10.0)),
    "goal_tolerance_rad": Param(0.05, "action: default largest error from the last point for success (rad); "
                                      "0 = not checked", (0.0, 10.0)),
    "goal_time_s": Param(1.0, "action: default time after the trajectory's end to come within the goal tolerance "
                              "(s); 0 = no limit", (0.0, 60.0)),
    "publish_robot_description": Param(True, "publish the spec's URDF on /robot_description (transient local)"),
    # sim backend
    "sim_rate_hz": Param(0.0, "sim: physics control / state rate (Hz); 0 = 4x rate_hz (at most 500)", (0.0, 1000.0)),
    "randomization": Param("", "sim: domain randomization ('' = off, 'preset')"),
    "seed": Param(0, "sim: random seed", (0, 2**31 - 1)),
    # serial backend
    "port": Param("/dev/ttyUSB0", "serial: the servo bus adapter's device"),
    "protocol": Param("feetech", "serial: feetech (STS/SCS) or dynamixel (protocol 2.0)"),
    "baud": Param(1_000_000, "serial: baud rate", (9600, 4_500_000)),
    "servo_ids": Param([1, 2, 3, 4, 5, 6], "serial: servo id per joint, spec order (arm joints, then gripper)"),
    "calibration_file": Param("calibration.yaml", "serial: calibration YAML written by `simgate calibrate`"),
    "latency_timer_ms": Param(2.0, "serial: USB adapter latency timer (ms), sets the SDK timeouts", (0.5, 32.0)),
}


def backend_config(p: dict):
    """The typed backend config the driver's parameters describe."""
    from simgate.hardware.config import SerialConfig, SimConfig
    from simgate.sim.robot_spec import load_robot_spec

    if p["backend"] == "sim":
        rate = p["rate_hz"] or float(load_robot_spec(p["robot"]).control_rate_hz)
        return SimConfig(robot=p["robot"], rate_hz=p["sim_rate_hz"] or min(500.0, 4 * rate),
                         randomization=p["randomization"] or None, seed=p["seed"])
    if p["backend"] == "serial":
        names = load_robot_spec(p["robot"]).joint_names
        ids = list(p["servo_ids"])
        if len(ids) != len(names):
            raise ConfigError(f"servo_ids: {len(ids)} ids for {len(names)} joints {names}")
        return SerialConfig(port=p["port"], protocol=p["protocol"], baud=p["baud"], robot=p["robot"],
                            ids=dict(zip(names, ids, strict=True)), calibration=p["calibration_file"],
                            latency_timer_ms=p["latency_timer_ms"])
    raise ConfigError(f"backend: {p['backend']!r} is not one of sim, serial (a ros2 arm needs no driver)")


class DriverNode:
    """The node's logic; ``node`` is an rclpy Node created by :func:`main` (or a test)."""

    def __init__(self, node, backend=None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Float64
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory

        from simgate.hardware.config import make_backend
        from simgate.hardware.safety import SafetyConfig, SafetyLayer

        self.node = node
        self.p = p = declare_all(node, DRIVER_PARAMETERS)
        self.backend = backend or make_backend(backend_config(p))
        self.spec = self.backend.spec
        self.rate_hz = p["rate_hz"] or float(self.spec.control_rate_hz)
        self.safety = SafetyLayer(self.spec, SafetyConfig(
            max_step_rad=p["max_step_rad"], command_period_s=1.0 / self.rate_hz, velocity_scale=p["velocity_scale"],
            max_accel_rad_s2=p["max_accel_rad_s2"], workspace_min_m=tuple(p["workspace_min_m"]),
            workspace_max_m=tuple(p["workspace_max_m"])))
        self.arm = [j.name for j in self.spec.arm_joints]
        self.grip = [j.name for j in self.spec.gripper.joints] if self.spec.gripper else []
        self.log = node.get_logger()
        self.traj: ActiveTrajectory | None = None
        self.action = None
        self.last_cmd: list[float] | None = None
        self.counts = {"published": 0, "accepted": 0, "rejected": 0, "clipped": 0, "refused": 0}
        self._pub_times: collections.deque[float] = collections.deque(maxlen=200)
        self._health = "starting"

        self.backend.connect()
        self._js = JointState
        self.pub_js = node.create_publisher(JointState, "/joint_states", 10)
        self.pub_diag = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_estop = node.create_publisher(Bool, "~/estopped", latched)
        self._Bool = Bool
        topic = f"/{p['controller'].strip('/')}/joint_trajectory"
        node.create_subscription(JointTrajectory, topic, self.on_trajectory, 10)
        node.create_subscription(Float64, "~/gripper", self.on_gripper, 10)
        node.create_service(Trigger, "~/estop", self.on_estop)
        node.create_service(Trigger, "~/reset_estop", self.on_reset)
        node.create_timer(1.0 / self.rate_hz, self.tick)
        node.create_timer(1.0 / p["diagnostics_rate_hz"], self.publish_diagnostics)
        self.pub_estop.publish(Bool(data=False))
        if p["publish_robot_description"]:
            from std_msgs.msg import String

            self.pub_urdf = node.create_publisher(String, "/robot_description", latched)
            self.pub_urdf.publish(String(data=robot_description(self.spec)))
        self._start_action()
        self.log.info(f"driving {self.spec.name} ({p['backend']}) at {self.rate_hz:g} Hz; trajectories on {topic}")

    def _start_action(self) -> None:
        try:
            from simgate.hardware.ros2_action_server import FollowJointTrajectoryServer

            self.action = FollowJointTrajectoryServer(self)
        except ImportError as exc:  # control_msgs not built / installed
            self.log.warn(f"no FollowJointTrajectory action ({exc}); build control_msgs with "
                          "`python -m simgate.hardware.ros2_action_build` (./run.sh does)")
            return
        self.log.info(f"FollowJointTrajectory action on {self.action.name}")

    # ---- clock -------------------------------------------------------------------------------
    def now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    # ---- the control tick --------------------------------------------------------------------
    def tick(self) -> None:
        try:
            st = self.backend.read()
        except SimgateError as exc:
            self._health = f"fault: {exc}"
            self._abort(f"backend read failed: {exc}")
            return
        self._health = st.health.status + (f": {st.health.reason}" if st.health.reason else "")
        if not st.fresh:
            self._abort(f"backend is {self._health}")
            return
        self.current = st.positions
        self._publish_state(st)
        now = self.now_s()
        if self.traj is not None and not self._follow(now, st):
            return
        if self.action is not None:
            self.action.on_tick(now, st.positions, st.velocities)

    def _follow(self, now_s: float, st) -> bool:
        """Send the active trajectory's sample at ``now_s`` through the safety layer; False when
        the trajectory was aborted."""
        q, done = self.traj.sample(now_s)
        d = self.safety.check(q, None, st.positions, clip=True, stream=True)
        if not d.allowed:
            self.counts["refused"] += 1
            self._abort(f"safety refused the trajectory sample: {d.reason}", "safety")
            return False
        self.counts["clipped"] += int(d.clipped)
        try:
            self.last_cmd = self.backend.write(self._cmd(d.positions)).positions
        except SimgateError as exc:
            self._abort(f"backend write failed: {exc}", "backend")
            return False
        if done:
            self.traj = None
        return True

    def _cmd(self, positions, gripper=None):
        from simgate.hardware.types import JointCommand

        return JointCommand(positions=positions, gripper=gripper)

    def _publish_state(self, st) -> None:
        msg = self._js()
        age_s = max(0.0, time.monotonic() - st.stamp_s)
        stamp_ns = self.node.get_clock().now().nanoseconds - int(age_s * 1e9)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.name = self.arm + self.grip
        pos, vel, eff = list(st.positions), list(st.velocities), list(st.efforts)
        if self.grip:
            g = self.spec.gripper
            opening = st.gripper if st.gripper is not None else 0.0
            pos += [g.closed + opening * (g.open - g.closed)] * len(self.grip)
            vel += [0.0] * len(self.grip)
            eff += [0.0] * len(self.grip)
        msg.position, msg.velocity, msg.effort = ([float(x) for x in v] for v in (pos, vel, eff))
        self.pub_js.publish(msg)
        self.counts["published"] += 1
        self._pub_times.append(time.monotonic())

    def _abort(self, reason: str, kind: str = "backend") -> None:
        if self.traj is not None:
            self.traj = None
            self.log.error(f"trajectory aborted: {reason}")
        if self.action is not None:
            self.action.preempt(f"{kind}: {reason}")

    def hold(self, reason: str) -> None:
        """Stop following and hold at the measured position (checked by the safety layer as a
        one-off command: it moves nothing, so only a latched e-stop refuses it)."""
        self.traj = None
        try:
            cur = [min(j.upper, max(j.lower, q)) for q, j in zip(self.backend.read().positions, self.spec.arm_joints,
                                                                 strict=True)]
            d = self.safety.check(cur, None, cur, clip=True, stream=False)
            if d.allowed:
                self.last_cmd = self.backend.write(self._cmd(d.positions)).positions
        except SimgateError as exc:
            self.log.error(f"hold ({reason}) failed: {exc}")

    # ---- inputs ------------------------------------------------------------------------------
    def accept(self, msg) -> ActiveTrajectory:
        """A ``JointTrajectory`` message checked with the controller's rules (``hardware.jtc``)
        from where the arm is (or is being sent); raises ``ConfigError`` with the reason."""
        pts = [TrajPoint(list(p.positions), list(p.velocities) if len(p.velocities) else None,
                         p.time_from_start.sec + p.time_from_start.nanosec * 1e-9) for p in msg.points]
        stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if self.safety.estopped:
            raise ConfigError("e-stop is latched; call ~/reset_estop first")
        if not hasattr(self, "current"):
            raise ConfigError("no joint state from the backend yet")
        start = self.last_cmd if self.traj is not None and self.last_cmd is not None else self.current
        return accept_trajectory(
            self.spec, list(msg.joint_names), pts, start, self.now_s(), stamp_s or None,
            allow_partial_joints_goal=self.p["allow_partial_joints_goal"],
            allow_nonzero_velocity_at_trajectory_end=self.p["allow_nonzero_velocity_at_trajectory_end"],
            velocity_scale=self.p["velocity_scale"])

    def start_trajectory(self, traj: ActiveTrajectory, via: str) -> None:
        self.traj = traj
        self.counts["accepted"] += 1
        self.log.info(f"accepted trajectory ({via}): {len(traj.times_s) - 1} point(s) over {traj.times_s[-1]:.2f} s")

    def on_trajectory(self, msg) -> None:
        try:
            traj = self.accept(msg)
        except ConfigError as exc:
            self.counts["rejected"] += 1
            self.log.error(f"rejected trajectory: {exc}")
            return
        if self.action is not None:
            self.action.preempt("preempted: a trajectory on the topic replaced it")
        self.start_trajectory(traj, "topic")

    def on_gripper(self, msg) -> None:
        if not self.spec.gripper:
            self.log.error("rejected gripper command: this arm has no gripper")
            return
        d = self.safety.check(None, float(msg.data), getattr(self, "current", []), stream=False)
        if not d.allowed:
            self.log.error(f"rejected gripper command: {d.reason}")
            return
        try:
            self.backend.write(self._cmd(None, d.gripper))
        except SimgateError as exc:
            self.log.error(f"gripper command failed: {exc}")

    def on_estop(self, request, response):
        self.safety.engage_estop("~/estop service")
        self._abort("~/estop service", "e-stop")
        try:  # hold where the arm is
            cur = [min(j.upper, max(j.lower, q)) for q, j in zip(self.backend.read().positions, self.spec.arm_joints,
                                                                 strict=True)]
            self.backend.write(self._cmd(cur))
        except SimgateError as exc:
            self.log.error(f"e-stop hold failed: {exc}")
        self.pub_estop.publish(self._Bool(data=True))
        self.log.warn("E-STOP latched")
        response.success, response.message = True, "e-stop latched; motion refused until ~/reset_estop"
        return response

    def on_reset(self, request, response):
        self.safety.reset_estop()
        self.pub_estop.publish(self._Bool(data=False))
        self.log.info("e-stop reset")
        response.success, response.message = True, "e-stop cleared"
        return response

    # ---- diagnostics -------------------------------------------------------------------------
    def achieved_rate_hz(self) -> float:
        ts = self._pub_times
        return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 2 and ts[-1] > ts[0] else 0.0

    def publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        st = DiagnosticStatus(name=f"{self.node.get_name()}: {self.spec.name}", hardware_id=self.p["backend"])
        if self.safety.estopped:
            st.level, st.message = DiagnosticStatus.ERROR, "e-stop latched"
        elif not self._health.startswith("ok"):
            st.level, st.message = DiagnosticStatus.ERROR, f"backend {self._health}"
        else:
            st.level, st.message = DiagnosticStatus.OK, "ok"
        values = {"backend": self._health, "estop": str(self.safety.estopped), "rate_hz": f"{self.achieved_rate_hz():.1f}",
                  "target_rate_hz": f"{self.rate_hz:g}", "trajectory_active": str(self.traj is not None),
                  **{k: str(v) for k, v in self.counts.items()},
                  **({f"action_{k}": str(v) for k, v in self.action.counts.items()} if self.action else {})}
        st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.node.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    def close(self) -> None:
        self.backend.close()


def robot_description(spec) -> str:
    """The spec's URDF with every mesh ``filename`` an absolute ``file://`` URI (``package://``
    and relative paths resolved against the URDF's folder), as RViz and MoveIt load them."""
    path = spec.urdf_path()
    base = path.parent

    def resolve(m: re.Match) -> str:
        name = m.group(2)
        if name.startswith("file://"):
            return m.group(0)
        rel = name.removeprefix("package://")
        cand = base / rel
        if not cand.exists() and name.startswith("package://") and "/" in rel:
            cand = base / rel.split("/", 1)[1]  # package://<pkg>/<path>: the package is this folder
        return f'{m.group(1)}"file://{cand.resolve()}"'

    return re.sub(r'(<mesh\s[^>]*?filename=)"([^"]+)"', resolve, Path(path).read_text())


def main(argv: list[str] | None = None) -> int:
    """Console script / ROS 2 executable: ``simgate-ros2-driver [--ros-args ...]``."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=sys.argv if argv is None else argv)
    node = rclpy.create_node(NODE_NAME)
    driver = None
    try:
        driver = DriverNode(node)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        print("ready", flush=True)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SimgateError as exc:
        node.get_logger().fatal(str(exc))
        return 1
    finally:
        if driver is not None:
            driver.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
