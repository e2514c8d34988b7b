"""The one safety layer between every interface (the gateway's REST, WebSocket and MCP, policy
runs, the ROS 2 driver) and a backend. Hardware-agnostic: it needs the RobotSpec and the latest
RobotState. It lives in ``hardware`` so the ROS 2 driver and the gateway share it.

Two entry points:

* ``check_plan`` judges a whole time-parameterized motion (``hardware.motion_profile``) before its
  first sample is sent: e-stop, shape, every sample within the joint limits, the speed between
  samples within the velocity limits (times ``velocity_scale``), the change of speed within
  ``max_accel_rad_s2``, and the tool inside the workspace box at every sample. A plan refused
  anywhere is refused as a whole: nothing moves.
* ``check`` judges one streamed set-point (WebSocket commands, policy steps, trajectory
  samples): e-stop, shape, position limits, max step, the speed from the previous set-point (or
  from the measured position when no stream is running: the step must then be reachable within
  ``command_period_s``) and its change (acceleration), workspace box -> refused, or clipped when
  the caller asked for clipping (the decision says so).

A refused command never reaches the backend. The e-stop latches until an admin resets it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simgate.sim.robot_spec import RobotSpec


class SafetyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_step_rad: float = Field(0.35, gt=0, description="largest change of any joint per command")
    command_period_s: float = Field(0.04, gt=0, description="time a lone streamed set-point is given to be reached "
                                                            "(s); also the longest gap that still counts as one stream")
    min_command_period_s: float = Field(0.005, gt=0, description="shortest time between streamed set-points used "
                                                                 "for their speed (s): faster bursts count as this")
    velocity_scale: float = Field(1.0, gt=0, le=1, description="fraction of the spec's velocity limits allowed")
    max_accel_rad_s2: float = Field(40.0, gt=0)
    workspace_min_m: tuple[float, float, float] = (-0.6, -0.6, -0.005)
    workspace_max_m: tuple[float, float, float] = (0.6, 0.6, 0.9)
    watchdog_timeout_s: float = Field(0.25, gt=0, description="a silent streaming client stops the arm")


@dataclass
class Decision:
    allowed: bool
    positions: list[float] | None = None
    gripper: float | None = None
    clipped: bool = False
    reason: str = ""
    details: dict = field(default_factory=dict)


class Kinematics:
    """Forward kinematics of the spec on a private PyBullet client (no physics stepping)."""

    def __init__(self, spec: RobotSpec) -> None:
        from simgate.sim.robot import Robot
        from simgate.sim.world import World

        self._lock = threading.Lock()
        self.world = World()
        self.robot = Robot(self.world, spec)

    def _set(self, q_arm) -> None:
        import pybullet as p

        for j, q in zip(self.robot.arm_ids, q_arm, strict=True):
            p.resetJointState(self.robot.body, j, float(q), physicsClientId=self.world.cid)
        self.world.tick += 1

    def tcp(self, q_arm: list[float]) -> np.ndarray:
        """Tool centre point (m, world frame) at arm joint positions ``q_arm`` (rad)."""
        with self._lock:
            self._set(q_arm)
            return self.robot.ee_state()[0]

    def ik(self, q_arm: list[float], tcp_target_m, iterations: int = 1) -> tuple[np.ndarray, float]:
        """Arm joint positions (within limits) moving the tool towards ``tcp_target_m`` from ``q_arm``,
        and the remaining distance (m). One iteration = one damped-least-squares step."""
        dof = self.robot.dof
        lo, hi = self.robot.lower[:dof], self.robot.upper[:dof]
        target = np.asarray(tcp_target_m, dtype=float)
        q = np.asarray(q_arm, dtype=float)
        with self._lock:
            for _ in range(iterations):
                self._set(q)
                q = np.clip(self.robot.ik(target), lo, hi)
            self._set(q)
            return q, float(np.linalg.norm(self.robot.ee_state()[0] - target))


class SafetyLayer:
    def __init__(self, spec: RobotSpec, config: SafetyConfig | None = None) -> None:
        self.spec, self.config = spec, config or SafetyConfig()
        self.lower = np.array([j.lower for j in spec.arm_joints])
        self.upper = np.array([j.upper for j in spec.arm_joints])
        self.vmax = np.array([j.velocity for j in spec.arm_joints]) * self.config.velocity_scale
        self.kin = Kinematics(spec)
        self._estop = False
        self._estop_reason = ""
        self._last_cmd: np.ndarray | None = None
        self._last_vel = np.zeros(spec.dof)
        self._last_t: float | None = None
        self._lock = threading.Lock()

    # ---- e-stop ------------------------------------------------------------------------------
    @property
    def estopped(self) -> bool:
        return self._estop

    @property
    def estop_reason(self) -> str:
        return self._estop_reason

    def engage_estop(self, reason: str) -> None:
        self._estop, self._estop_reason = True, reason

    def reset_estop(self) -> None:
        self._estop, self._estop_reason = False, ""
        self._last_cmd = None

    # ---- checks ------------------------------------------------------------------------------
    def check(self, positions: list[float] | None, gripper: float | None, current: list[float],
              clip: bool = False, stream: bool = True, period_s: float | None = None) -> Decision:
        """Judge a command against ``current`` arm positions (rad). Thread-safe.

        ``period_s``: the set-point is a sample of a time-parameterized motion spaced ``period_s`` from the
        previous one (its speed is judged on that spacing, not on when it arrived).
        ``stream``: the command is one of a stream at the command rate (WebSocket, trajectories,
        policy runs): velocity and acceleration between consecutive commands are checked too. A
        one-off command (REST, MCP) is checked for limits, step and workspace; the backend's
        controller shapes its motion."""
        with self._lock:
            return self._check(positions, gripper, current, clip, stream, period_s)

    def _check(self, positions, gripper, current, clip, stream=True, period_s=None) -> Decision:
        if self._estop:
            return Decision(False, reason=f"e-stop is latched ({self._estop_reason}); an admin must reset it")
        if gripper is not None and not self.spec.gripper:
            return Decision(False, reason=f"gripper: robot {self.spec.name!r} has no gripper")
        if gripper is not None and (not math.isfinite(gripper) or not 0.0 <= gripper <= 1.0):
            return Decision(False, reason="gripper: must be a number in [0, 1]")
        if positions is None:
            return Decision(True, None, gripper)
        dof = self.spec.dof
        names = [j.name for j in self.spec.arm_joints]
        if len(positions) != dof:
            return Decision(False, reason=f"positions: expected {dof} values for joints {names}, got {len(positions)}")
        q = np.asarray(positions, dtype=float)
        if not np.all(np.isfinite(q)):
            bad = [names[i] for i in np.flatnonzero(~np.isfinite(q))]
            return Decision(False, reason=f"positions: not finite for joint(s) {bad}")
        cur = np.asarray(current, dtype=float)
        target, clipped, notes = q.copy(), False, []
        # position limits
        out = (target < self.lower) | (target > self.upper)
        if out.any():
            if not clip:
                i = int(np.flatnonzero(out)[0])
                return Decision(False, reason=f"joint {names[i]!r}: {q[i]:.4f} rad outside [{self.lower[i]}, {self.upper[i]}]")
            target = np.clip(target, self.lower, self.upper)
            clipped, notes = True, notes + ["position limits"]
        # max step per command
        step = target - cur
        over = np.abs(step) > self.config.max_step_rad
        if over.any():
            if not clip:
                i = int(np.flatnonzero(over)[0])
                return Decision(False, reason=f"joint {names[i]!r}: step {step[i]:+.3f} rad exceeds max_step_rad "
                                              f"{self.config.max_step_rad}")
            scale = self.config.max_step_rad / np.max(np.abs(step))
            # the measured pose may sit a hair outside a limit: keep the scaled step inside them
            target = np.clip(cur + step * scale, self.lower, self.upper)
            clipped, notes = True, notes + ["max step"]
        now = time.monotonic()
        cfg = self.config
        if not stream or self._last_cmd is None or self._last_t is None or now - self._last_t > 1.5 * cfg.command_period_s:
            # no stream running: the set-point starts from the measured position, at rest
            ref, ref_vel, dt = cur, np.zeros(self.spec.dof), cfg.command_period_s
        else:
            ref, ref_vel = self._last_cmd, self._last_vel
            dt = min(max(now - self._last_t, cfg.min_command_period_s), cfg.command_period_s)
            if period_s is not None:  # samples of a time-parameterized motion: their own spacing, not arrival jitter
                dt = period_s
        vel = (target - ref) / dt
        fast = np.abs(vel) > self.vmax
        if fast.any():
            if not clip:
                i = int(np.flatnonzero(fast)[0])
                return Decision(False, reason=f"joint {names[i]!r}: {vel[i]:+.2f} rad/s exceeds {self.vmax[i]:.2f} rad/s")
            k = float(np.min(self.vmax / np.maximum(np.abs(vel), 1e-9)))
            target = np.clip(ref + (target - ref) * k, self.lower, self.upper)
            vel = (target - ref) / dt
            clipped, notes = True, notes + ["velocity"]
        # the change of speed per command period: arrival jitter of a fast stream (a late set-point
        # followed by an early one) must not read as acceleration
        acc = np.abs(vel - ref_vel) / max(dt, cfg.command_period_s)
        if (acc > cfg.max_accel_rad_s2 * (1 + 1e-6)).any() and not clip:
            i = int(np.argmax(acc))
            return Decision(False, reason=f"joint {names[i]!r}: acceleration {acc[i]:.1f} rad/s^2 exceeds "
                                          f"{self.config.max_accel_rad_s2}")
        if np.any(target < self.lower) or np.any(target > self.upper):  # never send outside the limits
            return Decision(False, reason="command would end outside the joint limits after clipping")
        # workspace box for the tool (of what would be sent)
        tcp = self.kin.tcp(target.tolist())  # world frame, table top at z = 0
        lo, hi = np.array(self.config.workspace_min_m), np.array(self.config.workspace_max_m)
        if np.any(tcp < lo) or np.any(tcp > hi):
            return Decision(False, reason=f"end effector would leave the workspace box: {np.round(tcp, 3).tolist()} "
                                          f"not within {lo.tolist()}..{hi.tolist()} m")
        # accepted: remember for the velocity / acceleration checks of the next set-point
        self._last_vel = (target - ref) / dt if stream else np.zeros(self.spec.dof)
        self._last_cmd, self._last_t = (target, now) if stream else (None, None)
        return Decision(True, target.tolist(), gripper, clipped, ("clipped: " + ", ".join(notes)) if clipped else "",
                        {"tcp_m": tcp.tolist()})

    def check_plan(self, plan, current: list[float], velocity: list[float] | None = None) -> Decision:
        """Judge a whole ``MotionPlan`` (see module docstring) starting from the measured ``current``
        positions and ``velocity`` (rad/s; None: at rest). Allowed decisions carry no clipping: a
        plan is sent as it is or not at all. Thread-safe."""
        with self._lock:
            return self._check_plan(plan, current, velocity)

    def _check_plan(self, plan, current, velocity=None) -> Decision:
        if self._estop:
            return Decision(False, reason=f"e-stop is latched ({self._estop_reason}); an admin must reset it")
        names = [j.name for j in self.spec.arm_joints]
        pos = np.asarray(plan.positions, dtype=float)
        if pos.ndim != 2 or pos.shape[1] != self.spec.dof:
            return Decision(False, reason=f"positions: expected {self.spec.dof} values for joints {names}")
        if not np.all(np.isfinite(pos)):
            return Decision(False, reason="positions: not finite")
        dt = plan.period_s
        bad = np.argwhere((pos[1:] < self.lower - 1e-9) | (pos[1:] > self.upper + 1e-9))
        if len(bad):
            k, j = (int(x) for x in bad[0])
            return Decision(False, reason=f"joint {names[j]!r}: {pos[k + 1, j]:.4f} rad at t={(k + 1) * dt:.2f} s "
                                          f"outside [{self.lower[j]}, {self.upper[j]}]")
        start_gap = np.abs(pos[0] - np.asarray(current, dtype=float))
        if np.any(start_gap > self.config.max_step_rad):
            j = int(np.argmax(start_gap))
            return Decision(False, reason=f"joint {names[j]!r}: the motion starts {start_gap[j]:.3f} rad away from "
                                          "the measured position")
        vel = np.diff(pos, axis=0) / dt
        fast = np.argwhere(np.abs(vel) > self.vmax[None, :] * (1 + 1e-6) + 1e-9)
        if len(fast):
            k, j = (int(x) for x in fast[0])
            return Decision(False, reason=f"joint {names[j]!r}: {abs(vel[k, j]):.2f} rad/s at t={k * dt:.2f} s exceeds "
                                          f"the velocity limit {self.vmax[j]:.2f} rad/s")
        v0 = np.zeros((1, self.spec.dof)) if velocity is None else np.asarray(velocity, dtype=float)[None, :]
        acc = np.diff(np.vstack([v0, vel, np.zeros((1, self.spec.dof))]), axis=0)
        acc /= max(dt, self.config.command_period_s)
        hard = np.argwhere(np.abs(acc) > self.config.max_accel_rad_s2 * (1 + 1e-6) + 1e-9)
        if len(hard):
            k, j = (int(x) for x in hard[0])
            return Decision(False, reason=f"joint {names[j]!r}: acceleration {abs(acc[k, j]):.1f} rad/s^2 at "
                                          f"t={k * dt:.2f} s exceeds max_accel_rad_s2 {self.config.max_accel_rad_s2}")
        lo, hi = np.array(self.config.workspace_min_m), np.array(self.config.workspace_max_m)
        for k in range(1, len(pos)):
            tcp = self.kin.tcp(pos[k].tolist())
            if np.any(tcp < lo) or np.any(tcp > hi):
                return Decision(False, reason=f"end effector would leave the workspace box at t={k * dt:.2f} s: "
                                              f"{np.round(tcp, 3).tolist()} not within {lo.tolist()}..{hi.tolist()} m")
        return Decision(True, pos[-1].tolist(), details={"plan": plan.summary()})

    def last_setpoint(self) -> tuple[list[float], list[float]] | None:
        """(positions rad, velocity rad/s) of the last streamed set-point while a stream runs (the
        command the arm is following), else None."""
        with self._lock:
            if self._last_cmd is None or self._last_t is None:
                return None
            if time.monotonic() - self._last_t > 1.5 * self.config.command_period_s:
                return None
            return self._last_cmd.tolist(), self._last_vel.tolist()

    def in_limits(self, positions: list[float]) -> bool:
        q = np.asarray(positions)
        return bool(np.all(q >= self.lower - 1e-9) and np.all(q <= self.upper + 1e-9))
