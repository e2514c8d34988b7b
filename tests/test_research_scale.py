"""Scaling out on existing engines: a study on a real local PostgreSQL server (plus a worker
joining from `simgate research worker`), and on a local Ray head. Both start their server here,
on loopback, and stop it."""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from simgate.autoresearch.ledger import Ledger

PROGRAM = """---
name: {name}
task: {{env_id: simgate/PandaReach-v0}}
budgets: {{trial_env_steps: 500, trial_wall_s: 60, total_wall_s: 150, max_trials: 4}}
base_recipe: {{algo: sac, normalize_obs: true, learning_starts: 200, batch_size: 64}}
search_space:
  learning_rate: {{type: float, low: 0.0003, high: 0.003, log: true}}
  train_freq: {{type: int, low: 1, high: 4}}
acceptance: {{selection_episodes: 5, fresh_episodes: 5}}
promotion: {{holdout_episodes: 5, min_holdout_success: 0.0, auto_promote: false}}
proposer: {{sampler: random, prune: false}}
---
scale test
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("PostgreSQL server binaries not found: install the 'postgresql' Debian package (.ci/run does)")
    bindir = Path(bins[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="simgate-pg-"))  # pytest's tmp dirs are private to root
    data = base / "data"
    port = _free_port()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    if as_user:
        shutil.chown(base, "postgres")
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "simgate"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "simgate", "study"],
                       check=True, capture_output=True)
        yield f"postgresql://simgate@127.0.0.1:{port}/study"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _trials(study_dir: Path):
    return [r for r in Ledger(study_dir / "ledger.jsonl").records() if r["kind"] == "trial"]


def test_postgresql_study_with_two_workers_and_a_joining_worker(tmp_path, postgres):
    prog = tmp_path / "pg.md"
    prog.write_text(PROGRAM.format(name="pgstudy"))
    env = dict(os.environ)
    # another "machine" joins the study through the shared storage
    joiner = subprocess.Popen([sys.executable, "-m", "simgate.cli", "research", "worker", str(prog), "--storage", postgres,
                               "--study-dir", str(tmp_path / "runs/research/pgstudy"), "--hours", "0.05"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    res = subprocess.run([sys.executable, "-m", "simgate.cli", "research", "run", str(prog), "--workers", "2",
                          "--storage", postgres], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    joiner.wait(timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = _trials(tmp_path / "runs/research/pgstudy")
    assert len(trials) >= 4 and len({t["trial"] for t in trials}) == len(trials)
    workers = {t["reported"]["worker"] for t in trials}
    assert len(workers) >= 2, workers
    import optuna

    study = optuna.load_study(study_name="pgstudy", storage=postgres)
    assert sum(t.state.is_finished() for t in study.trials) == len(trials)


def test_ray_study_with_two_workers(tmp_path):
    prog = tmp_path / "ray.md"
    prog.write_text(PROGRAM.format(name="raystudy"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "simgate.cli", "research", "run", str(prog), "--workers", "2",
                          "--executor", "ray"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = _trials(tmp_path / "runs/research/raystudy")
    assert len(trials) == 4
    assert {t["reported"]["worker"] for t in trials} <= {"ray-0", "ray-1"} and len({t["reported"]["worker"] for t in trials}) == 2
