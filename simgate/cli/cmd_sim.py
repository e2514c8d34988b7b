"""Commands for the simulation: envs, robots, eval, sim video."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from simgate.cli._app import app, console
from simgate.cli._robot import ROBOT_HELP, env_for
from simgate.errors import SimgateError

sim_app = typer.Typer(no_args_is_help=True, help="Simulation utilities.")
app.add_typer(sim_app, name="sim")


@app.command()
def envs(robot: str | None = typer.Option(None, help=ROBOT_HELP + "; only its ids")) -> None:
    """Print every registered environment id, one per line."""
    from simgate.sim.registry import env_ids, register_robot

    if robot is not None:
        register_robot(robot)
    for env_id in env_ids(robot):
        print(env_id)


@app.command()
def robots() -> None:
    """Print the built-in robot specs."""
    from simgate.sim.robot_spec import builtin_robots, load_robot_spec

    for name in builtin_robots():
        spec = load_robot_spec(name)
        grip = "gripper" if spec.gripper else "no gripper"
        print(f"{name}\t{spec.dof} DoF + {grip}\ttasks: {', '.join(spec.tasks)}")


@app.command("eval")
def eval_cmd(
    policy: str = typer.Option("scripted", help="scripted | random | run dir | model.zip or checkpoints/latest.zip | policy.ts | registry ref"),
    env: str | None = typer.Option(None, help="environment id (see `simgate envs`; default: the policy's, "
                                              "else --robot's Reach, else simgate/PandaReach-v0)"),
    robot: str | None = typer.Option(None, help=ROBOT_HELP),
    episodes: int = typer.Option(100, min=1),
    seed: int = typer.Option(0, help="first seed; episode k uses seed + k"),
    seed_set: str | None = typer.Option(None, help="selection | holdout: the harness's named seeds (overrides --seed)"),
    randomize: bool = typer.Option(False, "--randomize", help="domain randomization preset on"),
    json_out: Path | None = typer.Option(None, "--json", help="write the metrics here"),
) -> None:
    """Evaluate a policy over seeded episodes; print and optionally write the metrics as JSON.
    A policy trained for another robot (or observation layout) than the env's is refused."""
    from rich.progress import Progress

    from simgate.policies.evaluation import SEED_SETS, evaluate, seeds_for
    from simgate.policies.resolve import policy_factory
    from simgate.policies.robot_meta import check_same_robot, recorded_robot

    rec = recorded_robot(policy)
    env = env_for(env, robot, rec)
    check_same_robot(rec, env)

    if seed_set is not None and seed_set not in SEED_SETS:
        raise SimgateError(f"--seed-set must be one of {sorted(SEED_SETS)}, got {seed_set!r}")
    seeds = seeds_for(seed_set, episodes) if seed_set else [seed + k for k in range(episodes)]
    factory = policy_factory(policy)
    kwargs = {"randomization": "preset"} if randomize else {}
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task(f"eval {policy} on {env}", total=episodes)
        res = evaluate(factory, env, seeds, kwargs,
                       progress=lambda done, total: prog.update(task, completed=done))
    out = {k: v for k, v in res.summary().items() if k != "seeds"}  # metrics + safety counters
    out.update(policy=policy, randomization="preset" if randomize else "off",
               seeds=f"{seed_set} (first {episodes})" if seed_set else f"{seed}..{seed + episodes - 1}")
    print(json.dumps(out, indent=2))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=2))


@sim_app.command("video")
def sim_video(
    env_id: str | None = typer.Argument(None, help="environment id (default: the policy's, else --robot's Reach)"),
    policy: str = typer.Option("scripted", help="scripted | random | run dir | model.zip | policy.ts | registry ref"),
    robot: str | None = typer.Option(None, help=ROBOT_HELP),
    out: Path = typer.Option(Path("rollout.mp4"), help="output .mp4 (or .gif)"),
    episodes: int = typer.Option(1, min=1),
    seed: int = typer.Option(0),
    size: str = typer.Option("480x360", help="WIDTHxHEIGHT"),
) -> None:
    """Render episodes offscreen and write a video."""
    from simgate.policies.resolve import policy_factory
    from simgate.policies.robot_meta import check_same_robot, recorded_robot
    from simgate.sim.video import record_video

    rec = recorded_robot(policy)
    env_id = env_for(env_id, robot, rec)
    check_same_robot(rec, env_id)
    w, h = (int(x) for x in size.lower().split("x"))
    frames = record_video(env_id, policy_factory(policy), out, episodes=episodes, seed=seed, size=(w, h))
    console.print(f"wrote {out} ({frames} frames)")


@sim_app.command("fit-twin")
def sim_fit_twin(robot: str = typer.Argument(..., help="robot name or spec .yaml")) -> None:
    """Measure the arm's link inertias in PyBullet and fit the twin's motor sweeps; writes <spec>.twin.yaml next to the spec."""
    import torch

    from simgate.sim.twin.fit import fit_and_save

    torch.set_num_threads(1)
    params, path = fit_and_save(robot)
    console.print(f"wrote {path}")
    print(json.dumps(params.model_dump(mode="json"), indent=2))


@sim_app.command("twin-check")
def sim_twin_check(
    robot: str = typer.Argument(..., help="robot name or spec .yaml"),
    task: str = typer.Argument(..., help="reach | push"),
    episodes: int = typer.Option(200, min=1, help="closed-loop scripted episodes (holdout seeds)"),
    json_out: Path | None = typer.Option(None, "--json", help="write the report here"),
) -> None:
    """Fidelity of the batched twin against PyBullet on the same seeds; exit 1 if a threshold fails."""
    import torch

    from simgate.sim.twin.check import THRESHOLDS, twin_check

    torch.set_num_threads(1)
    report = twin_check(robot, task, episodes)
    report["thresholds"] = {k: v for k, v in THRESHOLDS.items() if k in report}
    print(json.dumps(report, indent=2))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    if report["failed"]:
        console.print(f"[red]twin-check: outside the thresholds: {', '.join(report['failed'])}[/red]")
        if any(k.startswith(("mass_matrix", "gravity")) for k in report["failed"]):
            console.print(f"the twin's link inertias are not PyBullet's: run `simgate sim fit-twin {robot}`")
        raise typer.Exit(1)
