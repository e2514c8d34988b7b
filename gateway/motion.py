"""Runs: motions that take time. A checked ``MotionPlan`` is followed in its own thread at the
control rate (every sample still passes ``SafetyLayer.check`` as a backstop) or, on a backend that
takes whole trajectories (ROS 2), sent as one multi-point trajectory and watched. Promoted-policy
runs check each step as it comes. ``cancel``, stop and e-stop end a run; a refused sample ends it
with the arm held.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import numpy as np

from simgate.errors import ConfigError, SafetyViolation, SimgateError

CONTROLLER_RESULT_GRACE_S = 5.0  # how long after a trajectory's end its controller's result may take


class Run:
    def __init__(self, kind: str, detail: dict) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.kind, self.detail = kind, detail
        self.status = "running"
        self.result: dict[str, Any] = {}
        self.cancel = threading.Event()
        self.started = time.time()

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "detail": self.detail,
                "result": self.result, "started": self.started}


class MotionManager:
    def __init__(self, service, registry_dir=None) -> None:
        self.service = service
        self.spec = service.spec
        self.registry_dir = registry_dir
        self.runs: dict[str, Run] = {}
        self.following: tuple[list[float], list[float], float] | None = None  # last plan sample: q, v, time
        self._active: Run | None = None
        self._lock = threading.Lock()

    def engage_estop(self, reason: str) -> None:
        """Latch the e-stop and cancel every run, atomically with respect to ``_start``: a run either
        started before (and is cancelled now) or is refused."""
        with self._lock:
            self.service.safety.engage_estop(reason)
            self.cancel_all()

    def _start(self, run: Run, target) -> Run:
        with self._lock:
            if self.service.safety.estopped:
                raise SafetyViolation(f"e-stop is latched ({self.service.safety.estop_reason}); an admin must "
                                      "reset it")
            if self._active is not None and self._active.status == "running":
                self._active.cancel.set()
            self._active = run
            self.runs[run.id] = run
            while len(self.runs) > 1000:  # bounded history
                self.runs.pop(next(iter(self.runs)))
        threading.Thread(target=self._wrap, args=(run, target), daemon=True, name=f"simgate-run-{run.id}").start()
        return run

    def _wrap(self, run: Run, target) -> None:
        try:
            target(run)
            if run.status == "running":
                run.status = "cancelled" if run.cancel.is_set() else "done"
        except SimgateError as exc:
            run.status, run.result["error"] = "refused", str(exc)
            self._hold_after(run, str(exc))
        except Exception as exc:  # noqa: BLE001 - reported through the run's status
            run.status, run.result["error"] = "failed", f"{type(exc).__name__}: {exc}"
            self._hold_after(run, run.result["error"])

    def _hold_after(self, run: Run, reason: str) -> None:
        try:
            self.service.hold()
        except SimgateError:
            pass
        self.service.audit.record(run.detail.get("who", "?"), "run", "run_ended", {"run": run.id}, run.status,
                                  reason=reason)

    def cancel(self, run_id: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            raise LookupError(f"no run {run_id!r}")
        run.cancel.set()
        return run.view()

    def cancel_all(self) -> None:
        for r in list(self.runs.values()):
            if r.status == "running":
                r.cancel.set()

    # ---- checked plans -----------------------------------------------------------------------
    def follow(self, who: str, via: str, kind: str, plan, detail: dict) -> Run:
        run = Run(kind, {**detail, "who": who, "via": via, "duration_s": round(plan.duration_s, 4)})
        backend = self.service.backend
        target = self._send_whole if hasattr(backend, "write_trajectory") else self._stream
        return self._start(run, lambda r: target(r, plan))

    def _stream(self, run: Run, plan) -> None:
        t0 = time.monotonic()
        period = plan.period_s
        k = 0
        while not run.cancel.is_set():
            health = self.service.backend.health()
            if health.status != "ok":  # never send blind: the run ends refused, the arm is held
                raise SimgateError(f"motion aborted: backend is {health.status}: {health.reason}")
            k += 1
            q_prev, _ = plan.sample((k - 1) * period)
            q, done = plan.sample(k * period)
            # the plan was judged whole; per sample the layer is a backstop: speed clipped (never raised),
            # limits and the workspace box still refused
            out = self.service.send_sample(q, clip=True, cancel=run.cancel, period_s=period)
            if out.get("ok"):  # where a motion that takes over continues from, at this plan's speed
                self.following = (q, ((np.asarray(q) - q_prev) / period).tolist(), time.monotonic())
            if done:
                break
            time.sleep(max(0.0, t0 + k * period - time.monotonic()))
        run.result = {"final_positions": self.service.backend.read().positions}

    def _send_whole(self, run: Run, plan) -> None:
        """One multi-point trajectory for a backend whose controller interpolates (ROS 2). When the
        controller reports a result (the FollowJointTrajectory action: ``controller_goal``), the
        run waits for it and carries it."""
        from simgate.hardware.types import TrajectoryCommand, TrajectoryPoint

        period = plan.period_s
        pts = [TrajectoryPoint(positions=q.tolist(), time_from_start_s=(k + 1) * period)
               for k, q in enumerate(plan.positions[1:])]
        pts[-1] = pts[-1].model_copy(update={"velocities": [0.0] * self.spec.dof})
        backend = self.service.backend
        with self.service._lock:
            backend.write_trajectory(TrajectoryCommand(points=pts))
            goal = getattr(backend, "controller_goal", lambda: None)()  # this run's goal, or None
        self.service.sent_commands += 1
        end = time.monotonic() + plan.duration_s + (CONTROLLER_RESULT_GRACE_S if goal else 0.0)
        while time.monotonic() < end and not (goal and goal.done):
            if run.cancel.wait(0.02):
                if goal is None:
                    self.service.hold()
                else:
                    goal.cancel()  # this run's goal only (the controller holds): a newer one may be running
                break
            if backend.health().status != "ok" or self.service.safety.estopped:
                if goal and not self.service.safety.estopped:
                    run.result["controller"] = {**goal.view(), "status": "lost"}  # no answer will come
                raise SimgateError(f"motion aborted: backend is {backend.health().status}: {backend.health().reason}"
                                   if not self.service.safety.estopped else "motion aborted: e-stop")
        run.result = {"final_positions": backend.read().positions}
        if goal:
            self._controller_outcome(run, goal)

    def _controller_outcome(self, run: Run, goal) -> None:
        """The run's status from the controller's result: succeeded -> done, canceled / preempted ->
        cancelled, aborted / rejected -> failed (with the error code); audited either way."""
        t0 = time.monotonic()
        while not goal.done and time.monotonic() - t0 < 1.0:  # a cancel's answer on its way
            time.sleep(0.01)
        r = goal.view()
        run.result["controller"] = r
        if not r["done"]:
            raise SimgateError(f"no result from the controller {CONTROLLER_RESULT_GRACE_S:g} s after the trajectory's end")
        if r["status"] in ("canceled", "preempted"):
            run.status = "cancelled"
        elif r["status"] != "succeeded":
            run.status = "failed"
            run.result["error"] = f"controller {r['status']} the trajectory: {r['error_name']}: {r['error_string']}"
        self.service.audit.record(run.detail.get("who", "?"), "run", "run_ended", {"run": run.id},
                                  run.status if run.status != "running" else "done", sent=r,
                                  reason=run.result.get("error", ""))

    # ---- end-effector pose -------------------------------------------------------------------
    def solve_ik(self, position_m: list[float], iterations: int = 60) -> list[float]:
        """Joint positions putting the tool at ``position_m`` (world frame, m), from the current pose."""
        kin = self.service.safety.kin
        q, err = kin.ik(self.service.backend.read().positions, position_m, iterations)
        if err > 0.01:  # damped least squares can stall far from the goal: try again from the home pose
            q_home, err_home = kin.ik([j.home for j in self.spec.arm_joints], position_m, iterations)
            if err_home < err:
                q, err = q_home, err_home
        if err > 0.01:
            raise ConfigError(f"position_m {list(position_m)} is not reachable (closest {err:.3f} m away)")
        return q.tolist()

    # ---- promoted policies -------------------------------------------------------------------
    def run_policy(self, who: str, via: str, ref: str, goal_m: list[float], max_steps: int = 100,
                   tolerance_m: float | None = None) -> Run:
        from simgate.policies.registry import Registry

        if len(goal_m) != 3 or not all(np.isfinite(goal_m)):
            raise ConfigError("goal_m: expected 3 finite coordinates (m)")
        registry = Registry(self.registry_dir)
        registry.resolve(ref)  # 404 for an unknown ref
        problem = registry.attested(ref)  # content hash and the promotion's attestation, not the entry's word
        if problem:
            raise ConfigError(f"policy {ref!r} is not a verified promotion: {problem}")
        policy, meta = registry.load(ref)
        self._check_robot(ref, meta)
        if meta.get("control") != "ee":
            raise ConfigError(f"policy {ref!r} uses {meta.get('control')!r} control; the gateway runs 'ee' policies")
        obs_dim = meta["observation_space"]["observation"][0]
        tol = tolerance_m or 0.05
        run = Run("policy", {"policy": meta.get("id", ref), "goal_m": list(goal_m), "max_steps": max_steps,
                             "who": who, "via": via})
        return self._start(run, lambda r: self._policy_loop(r, policy, obs_dim, np.asarray(goal_m, float), max_steps, tol))

    def _check_robot(self, ref: str, meta: dict) -> None:
        """Same robot name and, where the entry records them, the same spec content and URDF (sha256)."""
        from simgate.sim.robot_spec import robot_identity

        want = meta.get("robot_spec") or {}
        have = robot_identity(self.spec) if want else {}
        differs = [k for k in ("spec_sha256", "urdf_sha256") if want.get(k) and want[k] != have[k]]
        if meta.get("robot") != self.spec.name or differs:
            raise ConfigError(f"policy {ref!r} was trained for robot {meta.get('robot')!r} "
                              f"(spec {want.get('spec_sha256', '?')[:12]}), this arm is {self.spec.name!r} "
                              f"(spec {robot_identity(self.spec)['spec_sha256'][:12]})")

    def _policy_loop(self, run: Run, policy, obs_dim: int, goal: np.ndarray, max_steps: int, tol: float) -> None:
        period = 1.0 / self.spec.control_rate_hz
        kin = self.service.safety.kin
        policy.reset()
        prev, reached, steps = None, False, 0
        for steps in range(1, max_steps + 1):  # noqa: B007
            if run.cancel.is_set():
                break
            q = self.service.backend.read().positions
            ee = kin.tcp(q)
            vel = np.zeros(3) if prev is None else (ee - prev) / period
            prev = ee
            obs = {"observation": np.concatenate([ee, vel])[:obs_dim].astype(np.float32),
                   "achieved_goal": ee.astype(np.float32), "desired_goal": goal.astype(np.float32)}
            if np.linalg.norm(ee - goal) < tol:
                reached = True
                break
            action = np.clip(np.asarray(policy.act(obs), dtype=float).reshape(-1), -1.0, 1.0)
            target_tcp = ee + action[:3] * 0.05
            target_tcp[2] = max(target_tcp[2], 0.0)
            q_next, _ = kin.ik(q, target_tcp)
            self.service.send_sample(q_next.tolist(), clip=True, cancel=run.cancel)  # speed clipped, box refused
            time.sleep(period)
        final = kin.tcp(self.service.backend.read().positions)
        dist = float(np.linalg.norm(final - goal))
        run.result = {"reached": reached or dist < tol, "distance_m": dist, "steps": steps, "final_tcp_m": final.tolist()}
