"""Goal-conditioned tasks, separate from the robot (as in panda-gym).

Ranges (m) are panda-gym's, scaled by the robot's ``workspace_scale`` and centred on the task
origin (0, 0, 0) on the table top. Success: distance(achieved, desired) < 0.05 m (scaled).
"""

from __future__ import annotations

import math

import numpy as np
import pybullet as p

from simgate.sim.robot import Robot
from simgate.sim.task_rules import (  # noqa: F401  (OBJECT_SIZE_M, DISTANCE_THRESHOLD_M re-exported)
    DISTANCE_THRESHOLD_M,
    OBJECT_SIZE_M,
    distance_threshold_m,
    object_mass_kg,
    object_range_m,
    object_size_m,
    reach_goal_range_m,
    reward_from_distance,
)
from simgate.sim.world import World


def goal_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance over the last axis; works on (3,) and (batch, 3)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 1 and b.ndim == 1:
        return np.float64(math.dist(a.tolist(), b.tolist()))
    return np.linalg.norm(a - b, axis=-1)


class Task:
    """Base class. Subclasses define goal sampling and what is 'achieved'."""

    name = "task"
    uses_gripper = False
    obs_dim = 0

    def __init__(self, world: World, robot: Robot, scale: float = 1.0) -> None:
        self.world, self.robot, self.scale = world, robot, scale
        self.distance_threshold_m = distance_threshold_m(scale)
        self.goal = np.zeros(3)
        self.marker = world.add_marker(0.02 * max(scale, 0.6), (0, 0, -1), (0.1, 0.9, 0.1, 0.4))

    def _place_marker(self) -> None:
        p.resetBasePositionAndOrientation(self.marker, self.goal.tolist(), (0, 0, 0, 1),
                                          physicsClientId=self.world.cid)

    def reset(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def observation(self) -> list[float]:
        """Task part of the observation (object state), plain floats."""
        return []

    def achieved_goal(self, ee_pos: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def compute_reward(self, achieved, desired, reward_type: str) -> np.ndarray:
        """Vectorized reward: sparse = -(d >= threshold), dense = -d. Shapes (3,)->() or (B,3)->(B,)."""
        d = goal_distance(achieved, desired)
        return np.asarray(reward_from_distance(d, self.distance_threshold_m, reward_type)).astype(np.float32)

    def is_success(self, achieved, desired) -> np.ndarray:
        return goal_distance(achieved, desired) < self.distance_threshold_m


class Reach(Task):
    name = "reach"

    def reset(self, rng):
        self.goal = rng.uniform(*reach_goal_range_m(self.scale))
        self._place_marker()

    def achieved_goal(self, ee_pos):
        return ee_pos


class _ObjectTask(Task):
    """A box object on the table that must be brought to the goal."""

    obs_dim = 12
    goal_z_range_m = 0.0

    def __init__(self, world, robot, scale=1.0):
        super().__init__(world, robot, scale)
        self.nominal_size_m = object_size_m(scale)
        self.nominal_mass_kg = object_mass_kg(scale)
        self.size_m = self.nominal_size_m
        self.obj = -1
        self._make_object(self.nominal_size_m, self.nominal_mass_kg)

    def _make_object(self, size_m: float, mass_kg: float) -> None:
        if self.obj >= 0:
            self.world.remove(self.obj)
        h = size_m / 2
        self.obj = self.world.add_box((h, h, h), (0, 0, h), mass_kg, (0.1, 0.3, 0.9, 1.0))
        self.size_m = size_m

    def set_object(self, size_m: float, mass_kg: float, friction: float) -> None:
        """Rebuild the object with a new size (m) and mass (kg) (domain randomization)."""
        if abs(size_m - self.size_m) > 1e-9:
            self._make_object(size_m, mass_kg)
        p.changeDynamics(self.obj, -1, mass=mass_kg, lateralFriction=friction, physicsClientId=self.world.cid)

    def reset(self, rng):
        s, h = self.scale, self.size_m / 2
        r = object_range_m(s)
        obj_xy = rng.uniform([-r, -r], [r, r])
        self.goal = np.array([*rng.uniform([-r, -r], [r, r]), h])
        if self.goal_z_range_m and rng.random() >= 0.3:
            self.goal[2] += rng.uniform(0.0, self.goal_z_range_m * s)
        cid = self.world.cid
        # Drop Bullet's cached contact (and its warm-start impulse) with the table: park the
        # object far away for one collision pass, so an episode never depends on the last one.
        p.resetBasePositionAndOrientation(self.obj, [50.0, 50.0, 50.0], (0, 0, 0, 1), physicsClientId=cid)
        p.performCollisionDetection(physicsClientId=cid)
        p.resetBasePositionAndOrientation(self.obj, [obj_xy[0], obj_xy[1], h], (0, 0, 0, 1), physicsClientId=cid)
        p.resetBaseVelocity(self.obj, (0, 0, 0), (0, 0, 0), physicsClientId=self.world.cid)
        self._place_marker()

    def observation(self):
        cid = self.world.cid
        pos, orn = p.getBasePositionAndOrientation(self.obj, physicsClientId=cid)
        lin, ang = p.getBaseVelocity(self.obj, physicsClientId=cid)
        self._obj_pos = np.array(pos)
        return [*pos, *p.getEulerFromQuaternion(orn), *lin, *ang]

    def achieved_goal(self, ee_pos):
        return self._obj_pos


class Push(_ObjectTask):
    name = "push"


class PickAndPlace(_ObjectTask):
    name = "pick_and_place"
    uses_gripper = True
    goal_z_range_m = 0.2


TASKS: dict[str, type[Task]] = {"reach": Reach, "push": Push, "pick_and_place": PickAndPlace}
