"""The workflow files: simgate's own CI calls the README's test command; the example user
workflow installs simgate, runs the user's tests with the plugin and `simgate check`. Both parse
and pass zizmor (a GitHub Actions linter from PyPI, in the dev extra)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = [ROOT / ".github" / "workflows" / "ci.yml", ROOT / "examples" / "ci" / "robot-ci.yml"]


def _steps(path):
    wf = yaml.safe_load(path.read_text())
    assert wf["name"] and wf[True]  # `on:` parses as YAML true
    assert wf["permissions"] == {"contents": "read"}
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    assert all("uses" in s or "run" in s for s in steps)
    return steps


def test_simgate_ci_runs_the_readme_test_command():
    runs = " ".join(s.get("run", "") for s in _steps(WORKFLOWS[0]))
    assert "./run.sh test" in runs and "./run.sh test" in (ROOT / "README.md").read_text()


def test_example_workflow_installs_tests_and_checks():
    runs = " ".join(s.get("run", "") for s in _steps(WORKFLOWS[1]))
    assert "pip install" in runs and "pytest -n 2" in runs and "simgate check" in runs


@pytest.mark.skipif(shutil.which("zizmor") is None and not (ROOT / ".venv/bin/zizmor").exists(),
                    reason="zizmor (dev extra) not installed")
def test_workflows_lint_clean():
    exe = shutil.which("zizmor") or str(ROOT / ".venv/bin/zizmor")
    r = subprocess.run([exe, "--offline", *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
