"""Which robot a policy was trained for, and the refusal to run it on another.

Runs (run.json) and registry entries record ``robot_spec`` (name, sha256 of the spec's content
and of its URDF, the spec file) and ``observation_layout``; evaluating or serving a policy on an
env whose robot or observation layout differs is refused with a message naming both.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from simgate.errors import ConfigError


def env_robot_meta(env_id: str, env_kwargs: dict | None = None) -> dict:
    """``{"robot_spec": identity, "observation_layout": [...]}`` of an env id."""
    from simgate.sim import make
    from simgate.sim.robot_spec import robot_identity

    env = make(env_id, **(env_kwargs or {}))
    try:
        return {"robot_spec": robot_identity(env.spec_robot), "observation_layout": env.observation_layout()}
    finally:
        env.close()


def _run_dir_of(p: Path) -> Path | None:
    for d in (p, p.parent, p.parent.parent):
        if d.is_dir() and (d / "config.yaml").exists():
            return d
    return None


def _from_run(run_dir: Path) -> dict:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    return {"label": f"run {run_dir}", "env_id": cfg.get("env_id"), "robot": cfg.get("robot"),
            "robot_spec": run.get("robot_spec"), "observation_layout": run.get("observation_layout")}


def recorded_robot(ref: str, registry_dir: str | Path | None = None) -> dict | None:
    """What a policy reference records of its robot (None for scripted/random or a bare .ts):
    label, env_id, robot (spec given to train), robot_spec, observation_layout."""
    if ref in ("scripted", "random"):
        return None
    p = Path(ref)
    if p.exists():
        run_dir = _run_dir_of(p)
        return _from_run(run_dir) if run_dir is not None else None
    from simgate.policies.registry import Registry

    meta = Registry(registry_dir).metadata(ref)
    spec = meta.get("robot_spec") or {"name": meta.get("robot")}
    return {"label": f"registry entry {meta['id'][:12]} ({meta.get('name')})", "env_id": meta.get("env_id"),
            "robot": spec.get("spec_file"), "robot_spec": spec,
            "observation_layout": meta.get("observation_layout")}


def register_recorded_robot(rec: dict | None) -> None:
    """Make the ids of a policy's robot known in this process (its spec file, if it still exists)."""
    from simgate.sim.registry import register_robot

    spec_file = (rec or {}).get("robot") or ((rec or {}).get("robot_spec") or {}).get("spec_file")
    if spec_file and Path(spec_file).suffix and Path(spec_file).exists():
        register_robot(spec_file)


def check_same_robot(rec: dict | None, env_id: str, env_kwargs: dict | None = None) -> None:
    """Refuse (ConfigError naming both) when the policy's recorded robot or observation layout
    differs from the env's. A policy without a record (scripted, bare .ts) is not checked."""
    if not rec:
        return
    have = env_robot_meta(env_id, env_kwargs)
    want = rec.get("robot_spec") or {}
    if not want and rec.get("env_id"):
        from simgate.sim.registry import parse_env_id
        from simgate.sim.robot_spec import load_robot_spec

        try:
            want = {"name": load_robot_spec(parse_env_id(rec["env_id"])["robot"]).name}
        except ConfigError:
            want = {}
    got = have["robot_spec"]
    differs = [k for k in ("name", "spec_sha256", "urdf_sha256") if want.get(k) and want[k] != got[k]]
    if differs:
        raise ConfigError(
            f"{rec['label']} was trained for robot {want.get('name')!r} (spec {want.get('spec_sha256', '?')[:12]}) "
            f"but {env_id} is robot {got['name']!r} (spec {got['spec_sha256'][:12]}): {', '.join(differs)} differ; "
            f"run it on its own robot ({rec.get('env_id')}{', --robot ' + str(want['spec_file']) if want.get('spec_file') else ''})")
    layout = rec.get("observation_layout")
    if layout and layout != have["observation_layout"]:
        names = lambda lay: ",".join(f"{s['name']}:{s['size']}" for s in lay)  # noqa: E731
        raise ConfigError(f"{rec['label']} observes [{names(layout)}] but {env_id} gives "
                          f"[{names(have['observation_layout'])}]")


def prepare_recipe_robot(env_id: str, robot: str | None) -> None:
    """A recipe's ``robot`` (built-in name or spec path): its ids registered, and its env id must
    be that robot's (refused naming both otherwise)."""
    if robot is None:
        return
    from simgate.sim.registry import env_robot, register_robot
    from simgate.sim.robot_spec import load_robot_spec

    spec = register_robot(robot)
    env_spec = load_robot_spec(env_robot(env_id))
    if env_spec.name != spec.name:
        from simgate.sim.registry import robot_env_id

        raise ConfigError(f"env {env_id} is robot {env_spec.name!r} but robot is {spec.name!r} ({robot}); "
                          f"use {robot_env_id(robot)} or another of `simgate envs --robot {robot}`")
