"""Environment for a simgate process with the test-only faults of ``tests/fault_hooks``."""

import os
from pathlib import Path

HOOKS = Path(__file__).resolve().parent / "fault_hooks"


def fault_env(**faults: str) -> dict[str, str]:
    """``fault_env(SIMGATE_TEST_LIE="2")``: os.environ plus the hook folder on PYTHONPATH and the faults."""
    path = os.pathsep.join(p for p in (str(HOOKS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **faults}
