"""A small stand-in for ros2_control (joint_state_broadcaster + joint_trajectory_controller's
topic interface) for tests and demos without a robot: publishes JointState at ``--rate-hz`` and
follows JointTrajectory messages by linear interpolation between points, rejecting invalid
ones with a logged reason (same rules as the real controller).

    python -m simgate.hardware.ros2_fake_controller --robot so101 --controller joint_trajectory_controller
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--robot", default="so101")
    ap.add_argument("--controller", default="joint_trajectory_controller")
    ap.add_argument("--rate-hz", type=float, default=100.0)
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from simgate.sim.robot_spec import load_robot_spec

    spec = load_robot_spec(args.robot)
    names = [j.name for j in spec.arm_joints]
    rclpy.init()
    node = Node("simgate_fake_controller")
    pub = node.create_publisher(JointState, "/joint_states", 10)
    state = {"q": [j.home for j in spec.arm_joints], "traj": None, "t0": 0.0, "q0": None}

    def on_traj(msg: JointTrajectory) -> None:
        if not msg.joint_names or not msg.points:
            node.get_logger().error("rejected trajectory: empty joint names or no points")
            return
        if sorted(msg.joint_names) != sorted(names):
            node.get_logger().error(f"rejected trajectory: joints {list(msg.joint_names)} != {names}")
            return
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            node.get_logger().error("rejected trajectory: time_from_start not strictly increasing")
            return
        if msg.points[-1].velocities and any(abs(v) > 1e-9 for v in msg.points[-1].velocities):
            node.get_logger().error("rejected trajectory: non-zero velocity at the last point")
            return
        order = [list(msg.joint_names).index(n) for n in names]
        pts = [(t, [p.positions[i] for i in order]) for t, p in zip(times, msg.points, strict=True)]
        state.update(traj=pts, t0=time.monotonic(), q0=list(state["q"]))

    node.create_subscription(JointTrajectory, f"/{args.controller}/joint_trajectory", on_traj, 10)

    def tick() -> None:
        traj = state["traj"]
        if traj:
            t = time.monotonic() - state["t0"]
            prev_t, prev_q = 0.0, state["q0"]
            for tp, qp in traj:
                if t <= tp:
                    a = (t - prev_t) / (tp - prev_t) if tp > prev_t else 1.0
                    state["q"] = [x + a * (y - x) for x, y in zip(prev_q, qp, strict=True)]
                    break
                prev_t, prev_q = tp, qp
            else:
                state["q"] = list(traj[-1][1])
        msg = JointState()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.name = names
        msg.position = [float(x) for x in state["q"]]
        msg.velocity = [0.0] * len(names)
        msg.effort = [0.0] * len(names)
        pub.publish(msg)

    node.create_timer(1.0 / args.rate_hz, tick)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
