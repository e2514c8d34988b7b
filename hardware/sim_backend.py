"""Simulated backend: PyBullet stepping in real time at the spec's control rate in a background
thread, position control through the robot's motors, a camera (RGB + depth), optional domain
randomization (dynamics, action latency, observation noise).

PyBullet clients are not thread-safe: every PyBullet call happens on the physics thread; other
threads exchange numbers with it under a lock.
"""

from __future__ import annotations

import collections
import threading
import time

import numpy as np
from pydantic import BaseModel

from simgate.errors import ConfigError, HardwareError
from simgate.hardware.sim_camera import RenderProcess
from simgate.hardware.types import BackendBase, Capabilities, Health, JointCommand, RobotState
from simgate.sim.randomization import RandomizationConfig, resolve_randomization
from simgate.sim.robot import Robot
from simgate.sim.robot_spec import RobotSpec, resolve_spec
from simgate.sim.world import RealTimePacer, World

MIN_STALE_AFTER_S = 0.05


class CameraConfig(BaseModel):
    target_m: tuple[float, float, float] = (-0.1, 0.0, 0.05)
    distance_m: float = 1.1
    yaw_deg: float = 45.0
    pitch_deg: float = -35.0


class SimBackend(BackendBase):
    """A real-time simulated arm (see module docstring)."""

    def __init__(self, robot: str | RobotSpec = "panda", rate_hz: float | None = None,
                 randomization: RandomizationConfig | dict | str | bool | None = None,
                 camera: CameraConfig | None = None, seed: int = 0, realtime: bool = True,
                 stale_after_periods: int = 3) -> None:
        self.spec = resolve_spec(robot)
        self.rate_hz = float(rate_hz or self.spec.control_rate_hz)
        if not 0 < self.rate_hz <= 1000:
            raise ConfigError(f"rate_hz must be in (0, 1000], got {self.rate_hz}")
        self.randomization = resolve_randomization(randomization)
        self.camera = camera or CameraConfig()
        self.seed, self.realtime = seed, realtime
        # stale after 3 physics periods, but never under 50 ms: at 200 Hz on a loaded 2-core machine the
        # physics thread can miss 15 ms behind a busy event loop without anything being wrong
        self.stale_after_s = max(stale_after_periods / self.rate_hz, MIN_STALE_AFTER_S)
        caps = ["joint_positions", "joint_trajectory"] + (["gripper"] if self.spec.gripper else [])
        self.capabilities = Capabilities(command_modes=caps, sensors=["joint_state", "camera", "ee_pose"])
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state: RobotState | None = None
        self._target: np.ndarray | None = None
        self._default_vmax = np.array([j.velocity for j in self.spec.all_joints], dtype=float)
        self._vmax = self._default_vmax.copy()  # rad/s: the motors' speed limit towards the target
        self._requests: collections.deque = collections.deque()
        self._joints_all: np.ndarray | None = None
        self._camera = RenderProcess(self.spec)
        self._error: str | None = None
        self.steps = 0

    # ---- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="simgate-sim-backend", daemon=True)
        self._thread.start()
        if not ready.wait(30.0) or self._error:
            raise HardwareError(f"simulated backend failed to start: {self._error or 'timeout'}")

    def close(self) -> None:
        self._stop.set()
        self._camera.close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    # ---- physics thread ----------------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        try:
            period = 1.0 / self.rate_hz
            substeps = max(1, int(round(period / 0.002)))
            world = World(time_step_s=period / substeps, substeps=substeps, solver_iterations=10)
            robot = Robot(world, self.spec)
            rng = np.random.default_rng(self.seed)
            dr = self.randomization.sample(rng) if self.randomization.enabled else {}
            self._dr = dr
            if dr:
                robot.randomize_dynamics(dr)
            latency = int(dr.get("action_latency_steps", 0))
            obs_noise = float(dr.get("obs_noise_std", 0.0))
            robot.reset()
            pending: collections.deque = collections.deque()
            with self._lock:
                self._target = robot.target.copy()
                goal, goal_vmax = self._target.copy(), self._vmax.copy()
            self._publish(robot, rng, obs_noise)
            ready.set()
            pacer = RealTimePacer(period)
            while not self._stop.is_set():
                with self._lock:
                    target, vmax = self._target.copy(), self._vmax.copy()
                    requests = list(self._requests)
                    self._requests.clear()
                for fn, box in requests:  # camera and other work that needs the client
                    try:
                        box["result"] = fn(world, robot)
                    except Exception as exc:  # noqa: BLE001 - handed back to the caller
                        box["error"] = exc
                    box["done"].set()
                pending.append((target, vmax))
                if len(pending) > latency:
                    goal, goal_vmax = pending.popleft()
                self._step_towards(world, robot, goal, goal_vmax, substeps)
                self.steps += 1
                self._publish(robot, rng, obs_noise)
                if self.realtime:
                    pacer.wait()
            world.close()
        except Exception as exc:  # noqa: BLE001
            self._error = f"{type(exc).__name__}: {exc}"
            ready.set()

    @staticmethod
    def _step_towards(world: World, robot: Robot, goal: np.ndarray, vmax: np.ndarray, substeps: int) -> None:
        """One control period: the motors' set-point moves evenly towards ``goal`` over the period (a
        stream of set-points at the control rate becomes a smooth ramp), never faster than ``vmax``
        (rad/s) per joint - as a servo with a speed limit does."""
        import pybullet as p

        dt = world.time_step_s
        move = np.clip((goal - robot.target) / substeps, -vmax * dt, vmax * dt)
        for _ in range(substeps):
            step = np.clip(goal - robot.target, -np.abs(move), np.abs(move))
            robot.target = robot.target + step
            # the ramp's velocity as feed-forward: the joint tracks the ramp instead of lagging it and
            # catching up with a jolt when it slows down
            # and the joint's speed limit as the motor's maximum velocity (a servo's speed limit)
            for j, q, v, f, vm in zip(robot.motor_ids, robot.target, step / dt, robot.forces, vmax, strict=True):
                p.setJointMotorControl2(robot.body, j, p.POSITION_CONTROL, targetPosition=float(q),
                                        targetVelocity=float(v), force=float(f), maxVelocity=float(vm),
                                        physicsClientId=world.cid)
            world.step(1)

    def _publish(self, robot: Robot, rng, obs_noise: float) -> None:
        q, qd, eff = robot.joint_state()
        joints_all = q.copy()
        if obs_noise:
            q = q + rng.normal(0.0, obs_noise, q.shape)
        pos, orn, _ = robot.ee_state()
        dof = robot.dof
        state = RobotState(
            joint_names=[j.name for j in self.spec.arm_joints],
            positions=q[:dof].tolist(), velocities=qd[:dof].tolist(), efforts=eff[:dof].tolist(),
            gripper=robot.gripper_opening(q) if robot.grip_ids else None,
            ee_position=pos.tolist(), ee_orientation=orn.tolist(), stamp_s=time.monotonic(),
        )
        with self._lock:
            self._state, self._joints_all = state, joints_all

    # ---- API ---------------------------------------------------------------------------------
    def health(self) -> Health:
        if self._error:
            return Health.fault(self._error)
        if self._thread is None:
            return Health.fault("not connected")
        with self._lock:
            st = self._state
        if st is None or time.monotonic() - st.stamp_s > self.stale_after_s:
            return Health.stale(f"no physics update for more than {self.stale_after_s:.3f} s")
        return Health.ok()

    def read(self) -> RobotState:
        with self._lock:
            st = self._state
        if st is None:
            raise HardwareError("simulated backend is not connected")
        return st.model_copy(update={"health": self.health()})

    def write(self, command: JointCommand) -> JointCommand:
        """Clip to position limits and the per-period velocity limit; returns what is applied."""
        spec, dof = self.spec, self.spec.dof
        with self._lock:
            if self._target is None:
                raise HardwareError("simulated backend is not connected")
            target = self._target.copy()
        lower = np.array([j.lower for j in spec.all_joints])
        upper = np.array([j.upper for j in spec.all_joints])
        if command.positions is not None:
            q = np.asarray(command.positions, dtype=float)
            if q.shape != (dof,) or not np.all(np.isfinite(q)):
                raise ConfigError(f"positions must be {dof} finite values (joints {spec.joint_names[:dof]})")
            target[:dof] = np.clip(q, lower[:dof], upper[:dof])
            vmax = self._default_vmax.copy()
            if command.max_velocity_rad_s is not None:
                vmax[:dof] = np.minimum(vmax[:dof], np.abs(np.asarray(command.max_velocity_rad_s, dtype=float)))
            with self._lock:
                self._vmax = vmax
        if command.gripper is not None and spec.gripper:
            g = spec.gripper
            frac = 0.025 + 0.95 * command.gripper
            target[dof:] = (g.closed + frac * (g.open - g.closed)) * np.array(g.mults)
        with self._lock:
            self._target = target
        sent_grip = command.gripper if spec.gripper else None
        return JointCommand(positions=target[:dof].tolist() if command.positions is not None else None,
                            gripper=sent_grip)

    def camera_image(self, width: int = 320, height: int = 240, timeout_s: float = 10.0, fmt: str | None = None):
        """RGB (H, W, 3) uint8 and depth (H, W) float32 in m - or, with ``fmt`` (png | jpeg), the
        encoded RGB image - rendered in a separate process (``hardware.sim_camera``) from the latest
        joint positions: neither rendering nor encoding ever stalls the physics thread."""
        cam = self.camera
        with self._lock:
            q_all = None if self._joints_all is None else self._joints_all.copy()
        if q_all is None:
            raise HardwareError("simulated backend is not connected")
        return self._camera.render(q_all, width, height, (cam.target_m, cam.distance_m, cam.yaw_deg, cam.pitch_deg),
                                   timeout_s, fmt)

    def _on_physics_thread(self, fn, timeout_s: float):
        box = {"done": threading.Event()}
        with self._lock:
            self._requests.append((fn, box))
        if not box["done"].wait(timeout_s):
            raise HardwareError("simulated backend did not answer in time")
        if "error" in box:
            raise HardwareError(str(box["error"]))
        return box["result"]
