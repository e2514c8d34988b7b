"""joint_trajectory_controller semantics without ROS: validation and interpolation of a joint
trajectory. One set of rules for every place a trajectory enters: simgate's ROS 2 driver node
(``accept_trajectory`` on the decoded message), the gateway's trajectory and pose motions and the
ROS 2 backend (``accept_command`` on a ``TrajectoryCommand``).

Rules (those of ros2_control's JTC, plus simgate's limits):
  * joint names non-empty, no duplicates, all known; every arm joint present unless
    ``allow_partial_joints_goal`` (missing joints then hold their current position);
  * at least one point; each point's positions cover the named joints, finite, within limits;
    velocities / accelerations, when given, have one entry per joint;
  * ``time_from_start`` strictly increasing;
  * zero velocity at the last point unless ``allow_nonzero_velocity_at_trajectory_end``;
  * the end time (start + last ``time_from_start``) not in the past;
  * simgate adds: the joint speed each segment needs (first segment from the current position)
    stays within the velocity limits times ``velocity_scale``.
A new trajectory replaces the active one. Interpolation between points: linear with positions
only, cubic Hermite when velocities are given on both ends of a segment. Before the first
point's time the motion starts from the state at the trajectory's start.

Units: rad (or m), s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simgate.errors import ConfigError
from simgate.hardware.types import TrajectoryCommand


@dataclass(frozen=True)
class TrajPoint:
    positions: list[float]
    velocities: list[float] | None
    time_from_start_s: float


@dataclass
class ActiveTrajectory:
    """An accepted trajectory in spec joint order. ``start_s`` is on the caller's clock."""

    start_s: float
    times_s: np.ndarray  # (K+1,) with 0 for the start state
    positions: np.ndarray  # (K+1, dof)
    velocities: np.ndarray | None  # (K+1, dof) when every point has velocities

    @property
    def end_s(self) -> float:
        return self.start_s + float(self.times_s[-1])

    def sample(self, now_s: float) -> tuple[list[float], bool]:
        """Desired positions (rad) at ``now_s`` and whether the trajectory is finished."""
        t = now_s - self.start_s
        if t >= self.times_s[-1]:
            return self.positions[-1].tolist(), True
        if t <= 0:
            return self.positions[0].tolist(), False
        k = int(np.searchsorted(self.times_s, t, side="right")) - 1
        t0, t1 = self.times_s[k], self.times_s[k + 1]
        h = t1 - t0
        s = (t - t0) / h
        p0, p1 = self.positions[k], self.positions[k + 1]
        if self.velocities is None:
            return (p0 + s * (p1 - p0)).tolist(), False
        v0, v1 = self.velocities[k] * h, self.velocities[k + 1] * h
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        return (h00 * p0 + h10 * v0 + h01 * p1 + h11 * v1).tolist(), False


def accept_trajectory(spec, joint_names: list[str], points: list[TrajPoint], current: list[float], now_s: float,
                      start_s: float | None = None, *, allow_partial_joints_goal: bool = False,
                      allow_nonzero_velocity_at_trajectory_end: bool = False,
                      velocity_scale: float = 1.0) -> ActiveTrajectory:
    """Validate a trajectory message (already decoded) against the spec; raise ``ConfigError``
    with the reason, or return it in spec order starting from ``current`` at ``start_s``
    (``None`` or 0: now)."""
    arm = [j.name for j in spec.arm_joints]
    if not joint_names:
        raise ConfigError("empty joint_names")
    if not points:
        raise ConfigError("no points")
    if len(set(joint_names)) != len(joint_names):
        raise ConfigError(f"duplicate joint names in {list(joint_names)}")
    unknown = [n for n in joint_names if n not in arm]
    if unknown:
        raise ConfigError(f"unknown joint(s) {unknown}; this arm has {arm}")
    missing = [n for n in arm if n not in joint_names]
    if missing and not allow_partial_joints_goal:
        raise ConfigError(f"joint(s) {missing} missing (allow_partial_joints_goal is false)")
    n = len(joint_names)
    prev = -math.inf
    for k, pt in enumerate(points):
        if len(pt.positions) != n:
            raise ConfigError(f"points[{k}]: {len(pt.positions)} positions for {n} joints")
        if not all(math.isfinite(x) for x in pt.positions):
            raise ConfigError(f"points[{k}]: positions not finite")
        if pt.velocities is not None and len(pt.velocities) != n:
            raise ConfigError(f"points[{k}]: {len(pt.velocities)} velocities for {n} joints")
        if pt.time_from_start_s <= prev or pt.time_from_start_s < 0:
            raise ConfigError(f"points[{k}]: time_from_start {pt.time_from_start_s:.3f} s not strictly increasing")
        prev = pt.time_from_start_s
    last = points[-1]
    if (not allow_nonzero_velocity_at_trajectory_end and last.velocities is not None
            and any(abs(v) > 1e-9 for v in last.velocities)):
        raise ConfigError("non-zero velocity at the last point")
    start = now_s if not start_s else start_s
    if start + last.time_from_start_s < now_s:
        raise ConfigError(f"trajectory ends {now_s - start - last.time_from_start_s:.3f} s in the past")

    idx = {name: i for i, name in enumerate(joint_names)}
    cur = np.asarray(current, dtype=float)
    lower = np.array([j.lower for j in spec.arm_joints])
    upper = np.array([j.upper for j in spec.arm_joints])
    vmax = np.array([j.velocity for j in spec.arm_joints]) * velocity_scale
    pos = np.repeat(cur[None, :], len(points) + 1, axis=0)
    have_vel = all(p.velocities is not None for p in points)
    vel = np.zeros_like(pos) if have_vel else None
    for k, pt in enumerate(points, start=1):
        for j, name in enumerate(arm):
            if name in idx:
                pos[k, j] = pt.positions[idx[name]]
                if vel is not None:
                    vel[k, j] = pt.velocities[idx[name]]
    bad = np.argwhere((pos[1:] < lower - 1e-9) | (pos[1:] > upper + 1e-9))
    if len(bad):
        k, j = (int(x) for x in bad[0])
        raise ConfigError(f"points[{k}]: joint {arm[j]!r} at {pos[k + 1, j]:.4f} outside [{lower[j]}, {upper[j]}]")
    times = np.array([0.0] + [p.time_from_start_s for p in points])
    # time already elapsed (a start stamp in the past) shortens the first segment
    first_dt = times[1] - max(0.0, now_s - start)
    dts = np.diff(times)
    dts[0] = first_dt
    speed = np.abs(np.diff(pos, axis=0)) / np.maximum(dts, 1e-9)[:, None]
    fast = np.argwhere(speed > vmax[None, :] * (1 + 1e-6))
    if len(fast):
        k, j = (int(x) for x in fast[0])
        raise ConfigError(f"segment to points[{k}]: joint {arm[j]!r} would need {speed[k, j]:.2f} rad/s "
                          f"> limit {vmax[j]:.2f} rad/s")
    return ActiveTrajectory(start_s=start, times_s=times, positions=pos, velocities=vel)


def accept_command(spec, traj: TrajectoryCommand, current: list[float], now_s: float, *,
                   velocity_scale: float = 1.0) -> ActiveTrajectory:
    """``accept_trajectory`` for a ``TrajectoryCommand`` (every arm joint, spec order) starting
    now from ``current`` (rad). ``velocity_scale=math.inf`` skips the segment-speed rule (the
    gateway, whose safety layer bounds every control tick's step instead)."""
    names = [j.name for j in spec.arm_joints]
    points = [TrajPoint(list(p.positions), None if p.velocities is None else list(p.velocities), p.time_from_start_s)
              for p in traj.points]
    return accept_trajectory(spec, names, points, current, now_s, velocity_scale=velocity_scale)
