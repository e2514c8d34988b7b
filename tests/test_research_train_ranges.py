"""Training randomization ranges as search parameters (issue 16: tune the ranges a policy is trained
under, DrEureka-style), tried through `simgate research ...` with real worker processes. A
``sitecustomize`` hook replaces training by a fixed controller and writes down the recipe each
trial was given, so the test sees what the worker would have trained."""

import json

import pytest
from research_helpers import hook_env, research_cli

from simgate.autoresearch.ledger import Ledger

PROGRAM = """---
name: ranges
task: {{env_id: simgate/PandaReach-v0}}
metric: {{name: success_rate, under: preset}}
budgets: {{trial_env_steps: 600, trial_wall_s: 60, total_wall_s: 300, max_trials: 4}}
base_recipe: {{algo: sac, randomization: preset}}
search_space:
{space}
acceptance: {{selection_episodes: 10, fresh_episodes: 20, max_fresh_episodes: 40, false_keep_per_study: 0.05}}
promotion: {{holdout_episodes: 10, min_holdout_success: 0.0, max_attempts: 1, audit: false}}
proposer: {{sampler: random, prune: false}}
---
training-ranges test
"""

SPACE = """  train_randomization.action_latency_steps.high: {type: int, low: 1, high: 3}
  train_randomization.lateral_friction.high: {type: float, low: 1.0, high: 2.0}
  train_randomization.lateral_friction.low: {type: float, low: 0.3, high: 1.5}"""

HOOK = '''
import os
if os.environ.get("SIMGATE_TEST_RECORD_RECIPE"):
    import simgate.policies.train as T

    def train(cfg, out_dir, **kw):  # no learning: record the recipe, save a fixed controller
        import json
        from pathlib import Path
        import torch

        class Ctl(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.clamp((x[:, 3:6] - x[:, 0:3]) * 10.0, -0.05, 0.05)

        from research_helpers import save_controller

        save_controller(Ctl(), cfg.env_id, out_dir)
        (Path(out_dir) / "recipe.json").write_text(json.dumps(cfg.model_dump()))
        return {"status": "finished", "steps": 1}

    T.train = train
'''


@pytest.fixture(autouse=True)
def _keys(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMGATE_KEY_DIR", str(tmp_path / "keys"))


def _cli(args, tmp_path, env=None, timeout=600):
    return research_cli(args, tmp_path, env, timeout)


def _run_recording_recipes(prog, tmp_path):
    """`simgate research run PROG` with training replaced by the HOOK: (study dir, trial records by number)."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(HOOK)
    p = _cli(["research", "run", str(prog), "--workers", "1"], tmp_path,
             env=hook_env(tmp_path / "hook", SIMGATE_TEST_RECORD_RECIPE="1"))
    assert p.returncode == 0, p.stderr[-3000:]
    sd = tmp_path / "runs" / "research" / "ranges"
    return sd, {r["trial"]: r for r in Ledger(sd / "ledger.jsonl").records() if r["kind"] == "trial"}


@pytest.mark.parametrize("space, named", [
    ("  train_randomization.lateral_friction.high: {type: float, low: 1.0, high: 9.0}", "outside the allowed"),
    ("  train_randomization.gravity.high: {type: float, low: 1.0, high: 2.0}", "field one of"),
    ("  train_randomization.lateral_friction: {type: float, low: 1.0, high: 2.0}", "<low|high>"),
    ("  train_randomization.lateral_friction.high: {type: categorical, choices: [1.0, 2.0]}", "is a number"),
    ('  "train_randomization.lateral_friction.high\\n": {type: float, low: 1.0, high: 2.0}', "field one of"),
    ("  randomization: {type: categorical, choices: [null, {lateral_friction: [0, 50]}]}", "outside the allowed"),
    ("  train_randomization: {type: categorical, choices: [null, preset]}", "twin_ppo only"),
])
def test_a_bad_training_range_is_refused_before_any_compute(tmp_path, space, named):
    prog = tmp_path / "bad.md"
    text = PROGRAM.format(space=space)
    if space.lstrip().startswith("randomization:"):  # searched, so not in the base recipe
        text = text.replace("{algo: sac, randomization: preset}", "{algo: sac}")
    prog.write_text(text)
    p = _cli(["research", "run", str(prog), "--workers", "0"], tmp_path, timeout=120)
    err = " ".join(p.stderr.split())  # the console wraps long messages
    assert p.returncode == 2 and named in err and "search_space" in err, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and not (tmp_path / "runs").exists()


def test_a_bad_base_randomization_is_refused_at_load_not_after_the_study_is_pinned(tmp_path):
    prog = tmp_path / "bad.md"
    prog.write_text(PROGRAM.format(space=SPACE).replace("randomization: preset}", "randomization: {lateral_friction: [0, 50]}}"))
    p = _cli(["research", "run", str(prog), "--workers", "0"], tmp_path, timeout=120)
    err = " ".join(p.stderr.split())
    assert p.returncode == 2 and "base_recipe.randomization" in err and "outside the allowed" in err, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_each_trial_trains_under_its_searched_ranges_and_is_judged_under_the_metrics(tmp_path):
    prog = tmp_path / "ranges.md"
    prog.write_text(PROGRAM.format(space=SPACE))
    sd, trials = _run_recording_recipes(prog, tmp_path)
    assert len(trials) >= 3, sorted(trials)
    for n, rec in trials.items():
        given = json.loads((sd / "trials" / f"{n:04d}" / "recipe.json").read_text())["randomization"]
        params = rec["reported"]["params"]
        # the searched bounds, and the preset's everywhere else (the base recipe trains under it)
        assert given["action_latency_steps"] == [0.0, params["train_randomization.action_latency_steps.high"]], n
        # both bounds of one field together, in whatever order the keys come (the ledger sorts them)
        bounds = [params["train_randomization.lateral_friction.low"], params["train_randomization.lateral_friction.high"]]
        assert given["lateral_friction"] == sorted(bounds), n
        assert given["link_mass_scale"] == [0.8, 1.2] and given["obs_noise_std"] == [0.0, 0.002], n
        assert rec["verified"]["conditions"] == "preset", rec["verified"]  # judged under the metric, not the ranges
    # the baselines train at the base recipe's values: the preset's own bounds
    assert trials[0]["reported"]["params"] == {"train_randomization.action_latency_steps.high": 1,
                                               "train_randomization.lateral_friction.high": 1.2,
                                               "train_randomization.lateral_friction.low": 0.6}
    assert any(r["reported"]["params"] != trials[0]["reported"]["params"] for n, r in trials.items() if n >= 2)


@pytest.mark.slow
def test_a_study_seed_moves_every_trials_training_seed_and_the_ledger_says_which(tmp_path):
    """Repeats of one study (bench/research_efficiency.py) must not re-train the same seeds: trial n
    of a program with study_seed s trains with seed 7000 + 1000 s + n, and its ledger record says so."""
    prog = tmp_path / "seeded.md"
    text = PROGRAM.format(space=SPACE).replace("max_trials: 4", "max_trials: 2")
    prog.write_text(text.replace("proposer:", "study_seed: 3\nproposer:"))
    sd, trials = _run_recording_recipes(prog, tmp_path)
    assert sorted(trials) == [0, 1]  # the two baselines: the same recipe, two training seeds
    for n, rec in trials.items():
        given = json.loads((sd / "trials" / f"{n:04d}" / "recipe.json").read_text())
        assert given["seed"] == rec["reported"]["train_seed"] == 10_000 + n, (n, given["seed"], rec["reported"])
    for bad_text, named in ((text.replace("proposer:", "study_seed: -1\nproposer:"), "study_seed"),
                            (text.replace("proposer:", "study_seed: 900\nproposer:"), "study_seed"),  # selection seeds
                            (text.replace("{algo: sac,", "{algo: sac, seed: 5,"), "base_recipe.seed"),
                            (text.replace("max_trials: 2", "max_trials: 1001").replace("proposer:", "study_seed: 1\nproposer:"),
                             "budgets.max_trials")):
        bad = tmp_path / "bad.md"
        bad.write_text(bad_text)
        refused = _cli(["research", "run", str(bad), "--workers", "0"], tmp_path, timeout=120)
        assert refused.returncode == 2 and named in " ".join(refused.stderr.split()), refused.stderr[-2000:]


def test_study_seed_zero_hashes_as_before_it_existed(tmp_path):
    """Studies pinned before study_seed existed still resume: seed 0 (or none) is not in the spec hash."""
    from simgate.autoresearch.program import load_program

    text = PROGRAM.format(space=SPACE)
    hashes = []
    for i, extra in enumerate(("", "study_seed: 0\n", "study_seed: 1\n")):
        (tmp_path / f"p{i}.md").write_text(text.replace("proposer:", extra + "proposer:"))
        hashes.append(load_program(tmp_path / f"p{i}.md").spec_sha256)
    assert hashes[0] == hashes[1] != hashes[2]
