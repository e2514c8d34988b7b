"""Commands for training and the registry: train, policies list|show|promote|export|remove."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml

from simgate.cli._app import app, console
from simgate.cli._robot import ROBOT_HELP

policies_app = typer.Typer(no_args_is_help=True, help="The registry of promoted policies.")
app.add_typer(policies_app, name="policies")


@app.command()
def train(
    env: str | None = typer.Option(None, help="environment id (default: the recipe's, else --robot's Reach, "
                                              "else simgate/PandaReach-v0)"),
    robot: str | None = typer.Option(None, help=ROBOT_HELP + " (overrides the recipe's robot)"),
    algo: str | None = typer.Option(None, help="sac | tqc | ppo (default: by env)"),
    config: Path | None = typer.Option(None, help="recipe YAML (any subset of fields)"),
    steps: int | None = typer.Option(None, help="total env steps"),
    out: Path = typer.Option(Path("runs/train"), help="run directory (resumes if it has a checkpoint)"),
    seed: int | None = typer.Option(None),
) -> None:
    """Train a policy; Ctrl-C saves a checkpoint, running the same command again resumes."""
    from simgate.policies.recipes import load_recipe
    from simgate.policies.train import train as run_train

    recipe = (yaml.safe_load(config.read_text()) or {}) if config and config.exists() else {}
    if robot is not None and env is None and "env_id" not in recipe:  # the robot's Reach
        from simgate.sim.registry import register_robot, robot_env_id

        register_robot(robot)
        env = robot_env_id(robot)
    cfg = load_recipe(config, env_id=env, robot=robot, algo=algo, total_steps=steps, seed=seed)
    try:
        run = run_train(cfg, out)
    except KeyboardInterrupt as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(130) from None
    console.print(f"{run['status']}: {run['steps']} steps in {run['wall_s']} s on {run['device']}; "
                  f"policy: {out / 'policy.ts'}")


@policies_app.command("list")
def policies_list(registry: Path | None = typer.Option(None)) -> None:
    """Promoted policies, oldest first. An entry that fails verification (content hash,
    attestation, or the ledger record it cites) is marked UNVERIFIED instead of showing its figures."""
    from simgate.autoresearch.anchor import entry_problem
    from simgate.policies.registry import Registry

    reg = Registry(registry)
    for e in reg.entries():
        problem = entry_problem(reg, e)
        if problem:
            print(f"{e['id'][:12]}\t{e.get('name')}\t{e.get('env_id')}\tUNVERIFIED: {problem}")
            continue
        hold = e.get("holdout", {})
        print(f"{e['id'][:12]}\t{e.get('name')}\t{e.get('env_id')}\tholdout {hold.get('success_rate', float('nan')):.2f}"
              f"\t{e.get('promoted_at')}")


@policies_app.command("show")
def policies_show(ref: str, registry: Path | None = typer.Option(None)) -> None:
    """Everything recorded about one promoted policy."""
    from simgate.policies.registry import Registry

    print(json.dumps(Registry(registry).metadata(ref), indent=2))


@policies_app.command("promote")
def policies_promote(
    run: Path = typer.Argument(..., help="training run directory (has policy.ts)"),
    name: str | None = typer.Option(None),
    holdout_episodes: int = typer.Option(100, min=1),
    registry: Path | None = typer.Option(None),
    robot: str | None = typer.Option(None, help="the run's robot spec, where it no longer lies where training found it"),
) -> None:
    """Evaluate a run on the holdout seeds (and under randomization), then promote it."""
    from simgate.policies.promotion import promote_run

    digest = promote_run(run, registry, name=name, holdout_episodes=holdout_episodes, robot=robot)
    print(digest)


@policies_app.command("export")
def policies_export(ref: str, out: Path = typer.Option(...), registry: Path | None = typer.Option(None)) -> None:
    """Write the verified TorchScript actor (runs with torch alone)."""
    from simgate.policies.registry import Registry

    print(Registry(registry).export(ref, out))


@policies_app.command("remove")
def policies_remove(ref: str, registry: Path | None = typer.Option(None)) -> None:
    from simgate.policies.registry import Registry

    print(f"removed {Registry(registry).remove(ref)}")
