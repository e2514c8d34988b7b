"""Time-parameterized motions: what every joint move becomes before anything is sent.

A ``MotionPlan`` is a list of joint-position samples (rad) at a fixed period (s), starting at the
arm's current positions. Plans come from

* ``plan_joint_move``: a one-off joint target -> a synchronized trapezoidal velocity profile
  (every joint starts and arrives together; each joint's speed stays within its velocity limit
  and its acceleration within the acceleration limit);
* ``plan_from_trajectory``: an accepted joint trajectory (``hardware.jtc``) sampled at the period.

The safety layer judges a whole plan before its first sample is sent (``SafetyLayer.check_plan``).
Units: rad, rad/s, rad/s^2, s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_PLAN_DURATION_S = 120.0


@dataclass(frozen=True)
class MotionPlan:
    period_s: float
    positions: np.ndarray  # (N + 1, dof): row 0 is the start (current positions), the last row the goal
    peak_velocity_rad_s: np.ndarray  # (dof,) the largest speed of each joint along the plan

    @property
    def duration_s(self) -> float:
        return self.period_s * (len(self.positions) - 1)

    @property
    def goal(self) -> list[float]:
        return self.positions[-1].tolist()

    def sample(self, t_s: float) -> tuple[list[float], bool]:
        """Positions at ``t_s`` after the start (linear between samples) and whether it is the end."""
        if t_s >= self.duration_s:
            return self.goal, True
        k = max(0.0, t_s / self.period_s)
        i = int(k)
        f = k - i
        return ((1 - f) * self.positions[i] + f * self.positions[i + 1]).tolist(), False

    def summary(self) -> dict:
        return {"duration_s": round(self.duration_s, 4), "samples": len(self.positions) - 1,
                "goal_rad": [round(x, 5) for x in self.goal],
                "peak_velocity_rad_s": [round(float(x), 4) for x in self.peak_velocity_rad_s]}


def trapezoid_timing(distance: np.ndarray, vmax: np.ndarray, amax: np.ndarray) -> tuple[float, float]:
    """(total time, acceleration time) of the shortest synchronized trapezoid moving each joint by
    ``|distance|`` with speed <= vmax and acceleration <= amax (a triangle when there is no cruise)."""
    d = np.abs(np.asarray(distance, dtype=float))
    if not np.any(d > 0):
        return 0.0, 0.0
    t_cruise = float(np.max(d / vmax))  # time at full speed the slowest joint needs
    k = float(np.max(d / amax))  # (T - ta) * ta must be >= d / a for every joint
    if t_cruise * t_cruise >= k:
        ta = k / t_cruise
        return t_cruise + ta, ta
    ta = math.sqrt(k)
    return 2 * ta, ta


def _unit_profile(t: np.ndarray, total_s: float, accel_s: float) -> np.ndarray:
    """Normalized progress s(t) in [0, 1] of a symmetric trapezoid (peak speed 1 / (T - ta))."""
    if total_s <= 0:
        return np.ones_like(t)
    v = 1.0 / (total_s - accel_s)
    a = v / accel_s if accel_s > 0 else math.inf
    s = np.where(t < accel_s, 0.5 * a * t**2,
                 np.where(t <= total_s - accel_s, 0.5 * a * accel_s**2 + v * (t - accel_s),
                          1.0 - 0.5 * a * (total_s - t) ** 2))
    return np.clip(s, 0.0, 1.0)


def braking(current, velocity, amax: float | np.ndarray, period_s: float) -> np.ndarray:
    """Samples (K + 1, dof) bringing joints moving at ``velocity`` (rad/s) to rest at ``amax``,
    starting at ``current``; one row when nothing moves."""
    q0, v0 = np.asarray(current, dtype=float), np.asarray(velocity, dtype=float)
    amax = np.broadcast_to(np.asarray(amax, dtype=float), q0.shape)
    t_stop = np.abs(v0) / amax
    n = math.ceil(float(np.max(t_stop)) / period_s - 1e-9) if np.any(t_stop > 0) else 0
    t = np.minimum(np.arange(n + 1)[:, None] * period_s, t_stop[None, :])
    return q0[None, :] + v0[None, :] * t - 0.5 * np.sign(v0)[None, :] * amax[None, :] * t**2


def plan_joint_move(current, target, vmax, amax: float | np.ndarray, period_s: float,
                    min_duration_s: float = 0.0, velocity=None) -> MotionPlan:
    """A synchronized trapezoidal move from ``current`` to ``target`` sampled every ``period_s``,
    lasting at least ``min_duration_s`` (a slower move has lower speed and acceleration). A joint
    still moving at ``velocity`` (rad/s, e.g. a preempted motion) first brakes to rest at ``amax``."""
    stop = braking(current, np.zeros(len(current)) if velocity is None else velocity, amax, period_s)
    plan = _trapezoid(stop[-1], target, vmax, amax, period_s, min_duration_s)
    if len(stop) == 1:
        return plan
    peak = np.maximum(plan.peak_velocity_rad_s, np.abs(np.asarray(velocity, dtype=float)))
    return MotionPlan(period_s, np.vstack([stop, plan.positions[1:]]), peak)


def _trapezoid(current, target, vmax, amax, period_s: float, min_duration_s: float) -> MotionPlan:
    q0, q1 = np.asarray(current, dtype=float), np.asarray(target, dtype=float)
    vmax = np.asarray(vmax, dtype=float)
    amax = np.broadcast_to(np.asarray(amax, dtype=float), q0.shape)
    total, accel = trapezoid_timing(q1 - q0, vmax, amax)
    if 0 < total < min_duration_s:
        total, accel = min_duration_s, accel * min_duration_s / total
    n = max(1, math.ceil(total / period_s - 1e-9))
    t = np.arange(n + 1) * period_s
    s = _unit_profile(t, total, accel)
    s[-1] = 1.0
    pos = q0[None, :] + s[:, None] * (q1 - q0)[None, :]
    peak = np.abs(q1 - q0) / (total - accel) if total > 0 else np.zeros_like(q0)
    return MotionPlan(period_s, pos, peak)


def plan_from_trajectory(active, period_s: float) -> MotionPlan:
    """Sample an accepted ``hardware.jtc.ActiveTrajectory`` every ``period_s`` from its start."""
    end = float(active.times_s[-1])
    n = max(1, math.ceil(end / period_s - 1e-9))
    pos = np.array([active.sample(active.start_s + min(k * period_s, end))[0] for k in range(n + 1)])
    peak = np.max(np.abs(np.diff(pos, axis=0)), axis=0) / period_s
    return MotionPlan(period_s, pos, peak)
