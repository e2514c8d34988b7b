"""Task rules shared by the PyBullet tasks (`sim/tasks.py`) and the batched twin (`sim/twin/`):
goal ranges, object size, success threshold and the sparse/dense reward. No pybullet here;
reward functions work on numpy arrays or torch tensors.

Ranges (m) are panda-gym's, scaled by the robot's ``workspace_scale``, centred on the task
origin (0, 0, 0) on the table top.
"""

from __future__ import annotations

OBJECT_SIZE_M = 0.04
DISTANCE_THRESHOLD_M = 0.05
OBJECT_RANGE_M = 0.15
REACH_RANGE_M = ((-0.15, -0.15, 0.0), (0.15, 0.15, 0.3))


def distance_threshold_m(scale: float) -> float:
    return DISTANCE_THRESHOLD_M * max(scale, 0.6)


def object_size_m(scale: float) -> float:
    return OBJECT_SIZE_M * max(scale, 0.75)


def object_mass_kg(scale: float) -> float:
    return 1.0 * scale**3


def reach_goal_range_m(scale: float) -> tuple[list[float], list[float]]:
    lo, hi = REACH_RANGE_M
    return [x * scale for x in lo], [x * scale for x in hi]


def object_range_m(scale: float) -> float:
    """Half-width of the square (centred on the origin) where objects and Push goals are drawn."""
    return OBJECT_RANGE_M * scale


def reward_from_distance(d, threshold_m: float, reward_type: str):
    """sparse = -(d >= threshold), dense = -d; ``d`` a numpy array or torch tensor."""
    if reward_type == "sparse":
        return -((d >= threshold_m) * 1.0)
    return -d
