"""The one safety layer between every interface (REST, WebSocket, MCP, policy runs, ROS 2) and a
backend. Hardware-agnostic: it only needs the RobotSpec and the latest RobotState.

Checks, in order, for a joint-position command:
  e-stop latched -> refused;  shape / finite -> refused;
  position limits, max step per command (rad), velocity limit (step / command period) and
  acceleration limit (change of that velocity) -> refused, or clipped when the caller asked for
  clipping (the decision says so);
  workspace box for the end effector (forward kinematics of the *sent* command) -> refused.
A refused command never reaches the backend. The e-stop latches until an admin resets it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

from simgate.sim.robot_spec import RobotSpec


class SafetyConfig(BaseModel):
    max_step_rad: float = Field(0.35, gt=0, description="largest change of any joint per command")
    command_period_s: float = Field(0.04, gt=0, description="assumed time between commands (velocity check)")
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

    def engage_estop(self, reason: str) -> None:
        self._estop, self._estop_reason = True, reason

    def reset_estop(self) -> None:
        self._estop, self._estop_reason = False, ""
        self._last_cmd = None

    # ---- checks ------------------------------------------------------------------------------
    def check(self, positions: list[float] | None, gripper: float | None, current: list[float],
              clip: bool = False, stream: bool = True) -> Decision:
        """Judge a command against ``current`` arm positions (rad). Thread-safe.

        ``stream``: the command is one of a stream at the command rate (WebSocket, trajectories,
        policy runs): velocity and acceleration between consecutive commands are checked too. A
        one-off command (REST, MCP) is checked for limits, step and workspace; the backend's
        controller shapes its motion."""
        with self._lock:
            return self._check(positions, gripper, current, clip, stream)

    def _check(self, positions, gripper, current, clip, stream=True) -> Decision:
        if self._estop:
            return Decision(False, reason=f"e-stop is latched ({self._estop_reason}); an admin must reset it")
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
        if not stream or (self._last_t is not None and now - self._last_t > 1.5 * self.config.command_period_s):
            # not a stream at the declared command rate: judge this command on its own (step limits)
            self._last_cmd, self._last_vel = None, np.zeros(self.spec.dof)
        if self._last_cmd is not None and self._last_t is not None:
            dt = max(now - self._last_t, self.config.command_period_s)
            vel = (target - self._last_cmd) / dt
            fast = np.abs(vel) > self.vmax
            if fast.any():
                if not clip:
                    i = int(np.flatnonzero(fast)[0])
                    return Decision(False, reason=f"joint {names[i]!r}: {vel[i]:+.2f} rad/s exceeds {self.vmax[i]:.2f} rad/s")
                k = float(np.min(self.vmax / np.maximum(np.abs(vel), 1e-9)))
                target = np.clip(self._last_cmd + (target - self._last_cmd) * k, self.lower, self.upper)
                vel = vel * k
                clipped, notes = True, notes + ["velocity"]
            acc = np.abs(vel - self._last_vel) / dt
            if (acc > self.config.max_accel_rad_s2).any() and not clip:
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
        # accepted: remember for the velocity / acceleration checks
        if self._last_cmd is not None and self._last_t is not None:
            dt = max(now - self._last_t, self.config.command_period_s)
            self._last_vel = (target - self._last_cmd) / dt
        self._last_cmd, self._last_t = target, now
        return Decision(True, target.tolist(), gripper, clipped, ("clipped: " + ", ".join(notes)) if clipped else "",
                        {"tcp_m": tcp.tolist()})

    def in_limits(self, positions: list[float]) -> bool:
        q = np.asarray(positions)
        return bool(np.all(q >= self.lower - 1e-9) and np.all(q <= self.upper + 1e-9))
