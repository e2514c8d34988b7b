"""Declared ROS 2 parameters: one table per node (name, default, description, range), declared
with descriptors so ``ros2 param describe`` shows them, read back as a plain dict.

The tables are plain data (no rclpy import), so tests and tools can check launch and
parameter files against what the nodes declare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    default: Any
    description: str
    range: tuple[float, float] | None = None  # inclusive; ints get an IntegerRange


def declare_all(node, table: dict[str, Param]) -> dict[str, Any]:
    """Declare every parameter of ``table`` on ``node`` (read-only: they are read at start-up)
    and return their values (overrides from ``--params-file`` / ``-p`` applied by rclpy)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    values: dict[str, Any] = {}
    for name, p in table.items():
        desc = ParameterDescriptor(description=p.description, read_only=True)
        if p.range is not None:
            lo, hi = p.range
            if isinstance(p.default, bool):
                pass
            elif isinstance(p.default, int):
                desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        values[name] = node.declare_parameter(name, p.default, desc).value
    return values
