"""A private ROS 2 DDS domain per test process: a domain id no other simgate test process on this
machine holds (an advisory lock file per id), never 0 (the default, where a real arm may be)."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

_SAFE_IDS = range(1, 102)  # 0-101: the ids whose DDS ports stay clear of Linux's ephemeral range
_HELD: dict[str, int] = {}  # {"id": domain id, "fd": its lock file, open for the process's life}


def claim_domain_id() -> int:
    """This process's private ROS_DOMAIN_ID (the same one on every call)."""
    if "id" in _HELD:
        return _HELD["id"]
    lock_dir = Path(tempfile.gettempdir())
    n = len(_SAFE_IDS)
    start = os.getpid() % n
    for k in range(n):
        dom = _SAFE_IDS[(start + k) % n]
        fd = os.open(lock_dir / f"simgate-ros-domain-{dom}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _HELD.update(id=dom, fd=fd)
        return dom
    raise RuntimeError(f"no free ROS domain id in {_SAFE_IDS} (lock files in {lock_dir})")


def use_private_domain() -> int:
    """Claim a private domain and point this process's ROS 2 nodes (and its children) at it,
    discovery limited to this machine."""
    dom = claim_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(dom)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return dom


def clean_dead_dds_segments() -> bool:
    """Remove the Fast DDS shared-memory segments of processes that are gone (``fastdds shm clean``,
    which leaves live participants' segments alone). A node killed with SIGKILL - as tests of a crash
    do - leaves them in /dev/shm, and every later participant on the machine then spends time on
    them: by the end of a suite, actions answered seconds late and /joint_states stalled. False
    when the tool is not installed."""
    import subprocess
    import sys

    tool = Path(sys.executable).parent / "fastdds"
    if not tool.exists():
        return False
    subprocess.run([str(tool), "shm", "clean"], capture_output=True, timeout=30, check=False)
    return True
