"""simgate.sim: fast, parallel, randomized PyBullet arm tasks behind the Gymnasium API.

The robot model (``robot_spec``, ``urdf_tools``, ``robot``, ``world``, ``randomization``) imports
without Gymnasium: importing this package registers the ``simgate/...`` ids only once Gymnasium
itself is loaded (at once when it already is, else right after its import), so
``import simgate.sim; gym.make("simgate/PandaReach-v0")`` works in either import order while
hardware and safety code that never touches Gymnasium never loads it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["env_ids", "make", "register_all"]


def register_all() -> None:
    """Register every ``simgate/...`` id (built-in robots and robots registered with --robot)."""
    from simgate.sim.registry import register_all as _register_all

    _register_all()


def env_ids() -> list[str]:
    from simgate.sim.registry import env_ids as _env_ids

    return _env_ids()


def make(env_id: str, **kwargs):
    """An :class:`ArmEnv` for an id (clear :class:`UnknownEnvError` for unknown ids)."""
    from simgate.sim.registry import make as _make

    return _make(env_id, **kwargs)


class _RegisterAfterGymnasium(importlib.abc.MetaPathFinder):
    """Runs :func:`register_all` right after ``gymnasium`` finishes importing (once)."""

    def find_spec(self, name, path=None, target=None):
        if name != "gymnasium":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _import_registry()

        spec.loader.exec_module = exec_then_register
        return spec


def _import_registry() -> None:
    """Importing ``simgate.sim.registry`` registers the ids (at its end: an import of it that is
    under way when Gymnasium finishes loading registers them itself)."""
    if "simgate.sim.registry" not in sys.modules:
        importlib.import_module("simgate.sim.registry")


def _register_when_gymnasium_loads() -> None:
    if "gymnasium" in sys.modules:
        _import_registry()
    elif not any(isinstance(f, _RegisterAfterGymnasium) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterGymnasium())


_register_when_gymnasium_loads()
