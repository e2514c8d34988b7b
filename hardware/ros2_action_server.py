"""The driver node's ``control_msgs/action/FollowJointTrajectory`` server on
``/<controller>/follow_joint_trajectory``, with joint_trajectory_controller semantics.

* Validation: the topic's rule set (``hardware/jtc.py``). An invalid goal is accepted and then
  aborted at once with its error code - INVALID_JOINTS (empty, duplicate, unknown or missing joint
  names), OLD_HEADER_TIMESTAMP (the trajectory ends in the past), INVALID_GOAL (anything else) - so
  the client learns why (ros2_control's JTC rejects such goals without a result). An invalid goal
  leaves the active one running.
* Tolerances: per joint from the goal's ``path_tolerance`` / ``goal_tolerance`` (0 = the
  parameter's default, -1 = no limit), position and velocity; ``goal_time_tolerance`` from the
  goal, else the ``goal_time_s`` parameter (0 = wait without limit, as in the JTC). A path
  violation aborts with PATH_TOLERANCE_VIOLATED and holds; a goal not within tolerance by the end
  time plus goal_time aborts with GOAL_TOLERANCE_VIOLATED.
* Feedback (desired / actual / error) at ``feedback_rate_hz``.
* Cancel: the arm holds at its measured position; the goal ends CANCELED.
* A new valid goal (or a trajectory on the topic) preempts the active one: ABORTED with
  error_code INVALID_GOAL (the JTC's code for it) and an error_string starting "preempted:".
  E-stop, a backend fault and a refused sample abort it the same way ("e-stop:", "backend:",
  "safety:").

The server runs on the driver's single-threaded executor: callbacks and the control tick never
overlap. Units: rad, rad/s, s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simgate.errors import ConfigError

SUCCESSFUL, INVALID_GOAL, INVALID_JOINTS, OLD_HEADER_TIMESTAMP = 0, -1, -2, -3
PATH_TOLERANCE_VIOLATED, GOAL_TOLERANCE_VIOLATED = -4, -5
ERROR_NAMES = {0: "SUCCESSFUL", -1: "INVALID_GOAL", -2: "INVALID_JOINTS", -3: "OLD_HEADER_TIMESTAMP",
               -4: "PATH_TOLERANCE_VIOLATED", -5: "GOAL_TOLERANCE_VIOLATED"}
_JOINT_REASONS = ("empty joint_names", "duplicate joint names", "unknown joint", "missing (allow_partial")


def error_code_for(reason: str) -> int:
    """The result code for a ``hardware.jtc`` rejection reason."""
    if any(r in reason for r in _JOINT_REASONS):
        return INVALID_JOINTS
    if "in the past" in reason:
        return OLD_HEADER_TIMESTAMP
    return INVALID_GOAL


@dataclass
class Tolerances:
    """Per arm joint; ``inf`` = not checked. ``goal_time_s`` 0 = no time limit."""

    path_rad: np.ndarray
    path_rad_s: np.ndarray
    goal_rad: np.ndarray
    goal_rad_s: np.ndarray
    goal_time_s: float


def _apply(base: np.ndarray, arm: list[str], entries, attr: str) -> np.ndarray:
    out = base.copy()
    for e in entries:
        if e.name not in arm:
            raise ConfigError(f"tolerance for unknown joint {e.name!r}; this arm has {arm}")
        v = getattr(e, attr)
        if v < 0:
            out[arm.index(e.name)] = math.inf
        elif v > 0:
            out[arm.index(e.name)] = v
    return out


def tolerances(arm: list[str], p: dict, goal) -> Tolerances:
    """Tolerances of ``goal`` (a FollowJointTrajectory goal) over the parameters' defaults ``p``."""
    n = len(arm)

    def default(key: str) -> np.ndarray:
        return np.full(n, p[key] if p[key] > 0 else math.inf)

    gt = goal.goal_time_tolerance.sec + goal.goal_time_tolerance.nanosec * 1e-9
    return Tolerances(
        path_rad=_apply(default("path_tolerance_rad"), arm, goal.path_tolerance, "position"),
        path_rad_s=_apply(np.full(n, math.inf), arm, goal.path_tolerance, "velocity"),
        goal_rad=_apply(default("goal_tolerance_rad"), arm, goal.goal_tolerance, "position"),
        goal_rad_s=_apply(np.full(n, math.inf), arm, goal.goal_tolerance, "velocity"),
        goal_time_s=gt if gt > 0 else p["goal_time_s"])


def violation(arm: list[str], limit_rad: np.ndarray, limit_rad_s: np.ndarray, err_rad: np.ndarray,
              vel_rad_s: np.ndarray) -> str | None:
    """The first joint outside its tolerance, as a sentence, or None."""
    for name, lim, e in zip(arm, limit_rad, err_rad, strict=True):
        if abs(e) > lim:
            return f"joint {name!r} is {abs(e):.3g} rad from its set-point (tolerance {lim:.3g} rad)"
    for name, lim, v in zip(arm, limit_rad_s, vel_rad_s, strict=True):
        if abs(v) > lim:
            return f"joint {name!r} moves at {abs(v):.3g} rad/s (tolerance {lim:.3g} rad/s)"
    return None


@dataclass
class GoalRun:
    handle: object
    traj: object  # hardware.jtc.ActiveTrajectory
    tol: Tolerances
    future: object  # rclpy Future the execute coroutine awaits: the Result
    last_feedback_s: float = -math.inf
    feedback_sent: int = 0
    log: list = field(default_factory=list)


def _load_message_types() -> None:
    """Load what the first goal needs (message type support, rclpy's Future) at start-up, not in the
    middle of it: on a cold machine loading them stalls the control tick, and /joint_states with it."""
    from control_msgs.action import FollowJointTrajectory
    from rclpy.task import Future  # noqa: F401
    from trajectory_msgs.msg import JointTrajectoryPoint

    FollowJointTrajectory.Feedback(desired=JointTrajectoryPoint(positions=[0.0]))
    FollowJointTrajectory.Result()


class FollowJointTrajectoryServer:
    """The action server; ``driver`` is the ``DriverNode`` (its tick calls :meth:`on_tick`)."""

    def __init__(self, driver) -> None:
        from control_msgs.action import FollowJointTrajectory
        from rclpy.action import ActionServer, CancelResponse, GoalResponse

        self.d = driver
        self.Action = FollowJointTrajectory
        self.active: GoalRun | None = None
        self.counts = {"goals": 0, "succeeded": 0, "aborted": 0, "canceled": 0}
        self.name = f"/{driver.p['controller'].strip('/')}/follow_joint_trajectory"
        _load_message_types()
        self.server = ActionServer(driver.node, FollowJointTrajectory, self.name, execute_callback=self.execute,
                                   goal_callback=lambda _req: GoalResponse.ACCEPT,
                                   cancel_callback=lambda _h: CancelResponse.ACCEPT)

    # ---- goals -------------------------------------------------------------------------------
    async def execute(self, handle):
        from rclpy.task import Future

        self.counts["goals"] += 1
        try:
            traj, tol = self._validate(handle.request)
        except ConfigError as exc:
            code = error_code_for(str(exc))
            self.d.log.error(f"rejected goal ({ERROR_NAMES[code]}): {exc}")
            self.counts["aborted"] += 1
            handle.abort()
            return self._result(code, str(exc))
        self.preempt("preempted: a newer goal replaced this one")
        self.d.start_trajectory(traj, via="action")
        run = GoalRun(handle, traj, tol, Future())
        self.active = run
        self.d.log.info(f"accepted goal: {len(handle.request.trajectory.points)} point(s) over "
                        f"{traj.times_s[-1]:.2f} s")
        return await run.future

    def _validate(self, goal):
        if goal.multi_dof_trajectory.joint_names or goal.multi_dof_trajectory.points:
            raise ConfigError("multi_dof_trajectory is not supported (this arm has single-DOF joints only)")
        traj = self.d.accept(goal.trajectory)
        return traj, tolerances(self.d.arm, self.d.p, goal)

    def _result(self, code: int, text: str):
        return self.Action.Result(error_code=code, error_string=text)

    def _finish(self, run: GoalRun, outcome: str, code: int, text: str) -> None:
        """End ``run``: ``outcome`` is succeed / abort / canceled."""
        if self.active is run:
            self.active = None
        if run.handle.is_active:
            getattr(run.handle, outcome)()
        self.counts[{"succeed": "succeeded", "abort": "aborted", "canceled": "canceled"}[outcome]] += 1
        if outcome == "succeed":  # rclpy: one severity per logging call site
            self.d.log.info("goal succeeded")
        else:
            self.d.log.warn(f"goal {outcome}: {ERROR_NAMES[code]} {text}".rstrip())
        if not run.future.done():
            run.future.set_result(self._result(code, text))

    def preempt(self, reason: str) -> None:
        """Abort the active goal (a new goal or topic trajectory replaced it, e-stop, a fault)."""
        if self.active is not None:
            self._finish(self.active, "abort", INVALID_GOAL, reason)

    # ---- per control tick --------------------------------------------------------------------
    def on_tick(self, now_s: float, actual: list[float], vel: list[float]) -> None:
        """After the driver's tick (measured ``actual`` rad, ``vel`` rad/s): cancel, tolerances,
        feedback, completion."""
        run = self.active
        if run is None:
            return
        if run.handle.is_cancel_requested:
            self.d.hold("goal canceled")
            self._finish(run, "canceled", SUCCESSFUL, "canceled: holding at the measured position")
            return
        want = np.asarray(run.traj.sample(now_s)[0])
        q, qd = np.asarray(actual), np.asarray(vel)
        self._feedback(run, now_s, want, q, qd)
        if now_s < run.traj.end_s:
            bad = violation(self.d.arm, run.tol.path_rad, run.tol.path_rad_s, want - q, qd)
            if bad:
                self.d.hold("path tolerance violated")
                self._finish(run, "abort", PATH_TOLERANCE_VIOLATED, bad)
            return
        bad = violation(self.d.arm, run.tol.goal_rad, run.tol.goal_rad_s, run.traj.positions[-1] - q, qd)
        if bad is None:
            self._finish(run, "succeed", SUCCESSFUL, "")
        elif run.tol.goal_time_s > 0 and now_s > run.traj.end_s + run.tol.goal_time_s:
            self.d.hold("goal tolerance violated")
            self._finish(run, "abort", GOAL_TOLERANCE_VIOLATED,
                         f"{bad} {run.tol.goal_time_s:.3f} s after the trajectory's end")

    def _feedback(self, run: GoalRun, now_s: float, want, q, qd) -> None:
        if now_s - run.last_feedback_s < 1.0 / self.d.p["feedback_rate_hz"]:
            return
        from trajectory_msgs.msg import JointTrajectoryPoint

        fb = self.Action.Feedback()
        fb.header.stamp = self.d.node.get_clock().now().to_msg()
        fb.joint_names = list(self.d.arm)
        fb.desired = JointTrajectoryPoint(positions=want.tolist())
        fb.actual = JointTrajectoryPoint(positions=q.tolist(), velocities=qd.tolist())
        fb.error = JointTrajectoryPoint(positions=(want - q).tolist())
        run.handle.publish_feedback(fb)
        run.last_feedback_s = now_s
        run.feedback_sent += 1
