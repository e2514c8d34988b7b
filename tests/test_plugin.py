"""simgate's pytest plugin as a user meets it: the example project's tests (public fixtures only)
pass, also under `pytest -n 2`; Ctrl-C (SIGINT to pytest's process group) leaves no simgate
process and no pty symlink; the plugin is registered through its entry point."""

import os
import signal
import subprocess
import sys
import time
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "reach_agent"


def _pytest(*args, cwd=EXAMPLE, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_plugin_is_registered_through_its_entry_point():
    assert any(e.value == "simgate.testing.plugin" for e in entry_points(group="pytest11"))


def test_example_project_passes_on_public_fixtures_only():
    imports = "\n".join((EXAMPLE / "tests" / f).read_text() for f in os.listdir(EXAMPLE / "tests"))
    assert "simgate.testing.rigs" not in imports and "hw_helpers" not in imports  # public surface only
    r = _pytest("-q", "--simgate-timings")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    for kind in ("dropped-replies", "corrupt-checksums", "latency", "dead-id"):  # one test per fault kind
        assert kind in _pytest("--collect-only", "-q").stdout
    assert "unplug" in (EXAMPLE / "tests" / "test_bus_script.py").read_text()
    print(r.stdout[-800:])


@pytest.mark.slow
def test_example_project_under_xdist():
    r = _pytest("-q", "-n", "2", "-k", "not reaches")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "passed" in r.stdout and "failed" not in r.stdout


HANGING_TEST = '''
import os, time
from pathlib import Path

def test_hangs(simgate_bus, simgate_gateway):
    Path(os.environ["MARK_DIR"], "port").write_text(simgate_bus.port)
    Path(os.environ["MARK_DIR"], "ready").write_text("1")
    time.sleep(600)
'''


def _tagged_processes(tag: str) -> list[str]:
    """Live processes (not zombies) whose environment carries ``tag``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if tag.encode() not in Path(f"/proc/{pid}/environ").read_bytes():
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                found.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
        except OSError:
            continue
    return found


def test_sigint_leaves_no_process_and_no_pty_symlink(tmp_path):
    (tmp_path / "test_hang.py").write_text(HANGING_TEST)
    tag = f"SIMGATE_SIGINT_TEST={uuid.uuid4().hex}"
    env = {**os.environ, "MARK_DIR": str(tmp_path), tag.split("=")[0]: tag.split("=")[1], "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_hang.py"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    t0 = time.monotonic()
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.monotonic() - t0 < 120, proc.stdout.read()[-3000:]
        time.sleep(0.1)
    port = (tmp_path / "port").read_text()
    assert os.path.lexists(port) and len(_tagged_processes(tag)) >= 3  # pytest, the bus, the gateway
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0 and "KeyboardInterrupt" in out, out[-3000:]
    t1 = time.monotonic()
    while _tagged_processes(tag) and time.monotonic() - t1 < 10:
        time.sleep(0.2)
    assert not _tagged_processes(tag), _tagged_processes(tag)
    assert not os.path.lexists(port) and not list(tmp_path.glob("simgate-bus-*"))


def test_a_killed_test_process_takes_its_children_with_it(tmp_path):
    """Even ``kill -9`` of pytest: the children get SIGTERM from the kernel (PR_SET_PDEATHSIG) and
    the bus removes its pty symlink."""
    (tmp_path / "test_hang.py").write_text(HANGING_TEST.replace(", simgate_gateway", ""))
    tag = f"SIMGATE_KILL_TEST={uuid.uuid4().hex}"
    env = {**os.environ, "MARK_DIR": str(tmp_path), tag.split("=")[0]: tag.split("=")[1], "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_hang.py"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.monotonic() - t0 < 120
        time.sleep(0.1)
    port = (tmp_path / "port").read_text()
    proc.kill()
    proc.wait()
    t1 = time.monotonic()
    while (_tagged_processes(tag) or os.path.lexists(port)) and time.monotonic() - t1 < 15:
        time.sleep(0.2)
    assert not _tagged_processes(tag) and not os.path.lexists(port)
