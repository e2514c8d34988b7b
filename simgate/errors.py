"""One error hierarchy for the whole project.

Every error simgate raises on purpose derives from :class:`SimgateError`, so callers (CLI,
gateway routers) can translate them into a clear message or HTTP status in one place.
"""


class SimgateError(Exception):
    """Root of all simgate errors."""


class ConfigError(SimgateError, ValueError):
    """A configuration value, spec file or argument is invalid. The message names the field."""


class UnknownEnvError(ConfigError):
    """An environment id is not registered."""


class RobotLoadError(ConfigError):
    """A robot description (spec or URDF) could not be loaded."""


class WorkerCrashedError(SimgateError, RuntimeError):
    """A worker process of a vectorized environment died."""


class HardwareError(SimgateError, RuntimeError):
    """A hardware backend failed (bus not answering, servo fault, ...)."""


class SafetyViolation(SimgateError):
    """A command was refused by the safety layer; it never reached the backend."""
