"""IK-based scripted reference controllers for Reach, Push and PickAndPlace.

They act on the same observations and ``ee`` actions a learned policy sees (no privileged
state), prove each task solvable, and are the baseline learned policies are compared against.
Each implements the Policy protocol: ``act(observation) -> action`` and ``reset()``.
"""

from __future__ import annotations

import numpy as np

from simgate.errors import ConfigError


class ScriptedPolicy:
    """Base: reads the layout of the observation from the env it was built for."""

    def __init__(self, max_ee_step_m: float, use_gripper: bool, object_size_m: float, threshold_m: float,
                 tool_radius_m: float = 0.024) -> None:
        """``tool_radius_m``: the tool's horizontal extent around its centre point over the object's
        height (Robot.tool_radius_m; 0.024 m = Panda's closed fingers)."""
        self.max_ee_step_m = max_ee_step_m
        self.tool_radius_m = tool_radius_m
        self.use_gripper = use_gripper
        self.h = object_size_m / 2
        self.threshold_m = threshold_m
        self.obj_slice = slice(7, 10) if use_gripper else slice(6, 9)
        self.reset()

    def reset(self) -> None:
        self.phase = 0
        self.wait = 0

    def _move(self, ee: np.ndarray, target: np.ndarray, grip: float | None = None,
              max_speed: float = 1.0) -> np.ndarray:
        """Action towards ``target`` (m); ``max_speed`` caps it as a fraction of the full step."""
        a = np.clip((target - ee) / self.max_ee_step_m, -max_speed, max_speed)
        if self.use_gripper:
            a = np.append(a, -1.0 if grip is None else grip)
        return a.astype(np.float32)

    def act(self, observation: dict) -> np.ndarray:
        raise NotImplementedError


class ScriptedReach(ScriptedPolicy):
    def act(self, observation):
        ee = observation["observation"][:3]
        return self._move(ee, observation["desired_goal"], 1.0)


class ScriptedPush(ScriptedPolicy):
    """Travel above the push point behind the object (seen from the goal), descend, push along
    the object-goal line while steering back onto it; re-plan when the object slips away.
    Phases: 0 travel, 1 descend, 2 push."""

    def act(self, observation):
        obs = observation["observation"]
        i = self.obj_slice.start
        ee, obj, goal = obs[:3], obs[i : i + 3], observation["desired_goal"]
        h = self.h
        to_goal = goal[:2] - obj[:2]
        dist = float(np.linalg.norm(to_goal))
        low_z, safe_z = h * 1.1, 2 * h + 0.04
        if dist < self.threshold_m * 0.3:
            return self._move(ee, np.array([ee[0], ee[1], max(ee[2], low_z)]))
        d = to_goal / dist
        n = np.array([-d[1], d[0]])
        yaw = float(obs[i + 5])
        e1, e2 = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
        support = h * (abs(d @ e1) + abs(d @ e2))  # the box's extent along the push direction
        behind = obj[:2] - d * (support + self.tool_radius_m + 0.003)  # the tool's half-width + clearance
        rel = ee[:2] - obj[:2]
        along, lateral = float(rel @ d), float(rel @ n)
        v_along = float(obs[i + 6 : i + 8] @ d)
        if self.phase == 2:
            if abs(lateral) > 0.7 * h or along > -support + 0.005 or ee[2] > 2 * h:
                self.phase = 0  # lost the line: re-plan
            else:
                if v_along > 0 and v_along**2 / (2 * 0.25 * 9.81) >= dist - 0.3 * self.threshold_m:
                    # already sliding far enough (sliding distance v^2 / 2 mu g): let it coast
                    return self._move(ee, np.array([ee[0], ee[1], low_z]) - np.append(d, 0.0) * 0.01)
                step = float(np.clip(0.5 * dist, 0.005, 0.3 * self.max_ee_step_m))
                tgt = ee[:2] + d * step - n * lateral
                return self._move(ee, np.array([tgt[0], tgt[1], low_z]))
        if self.phase == 1:
            if np.linalg.norm(ee[:2] - behind) > 0.02:
                self.phase = 0
            elif ee[2] < low_z + 0.01:
                self.phase = 2
                return self.act(observation)
            else:
                return self._move(ee, np.array([behind[0], behind[1], low_z]), max_speed=0.5)
        # phase 0: travel
        if np.linalg.norm(ee[:2] - behind) < 0.01:
            self.phase = 1
            return self._move(ee, np.array([behind[0], behind[1], low_z]), max_speed=0.5)
        low_pt = np.array([behind[0], behind[1], low_z])
        if not self._path_hits_object(ee, low_pt, obj):
            return self._move(ee, low_pt, max_speed=0.6 if ee[2] < safe_z else 1.0)
        if ee[2] < safe_z - 0.015 and np.linalg.norm(rel) < support + 0.06:
            return self._move(ee, np.array([ee[0], ee[1], safe_z]))  # near the object: lift first
        return self._move(ee, np.array([behind[0], behind[1], safe_z]))

    def _path_hits_object(self, start: np.ndarray, end: np.ndarray, obj: np.ndarray) -> bool:
        """Does the fingertip's straight path pass through the object, inflated by the finger?"""
        margin_xy, margin_z = self.h + self.tool_radius_m - 0.004, 2 * self.h + 0.015
        for t in np.linspace(0.0, 0.9, 10):
            pt = start + t * (end - start)
            if np.all(np.abs(pt[:2] - obj[:2]) < margin_xy) and pt[2] < margin_z:
                return True
        return False


class ScriptedPickAndPlace(ScriptedPolicy):
    """Open, hover above the object, descend, close, lift and carry to the goal."""

    def act(self, observation):
        obs = observation["observation"]
        ee, obj, goal = obs[:3], obs[self.obj_slice], observation["desired_goal"]
        opening = obs[6]
        h = self.h
        if self.phase == 0:  # approach above the object, gripper open
            above = np.array([obj[0], obj[1], obj[2] + 0.06])
            if np.linalg.norm(ee[:2] - obj[:2]) < 0.008 and abs(ee[2] - above[2]) < 0.02:
                self.phase = 1
            return self._move(ee, above, 1.0)
        if self.phase == 1:  # descend around the object
            tgt = np.array([obj[0], obj[1], obj[2]])
            if np.linalg.norm(ee[:2] - obj[:2]) > 0.02:
                self.phase = 0
            if abs(ee[2] - obj[2]) < 0.006:
                self.phase, self.wait = 2, 0
            return self._move(ee, tgt, 1.0)
        if self.phase == 2:  # close
            self.wait += 1
            if self.wait >= 4 and opening < 0.9:
                self.phase = 3
            return self._move(ee, np.array([obj[0], obj[1], obj[2]]), -1.0)
        # carry: if the object slipped out, start again
        if np.linalg.norm(ee - obj) > h + 0.03:
            self.phase = 0
            return self._move(ee, np.array([ee[0], ee[1], ee[2] + 0.05]), 1.0)
        return self._move(ee, goal + (ee - obj), -1.0)


def scripted_policy_for(env) -> ScriptedPolicy:
    """The scripted controller for an :class:`ArmEnv` (ee control only)."""
    base = getattr(env, "unwrapped", env)
    if base.control != "ee":
        raise ConfigError("scripted controllers act in 'ee' control mode; use an id without 'Joints'")
    size = getattr(base.task, "nominal_size_m", 0.04)
    cls = {"reach": ScriptedReach, "push": ScriptedPush, "pick_and_place": ScriptedPickAndPlace}[base.task_name]
    # the tool's geometry from the robot's URDF, over the height a push spends beside the object
    radius = base.robot.tool_radius_m(height_m=0.45 * size + 0.005) if base.task_name == "push" else 0.024
    return cls(base.max_ee_step_m, base.use_gripper, size, base.task.distance_threshold_m, radius)
