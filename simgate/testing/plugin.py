"""simgate's pytest plugin (registered through the ``pytest11`` entry point: installing simgate
is enough). Fixtures, all function-scoped, each cleaning up its processes and files however the
test ends (failure, Ctrl-C, SIGTERM):

  simgate_robot            the robot the other fixtures use (default ``so101``; parametrize it, or
                           override the fixture, with any built-in name or spec path)
  simgate_sim_backend      a connected real-time simulated backend (PyBullet, in this process)
  simgate_bus_faults       the faults ``simgate_bus`` starts with (default: none; a BusFaults)
  simgate_bus              an emulated servo bus in its own process: ``.port`` (a pty path the
                           vendor SDKs open like /dev/ttyUSB0), ``.ids``, ``.calibration``,
                           ``.serial_config()``, ``.set_faults(...)``, ``.unplug()`` / ``.replug()``
  simgate_bus_factory      ``make(protocol=, robot=, faults=, randomize=, seed=)`` -> another bus
  simgate_gateway          ``simgate serve`` on the simulated arm, on a free loopback port:
                           ``.url``, ``.ws_url``, ``.mcp_url``, ``.tokens[scope]``, ``.headers(scope)``
  simgate_gateway_factory  ``make(backend=<dict | EmulatedBus | None>, registry_dir=, safety=)``
  simgate_ros_domain_id    this test process's private ROS_DOMAIN_ID (also set in os.environ)
  simgate_ros2_driver      the ROS 2 driver node on the simulated arm, on that domain

Safe under ``pytest -n`` (pytest-xdist): ports are picked by the OS, every fixture writes under
its test's ``tmp_path``, each worker process holds its own DDS domain.
"""

from __future__ import annotations

import contextlib
import signal
import time

import pytest

from simgate.testing import procs, rigs
from simgate.testing.rigs import BusConfig, BusFaults

_STARTUP: dict[str, list[float]] = {}


def _timed(name: str, t0: float) -> None:
    _STARTUP.setdefault(name, []).append(time.monotonic() - t0)


def startup_times() -> dict[str, list[float]]:
    """Seconds each fixture took to start, this process (``--simgate-timings`` prints them)."""
    return {k: list(v) for k, v in _STARTUP.items()}


def pytest_addoption(parser) -> None:
    parser.getgroup("simgate").addoption("--simgate-timings", action="store_true",
                                         help="print simgate fixtures' start-up times at the end")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "simgate: a test using simgate's simulated hardware fixtures")
    # SIGTERM (a CI runner cancelling the job) tears fixtures down like Ctrl-C does
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGTERM, _sigterm)


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def pytest_unconfigure(config) -> None:
    procs.stop_all()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if config.getoption("simgate_timings", False) and _STARTUP:
        terminalreporter.section("simgate fixture start-up (s)")
        for name, ts in sorted(_STARTUP.items()):
            terminalreporter.write_line(f"{name}: n={len(ts)} mean={sum(ts) / len(ts):.2f} max={max(ts):.2f}")


@pytest.fixture
def simgate_robot() -> str:
    return "so101"


@pytest.fixture
def simgate_sim_backend(simgate_robot):
    t0 = time.monotonic()
    with rigs.sim_backend(simgate_robot) as backend:
        _timed("simgate_sim_backend", t0)
        yield backend


@pytest.fixture
def simgate_bus_faults() -> BusFaults:
    return BusFaults()


@pytest.fixture
def simgate_bus_factory(tmp_path):
    with contextlib.ExitStack() as stack:
        count = [0]

        def make(protocol: str = "feetech", robot: str = "so101", faults: BusFaults | None = None,
                 randomize: bool = False, seed: int = 0, model: str | None = None) -> rigs.EmulatedBus:
            count[0] += 1
            cfg = BusConfig(protocol=protocol, robot=robot, faults=faults or BusFaults(), randomize=randomize,
                            seed=seed, model=model)
            t0 = time.monotonic()
            bus = stack.enter_context(rigs.emulated_bus(tmp_path / f"simgate-bus-{count[0]}", cfg))
            _timed("simgate_bus", t0)
            return bus

        yield make


@pytest.fixture
def simgate_bus(simgate_bus_factory, simgate_robot, simgate_bus_faults) -> rigs.EmulatedBus:
    return simgate_bus_factory(robot=simgate_robot, faults=simgate_bus_faults)


@pytest.fixture
def simgate_gateway_factory(tmp_path, simgate_robot):
    with contextlib.ExitStack() as stack:
        count = [0]

        def make(backend: dict | rigs.EmulatedBus | None = None, registry_dir=None,
                 safety: dict | None = None) -> rigs.LiveGateway:
            count[0] += 1
            if isinstance(backend, rigs.EmulatedBus):
                backend = backend.serial_config()
            t0 = time.monotonic()
            gw = stack.enter_context(rigs.live_gateway(tmp_path / f"simgate-gateway-{count[0]}",
                                                       backend or {"type": "sim", "robot": simgate_robot},
                                                       registry_dir, safety))
            _timed("simgate_gateway", t0)
            return gw

        yield make


@pytest.fixture
def simgate_gateway(simgate_gateway_factory) -> rigs.LiveGateway:
    return simgate_gateway_factory()


@pytest.fixture(scope="session")
def simgate_ros_domain_id() -> int:
    from simgate.testing.ros import use_private_domain

    return use_private_domain()


@pytest.fixture
def simgate_ros2_driver(tmp_path, simgate_robot, simgate_ros_domain_id):
    t0 = time.monotonic()
    with rigs.ros2_driver(tmp_path / "simgate-ros2", simgate_ros_domain_id, simgate_robot) as drv:
        _timed("simgate_ros2_driver", t0)
        yield drv
