"""ArmEnv: a goal-conditioned Gymnasium env = World + Robot + Task (+ domain randomization).

Observation (Dict):
  ``observation``   (n,) float32: tcp position (3, m), tcp velocity (3, m/s), gripper opening
                    (1, [0,1], only when the task uses the gripper), arm joint positions
                    (dof, rad, only in ``joints`` control), task state (object position 3,
                    euler 3, linear velocity 3, angular velocity 3 for object tasks).
  ``achieved_goal`` (3,) m, ``desired_goal`` (3,) m.
Action (Box [-1, 1]):
  ``ee`` control: tcp displacement (3) * ``max_ee_step_m`` through IK;
  ``joints`` control: joint-position deltas (dof) * ``max_joint_step_rad``;
  plus one gripper value (-1 closed .. 1 open) when the task uses the gripper.
Episodes end by time limit (truncation) after ``max_episode_steps``; success never terminates.

Physics: 2 ms time step, substeps = control period / time step (20 at 25 Hz), Bullet's solver
with ``solver_iterations`` (default 10 instead of Bullet's 50: joint tracking and task outcomes
stay the same within the tolerances that ``bench/sim_throughput.py --validate`` measures; pass
``solver_iterations=None`` for Bullet's default).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import pybullet as p
from gymnasium import spaces
from pydantic import ValidationError

from simgate.errors import ConfigError
from simgate.sim.control_rules import ee_target
from simgate.sim.randomization import RandomizationConfig, resolve_randomization
from simgate.sim.robot import Robot
from simgate.sim.robot_spec import RobotSpec, resolve_spec
from simgate.sim.tasks import TASKS, Task
from simgate.sim.world import World

ControlMode = Literal["ee", "joints"]


class ArmEnv(gym.Env):
    """Goal-conditioned arm task on PyBullet. See the module docstring for spaces and units."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        robot: str | RobotSpec = "panda",
        task: str = "reach",
        reward_type: Literal["sparse", "dense"] = "sparse",
        control: ControlMode = "ee",
        randomization: RandomizationConfig | dict | str | bool | None = None,
        max_episode_steps: int = 50,
        render_mode: str | None = None,
        time_step_s: float = 0.002,
        solver_iterations: int | None = 10,
        max_ee_step_m: float = 0.05,
        max_joint_step_rad: float = 0.05,
        render_size: tuple[int, int] = (480, 360),
    ) -> None:
        self.spec_robot = resolve_spec(robot)
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
        if TASKS[task].uses_gripper and self.spec_robot.gripper is None:
            raise ConfigError(f"robot {self.spec_robot.name!r} has no gripper: task {task!r} grasps the object by "
                              "closing gripper joints (its spec has no 'gripper:' section)")
        if task not in self.spec_robot.tasks:
            raise ConfigError(f"robot {self.spec_robot.name!r} does not support task {task!r}")
        if reward_type not in ("sparse", "dense"):
            raise ConfigError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
        if control not in ("ee", "joints"):
            raise ConfigError(f"control must be 'ee' or 'joints', got {control!r}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_episode_steps < 1:
            raise ConfigError("max_episode_steps must be >= 1")
        try:
            self.randomization = resolve_randomization(randomization)
        except ValidationError as exc:
            errs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"randomization: {errs}") from exc
        self.reward_type, self.control = reward_type, control
        self.max_episode_steps = max_episode_steps
        self.render_mode, self.render_size = render_mode, render_size
        self.max_ee_step_m, self.max_joint_step_rad = max_ee_step_m, max_joint_step_rad
        substeps = max(1, int(round(self.spec_robot.control_period_s / time_step_s)))
        self.world = World(time_step_s=time_step_s, substeps=substeps, solver_iterations=solver_iterations)
        uses_gripper = TASKS[task].uses_gripper
        self.robot = Robot(self.world, self.spec_robot, freeze_gripper=not uses_gripper)
        self.task: Task = TASKS[task](self.world, self.robot, self.spec_robot.workspace_scale)
        self.task_name = task
        self.use_gripper = self.task.uses_gripper and self.robot.grip_ids != []
        n_act = (3 if control == "ee" else self.robot.dof) + (1 if self.use_gripper else 0)
        self.action_space = spaces.Box(-1.0, 1.0, (n_act,), np.float32)
        n_obs = 6 + (1 if self.use_gripper else 0) + (self.robot.dof if control == "joints" else 0) + self.task.obs_dim
        self.observation_space = spaces.Dict(
            {
                "observation": spaces.Box(-np.inf, np.inf, (n_obs,), np.float32),
                "achieved_goal": spaces.Box(-np.inf, np.inf, (3,), np.float32),
                "desired_goal": spaces.Box(-np.inf, np.inf, (3,), np.float32),
            }
        )
        self._dr: dict[str, float] = {}
        self._pending: deque[np.ndarray] = deque()
        self._steps = 0
        self._ee_min_z = 0.0

    # ---- Gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
        rng = self.np_random
        self._dr = self.randomization.sample(rng) if self.randomization.enabled else {}
        self.world.restore()
        self._apply_randomization()
        if self.world.snapshot is None:  # the object was rebuilt: snapshot the new world
            self.world.save()
        self.robot.reset()
        if self.use_gripper:
            self.robot.command(self.robot.target[: self.robot.dof], 1.0)
        self.task.reset(rng)
        self._steps = 0
        self._pending.clear()
        obs = self._obs()
        return obs, self._info(obs)

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.action_space.shape or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite with shape {self.action_space.shape}, got {a!r}")
        a = np.clip(a, -1.0, 1.0)
        dr = self._dr
        if dr:
            noise = dr.get("action_noise_std", 0.0)
            if noise:
                a = np.clip(a + self.np_random.normal(0.0, noise, a.shape), -1.0, 1.0)
            lat = int(dr.get("action_latency_steps", 0))
            if lat:
                self._pending.append(a)
                a = self._pending.popleft() if len(self._pending) > lat else np.zeros_like(a)
        self._apply_action(a)
        substeps = None
        jitter = dr.get("control_period_jitter", 0.0) if dr else 0.0
        if jitter:
            n = self.world.substeps
            substeps = max(1, int(round(n * (1.0 + self.np_random.uniform(-jitter, jitter)))))
        self.world.step(substeps)
        self._steps += 1
        obs = self._obs()
        info = self._info(obs)
        reward = float(self.task.compute_reward(obs["achieved_goal"], obs["desired_goal"], self.reward_type))
        truncated = self._steps >= self.max_episode_steps
        return obs, reward, False, truncated, info

    def compute_reward(self, achieved_goal, desired_goal, info: Any = None) -> np.ndarray:
        """Vectorized over a batch: (B, 3), (B, 3) -> (B,) float32 (also (3,), (3,) -> ())."""
        return self.task.compute_reward(achieved_goal, desired_goal, self.reward_type)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        w, h = self.render_size
        return self.world.render(w, h)

    def close(self) -> None:
        self.world.close()

    def observation_layout(self) -> list[dict]:
        """The segments of ``observation`` in order (name with unit, size): what a policy was
        trained on, recorded in runs and registry entries and compared before it is run."""
        segs = [("tcp_position_m", 3), ("tcp_velocity_m_s", 3)]
        if self.use_gripper:
            segs.append(("gripper_opening", 1))
        if self.control == "joints":
            segs += [(f"{j.name}_position_rad", 1) for j in self.spec_robot.arm_joints]
        if self.task.obs_dim:
            segs += [("object_position_m", 3), ("object_euler_rad", 3), ("object_velocity_m_s", 3),
                     ("object_angular_velocity_rad_s", 3)]
        return [{"name": n, "size": k} for n, k in segs]

    # ---- internals ---------------------------------------------------------------------------
    def _apply_action(self, a: np.ndarray) -> None:
        robot = self.robot
        grip = (a[-1] + 1.0) / 2.0 if self.use_gripper else None
        if self.control == "ee":
            q = robot.ik(ee_target(self._ee_pos, a[:3], self.max_ee_step_m, self._ee_min_z))
        else:
            q = robot.target[: robot.dof] + a[: robot.dof] * self.max_joint_step_rad
        robot.command(q, grip)

    def _obs(self) -> dict[str, np.ndarray]:
        robot = self.robot
        pos, _, vel = robot.ee_state()
        self._ee_pos = pos
        vals: list[float] = [*pos.tolist(), *vel.tolist()]
        if self.use_gripper or self.control == "joints":
            q = robot.joint_positions()
            if self.use_gripper:
                vals.append(robot.gripper_opening(q))
            if self.control == "joints":
                vals.extend(q[: robot.dof])
        if self.task.obs_dim:
            vals.extend(self.task.observation())
        observation = np.array(vals, dtype=np.float32)
        achieved = self.task.achieved_goal(pos)
        self._true_achieved = achieved
        noise = self._dr.get("obs_noise_std", 0.0) if self._dr else 0.0
        if noise:
            observation = (observation + self.np_random.normal(0.0, noise, observation.shape)).astype(np.float32)
            achieved = achieved + self.np_random.normal(0.0, noise, 3)
        return {
            "observation": observation,
            "achieved_goal": np.array(achieved, dtype=np.float32),
            "desired_goal": self.task.goal.astype(np.float32),
        }

    def _info(self, obs) -> dict[str, Any]:
        info: dict[str, Any] = {
            "is_success": bool(self.task.is_success(self._true_achieved, self.task.goal)),
            "commands_clipped": self.robot.clipped_commands,
            "joint_limit_hits": self.robot.limit_hits,
        }
        if self._dr:
            info["randomization"] = dict(self._dr)
        return info

    def _apply_randomization(self) -> None:
        dr, robot, cid = self._dr, self.robot, self.world.cid
        if not self.randomization.enabled:
            return
        robot.randomize_dynamics(dr)
        friction = dr.get("lateral_friction", 0.5)  # Bullet's default coefficient
        p.changeDynamics(self.world.table_id, -1, lateralFriction=friction, physicsClientId=cid)
        if hasattr(self.task, "set_object"):
            self.task.set_object(
                self.task.nominal_size_m * dr.get("object_size_scale", 1.0),
                self.task.nominal_mass_kg * dr.get("object_mass_scale", 1.0),
                friction,
            )
