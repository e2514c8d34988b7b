"""Motions that take time: joint trajectories, end-effector poses (IK) and promoted-policy runs.
Each runs in its own thread at the backend's control rate and sends every step through
``ArmService.move`` (so through the safety layer); ``cancel`` or stop/e-stop ends it.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from typing import Any

import numpy as np

from simgate.errors import ConfigError, SimgateError
from simgate.hardware.jtc import accept_command
from simgate.hardware.types import TrajectoryCommand


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
        self._active: Run | None = None
        self._lock = threading.Lock()

    def _start(self, run: Run, target) -> Run:
        with self._lock:
            if self._active is not None and self._active.status == "running":
                self._active.cancel.set()
            self._active = run
            self.runs[run.id] = run
        threading.Thread(target=self._wrap, args=(run, target), daemon=True, name=f"simgate-run-{run.id}").start()
        return run

    def _wrap(self, run: Run, target) -> None:
        try:
            target(run)
            if run.status == "running":
                run.status = "cancelled" if run.cancel.is_set() else "done"
        except SimgateError as exc:
            run.status, run.result["error"] = "refused", str(exc)
        except Exception as exc:  # noqa: BLE001 - reported through the run's status
            run.status, run.result["error"] = "failed", f"{type(exc).__name__}: {exc}"

    def cancel(self, run_id: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            raise ConfigError(f"no run {run_id!r}")
        run.cancel.set()
        return run.view()

    def cancel_all(self) -> None:
        for r in self.runs.values():
            r.cancel.set()

    # ---- trajectories ------------------------------------------------------------------------
    def trajectory(self, who: str, traj: TrajectoryCommand) -> Run:
        """Follow ``traj`` from the current positions with the joint_trajectory_controller's rules
        and interpolation (linear, cubic Hermite where velocities are given); every control tick
        goes through the safety layer, whose step limit bounds the speed (clipped, not refused)."""
        start = self.service.backend.read().positions
        active = accept_command(self.spec, traj, start, time.monotonic(), velocity_scale=math.inf)
        period = 1.0 / self.spec.control_rate_hz

        def go(run: Run) -> None:
            while not run.cancel.is_set():
                q, done = active.sample(time.monotonic())
                self.service.move(who, "trajectory", q, clip=not done)
                if done:
                    break
                time.sleep(period)
            run.result = {"final_positions": self.service.backend.read().positions}

        return self._start(Run("trajectory", {"points": len(traj.points), "duration_s": float(active.times_s[-1])}), go)

    # ---- end-effector pose -------------------------------------------------------------------
    def solve_ik(self, position_m: list[float], iterations: int = 60) -> list[float]:
        """Joint positions putting the tool at ``position_m`` (world frame, m), from the current pose."""
        q, err = self.service.safety.kin.ik(self.service.backend.read().positions, position_m, iterations)
        if err > 0.01:
            raise ConfigError(f"position_m {list(position_m)} is not reachable (closest {err:.3f} m away)")
        return q.tolist()

    def pose(self, who: str, position_m: list[float], duration_s: float = 1.0) -> Run:
        from simgate.hardware.types import TrajectoryPoint

        q = self.solve_ik(position_m)
        return self.trajectory(who, TrajectoryCommand(points=[TrajectoryPoint(positions=q, time_from_start_s=duration_s)]))

    # ---- promoted policies -------------------------------------------------------------------
    def run_policy(self, who: str, ref: str, goal_m: list[float], max_steps: int = 100, tolerance_m: float | None = None) -> Run:
        from simgate.policies.registry import Registry

        policy, meta = Registry(self.registry_dir).load(ref)
        if meta.get("robot") != self.spec.name:
            raise ConfigError(f"policy {ref!r} was trained for robot {meta.get('robot')!r}, this arm is {self.spec.name!r}")
        if meta.get("control") != "ee":
            raise ConfigError(f"policy {ref!r} uses {meta.get('control')!r} control; the gateway runs 'ee' policies")
        if len(goal_m) != 3 or not all(np.isfinite(goal_m)):
            raise ConfigError("goal: expected 3 finite coordinates (m)")
        obs_dim = meta["observation_space"]["observation"][0]
        tol = tolerance_m or 0.05
        period = 1.0 / self.spec.control_rate_hz
        kin = self.service.safety.kin

        def go(run: Run) -> None:
            policy.reset()
            prev = None
            reached = False
            steps = 0
            for steps in range(1, max_steps + 1):  # noqa: B007
                if run.cancel.is_set():
                    break
                q = self.service.backend.read().positions
                ee = kin.tcp(q)
                vel = np.zeros(3) if prev is None else (ee - prev) / period
                prev = ee
                obs_vec = np.concatenate([ee, vel])[:obs_dim]
                obs = {"observation": obs_vec.astype(np.float32), "achieved_goal": ee.astype(np.float32),
                       "desired_goal": np.asarray(goal_m, dtype=np.float32)}
                if np.linalg.norm(ee - np.asarray(goal_m)) < tol:
                    reached = True
                    break
                action = np.clip(np.asarray(policy.act(obs), dtype=float).reshape(-1), -1.0, 1.0)
                target_tcp = ee + action[:3] * 0.05
                target_tcp[2] = max(target_tcp[2], 0.0)
                q_next, _ = kin.ik(q, target_tcp)
                self.service.move(who, f"policy:{ref}", q_next.tolist(), clip=True)
                time.sleep(period)
            final = kin.tcp(self.service.backend.read().positions)
            dist = float(np.linalg.norm(final - np.asarray(goal_m)))
            run.result = {"reached": reached or dist < tol, "distance_m": dist, "steps": steps,
                          "final_tcp_m": final.tolist()}

        return self._start(Run("policy", {"policy": meta.get("id", ref), "goal_m": list(goal_m), "max_steps": max_steps}), go)
