import os
import signal

import pytest

# A suite started in the background (`... &` in a script) inherits SIGINT *ignored*, and so would
# every process it starts (SIG_IGN survives exec): the Ctrl-C tests need children that react to
# SIGINT as they do in a terminal. A Python handler is reset to the default on exec.
signal.signal(signal.SIGINT, signal.default_int_handler)

# every test process (each pytest-xdist worker too) gets its own DDS domain - the plugin's, held
# by a lock file, never 0 - and stays on this machine
from simgate.testing.ros import clean_dead_dds_segments, use_private_domain  # noqa: E402

use_private_domain()
clean_dead_dds_segments()  # what killed nodes of earlier runs left behind

os.environ.setdefault("SIMGATE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "simgate"))


@pytest.fixture(scope="session")
def env_ids():
    from simgate.sim import env_ids as ids

    return ids()


@pytest.fixture(autouse=True)
def _no_dead_dds_segments(request):
    """After a test that ran ROS 2 nodes (some kill them on purpose), remove the shared-memory
    segments the dead ones left: they slow every later participant."""
    yield
    if "ros" in request.node.nodeid.lower() or "hardware_contract" in request.node.nodeid:
        clean_dead_dds_segments()
