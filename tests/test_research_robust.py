"""Robust metrics: a program names the evaluation conditions of its metric (``metric.under``) and the
whole loop - the worker's selection evaluation, the trusted gate on secret fresh seeds, promotion
and the ledger - uses them. Tried through `simgate research ...` with real worker processes whose
training a ``sitecustomize`` hook replaces by hand-written controllers of known behaviour:

* "gentle" (trials 0 and 1, the baselines): a slow proportional controller, capped speed - misses
  some far goals within the episode, but latency and noise hardly change it (measured on 100
  selection seeds: 82 % nominal, 77 % under the preset);
* "snappy" (trial 2): a high-gain controller - reaches nominally, oscillates under the preset's
  one-step action latency (100 % nominal, 75 % under the preset).

On a nominal program the snappy controller beats the baseline and is promoted; on the same program
with ``under: preset`` it is not kept (the same bytes score ~75 % there) and the baseline is
promoted. Every verdict records
the conditions it was judged under."""

import pytest
from research_helpers import hook_env, research_cli

from simgate.autoresearch.ledger import Ledger

PROGRAM = """---
name: {name}
task: {{env_id: simgate/PandaReach-v0}}
metric: {metric}
budgets: {{trial_env_steps: 600, trial_wall_s: 60, total_wall_s: 300, max_trials: 3}}
base_recipe: {{algo: sac}}
search_space:
  gamma: {{type: float, low: 0.9, high: 0.98}}
acceptance: {{selection_episodes: 20, fresh_episodes: 40, max_fresh_episodes: 160, false_keep_per_study: 0.05}}
promotion: {{holdout_episodes: 20, min_holdout_success: 0.0, max_attempts: 1, audit: false}}
proposer: {{sampler: random, prune: false}}
---
robust-metric test
"""

HOOK = '''
import os
if os.environ.get("SIMGATE_TEST_CONTROLLERS"):
    import simgate.policies.train as T

    def train(cfg, out_dir, **kw):  # no learning: a controller of known behaviour per trial
        from pathlib import Path
        import torch

        class Ctl(torch.nn.Module):  # pure tensor ops (the judge's allow-list)
            def __init__(self, gain: float, cap: float) -> None:
                super().__init__()
                self.gain = gain
                self.cap = cap

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.clamp((x[:, 3:6] - x[:, 0:3]) * self.gain, -self.cap, self.cap)

        from research_helpers import save_controller

        trial = int(Path(out_dir).name)
        gain, cap = (80.0, 1.0) if trial >= 2 else (10.0, 0.05)
        save_controller(Ctl(gain, cap), cfg.env_id, out_dir)
        return {"status": "finished", "steps": 1}

    T.train = train
'''


@pytest.fixture(autouse=True)
def _keys(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMGATE_KEY_DIR", str(tmp_path / "keys"))


def _cli(args, tmp_path, env=None, timeout=600):
    return research_cli(args, tmp_path, env, timeout)


def _program(tmp_path, name, metric):
    p = tmp_path / f"{name}.md"
    p.write_text(PROGRAM.format(name=name, metric=metric))
    return p


@pytest.mark.parametrize("metric, named", [
    ("{name: success_rate, under: windy}", "'windy' is not an evaluation condition"),
    ("{name: success_rate, under: 3}", "expected one of"),
    ("{name: success_rate, under: {gravity: [1, 2]}}", "gravity"),
    ("{name: success_rate, under: {action_latency_steps: [0, 50]}}", "outside the allowed"),
    ("{name: success_rate, under: preset, noise: 1}", "metric.noise"),
])
def test_a_bad_condition_is_refused_naming_the_field(tmp_path, metric, named):
    prog = _program(tmp_path, "bad", metric)
    for args in (["research", "run", str(prog), "--workers", "0"], ["research", "status", str(prog)]):
        p = _cli(args, tmp_path, timeout=120)
        assert p.returncode == 2, p.stderr[-2000:]
        assert "metric.under" in p.stderr or "metric.noise" in p.stderr, p.stderr[-2000:]
        assert named in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "runs").exists()  # refused before any study was created


def test_a_study_directory_given_as_the_program_is_refused_by_name(tmp_path):
    """`simgate research status runs/research/x` (a study, not a program) once raised IsADirectoryError."""
    study = tmp_path / "runs" / "research" / "some-study"
    study.mkdir(parents=True)
    for args in (["research", "status", str(study)], ["research", "run", str(study), "--workers", "0"]):
        p = _cli(args, tmp_path, timeout=120)
        assert p.returncode == 2 and "is a directory, not a program" in p.stderr, p.stderr[-2000:]
        assert "--study-dir" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert list(study.iterdir()) == []  # nothing written into it


def test_promote_without_a_study_is_refused_and_writes_nothing(tmp_path):
    """`simgate research promote push-robust --study-dir <empty>` once created a ledger (a study of no trials)."""
    empty = tmp_path / "runs" / "research" / "not-run-yet"
    empty.mkdir(parents=True)
    zero = tmp_path / "runs" / "research" / "zero-byte-ledger"
    zero.mkdir(parents=True)
    (zero / "ledger.jsonl").write_bytes(b"")
    for study, left in ((empty, []), (zero, ["ledger.jsonl"])):
        p = _cli(["research", "promote", "push-robust", "--study-dir", str(study)], tmp_path, timeout=120,
                 env={"COLUMNS": "10000"})
        assert p.returncode == 2 and "no study in" in p.stderr and "research run" in p.stderr, p.stderr[-2000:]
        assert "Traceback" not in p.stderr, p.stderr[-2000:]
        assert sorted(f.name for f in study.iterdir()) == left  # no ledger written, no lock, no optuna.db
    assert (zero / "ledger.jsonl").stat().st_size == 0
    odd = tmp_path / "runs" / "research" / "ledger-is-a-dir"
    (odd / "ledger.jsonl").mkdir(parents=True)
    for cmd in (["promote"], ["run", "--workers", "0"]):  # every command that opens the ledger
        p = _cli(["research", *cmd[:1], "push-robust", *cmd[1:], "--study-dir", str(odd)], tmp_path, timeout=120,
                 env={"COLUMNS": "10000"})
        assert p.returncode == 2 and "is a directory, not a study's ledger" in p.stderr, p.stderr[-2000:]
        assert "Traceback" not in p.stderr and sorted(f.name for f in odd.iterdir()) == ["ledger.jsonl"]


@pytest.mark.slow
@pytest.mark.parametrize("under, snappy_status, promoted_trial", [
    ("nominal", "keep", 2),  # nominally the snappy controller is the better one ...
    ("preset", "discard", 0),  # ... under the preset it is not: the robust baseline stays and is promoted
])
def test_the_gate_and_promotion_judge_under_the_programs_conditions(tmp_path, under, snappy_status, promoted_trial):
    name = f"robust-{under}"
    prog = _program(tmp_path, name, f"{{name: success_rate, direction: maximize, under: {under}}}")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    p = _cli(["research", "run", str(prog), "--workers", "1", "--registry", "reg"], tmp_path,
             env=hook_env(tmp_path / "hook", SIMGATE_TEST_CONTROLLERS="1"))
    assert p.returncode == 0, p.stderr[-3000:]
    sd = tmp_path / "runs" / "research" / name
    recs = Ledger(sd / "ledger.jsonl").records()
    trials = {r["trial"]: r for r in recs if r["kind"] == "trial"}
    assert sorted(trials) == [0, 1, 2], [(r["trial"], r["status"], r["reason"]) for r in trials.values()]
    # the worker's claim (selection seeds) was made under the same conditions: it reproduces
    assert all(r["status"] != "rejected" for r in trials.values()), [r["reason"] for r in trials.values()]
    for r in trials.values():
        assert r["verified"]["conditions"] == under, (r["trial"], r["status"], r["reason"], r["verified"])
    snappy = trials[2]
    assert snappy["status"] == snappy_status, snappy["reason"]
    assert snappy["verified"]["incumbent"] == 0 and snappy["verified"]["fresh_episodes"] >= 40
    if under == "preset":
        assert "under the randomization preset" in snappy["reason"]
        assert snappy["verified"]["fresh"] < 0.9, snappy["verified"]  # judged under the preset: it oscillates
    else:
        assert snappy["verified"]["fresh"] >= 0.95, snappy["verified"]
        assert snappy["verified"]["fresh"] > snappy["verified"]["incumbent_fresh"], snappy["verified"]
    promo = [r for r in recs if r["kind"] == "promotion"][-1]
    assert promo["status"] == "promoted" and promo["candidate"] == promoted_trial, promo["reason"]
    assert promo["conditions"] == under
    # the metric measured under the conditions on the secret holdout sample: the same episodes as
    # the nominal holdout or the preset robustness evaluation (same seeds, same conditions)
    same_as = promo["holdout"] if under == "nominal" else promo["robustness"]
    assert promo["metric"]["success_rate"] == same_as["success_rate"]
    assert promo["metric"]["episodes"] == 20
    # the baseline (trial 0) measured on the same secret seeds and conditions, paired test
    base = promo["baseline"]
    assert base["trial"] == 0 and base["episodes"] == 20 and 0.0 <= base["p_value"] <= 1.0
    if promoted_trial == 0:
        assert base["p_value"] == 1.0 and base["delta"] == 0.0
    else:
        assert base["delta"] > 0 and base["value"] == pytest.approx(promo["metric"]["value"] - base["delta"])
    assert _cli(["research", "verify-ledger", str(sd)], tmp_path).returncode == 0
    report = (sd / "report.md").read_text()
    assert ("evaluated under the randomization preset" in report) == (under == "preset")


def test_built_in_robust_programs_and_explicit_ranges(tmp_path):
    from simgate.autoresearch.program import load_program
    from simgate.sim import make

    for name in ("reach-robust", "push-robust"):
        prog = load_program(name)
        assert prog.spec.metric.under != "nominal" and "randomization" in prog.spec.search_space
        assert "How long it takes here" in prog.prose
    p = _program(tmp_path, "ranges", "{name: success_rate, under: {action_latency_steps: [1, 2], link_mass_scale: [0.9, 1.1]}}")
    m = load_program(p).spec.metric
    assert m.conditions() == {"link_mass_scale": [0.9, 1.1], "action_latency_steps": [1.0, 2.0]}
    env = make("simgate/PandaReach-v0", **m.env_kwargs())  # the conditions the gate evaluates under
    try:
        _, info = env.reset(seed=3)
        assert info["randomization"]["action_latency_steps"] in (1, 2) and set(info["randomization"]) == set(m.under)
    finally:
        env.close()
    # a nominal metric hashes as it did before conditions existed (pinned studies still resume)
    a = load_program(_program(tmp_path, "n1", "{name: success_rate}"))
    b = load_program(_program(tmp_path, "n1", "{name: success_rate, under: nominal}"))
    c = load_program(_program(tmp_path, "n1", "{name: success_rate, under: preset}"))
    assert a.spec_sha256 == b.spec_sha256 != c.spec_sha256
