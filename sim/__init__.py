"""simgate.sim: fast, parallel, randomized PyBullet arm tasks behind the Gymnasium API."""

from simgate.sim.registry import env_ids, make, register_all

register_all()

__all__ = ["env_ids", "make", "register_all"]
