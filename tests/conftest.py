import os

import pytest

os.environ.setdefault("SIMGATE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "simgate"))


@pytest.fixture(scope="session")
def env_ids():
    from simgate.sim import env_ids as ids

    return ids()
