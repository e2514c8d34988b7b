import os
import signal

import pytest

# A suite started in the background (`... &` in a script) inherits SIGINT *ignored*, and so would
# every process it starts (SIG_IGN survives exec): the Ctrl-C tests need children that react to
# SIGINT as they do in a terminal. A Python handler is reset to the default on exec.
signal.signal(signal.SIGINT, signal.default_int_handler)

# every test run gets its own DDS domain and stays on this machine
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

os.environ.setdefault("SIMGATE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "simgate"))


@pytest.fixture(scope="session")
def env_ids():
    from simgate.sim import env_ids as ids

    return ids()
