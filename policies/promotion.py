"""Promotion of a training run: holdout and robustness evaluation by the shared harness, then
the registry. The holdout seeds are used here and in final reports only."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from simgate.policies.evaluation import evaluate, seeds_for
from simgate.policies.export import TorchPolicy
from simgate.policies.registry import Registry
from simgate.sim import make


def env_spec(env_id: str) -> dict:
    from simgate.sim.robot_spec import robot_identity

    env = make(env_id)
    try:
        return {"env_id": env_id, "robot": env.spec_robot.name, "control_rate_hz": env.spec_robot.control_rate_hz,
                "control": env.control, "task": env.task_name,
                "robot_spec": robot_identity(env.spec_robot), "observation_layout": env.observation_layout(),
                "observation_space": {k: list(v.shape) for k, v in env.observation_space.spaces.items()},
                "action_space": {"shape": list(env.action_space.shape), "low": -1.0, "high": 1.0}}
    finally:
        env.close()


def promote_run(run_dir: str | Path, registry_dir=None, name: str | None = None, holdout_episodes: int = 100,
                robustness_episodes: int | None = None, ledger_entry: dict | None = None,
                robot: str | None = None) -> str:
    """``robot``: the spec file of the run's robot where it is no longer where training found it."""
    from simgate.policies.robot_meta import check_same_robot, prepare_recipe_robot, recorded_robot

    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    env_id = cfg["env_id"]
    prepare_recipe_robot(env_id, robot or cfg.get("robot"))
    check_same_robot(recorded_robot(str(run_dir)), env_id)  # the spec has not changed since training
    policy = TorchPolicy(run_dir / "policy.ts")
    hold = evaluate(policy, env_id, seeds_for("holdout", holdout_episodes))
    robust = evaluate(policy, env_id, seeds_for("holdout", robustness_episodes or holdout_episodes),
                      {"randomization": "preset"})
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    meta = {
        **env_spec(env_id),
        "holdout": hold.summary(),
        "robustness": {"randomization": "preset", **robust.summary()},
        "training": {"config": cfg, "steps": run.get("steps"), "wall_s": run.get("wall_s"), "device": run.get("device")},
        "ledger_entry": ledger_entry,
    }
    if run.get("trained_in") == "twin":  # trained in the batched twin: PyBullet judged, fidelity on record
        from simgate.sim.twin.check import twin_check

        spec = meta
        meta["training"]["trained_in"] = "twin"
        meta["twin"] = {"selected": run.get("selected"), "twin_pybullet_gap": run.get("twin_pybullet_gap"),
                        "fidelity": twin_check(spec["robot"], spec["task"], episodes=50)}
    if run.get("code"):
        meta["code"] = run["code"]
    return Registry(registry_dir).promote(run_dir / "policy.ts", meta, name=name)
