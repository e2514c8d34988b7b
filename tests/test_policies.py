"""Training, export parity, registry integrity, interruption and resume."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from simgate.errors import ConfigError
from simgate.policies.evaluation import evaluate, seeds_for
from simgate.policies.export import SB3Policy, TorchPolicy
from simgate.policies.recipes import default_recipe, load_recipe
from simgate.policies.registry import Registry, RegistryError
from simgate.policies.train import load_trained, train
from simgate.sim import make


def _observations(env_id, n=1000):
    env = make(env_id)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    out = []
    while len(out) < n:
        out.append(obs)
        obs, _, _, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        if trunc:
            obs, _ = env.reset()
    env.close()
    return out


@pytest.mark.parametrize("algo, env_id, extra", [
    ("sac", "simgate/PandaReach-v0", {}),
    ("tqc", "simgate/PandaPush-v0", {"normalize_obs": True, "net_arch": [32, 32]}),
    ("ppo", "simgate/PandaReachDense-v0", {"n_steps": 64, "num_envs": 2}),
])
def test_exported_policy_matches_sb3_to_1e5(algo, env_id, extra, tmp_path):
    cfg = default_recipe(env_id, algo, total_steps=300, learning_starts=100, eval_every_steps=10_000,
                         checkpoint_every_steps=10_000, batch_size=64, **extra)
    run = train(cfg, tmp_path / "run", progress_bar=False)
    assert run["status"] == "completed" and run["steps"] >= 300 and run["device"] in ("cpu", "cuda")
    model, vn = load_trained(tmp_path / "run")
    sb3 = SB3Policy(model, vn)
    exported = TorchPolicy(tmp_path / "run" / "policy.ts")
    obs = _observations(env_id)
    a = np.array([sb3.act(o) for o in obs])
    b = np.array([exported.act(o) for o in obs])
    assert a.shape == (1000, model.action_space.shape[0])
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert np.abs(a).max() > 1e-3  # not a constant


def _promotable(tmp_path):
    cfg = default_recipe("simgate/PandaReach-v0", total_steps=200, learning_starts=100, eval_every_steps=10_000)
    train(cfg, tmp_path / "run", progress_bar=False)
    return tmp_path / "run" / "policy.ts"


def test_registry_promote_load_tamper_and_refusals(tmp_path):
    ts = _promotable(tmp_path)
    reg = Registry(tmp_path / "reg")
    meta = {"env_id": "simgate/PandaReach-v0", "robot": "panda"}
    with pytest.raises(RegistryError, match="holdout metrics"):
        reg.promote(ts, meta)
    assert reg.entries() == []
    hold = evaluate(TorchPolicy(ts), "simgate/PandaReach-v0", seeds_for("holdout", 5)).summary()
    digest = reg.promote(ts, {**meta, "holdout": hold}, name="reach-test")
    assert len(digest) == 64 and reg.resolve("reach-test").name == digest == reg.resolve(digest[:10]).name
    entry = reg.metadata(digest)
    assert entry["holdout"]["episodes"] == 5 and entry["code"]["git_commit"] and entry["promoted_by"]
    assert entry["libraries"]["torch"].startswith("2.13")
    policy, _ = reg.load("reach-test")
    env = make("simgate/PandaReach-v0")
    obs, _ = env.reset(seed=0)
    assert policy.act(obs).shape == (3,)
    assert reg.promote(ts, {**meta, "holdout": hold, "promoted_at": entry["promoted_at"]}, name="reach-test") == digest
    out = reg.export(digest, tmp_path / "export" / "actor.ts")
    import torch

    mod = torch.jit.load(str(out))  # torch alone
    assert mod(torch.zeros(1, 12)).shape == (1, 3)
    art = tmp_path / "reg" / digest / "policy.ts"
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x01
    art.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="tampered"):
        reg.load(digest)
    with pytest.raises(RegistryError, match="no promoted policy"):
        reg.load("nope")
    reg.remove(digest)
    assert all(e["id"] != digest for e in reg.entries())


def test_promotion_evaluates_holdout_and_robustness(tmp_path):
    from simgate.policies.promotion import promote_run

    _promotable(tmp_path)
    digest = promote_run(tmp_path / "run", tmp_path / "reg", holdout_episodes=4)
    meta = Registry(tmp_path / "reg").metadata(digest)
    assert meta["holdout"]["seeds"] == seeds_for("holdout", 4)
    assert meta["robustness"]["randomization"] == "preset" and meta["training"]["steps"] == 200
    assert meta["observation_space"]["observation"] == [6] and meta["control_rate_hz"] == 25


def test_sigint_then_resume_reaches_total_steps(tmp_path):
    out = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"total_steps": 3000, "learning_starts": 200, "checkpoint_every_steps": 500,
                                      "eval_every_steps": 100_000}))
    cmd = [sys.executable, "-m", "simgate.cli", "train", "--config", str(recipe), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = out / "checkpoints" / "state.json"
    t0 = time.monotonic()
    while not state.exists() and time.monotonic() - t0 < 120:
        time.sleep(0.1)
    assert state.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    saved = json.loads(state.read_text())["steps"]
    assert 500 <= saved < 3000 and (out / "checkpoints" / "latest.zip").exists()
    assert not (out / "policy.ts").exists()
    # a checkpoint of a run still training evaluates on the named holdout seeds
    ev = subprocess.run([sys.executable, "-m", "simgate.cli", "eval", "--policy", str(out / "checkpoints" / "latest.zip"),
                         "--seed-set", "holdout", "--episodes", "3", "--json", str(tmp_path / "ev.json")],
                        capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads((tmp_path / "ev.json").read_text())["seeds"] == "holdout (first 3)"
    bad = subprocess.run([sys.executable, "-m", "simgate.cli", "eval", "--seed-set", "tuning", "--episodes", "1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--seed-set must be one of" in bad.stderr
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    run = json.loads((out / "run.json").read_text())
    assert run["resumed"] and run["steps"] == 3000 and (out / "policy.ts").exists()


def test_fine_tune_from_another_run_under_randomization(tmp_path):
    base = default_recipe("simgate/PandaPush-v0", total_steps=300, learning_starts=100, eval_every_steps=10_000,
                          checkpoint_every_steps=10_000, batch_size=32, net_arch=[32, 32], normalize_obs=True)
    train(base, tmp_path / "a", progress_bar=False)
    tuned = base.model_copy(update={"init_from": str(tmp_path / "a"), "total_steps": 500, "randomization": "preset",
                                    "norm_obs_epsilon": 1e-4, "eval_every_steps": 100, "eval_episodes": 2})
    run = train(tuned, tmp_path / "b", progress_bar=False)
    assert run["init_from"] == {"run": str(tmp_path / "a"), "steps": 300}
    assert run["status"] == "completed" and run["steps"] == 500 and not run["resumed"]
    assert [e["steps"] for e in run["evals"]] == [400, 500]  # the step count continues from the source run
    model, vn = load_trained(tmp_path / "b")
    src, _ = load_trained(tmp_path / "a")
    model.load_replay_buffer(str(tmp_path / "b" / "checkpoints" / "replay_buffer.pkl"))
    assert vn.epsilon == 1e-4 and model.replay_buffer.size() == 500  # its transitions were kept and added to
    assert not np.allclose(model.policy.actor.mu.weight.detach().numpy(), src.policy.actor.mu.weight.detach().numpy())
    with pytest.raises(ConfigError, match="init_from"):
        train(tuned.model_copy(update={"init_from": str(tmp_path / "nowhere")}), tmp_path / "c", progress_bar=False)


def test_bad_recipe_is_named(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("learning_rate: -1\nbatch_sise: 3\n")
    with pytest.raises(ConfigError, match="learning_rate") as e:
        load_recipe(bad)
    assert "batch_sise" in str(e.value)


@pytest.mark.slow
def test_default_reach_recipe_learns(tmp_path):
    """A short run of the default recipe already solves most holdout goals (the full
    time-to-solve figure is bench/time_to_solve.py)."""
    cfg = default_recipe("simgate/PandaReach-v0", total_steps=8000, stop_at_success=0.95, eval_every_steps=1000)
    run = train(cfg, tmp_path / "run", progress_bar=False)
    res = evaluate(TorchPolicy(tmp_path / "run" / "policy.ts"), "simgate/PandaReach-v0", seeds_for("holdout", 50))
    assert res.success_rate >= 0.9, (run["evals"], res.success_rate)
