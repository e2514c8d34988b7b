"""The ROS 2 backend's FollowJointTrajectory client: one goal at a time, tracked until the
controller's result, which the gateway's runs carry (``GoalTracker.view``).

Statuses: ``sending`` -> ``executing`` -> ``succeeded`` | ``aborted`` (with the error code) |
``preempted`` (aborted because a newer goal or trajectory replaced it) | ``canceled``; or
``rejected`` when the server refuses the goal. rclpy (and control_msgs) are imported lazily.
"""

from __future__ import annotations

import threading
import time

from simgate.hardware.ros2_action_server import ERROR_NAMES

FINAL = ("succeeded", "aborted", "preempted", "canceled", "rejected")
_GOAL_STATUS = {4: "succeeded", 5: "canceled", 6: "aborted"}  # action_msgs/GoalStatus


def _load_message_types() -> None:
    """Load the message type support the first goal needs now, at connect: loading it later (disk
    reads while holding the GIL on a cold machine) stalled the executor that receives /joint_states
    long enough to mark the arm stale in the middle of the first motion."""
    from builtin_interfaces.msg import Duration
    from control_msgs.action import FollowJointTrajectory
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    FollowJointTrajectory.Goal(trajectory=JointTrajectory(points=[JointTrajectoryPoint(time_from_start=Duration())]))
    FollowJointTrajectory.Feedback()
    FollowJointTrajectory.Result()


class GoalTracker:
    def __init__(self) -> None:
        self.status = "sending"
        self.error_code: int | None = None
        self.error_string = ""
        self.feedback = 0
        self.handle = None
        self.cancel_requested = False
        self.sent_s = time.monotonic()
        self.lock = threading.Lock()

    @property
    def done(self) -> bool:
        return self.status in FINAL

    def cancel(self) -> None:
        """Ask the controller to cancel this goal (it holds); a no-op once it has ended."""
        with self.lock:
            self.cancel_requested = True
            handle = self.handle if not self.done else None
        if handle is not None:
            handle.cancel_goal_async()

    def view(self) -> dict:
        with self.lock:
            code = self.error_code
            return {"status": self.status, "done": self.done, "error_code": code,
                    "error_name": ERROR_NAMES.get(code, str(code)) if code is not None else None,
                    "error_string": self.error_string, "feedback_messages": self.feedback}


class TrajectoryActionClient:
    """``node``: the backend's rclpy node (spun elsewhere); ``name``: the action's name."""

    def __init__(self, node, name: str) -> None:
        from control_msgs.action import FollowJointTrajectory
        from rclpy.action import ActionClient

        self.name = name
        self.Action = FollowJointTrajectory
        self.client = ActionClient(node, FollowJointTrajectory, name)
        _load_message_types()
        self.goal: GoalTracker | None = None
        self.seen = False  # the server was available once: its absence is then a fault
        self._ready = (0.0, False)

    def ready(self, max_age_s: float = 0.1) -> bool:
        """The server is on the graph (cached for ``max_age_s``)."""
        t, ok = self._ready
        now = time.monotonic()
        if now - t > max_age_s:
            ok = bool(self.client.server_is_ready())
            self._ready = (now, ok)
            self.seen = self.seen or ok
        return ok

    def send(self, trajectory_msg) -> GoalTracker:
        """Send a goal for ``trajectory_msg`` (trajectory_msgs/JointTrajectory); returns its tracker."""
        goal = self.Action.Goal(trajectory=trajectory_msg)
        tracker = GoalTracker()
        self.goal = tracker

        def on_feedback(_msg) -> None:
            with tracker.lock:
                tracker.feedback += 1

        fut = self.client.send_goal_async(goal, feedback_callback=on_feedback)
        fut.add_done_callback(lambda f: self._on_response(tracker, f))
        return tracker

    def _on_response(self, tracker: GoalTracker, fut) -> None:
        handle = fut.result()
        with tracker.lock:
            if handle is None or not handle.accepted:
                tracker.status, tracker.error_string = "rejected", "the controller rejected the goal"
                return
            tracker.handle = handle
            if tracker.status == "sending":
                tracker.status = "executing"
        if tracker.cancel_requested:
            handle.cancel_goal_async()
        handle.get_result_async().add_done_callback(lambda f: self._on_result(tracker, f))

    @staticmethod
    def _on_result(tracker: GoalTracker, fut) -> None:
        res = fut.result()
        with tracker.lock:
            status = _GOAL_STATUS.get(int(res.status), f"status {res.status}")
            tracker.error_code, tracker.error_string = int(res.result.error_code), res.result.error_string
            if status == "aborted" and tracker.error_string.startswith("preempted"):
                status = "preempted"
            tracker.status = status if status in FINAL else "aborted"

    def cancel(self) -> bool:
        """Ask the controller to cancel the goal in flight (it holds); False when there is none."""
        g = self.goal
        if g is None or g.done or g.handle is None:
            return False
        g.cancel()
        return True
