"""ArmService: the one object REST routers, the WebSocket stream and the MCP tools call. It owns the
backend, the safety layer, the lease, the audit log, the watchdog and the motions; interfaces only
translate. Every request that acts is answered here: checked as a whole, then started or refused,
and written to the audit log as one line (who, via, what was asked, the decision).

Motions (``move_joints``, ``trajectory``, ``pose``) are time-parameterized plans judged whole by
``SafetyLayer.check_plan`` before their first sample; streamed set-points (WebSocket) and policy
steps are judged one by one by ``SafetyLayer.check``. Precondition failures (e-stop, lease,
backend health) refuse at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from simgate.errors import ConfigError, SafetyViolation, SimgateError
from simgate.gateway.access import AuditLog, Lease
from simgate.gateway.motion import MotionManager, Run
from simgate.hardware.motion_profile import (
    MAX_PLAN_DURATION_S,
    MotionPlan,
    plan_from_trajectory,
    plan_joint_move,
)
from simgate.hardware.safety import SafetyConfig, SafetyLayer
from simgate.hardware.types import JointCommand, TrajectoryCommand


class Refused(SafetyViolation):
    """A command refused before it reached the backend (HTTP 409 with the reason)."""


class ArmService:
    def __init__(self, backend, audit: AuditLog, safety: SafetyConfig | None = None, lease_ttl_s: float = 5.0,
                 registry_dir=None) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.safety = SafetyLayer(self.spec, safety)
        self.audit = audit
        self.lease = Lease(lease_ttl_s)
        # motions are sampled at the backend's own rate when it has one (one set-point per physics tick),
        # else at the robot's control rate
        self.period_s = 1.0 / float(getattr(backend, "rate_hz", None) or self.spec.control_rate_hz)
        self.vmax = self.safety.vmax.copy()  # rad/s, velocity limits times velocity_scale
        self.motions = MotionManager(self, registry_dir)
        self._lock = threading.Lock()  # one command reaches the backend at a time
        self._watch: dict[str, float] = {}  # streaming clients: last message time
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watchdog_loop, daemon=True, name="simgate-watchdog")
        self._snapshot: tuple[float, dict] | None = None
        self._latest = None  # the poller's latest RobotState
        self._state_json: tuple | None = None
        self.sent_commands = 0
        self.refused_commands = 0

    def start(self) -> None:
        self.backend.connect()
        try:
            self._latest = self.backend.read()
        except SimgateError:
            self._latest = None  # no reading yet (a ROS 2 arm before its first joint state): the poller retries
        self._watchdog.start()
        threading.Thread(target=self._poll_loop, daemon=True, name="simgate-state-poll").start()

    def _poll_loop(self) -> None:
        """Keep the latest reading at the control rate, so readers never touch the backend (or its
        bus) themselves."""
        while not self._stop.wait(self.period_s):
            try:
                self._latest = self.backend.read()
            except SimgateError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.motions.cancel_all()
        self.backend.close()

    # ---- reading -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        s = self.spec
        return {"name": s.name, "dof": s.dof,
                "joints": [{"name": j.name, "lower_rad": j.lower, "upper_rad": j.upper, "velocity_rad_s": j.velocity,
                            "effort_nm": j.effort} for j in s.arm_joints],
                "gripper": bool(s.gripper), "control_rate_hz": s.control_rate_hz,
                "capabilities": self.backend.capabilities.model_dump(),
                "safety": self.safety.config.model_dump()}

    def state(self) -> dict[str, Any]:
        """The latest reading (a snapshot: never waits for the backend's control loop). The tool
        position comes from forward kinematics when the backend does not measure it."""
        st = self._latest if self._latest is not None else self.backend.read()
        health = self.backend.health()
        if health != st.health:
            st = st.model_copy(update={"health": health})
        snap = self._snapshot
        if snap is not None and snap[0] == st.stamp_s and snap[1]["health"]["status"] == st.health.status:
            out = snap[1]
        else:
            out = st.model_dump()
            if out["ee_position"] is None:
                out["ee_position"] = self.safety.kin.tcp(st.positions).tolist()
            self._snapshot = (st.stamp_s, out)
        return {**out, "estop": self.safety.estopped, "lease_holder": self.lease.holder}

    def state_json(self) -> bytes:
        """``state()`` as JSON bytes, serialized once per reading/e-stop/lease change (many readers
        of the same snapshot cost one serialization)."""
        import json

        st = self.state()
        key = (st["stamp_s"], st["health"]["status"], st["estop"], st["lease_holder"])
        cached = self._state_json
        if cached is None or cached[0] != key:
            cached = (key, json.dumps(st).encode())
            self._state_json = cached
        return cached[1]

    # ---- preconditions and audit -------------------------------------------------------------
    def _refuse(self, who: str, via: str, action: str, asked: dict, reason: str) -> Refused:
        self.refused_commands += 1
        self.audit.record(who, via, action, asked, "refused", reason=reason)
        return Refused(reason)

    def _precheck(self, who: str) -> None:
        """E-stop, lease and backend health, before anything is planned."""
        if self.safety.estopped:
            raise Refused(f"e-stop is latched ({self.safety.estop_reason}); an admin must reset it")
        if not self.lease.acquire(who):
            raise Refused(f"another client ({self.lease.holder}) holds the actuation lease")
        health = self.backend.health()
        if health.status != "ok":
            raise Refused(f"backend is {health.status}: {health.reason}")

    def _guarded(self, who: str, via: str, action: str, asked: dict, fn):
        """Run ``fn`` (which plans, checks and starts); audit its decision as one line."""
        try:
            self._precheck(who)
            out = fn()
        except (SafetyViolation, ConfigError) as exc:
            # well-formed but refused for this arm, its state or its limits: 409 with the reason
            raise self._refuse(who, via, action, asked, str(exc)) from exc
        except SimgateError as exc:
            self.refused_commands += 1
            self.audit.record(who, via, action, asked, "refused", reason=str(exc))
            raise
        self.audit.record(who, via, action, asked, "sent", sent=out.pop("summary", None))
        return out

    # ---- motions (whole-plan checks) ---------------------------------------------------------
    def resolve_positions(self, positions: list[float] | None, joints: dict[str, float] | None) -> list[float] | None:
        if joints is None:
            return positions
        names = [j.name for j in self.spec.arm_joints]
        unknown = [n for n in joints if n not in names]
        if unknown:
            raise ConfigError(f"joints: unknown joint(s) {unknown}; this arm has {names}")
        cur = self.backend.read().positions
        return [joints.get(n, q) for n, q in zip(names, cur, strict=True)]

    def _measured(self) -> tuple[list[float], np.ndarray]:
        """Positions (rad) and velocities (rad/s; below 0.02 rad/s read as rest, and within the
        limits) of the arm now: a new motion starts from there, braking first if it moves."""
        plan = self.motions.following  # a plan is being followed: continue from its last sample and speed
        if plan is not None and time.monotonic() - plan[2] < 1.5 * self.period_s and self._following_active():
            return plan[0], np.clip(np.asarray(plan[1], dtype=float), -self.vmax, self.vmax)
        following = self.safety.last_setpoint()  # a stream of set-points: continue from the last one
        if following is not None:
            return following[0], np.clip(np.asarray(following[1], dtype=float), -self.vmax, self.vmax)
        st = self.backend.read()
        v = np.asarray(st.velocities, dtype=float)
        v = np.where(np.abs(v) < 0.02, 0.0, np.clip(v, -self.vmax, self.vmax))
        return st.positions, v

    def _following_active(self) -> bool:
        active = self.motions._active
        return active is not None and active.status == "running" and not active.cancel.is_set()

    def _check(self, plan: MotionPlan, start: tuple[list[float], np.ndarray]) -> MotionPlan:
        if plan.duration_s > MAX_PLAN_DURATION_S:
            raise Refused(f"the motion would take {plan.duration_s:.1f} s (longest allowed {MAX_PLAN_DURATION_S} s)")
        d = self.safety.check_plan(plan, start[0], start[1].tolist())
        if not d.allowed:
            raise Refused(d.reason)
        return plan

    def _checked_plan(self, make_plan) -> MotionPlan:
        """``make_plan(start)`` built from where the arm is (or the set-point it follows) and judged
        whole; outside the write lock, since a long plan takes a while to judge."""
        start = self._measured()
        return self._check(make_plan(start), start)

    def _handover(self, plan: MotionPlan, make_plan) -> MotionPlan:
        """Under the write lock: if a running motion moved on while ``plan`` was judged, plan again
        from where it is now (judged again); the running motion then sends nothing more."""
        start = self._measured()
        if not np.allclose(plan.positions[0], start[0], atol=1e-9):
            plan = self._check(make_plan(start), start)
        self.motions.cancel_all()
        return plan

    def _start_plan(self, who: str, via: str, kind: str, plan: MotionPlan, detail: dict, make_plan=None) -> dict:
        """Start a checked plan, taking over from a running one without a jump in speed (refused if
        the e-stop latched meanwhile)."""
        with self._lock:
            if make_plan is not None:
                plan = self._handover(plan, make_plan)
            run = self.motions.follow(who, via, kind, plan, detail)
        return {"ok": True, **run.view(), "sent": {"positions": plan.goal}, "plan": plan.summary(),
                "summary": {"run": run.id, **plan.summary()}}

    def move_joints(self, who: str, via: str, positions: list[float] | None = None,
                    joints: dict[str, float] | None = None, gripper: float | None = None, clip: bool = False) -> dict:
        """A one-off joint target -> a synchronized trapezoidal motion within the velocity and
        acceleration limits (returns at once with its run); ``gripper`` alone is one command."""
        asked = {"positions": positions, "joints": joints, "gripper": gripper, "clip": clip}

        def go() -> dict:
            if positions is not None and joints is not None:
                raise ConfigError("give 'positions' or 'joints', not both")
            q = self.resolve_positions(positions, joints)
            if q is None and gripper is None:
                raise ConfigError("give 'positions', 'joints' or 'gripper'")
            out: dict[str, Any] = {"ok": True, "clipped": False, "note": ""}
            plan = None
            if q is not None:  # the whole motion is judged before anything (the gripper too) moves
                target, note = self._target(q, clip)

                def make_plan(start):
                    return self._plan(target, start=start)

                plan = self._checked_plan(make_plan)
                out["clipped"], out["note"] = bool(note), note
            if gripper is not None:
                self._check_gripper(gripper)
            if plan is not None:
                out.update(self._start_plan(who, via, "joints", plan, {"goal_rad": plan.goal}, make_plan))
            if gripper is not None:
                grip = self._gripper(gripper)
                out["sent"] = {**out.get("sent", {}), "gripper": grip["sent"].get("gripper")}
                out["summary"] = {**out.get("summary", {}), "gripper": gripper}
            return out

        return self._guarded(who, via, "move_joints", asked, go)

    def _target(self, q: list[float], clip: bool) -> tuple[list[float], str]:
        names = [j.name for j in self.spec.arm_joints]
        if len(q) != self.spec.dof:
            raise ConfigError(f"positions: expected {self.spec.dof} values for joints {names}, got {len(q)}")
        arr = np.asarray(q, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"positions: not finite for joint(s) {[names[i] for i in np.flatnonzero(~np.isfinite(arr))]}")
        out = (arr < self.safety.lower) | (arr > self.safety.upper)
        if out.any() and not clip:
            i = int(np.flatnonzero(out)[0])
            raise Refused(f"joint {names[i]!r}: {arr[i]:.4f} rad outside [{self.safety.lower[i]}, {self.safety.upper[i]}]")
        return np.clip(arr, self.safety.lower, self.safety.upper).tolist(), ("clipped: position limits" if out.any() else "")

    def _plan(self, target: list[float], min_duration_s: float = 0.0, start=None) -> MotionPlan:
        cur, vel = start or self._measured()
        return plan_joint_move(cur, target, self.vmax, self.safety.config.max_accel_rad_s2, self.period_s,
                               min_duration_s=min_duration_s, velocity=vel)

    def _check_gripper(self, opening: float) -> None:
        d = self.safety.check(None, opening, self.backend.read().positions)
        if not d.allowed:
            raise Refused(d.reason)

    def _gripper(self, opening: float) -> dict:
        self._check_gripper(opening)
        with self._lock:
            sent = self.backend.write(JointCommand(gripper=opening))
        self.sent_commands += 1
        return {"sent": sent.model_dump(exclude_none=True), "summary": {"gripper": opening}}

    def set_gripper(self, who: str, via: str, opening: float) -> dict:
        return self._guarded(who, via, "set_gripper", {"opening": opening}, lambda: {"ok": True, **self._gripper(opening)})

    def trajectory(self, who: str, via: str, traj: TrajectoryCommand) -> dict:
        """A joint trajectory (joint_trajectory_controller rules and interpolation) sampled at the
        control period and judged whole: limits, speed, acceleration, workspace at every sample."""
        from simgate.hardware.jtc import accept_command

        def go() -> dict:
            def make_plan(start):
                # the controller's rules, its segment-speed rule included (a point faster than the limits
                # is refused even when it falls between two control ticks); then every sample is judged
                active = accept_command(self.spec, traj, start[0], time.monotonic(),
                                        velocity_scale=self.safety.config.velocity_scale)
                return plan_from_trajectory(active, self.period_s)

            plan = self._checked_plan(make_plan)
            return self._start_plan(who, via, "trajectory", plan, {"points": len(traj.points),
                                                                    "duration_s": plan.duration_s}, make_plan)

        return self._guarded(who, via, "trajectory", {"points": len(traj.points),
                                                      "end_rad": traj.points[-1].positions}, go)

    def pose(self, who: str, via: str, position_m: list[float], duration_s: float = 1.0) -> dict:
        """The tool to ``position_m`` (world frame, m): IK for the goal, then a joint motion lasting at
        least ``duration_s``, whose tool path must stay inside the workspace box."""
        def go() -> dict:
            if len(position_m) != 3 or not np.all(np.isfinite(position_m)):
                raise ConfigError("position_m: expected 3 finite coordinates (m)")
            if not 0 < duration_s <= 60:
                raise ConfigError(f"duration_s: {duration_s} not in (0, 60]")
            q = self.motions.solve_ik(position_m)
            def make_plan(start):
                return self._plan(q, min_duration_s=duration_s, start=start)

            plan = self._checked_plan(make_plan)
            return self._start_plan(who, via, "pose", plan, {"position_m": list(position_m), "goal_rad": q},
                                    make_plan)

        return self._guarded(who, via, "pose", {"position_m": position_m, "duration_s": duration_s}, go)

    def run_policy(self, who: str, via: str, ref: str, goal_m: list[float], max_steps: int = 100,
                   tolerance_m: float | None = None) -> dict:
        """A promoted policy's steps cannot be known ahead: each is checked as it comes; a refused step
        ends the run with the arm held."""
        asked = {"policy": ref, "goal_m": goal_m, "max_steps": max_steps}

        def go() -> dict:
            if not 1 <= max_steps <= 5000:
                raise ConfigError(f"max_steps: {max_steps} not in [1, 5000]")
            run = self.motions.run_policy(who, via, ref, goal_m, max_steps, tolerance_m)
            return {"ok": True, **run.view(), "summary": {"run": run.id, "policy": run.detail["policy"]}}

        return self._guarded(who, via, "run_policy", asked, go)

    # ---- streamed set-points (WebSocket) -----------------------------------------------------
    def stream_setpoint(self, who: str, via: str, positions: list[float] | None, gripper: float | None = None,
                        clip: bool = False) -> dict:
        """One set-point of a stream: speed and acceleration judged against the previous one."""
        asked = {"positions": positions, "gripper": gripper, "clip": clip}

        def go() -> dict:
            if positions is None and gripper is None:
                raise ConfigError("give 'positions' or 'gripper'")
            self.motions.cancel_all()
            return self.send_sample(positions, gripper, clip)

        return self._guarded(who, via, "setpoint", asked, go)

    def send_sample(self, positions, gripper=None, clip=True, cancel: threading.Event | None = None,
                    period_s: float | None = None) -> dict:
        """One set-point through ``SafetyLayer.check`` to the backend (motions' samples, stream, policy).
        ``cancel``: the caller's run; once set (checked under the write lock) nothing is sent."""
        with self._lock:
            if cancel is not None and cancel.is_set():
                return {"ok": False, "cancelled": True}
            d = self.safety.check(positions, gripper, self.backend.read().positions, clip, stream=True,
                                  period_s=period_s)
            if not d.allowed:
                raise Refused(d.reason)
            vmax = self.vmax.tolist() if d.positions is not None else None
            sent = self.backend.write(JointCommand(positions=d.positions, gripper=d.gripper, max_velocity_rad_s=vmax))
        self.sent_commands += 1
        return {"ok": True, "sent": sent.model_dump(exclude_none=True, exclude={"max_velocity_rad_s"}),
                "clipped": d.clipped, "note": d.reason, "summary": {"positions": d.positions, "gripper": d.gripper}}

    # ---- stopping ----------------------------------------------------------------------------
    def hold(self) -> dict:
        """Hold the current position (allowed even under e-stop: it moves nothing)."""
        with self._lock:
            cur = [min(j.upper, max(j.lower, q)) for q, j in zip(self.backend.read().positions, self.spec.arm_joints,
                                                                 strict=True)]
            if hasattr(self.backend, "stop"):
                self.backend.stop()
                return {"positions": cur}
            return self.backend.write(JointCommand(positions=cur)).model_dump(exclude_none=True)

    def stop(self, who: str, via: str) -> dict[str, Any]:
        self.motions.cancel_all()
        sent = self.hold()
        self.audit.record(who, via, "stop", {}, "sent", sent=sent)
        return {"ok": True, "sent": sent}

    def estop(self, who: str, via: str, reason: str = "requested") -> dict[str, Any]:
        self.motions.engage_estop(f"{reason} by {who}")  # latched and every run cancelled at once
        try:
            self.hold()
        except SimgateError:
            pass
        self.audit.record(who, via, "estop", {"reason": reason}, "latched")
        return {"ok": True, "estop": True}

    def reset_estop(self, who: str, via: str) -> dict[str, Any]:
        self.safety.reset_estop()
        self.audit.record(who, via, "estop_reset", {}, "cleared")
        return {"ok": True, "estop": False}

    def cancel_run(self, who: str, via: str, run_id: str) -> dict:
        view = self.motions.cancel(run_id)
        self.audit.record(who, via, "cancel_run", {"run": run_id}, "sent")
        return view

    def get_run(self, run_id: str) -> Run:
        run = self.motions.runs.get(run_id)
        if run is None:
            raise LookupError(f"no run {run_id!r}")
        return run

    # ---- watchdog ----------------------------------------------------------------------------
    def heartbeat(self, client: str) -> None:
        self._watch[client] = time.monotonic()

    def forget(self, client: str) -> None:
        self._watch.pop(client, None)

    def _watchdog_loop(self) -> None:
        timeout = self.safety.config.watchdog_timeout_s
        while not self._stop.wait(min(timeout / 4, 0.01)):
            now = time.monotonic()
            for client, t in list(self._watch.items()):
                if now - t > timeout:
                    self._watch.pop(client, None)
                    if self.lease.holder != client.split("#", 1)[0]:
                        continue  # its set-points no longer drive the arm: nothing to stop
                    try:
                        self.hold()
                        self.audit.record(client, "watchdog", "watchdog_stop", {"silent_s": now - t}, "sent")
                    except SimgateError:
                        pass
