"""ROS 2 backend: an arm already run by ros2_control.

Reads ``sensor_msgs/JointState`` (topic configurable, default ``/joint_states``). Trajectories
(the gateway's joint moves, poses and trajectories) go to the controller's
``control_msgs/action/FollowJointTrajectory`` server on ``/<controller>/follow_joint_trajectory``
when it offers one: ``controller_goal()`` then tracks the goal to the controller's result
(``hardware/ros2_action_client.py``), and a server that vanished after being seen makes the backend
stale. Without the action (or without control_msgs) they go to the topic interface
(``trajectory_msgs/JointTrajectory`` on ``/<controller>/joint_trajectory``), which gives no feedback.
Either way this backend repeats the controller's own validation first (joint names, strictly
increasing ``time_from_start``, zero velocity at the last point, limits). Streamed set-points
(``write``) use the topic. Stop = cancel the goal in flight (the controller holds), else a one-point
hold trajectory at the current positions. rclpy is imported lazily; the node spins in its own
executor thread with its own context.
"""

from __future__ import annotations

import math
import threading
import time

from simgate.errors import ConfigError, HardwareError
from simgate.hardware.jtc import accept_command
from simgate.hardware.types import (
    BackendBase,
    Capabilities,
    Health,
    JointCommand,
    RobotState,
    TrajectoryCommand,
    TrajectoryPoint,
)
from simgate.sim.robot_spec import load_robot_spec


class Ros2Backend(BackendBase):
    """``node``: an rclpy node someone else spins (the gateway's ROS 2 node); without one the
    backend makes its own context, node and executor thread."""

    def __init__(self, config, node=None) -> None:
        self.config = config
        self._external = node
        self.spec = load_robot_spec(config.robot)
        self.arm = [j.name for j in self.spec.arm_joints]
        self.capabilities = Capabilities(command_modes=["joint_positions", "joint_trajectory"], sensors=["joint_state"])
        self._lock = threading.Lock()
        self._last: RobotState | None = None
        self._last_rx = 0.0
        self._foreign: list[str] | None = None
        self._ctx = self._node = self._exec = self._thread = None
        self._action = None
        self._via_action = False  # the last trajectory went to the action server

    # ---- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        self._JT = JointTrajectory
        topic = f"/{self.config.controller.strip('/')}/joint_trajectory"
        if self._external is not None:
            self._node = self._external
            self._sub = self._node.create_subscription(JointState, self.config.joint_states_topic,
                                                       self._on_joint_state, QoSProfile(depth=10))
            self._pub = self._node.create_publisher(JointTrajectory, topic, 10)
            self._ctx = self._node.context
            self._start_action_client()
            return
        self._ctx = rclpy.Context()
        rclpy.init(context=self._ctx)
        self._node = rclpy.create_node(f"simgate_ros2_backend_{id(self) & 0xFFFF:x}", context=self._ctx)
        self._node.create_subscription(JointState, self.config.joint_states_topic, self._on_joint_state, QoSProfile(depth=10))
        self._pub = self._node.create_publisher(JointTrajectory, topic, 10)
        self._start_action_client()
        self._exec = SingleThreadedExecutor(context=self._ctx)
        self._exec.add_node(self._node)
        self._thread = threading.Thread(target=self._spin, daemon=True, name="simgate-ros2-backend")
        self._thread.start()

    def _start_action_client(self) -> None:
        try:
            from simgate.hardware.ros2_action_client import TrajectoryActionClient

            name = f"/{self.config.controller.strip('/')}/follow_joint_trajectory"
            self._action = TrajectoryActionClient(self._node, name)
        except ImportError:  # no control_msgs: the topic interface only
            self._action = None

    def _spin(self) -> None:
        try:
            while self._ctx is not None and self._ctx.ok():
                self._exec.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - shutdown races end the loop
            pass

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        if self._external is not None:
            self._node.destroy_subscription(self._sub)
            self._node.destroy_publisher(self._pub)
            if self._action is not None:
                self._action.client.destroy()
            return
        if self._thread:
            self._thread.join(timeout=2)
        self._exec.shutdown()
        self._node.destroy_node()
        ctx.try_shutdown()

    # ---- state -------------------------------------------------------------------------------
    def _on_joint_state(self, msg) -> None:
        idx = {n: i for i, n in enumerate(msg.name)}
        if not all(n in idx for n in self.arm):
            self._foreign = list(msg.name)  # an arm other than the spec's is publishing here
            return
        pos = [msg.position[idx[n]] for n in self.arm]
        vel = [msg.velocity[idx[n]] if len(msg.velocity) == len(msg.name) else 0.0 for n in self.arm]
        eff = [msg.effort[idx[n]] if len(msg.effort) == len(msg.name) else 0.0 for n in self.arm]
        now = time.monotonic()
        self._foreign = None
        with self._lock:
            self._last = RobotState(joint_names=self.arm, positions=pos, velocities=vel, efforts=eff, stamp_s=now)
            self._last_rx = now

    def health(self) -> Health:
        if self._ctx is None:
            return Health.fault("not connected")
        with self._lock:
            age = time.monotonic() - self._last_rx if self._last else math.inf
        if age > self.config.stale_after_s:
            if self._foreign:
                return Health.fault(f"{self.config.joint_states_topic} names joints {self._foreign}, not the "
                                    f"{self.spec.name} joints {self.arm}: is --robot the arm on this graph?")
            return Health.stale(f"no {self.config.joint_states_topic} message for {age:.2f} s")
        a = self._action
        if a is not None and a.seen and not a.ready():
            return Health.stale(f"the action server {a.name} is gone (joint states still arrive)")
        return Health.ok()

    def read(self) -> RobotState:
        with self._lock:
            last = self._last
        if last is None:
            raise HardwareError(f"no message on {self.config.joint_states_topic} yet")
        return last.model_copy(update={"health": self.health()})

    # ---- commands ----------------------------------------------------------------------------
    def write(self, command: JointCommand) -> JointCommand:
        if command.positions is None:
            return JointCommand()
        h = self.health()
        if h.status != "ok":
            raise HardwareError(f"refusing to move: backend is {h.status} ({h.reason})")
        cur = self.read().positions
        tgt = list(command.positions)
        if len(tgt) != self.spec.dof:
            raise ConfigError(f"positions: expected {self.spec.dof} values (joints {self.arm})")
        # time to get there at 95 % of the joints' velocity limits (the margin covers the arm moving
        # between this reading and the one write_trajectory checks the speed against)
        dur = max(self.config.min_move_time_s,
                  max(abs(t - c) / (0.95 * j.velocity) for t, c, j in zip(tgt, cur, self.spec.arm_joints, strict=True)))
        traj = TrajectoryCommand(points=[TrajectoryPoint(positions=tgt, velocities=[0.0] * len(tgt), time_from_start_s=dur)])
        self._publish(self._message(traj))  # a streamed set-point: the topic
        return JointCommand(positions=tgt)

    def write_trajectory(self, traj: TrajectoryCommand) -> TrajectoryCommand:
        """A goal for the controller's action when it offers one (``controller_result`` tracks
        it), else the topic."""
        msg = self._message(traj)
        if self._action is not None and self._action.ready():
            self._action.send(msg)
            self._via_action = True
        else:
            self._publish(msg)
        return traj

    def controller_goal(self):
        """The ``GoalTracker`` of the last trajectory (its ``view()``: the controller's word on it),
        or None when it went to the topic interface (no result to be had)."""
        if not self._via_action or self._action is None:
            return None
        return self._action.goal

    def _publish(self, msg) -> None:
        self._via_action = False
        self._pub.publish(msg)

    def _message(self, traj: TrajectoryCommand):
        # the controller's rules (and the driver's speed rule), checked here first
        accept_command(self.spec, traj, self.read().positions, time.monotonic())
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectoryPoint

        msg = self._JT()
        msg.joint_names = list(self.arm)
        for pt in traj.points:
            p = JointTrajectoryPoint()
            p.positions = [float(x) for x in pt.positions]
            p.velocities = [float(x) for x in (pt.velocities or [0.0] * self.spec.dof)] if pt.velocities is not None else []
            sec = int(pt.time_from_start_s)
            p.time_from_start = Duration(sec=sec, nanosec=int(round((pt.time_from_start_s - sec) * 1e9)))
            msg.points.append(p)
        return msg

    def stop(self) -> None:
        """Cancel the goal in flight (the controller holds), else a one-point hold at the current
        positions (an empty trajectory is rejected on Jazzy)."""
        if self._via_action and self._action is not None and self._action.cancel():
            return
        cur = [min(j.upper, max(j.lower, x)) for x, j in zip(self.read().positions, self.spec.arm_joints, strict=True)]
        self._publish(self._message(TrajectoryCommand(points=[TrajectoryPoint(
            positions=cur, velocities=[0.0] * len(cur), time_from_start_s=0.05)])))
