"""Silence PyBullet's C-level prints (URDF merge traces, inertia warnings) during a call."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_c_output():
    """Redirect file descriptors 1 and 2 to /dev/null for the duration of the block."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
    except (OSError, ValueError):  # no real fds (e.g. captured streams): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
