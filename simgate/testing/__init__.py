"""Test your robot code against simgate's simulated hardware.

Installing simgate registers a pytest plugin (:mod:`simgate.testing.plugin`, entry point
``pytest11``) whose fixtures start a simulated arm, an emulated servo bus with fault injection, a
live gateway with tokens of each scope and the ROS 2 driver on a private DDS domain; the same
building blocks work without pytest as context managers (:mod:`simgate.testing.rigs`).
"""

from simgate.testing.rigs import (
    BusConfig,
    BusFaults,
    EmulatedBus,
    LiveGateway,
    Ros2Driver,
    emulated_bus,
    live_gateway,
    ros2_driver,
    sim_backend,
    wait_for,
)

__all__ = ["BusConfig", "BusFaults", "EmulatedBus", "LiveGateway", "Ros2Driver", "emulated_bus", "live_gateway",
           "ros2_driver", "sim_backend", "wait_for"]
