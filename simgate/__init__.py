"""simgate: simulation -> research loop -> registry -> gateway -> robot arm.

Sub-packages are installed under this namespace: ``simgate.sim``, ``simgate.hardware``,
``simgate.policies``, ``simgate.autoresearch``, ``simgate.gateway``.
"""

__version__ = "0.1.0"
