"""Child processes that never outlive the test run.

Every child is started in its own session (a Ctrl-C in the terminal reaches pytest, whose fixture
teardown then stops the child in order, instead of every process dying at once) and with
``PR_SET_PDEATHSIG`` (Linux): if the test process itself dies - even ``kill -9`` - the kernel sends
the child SIGTERM, on which simgate's children clean up (the emulator removes its pty symlink,
the gateway closes its backend). Children still registered when the interpreter exits, or when
SIGTERM reaches it, are stopped too.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_LIVE: dict[int, subprocess.Popen] = {}
_LOCK = threading.Lock()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: list[str], log_path: Path, stdin: int | None = subprocess.DEVNULL,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``args`` (stdout piped, text; stderr appended to ``log_path``), registered for cleanup."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=log, text=True,
                                env={**os.environ, **(env or {})}, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    with _LOCK:
        _LIVE[proc.pid] = proc
    return proc


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> int | None:
    """SIGTERM to the child's process group, SIGKILL after ``grace_s``; always reaped."""
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # grandchildren left in the group
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        for stream in (proc.stdout, proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with _LOCK:
            _LIVE.pop(proc.pid, None)
    return proc.returncode


@contextlib.contextmanager
def running(args: list[str], log_path: Path, **kw) -> Iterator[subprocess.Popen]:
    proc = spawn(args, log_path, **kw)
    try:
        yield proc
    finally:
        stop(proc)


def read_first_line(proc: subprocess.Popen, what: str, log_path: Path, timeout_s: float = 120.0) -> str:
    """The child's first stdout line, or an error quoting its log when it exits or stays silent."""
    box: list[str] = []
    th = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    th.start()
    th.join(timeout_s)
    line = box[0].strip() if box else ""
    if not line:
        tail = log_path.read_text()[-3000:] if log_path.exists() else ""
        state = f"exited with {proc.poll()}" if proc.poll() is not None else f"silent for {timeout_s:.0f} s"
        raise RuntimeError(f"{what} did not start ({state}); log {log_path}:\n{tail}")
    return line


def stop_all() -> None:
    with _LOCK:
        procs = list(_LIVE.values())
    for proc in procs:
        stop(proc, grace_s=5.0)


def live_count() -> int:
    with _LOCK:
        return len(_LIVE)


def wait_until(pred, timeout_s: float, period_s: float = 0.05):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        v = pred()
        if v:
            return v
        time.sleep(period_s)
    return pred()


atexit.register(stop_all)
