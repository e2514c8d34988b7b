"""The gate tried as an attacker would: through `simgate research ...`, a `research worker` whose
Python carries a ``sitecustomize`` hook (no change to simgate), and the files a worker can write.
None of the attacks gets a policy promoted; each is recorded with a reason; the study goes on."""

import json
import os
import subprocess
import sys
import time

import pytest
from faults import fault_env

from simgate.autoresearch.ledger import Ledger

PROGRAM = """---
name: {name}
task: {{env_id: simgate/PandaReach-v0}}
budgets: {{trial_env_steps: 700, trial_wall_s: 60, total_wall_s: 240, max_trials: {trials}}}
base_recipe: {{algo: sac, normalize_obs: true, learning_starts: 200, batch_size: 64}}
search_space:
  learning_rate: {{type: float, low: 0.0003, high: {high}, log: true}}
  train_freq: {{type: int, low: 1, high: 4}}
acceptance: {{selection_episodes: 10, fresh_episodes: 10, max_fresh_episodes: 40}}
promotion: {{holdout_episodes: 10, min_holdout_success: 0.0, auto_promote: {auto}, max_attempts: 2, audit: {audit}}}
proposer: {{sampler: random, prune: false}}
---
attack test
"""

HOOK = '''
import os
mode = os.environ.get("SIMGATE_ATTACK")
if mode:
    import simgate.policies.train as T
    _orig = T.train

    def train(cfg, out_dir, **kw):
        run = _orig(cfg, out_dir, **kw)
        from pathlib import Path
        import torch
        table = []
        if mode == "memorise":  # goals of the seeds the old design used: selection, fresh, holdout
            from simgate.sim import make
            env = make(cfg.env_id)
            seeds = [1_000_000 + i for i in range(30)] + [9_000_000 + i for i in range(100)]
            seeds += [5_000_000 + 1000 * n + i for n in range(6) for i in range(50)]
            for s in seeds:
                obs, _ = env.reset(seed=s)
                table.append([float(v) for v in obs["desired_goal"]])
            env.close()

        class Ctl(torch.nn.Module):  # a hand-written controller, optionally only for memorised goals,
            # written with pure tensor ops only (the judge refuses anything else before running it)
            def __init__(self, t: torch.Tensor, always: float) -> None:
                super().__init__()
                self.t = t
                self.always = torch.tensor(always)
                self.ones3 = torch.ones(3, 1)
                self.ones_k = torch.ones(t.shape[0], 1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                a = torch.clamp((x[:, 3:6] - x[:, 0:3]) * 20.0, -1.0, 1.0)
                diff = x[:, 3:6].unsqueeze(1) - self.t.unsqueeze(0)
                d2 = torch.matmul(diff * diff, self.ones3).squeeze(2)
                near = torch.clamp(torch.matmul(torch.exp(d2 * -1.0e8), self.ones_k), 0.0, 1.0)
                return a * torch.clamp(near + self.always, 0.0, 1.0)

        goals = torch.tensor(table, dtype=torch.float32).reshape(-1, 3) if table else torch.full((1, 3), 99.0)
        torch.jit.script(Ctl(goals, 0.0 if table else 1.0)).save(str(Path(out_dir) / "policy.ts"))
        return run

    T.train = train
'''


@pytest.fixture(autouse=True)
def _keys(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMGATE_KEY_DIR", str(tmp_path / "keys"))


def _program(tmp_path, name, trials=3, high="0.003", auto="true", audit="true", fname=None):
    p = tmp_path / (fname or f"{name}.md")
    p.write_text(PROGRAM.format(name=name, trials=trials, high=high, auto=auto, audit=audit))
    return p


def _cli(args, tmp_path, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "simgate.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _records(tmp_path, name):
    return Ledger(tmp_path / "runs" / "research" / name / "ledger.jsonl").records()


def test_submit_checks_values_strictly_with_one_line_errors(tmp_path):
    prog = _program(tmp_path, "strict")
    for params, named in [('{"train_freq": 2.5}', "not an integer"), ('{"train_freq": true}', "not an integer"),
                          ('{"learning_rate": true}', "not a finite number"), ('{"learning_rate": [0.001]}', "not a finite"),
                          ('{"learning_rate": "0.001"}', "not a finite"), ('[1, 2]', "JSON object"),
                          ('{"learning_rate": 50.0}', "outside")]:
        p = _cli(["research", "submit", str(prog), "--params", params, "--rationale", "x"], tmp_path)
        assert p.returncode == 2 and named in p.stderr and "Traceback" not in p.stderr, (params, p.stderr)
    assert _cli(["research", "submit", str(prog), "--params", '{"train_freq": 2}', "--rationale", "x"],
                tmp_path).returncode == 0


def _judge_and_attacker(tmp_path, prog, sd, hook: str, attack: str, hours: float):
    """A judging-only coordinator (`research run --workers 0`) and, once its storage exists, an
    untrusted `research worker` whose sitecustomize ``hook`` rewrites its training. (coordinator
    process, finished worker)."""
    coord = subprocess.Popen([sys.executable, "-m", "simgate.cli", "research", "run", str(prog), "--workers", "0",
                              "--registry", "reg"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ))
    t0 = time.monotonic()
    while not (sd / "optuna.db").exists() and time.monotonic() - t0 < 60:
        time.sleep(0.5)
    time.sleep(2.0)
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(hook)
    worker = _cli(["research", "worker", str(prog), "--storage", f"sqlite:///{sd / 'optuna.db'}", "--study-dir", str(sd),
                   "--hours", str(hours)], tmp_path,
                  env={"PYTHONPATH": str(tmp_path / "hook"), "SIMGATE_ATTACK": attack,
                       "SIMGATE_COORDINATOR_STALE_S": "15"})
    return coord, worker


@pytest.mark.slow
@pytest.mark.parametrize("attack, status, why", [
    ("memorise", "rejected", "not reproduced"),  # knows the old fresh/holdout seed formulas
    ("controller", "keep", "audit failed"),  # a hand-written controller reported as a SAC trial
])
def test_untrusted_worker_cannot_get_promoted(tmp_path, attack, status, why):
    name = f"atk-{attack}"
    prog = _program(tmp_path, name)
    sd = tmp_path / "runs" / "research" / name
    coord, worker = _judge_and_attacker(tmp_path, prog, sd, HOOK, attack, 0.05)
    out, err = coord.communicate(timeout=600)
    assert coord.returncode == 0, err[-3000:]
    assert worker.returncode == 0, worker.stderr[-3000:]
    recs = _records(tmp_path, name)
    trials = [r for r in recs if r["kind"] == "trial"]
    assert len(trials) == 3 and trials[0]["status"] == status, [(r["status"], r["reason"]) for r in trials]
    if attack == "memorise":
        assert all(r["status"] == "rejected" and "not reproduced" in r["reason"] for r in trials)
        assert trials[0]["reported"]["claimed"] == 1.0 and trials[0]["verified"]["fresh"] < 0.5
    promos = [r for r in recs if r["kind"] == "promotion"]
    assert promos and all(p["status"] == "refused" for p in promos)
    if attack == "controller":
        assert why in promos[-1]["reason"]
    assert not (tmp_path / "reg").exists() or not [p for p in (tmp_path / "reg").iterdir() if not p.name.startswith(".")]
    assert _cli(["research", "verify-ledger", str(sd)], tmp_path).returncode == 0


@pytest.mark.slow
def test_files_a_worker_can_write_do_not_change_what_is_promoted(tmp_path):
    import hashlib

    name = "tamper"
    prog = _program(tmp_path, name, auto="false", audit="false")
    sd = tmp_path / "runs" / "research" / name
    run = _cli(["research", "run", str(prog), "--workers", "2"], tmp_path, env=fault_env(SIMGATE_TEST_LIE="2"))
    assert run.returncode == 0, run.stderr[-3000:]
    trials = {r["trial"]: r for r in _records(tmp_path, name) if r["kind"] == "trial"}
    assert trials[2]["status"] == "rejected"
    inc = max(n for n, r in trials.items() if r["status"] == "keep")
    judged = trials[inc]["verified"]["artifact_sha256"]

    # a same-name program with a wider space: refused everywhere, naming both hashes
    wide = _program(tmp_path, name, high="50.0", auto="false", audit="false", fname="wide.md")
    url = f"sqlite:///{sd / 'optuna.db'}"
    for args in (["research", "submit", str(wide), "--params", '{"learning_rate": 40.0}', "--rationale", "wider"],
                 ["research", "worker", str(wide), "--storage", url, "--study-dir", str(sd), "--hours", "0.01"],
                 ["research", "resume", str(wide)], ["research", "promote", str(wide)]):
        p = _cli(args, tmp_path)
        assert p.returncode == 2 and "differs from the one" in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)

    # coordinator.json names the rejected trial; the judged file is swapped in the worker's folder
    state = json.loads((sd / "coordinator.json").read_text())
    (sd / "coordinator.json").write_text(json.dumps({**state, "incumbent": 2}))
    (sd / "trials" / f"{inc:04d}" / "policy.ts").write_bytes((sd / "trials" / "0002" / "policy.ts").read_bytes())
    p = _cli(["research", "promote", str(prog), "--registry", "reg"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    promoted = json.loads(p.stdout)
    assert promoted["trial"] == inc
    reg_bytes = (tmp_path / "reg" / promoted["registry_id"] / "policy.ts").read_bytes()
    assert hashlib.sha256(reg_bytes).hexdigest() == judged
    ok = _cli(["research", "verify-ledger", str(sd), "--registry", "reg"], tmp_path)
    assert ok.returncode == 0 and "1 registry entries match" in ok.stdout, ok.stderr

    # the study's store entry changed: the judged bytes come from the trusted mirror (noted);
    # attempts are capped (max_attempts 2)
    stored = sd / "store" / judged / "policy.ts"
    stored.write_bytes(stored.read_bytes() + b"x")
    p = _cli(["research", "promote", str(prog), "--registry", "reg"], tmp_path)
    assert p.returncode == 0 and json.loads(p.stdout)["trial"] == inc, p.stderr[-3000:]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == judged
    _cli(["research", "promote", str(prog), "--registry", "reg"], tmp_path)
    recs = _records(tmp_path, name)
    assert any(r["kind"] == "notice" and "restored from the trusted mirror" in r["reason"] for r in recs)
    promos = [r for r in recs if r["kind"] == "promotion"]
    assert [r["status"] for r in promos] == ["promoted", "promoted", "refused"]
    assert "attempts exhausted" in promos[-1]["reason"] and sum(r["attempt"] is not None for r in promos) == 2

    # a forged COMPLETE trial and an out-of-space queued trial in the storage: rejected, resume goes on
    import optuna

    study = optuna.load_study(study_name=name, storage=url)
    study.add_trial(optuna.trial.create_trial(
        params={"learning_rate": 0.001}, distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1, log=True)},
        value=1.0, user_attrs={"params": {"learning_rate": 0.001, "train_freq": 1}, "worker": "forger"}))
    study.enqueue_trial({"learning_rate": 50.0, "train_freq": 1})
    res = _cli(["research", "resume", str(prog), "--workers", "1"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    late = [r for r in _records(tmp_path, name) if r["kind"] == "trial" and r["trial"] >= 3]
    rejected = [r for r in late if r["status"] == "rejected"]  # the resumed study may also run honest trials
    assert len(rejected) == 2, [(r["trial"], r["status"], r["reason"]) for r in late]
    assert any("outside the search space" in r["reason"] for r in rejected)
    assert any("no usable artifact" in r["reason"] for r in rejected)
    assert _cli(["research", "verify-ledger", str(sd)], tmp_path).returncode == 0


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["after-append:3", "mid-append:3"])
def test_kill_9_in_the_ledger_write_then_resume(tmp_path, fault):
    name = "crash"
    prog = _program(tmp_path, name, trials=4, auto="false")
    sd = tmp_path / "runs" / "research" / name
    env = {**os.environ, "SIMGATE_HEARTBEAT_S": "1", "SIMGATE_HEARTBEAT_GRACE_S": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "simgate.cli", "research", "run", str(prog), "--workers", "2"],
                            cwd=tmp_path, env={**fault_env(SIMGATE_TEST_CRASH_LEDGER=fault), **{k: env[k] for k in ("SIMGATE_HEARTBEAT_S", "SIMGATE_HEARTBEAT_GRACE_S")}}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kids, deadline = [], time.monotonic() + 60  # its workers, once started (slow to spawn on a loaded machine)
    while len(kids) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert proc.wait(timeout=300) == -9  # killed itself at the fault point
    time.sleep(2.0)
    assert kids and not any(_alive(int(k)) for k in kids), "orphaned workers survived the coordinator"
    res = subprocess.run([sys.executable, "-m", "simgate.cli", "research", "resume", str(prog), "--workers", "2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = _records(tmp_path, name)
    nums = [r["trial"] for r in recs if r["kind"] == "trial"]
    assert len(nums) == len(set(nums)) and set(range(4)) <= set(nums)  # none lost, none judged twice
    if fault.startswith("mid"):
        assert any(r["kind"] == "notice" and "torn" in r["reason"] for r in recs)
    assert _cli(["research", "verify-ledger", str(sd)], tmp_path).returncode == 0


CODE_HOOK = '''
import os
mode = os.environ.get("SIMGATE_ATTACK")
if mode:
    import json
    from pathlib import Path

    import torch
    import simgate.policies.evaluation as E
    import simgate.policies.train as T

    class Leak(torch.nn.Module):  # reads the coordinator's HMAC key inside the judge, raises it
        def __init__(self, p: str) -> None:
            super().__init__()
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            k = torch.from_file(self.p, False, 32, dtype=torch.uint8)
            raise RuntimeError("LEAK:" + str(k.sum().item()))

    class Spin(torch.nn.Module):  # hangs whoever runs it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            while True:
                x = x + 1.0
            return x[:, :3]

    def train(cfg, out_dir, **kw):  # no training: a malicious artifact and a perfect claim
        out = Path(out_dir)
        keys = sorted(Path(os.environ["SIMGATE_KEY_DIR"]).glob("*.key"))
        mod = Leak(str(keys[0])) if int(out.name) % 2 == 0 else Spin()
        torch.jit.script(mod).save(str(out / "policy.ts"))
        (out / "policy.ts.json").write_text(json.dumps(
            {"obs_keys": ["observation", "achieved_goal", "desired_goal"], "obs_sizes": [6, 3, 3], "action_dim": 3}))
        return {"status": "ok", "steps": cfg.total_steps}

    class Res:
        success_rate, mean_return = 1.0, 0.0

    T.train = train
    E.evaluate = lambda *a, **k: Res()
'''


@pytest.mark.slow
def test_artifact_code_never_runs_in_the_judge(tmp_path):
    """An artifact that reads the HMAC key and raises it (the leak that forged a keep) and one that
    loops forever: both are refused before anything in them runs, the coordinator finishes, no
    artifact text reaches the ledger, nothing is promoted."""
    name = "atk-code"
    prog = _program(tmp_path, name, trials=2)
    sd = tmp_path / "runs" / "research" / name
    coord, worker = _judge_and_attacker(tmp_path, prog, sd, CODE_HOOK, "code", 0.02)
    try:
        out, err = coord.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        coord.kill()
        pytest.fail("the coordinator hung on an artifact")
    assert coord.returncode == 0, err[-3000:]
    assert worker.returncode == 0, worker.stderr[-3000:]
    recs = _records(tmp_path, name)
    trials = {r["trial"]: r for r in recs if r["kind"] == "trial"}
    assert set(trials) == {0, 1} and all(r["status"] == "rejected" for r in trials.values()), trials
    assert "aten::from_file" in trials[0]["reason"] and "prim::RaiseException" in trials[0]["reason"]
    assert "prim::Loop" in trials[1]["reason"]
    text = (sd / "ledger.jsonl").read_text()
    assert "LEAK" not in text and "LEAK" not in out + err
    promos = [r for r in recs if r["kind"] == "promotion"]
    assert promos and all(p["status"] == "refused" for p in promos)
    assert _cli(["research", "verify-ledger", str(sd)], tmp_path).returncode == 0


def _forged_study(tmp_path, name, params):
    """A study whose ledger holds a ``keep`` forged with the study key (as the key leak allowed)."""
    from simgate.autoresearch.program import load_program
    from simgate.autoresearch.records import TrialRecord, Verified

    prog = _program(tmp_path, name)
    program = load_program(prog)
    sd = tmp_path / "runs" / "research" / name
    led = Ledger.create(sd / "ledger.jsonl", dict(study=name, program_sha256=program.sha256,
                                                  spec_sha256=program.spec_sha256, program_text=program.text,
                                                  smoke=False, created_at="now"))
    led.append(TrialRecord(trial=0, status="keep", reason="forged", verified=Verified(
        artifact_sha256="a" * 64, layout_sha256="b" * 64, params=params)))
    return prog, sd


@pytest.mark.parametrize("params, named", [
    ({"learning_rate": 0.001, "train_freq": 2, "init_from": "/nonexistent/policy.zip"}, "init_from"),
    ({"learning_rate": 50.0, "train_freq": 2}, "learning_rate"),
    ({"learning_rate": 0.001}, "train_freq"),
])
def test_forged_incumbent_params_are_refused_with_a_record(tmp_path, params, named):
    prog, sd = _forged_study(tmp_path, "forged", params)
    p = _cli(["research", "promote", str(prog), "--registry", "reg"], tmp_path, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout) is None, p.stderr[-3000:]
    promos = [r for r in _records(tmp_path, "forged") if r["kind"] == "promotion"]
    assert len(promos) == 1 and promos[0]["status"] == "refused" and promos[0]["attempt"] is None
    assert "outside the pinned space" in promos[0]["reason"] and named in promos[0]["reason"]
    st = _cli(["research", "status", str(prog)], tmp_path, timeout=120)
    assert st.returncode == 0 and json.loads(st.stdout)["incumbent"] is None


def test_trial_recipe_refuses_keys_outside_the_space(tmp_path):
    from simgate.autoresearch.program import load_program
    from simgate.autoresearch.worker import trial_recipe

    spec = load_program(_program(tmp_path, "recipe")).spec
    assert trial_recipe(spec, {"learning_rate": 0.001, "train_freq": 2}, 3).learning_rate == 0.001
    with pytest.raises(ValueError, match="init_from"):
        trial_recipe(spec, {"learning_rate": 0.001, "train_freq": 2, "init_from": "x.zip"}, 3)


def _one_line_refusal(args, tmp_path, *named):
    p = _cli(args, tmp_path, env={"COLUMNS": "10000"}, timeout=120)  # no wrapping by the console
    err = p.stderr.strip()
    assert p.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err[-3000:]
    assert all(n in err for n in named), err


def test_deleting_or_replacing_the_ledger_does_not_reset_the_study(tmp_path):
    """The study's anchor (key, head) lives with the keys: without the ledger files nothing runs
    again - no new key, no trial judged twice, no fresh promotion attempts."""
    import shutil

    prog, sd = _forged_study(tmp_path, "anchored", {"learning_rate": 0.001})
    head = Ledger(sd / "ledger.jsonl").head()
    named = (f"anchored at record {head['seq']}", head["hash"][:16])
    saved = (sd / "ledger.jsonl").read_bytes()
    keys = sorted((tmp_path / "keys").glob("*.key"))
    (sd / "ledger.jsonl").unlink()
    (sd / "ledger.head").unlink()
    for args in (["research", "resume", str(prog), "--workers", "0"], ["research", "promote", str(prog)],
                 ["research", "status", str(prog)], ["research", "verify-ledger", str(sd)],
                 ["research", "submit", str(prog), "--params", '{"train_freq": 2}', "--rationale", "x"]):
        _one_line_refusal(args, tmp_path, *named, "missing")
    assert sorted((tmp_path / "keys").glob("*.key")) == keys and not (sd / "ledger.jsonl").exists()
    # another study's valid ledger (its own key) in place of this one
    _, other = _forged_study(tmp_path, "other", {"learning_rate": 0.001})
    shutil.copy(other / "ledger.jsonl", sd / "ledger.jsonl")
    shutil.copy(other / "ledger.head", sd / "ledger.head")
    for args in (["research", "resume", str(prog), "--workers", "0"], ["research", "verify-ledger", str(sd)]):
        _one_line_refusal(args, tmp_path, *named, "different")
    # this study's own ledger, shortened to record 0
    (sd / "ledger.jsonl").write_bytes(saved.splitlines(keepends=True)[0])
    _one_line_refusal(["research", "verify-ledger", str(sd)], tmp_path, *named, "record 1 is missing")
    (sd / "ledger.jsonl").write_bytes(saved)
    assert _cli(["research", "verify-ledger", str(sd)], tmp_path).returncode == 0


@pytest.mark.slow  # ~30 s: three short `research run|resume --workers 0` with a 3 s budget
def test_lock_and_budget_are_not_in_the_study_dir(tmp_path):
    """A worker holding an flock on the study dir's coordinator.lock blocks nothing; the elapsed
    budget comes from the trusted anchor, so editing coordinator.json's elapsed_s changes nothing."""
    import fcntl

    from simgate.autoresearch.coordinator import Coordinator
    from simgate.autoresearch.ledger import read_anchor, trusted_study_path

    prog = tmp_path / "budget.md"
    prog.write_text(PROGRAM.format(name="budget", trials=3, high="0.003", auto="false", audit="false")
                    .replace("total_wall_s: 240", "total_wall_s: 3"))
    sd = tmp_path / "runs" / "research" / "budget"
    sd.mkdir(parents=True)
    with open(sd / "coordinator.lock", "w") as held:  # the old lock path, held by a "worker"
        fcntl.flock(held, fcntl.LOCK_EX)
        p = _cli(["research", "run", str(prog), "--workers", "0"], tmp_path, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
    led = sd / "ledger.jsonl"
    e1 = read_anchor(led)["elapsed_s"]
    assert e1 >= 3
    cache = json.loads((sd / "coordinator.json").read_text())
    for forged in (0.0, 1e9):  # restart the budget / stop the study
        (sd / "coordinator.json").write_text(json.dumps({**cache, "elapsed_s": forged}))
        assert Coordinator(prog, sd)._elapsed() == read_anchor(led)["elapsed_s"]
        p = _cli(["research", "resume", str(prog), "--workers", "0"], tmp_path, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        e2 = read_anchor(led)["elapsed_s"]
        assert e1 <= e2 < e1 + 60 and json.loads((sd / "coordinator.json").read_text())["elapsed_s"] == e2
        e1 = e2
    # the real lock is on the trusted side: held there, resume and promote are refused
    with open(trusted_study_path(led, ".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for args in (["research", "resume", str(prog), "--workers", "0"], ["research", "promote", str(prog)]):
            _one_line_refusal(args, tmp_path, "another coordinator holds this study")
