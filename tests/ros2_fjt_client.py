"""A MoveIt-style FollowJointTrajectory client in its own process (plain rclpy, nothing from
simgate): runs the scenarios named on the command line against
/<controller>/follow_joint_trajectory and prints one JSON object with what it saw.

    python tests/ros2_fjt_client.py succeed unknown_joint tight_tolerance cancel preempt estop
"""

import json
import os
import sys
import threading
import time

CONTROLLER = "joint_trajectory_controller"
DRIVER = "simgate_driver"
ARM = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"]


class Client:
    def __init__(self):
        import rclpy
        from control_msgs.action import FollowJointTrajectory
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState
        from std_srvs.srv import Trigger

        rclpy.init()
        self.node = rclpy.create_node("moveit_style_client")
        self.FJT = FollowJointTrajectory
        self.ac = ActionClient(self.node, FollowJointTrajectory, f"/{CONTROLLER}/follow_joint_trajectory")
        self.q = None
        self.node.create_subscription(JointState, "/joint_states", self._js, 10)
        self.estop = self.node.create_client(Trigger, f"/{DRIVER}/estop")
        self.reset = self.node.create_client(Trigger, f"/{DRIVER}/reset_estop")
        self.ex = SingleThreadedExecutor()  # rclpy's multi-threaded one idles at most of a core
        self.ex.add_node(self.node)
        threading.Thread(target=self.ex.spin, daemon=True).start()
        assert self.ac.wait_for_server(timeout_sec=20), "no action server"
        t0 = time.monotonic()
        while self.q is None and time.monotonic() - t0 < 10:
            time.sleep(0.02)

    def _js(self, msg):
        self.q = [msg.position[list(msg.name).index(n)] for n in ARM]

    def goal(self, points, names=ARM, goal_tol=None, goal_time_s=0.0):
        from builtin_interfaces.msg import Duration
        from control_msgs.msg import JointTolerance
        from trajectory_msgs.msg import JointTrajectoryPoint

        g = self.FJT.Goal()
        g.trajectory.joint_names = list(names)
        for pos, t in points:
            g.trajectory.points.append(JointTrajectoryPoint(
                positions=[float(x) for x in pos], time_from_start=Duration(sec=int(t), nanosec=int((t % 1) * 1e9))))
        if goal_tol is not None:
            g.goal_tolerance = [JointTolerance(name=n, position=goal_tol) for n in names]
        g.goal_time_tolerance = Duration(sec=int(goal_time_s), nanosec=int((goal_time_s % 1) * 1e9))
        return g

    def send(self, goal):
        """-> (goal handle, feedback list)"""
        fb = []
        fut = self.ac.send_goal_async(goal, feedback_callback=lambda m: fb.append(m.feedback))
        h = self.wait(fut)
        assert h.accepted, "goal rejected"
        return h, fb

    @staticmethod
    def wait(fut, timeout_s=15.0):
        t0 = time.monotonic()
        while not fut.done():
            assert time.monotonic() - t0 < timeout_s, "timed out"
            time.sleep(0.005)
        return fut.result()

    def result(self, h):
        r = self.wait(h.get_result_async())
        return {"status": int(r.status), "error_code": int(r.result.error_code), "error_string": r.result.error_string}

    def call(self, cli):
        from std_srvs.srv import Trigger

        assert cli.wait_for_service(timeout_sec=5)
        return self.wait(cli.call_async(Trigger.Request()))

    def move_from_here(self, delta):
        tgt = list(self.q)
        tgt[0] += delta
        return tgt


def scenario(c, name):
    q0 = list(c.q)
    if name == "succeed":
        p1, p2 = list(q0), list(q0)
        p1[0] += 0.4
        p2[0] += 0.2
        p2[2] += 0.2
        t0 = time.monotonic()
        h, fb = c.send(c.goal([(p1, 1.0), (p2, 2.0)]))
        res = c.result(h)
        return {**res, "feedback": len(fb), "latency_s": time.monotonic() - t0 - 2.0,
                "final_error": max(abs(a - b) for a, b in zip(c.q, p2, strict=True)),
                "fb_names": list(fb[-1].joint_names) if fb else []}
    if name == "unknown_joint":
        h, _ = c.send(c.goal([([*q0[:4], 0.0], 1.0)], names=[*ARM[:4], "nope"]))
        return c.result(h)
    if name == "tight_tolerance":
        tgt = c.move_from_here(0.2)
        h, _ = c.send(c.goal([(tgt, 0.5)], goal_tol=1e-9, goal_time_s=0.2))
        return c.result(h)
    if name == "cancel":
        tgt = c.move_from_here(-1.0)
        h, _ = c.send(c.goal([(tgt, 3.0)]))
        time.sleep(1.0)
        c.wait(h.cancel_goal_async())
        res = c.result(h)
        q_end = list(c.q)
        time.sleep(1.0)
        return {**res, "moved_before_cancel": abs(q_end[0] - q0[0]),
                "drift_after": max(abs(a - b) for a, b in zip(c.q, q_end, strict=True))}
    if name == "preempt":
        h1, _ = c.send(c.goal([(c.move_from_here(0.8), 3.0)]))
        time.sleep(0.5)
        h2, _ = c.send(c.goal([(q0, 1.0)]))
        return {"first": c.result(h1), "second": c.result(h2)}
    if name == "estop":
        h, _ = c.send(c.goal([(c.move_from_here(0.8), 3.0)]))
        time.sleep(0.5)
        c.call(c.estop)
        res = c.result(h)
        refused = c.result(c.send(c.goal([(q0, 1.0)]))[0])
        c.call(c.reset)
        return {**res, "while_latched": refused}
    raise SystemExit(f"unknown scenario {name}")


def main():
    c = Client()
    out = {}
    for name in sys.argv[1:]:
        out[name] = scenario(c, name)
        time.sleep(0.3)
    print(json.dumps(out), flush=True)
    os._exit(0)  # the executor thread is still spinning: leave without tearing it down


if __name__ == "__main__":
    main()
