"""`simgate doctor` checks the real environment and names the fix for what fails."""

import subprocess
import sys


def _doctor(*args):
    return subprocess.run([sys.executable, "-m", "simgate.cli", "doctor", *args], capture_output=True, text=True,
                          timeout=120, env={"COLUMNS": "200", **__import__("os").environ})


def test_doctor_passes_here_and_checks_every_part():
    proc = _doctor()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("python", "torch", "pybullet", "ros2 (rclpy + DDS)", "serial ports", "storage", "video"):
        assert name in proc.stdout
    assert "loopback pub/sub works" in proc.stdout and "Panda loaded" in proc.stdout


def test_doctor_fails_on_unreachable_storage_and_says_the_fix():
    proc = _doctor("--storage", "postgresql://nobody@127.0.0.1:1/simgate")
    assert proc.returncode == 1
    assert "fail" in proc.stdout and "start PostgreSQL" in proc.stdout
