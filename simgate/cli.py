"""The ``simgate`` command line. Every SimgateError becomes a one-line message and exit code 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from simgate.errors import ConfigError, SimgateError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="simgate: simulation -> research -> registry -> gateway -> arm")
sim_app = typer.Typer(no_args_is_help=True, help="Simulation utilities.")
app.add_typer(sim_app, name="sim")
console = Console(stderr=True)


@app.command()
def envs() -> None:
    """Print every registered environment id, one per line."""
    from simgate.sim import env_ids

    for env_id in env_ids():
        print(env_id)


@app.command()
def robots() -> None:
    """Print the built-in robot specs."""
    from simgate.sim.robot_spec import builtin_robots, load_robot_spec

    for name in builtin_robots():
        spec = load_robot_spec(name)
        grip = "gripper" if spec.gripper else "no gripper"
        print(f"{name}\t{spec.dof} DoF + {grip}\ttasks: {', '.join(spec.tasks)}")


def _policy_factory(policy: str, env_id: str):
    if policy == "scripted":
        from simgate.sim.scripted import scripted_policy_for

        return scripted_policy_for
    if policy == "random":
        from simgate.policies.base import RandomPolicy

        return lambda env: RandomPolicy(env.action_space.shape[0], seed=0)
    raise SimgateError(f"unknown policy {policy!r}; choose 'scripted' or 'random'")


@app.command("eval")
def eval_cmd(
    policy: str = typer.Option("scripted", help="scripted | random | run dir | model.zip | policy.ts | registry ref"),
    env: str = typer.Option("simgate/PandaReach-v0", help="environment id (see `simgate envs`)"),
    episodes: int = typer.Option(100, min=1),
    seed: int = typer.Option(0, help="first seed; episode k uses seed + k"),
    randomize: bool = typer.Option(False, "--randomize", help="domain randomization preset on"),
    json_out: Path | None = typer.Option(None, "--json", help="write the metrics here"),
) -> None:
    """Evaluate a policy over seeded episodes; print and optionally write the metrics as JSON."""
    from rich.progress import Progress

    from simgate.policies.evaluation import evaluate
    from simgate.policies.resolve import policy_factory

    factory = policy_factory(policy)
    kwargs = {"randomization": "preset"} if randomize else {}
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task(f"eval {policy} on {env}", total=episodes)
        res = evaluate(factory, env, [seed + k for k in range(episodes)], kwargs,
                       progress=lambda done, total: prog.update(task, completed=done))
    out = {
        "env": env,
        "episodes": res.episodes,
        "success_rate": res.success_rate,
        "mean_return": res.mean_return,
        "mean_episode_length": res.mean_episode_length,
        "success_ci95": list(res.success_ci95),
        "policy": policy,
        "randomization": "preset" if randomize else "off",
    }
    print(json.dumps(out, indent=2))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=2))


@sim_app.command("video")
def sim_video(
    env_id: str = typer.Argument(..., help="environment id"),
    policy: str = typer.Option("scripted", help="random | scripted"),
    out: Path = typer.Option(Path("rollout.mp4"), help="output .mp4 (or .gif)"),
    episodes: int = typer.Option(1, min=1),
    seed: int = typer.Option(0),
    size: str = typer.Option("480x360", help="WIDTHxHEIGHT"),
) -> None:
    """Render episodes offscreen and write a video."""
    from simgate.sim.video import record_video

    w, h = (int(x) for x in size.lower().split("x"))
    frames = record_video(env_id, _policy_factory(policy, env_id), out, episodes=episodes, seed=seed, size=(w, h))
    console.print(f"wrote {out} ({frames} frames)")


policies_app = typer.Typer(no_args_is_help=True, help="The registry of promoted policies.")
app.add_typer(policies_app, name="policies")


@app.command()
def train(
    env: str | None = typer.Option(None, help="environment id (default: the recipe's, else simgate/PandaReach-v0)"),
    algo: str | None = typer.Option(None, help="sac | tqc | ppo (default: by env)"),
    config: Path | None = typer.Option(None, help="recipe YAML (any subset of fields)"),
    steps: int | None = typer.Option(None, help="total env steps"),
    out: Path = typer.Option(Path("runs/train"), help="run directory (resumes if it has a checkpoint)"),
    seed: int | None = typer.Option(None),
) -> None:
    """Train a policy; Ctrl-C saves a checkpoint, running the same command again resumes."""
    from simgate.policies.recipes import load_recipe
    from simgate.policies.train import train as run_train

    cfg = load_recipe(config, env_id=env, algo=algo, total_steps=steps, seed=seed)
    try:
        run = run_train(cfg, out)
    except KeyboardInterrupt as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(130) from None
    console.print(f"{run['status']}: {run['steps']} steps in {run['wall_s']} s on {run['device']}; "
                  f"policy: {out / 'policy.ts'}")


@policies_app.command("list")
def policies_list(registry: Path | None = typer.Option(None)) -> None:
    """Promoted policies, oldest first."""
    from simgate.policies.registry import Registry

    for e in Registry(registry).entries():
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
) -> None:
    """Evaluate a run on the holdout seeds (and under randomization), then promote it."""
    from simgate.policies.promotion import promote_run

    digest = promote_run(run, registry, name=name, holdout_episodes=holdout_episodes)
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


research_app = typer.Typer(no_args_is_help=True, help="The AutoResearch loop.")
app.add_typer(research_app, name="research")


@research_app.command("run")
def research_run(
    program: Path = typer.Argument(..., help="program.md"),
    workers: int = typer.Option(
        os.cpu_count() or 1, min=1,
        help="parallel trials (default: one per core; measured on 2 cores: two independent trials run 2.0x, "
             "while 2 envs inside one learner-bound trial give 1.1-1.3x, so cores go to trials)"),
    storage: str | None = typer.Option(None, help="Optuna storage URL (default: SQLite in the study dir)"),
    study_dir: Path | None = typer.Option(None),
    auto_promote: bool | None = typer.Option(None, "--auto-promote/--no-auto-promote"),
    registry: Path | None = typer.Option(None),
    executor: str = typer.Option("local", help="local | ray"),
    address: str | None = typer.Option(None, help="Ray cluster address (default: start a local head)"),
) -> None:
    """Run (or continue) a study: trials in parallel, the trusted gate, ledger, promotion, report."""
    from simgate.autoresearch.coordinator import Coordinator

    res = Coordinator(program, study_dir, storage, registry).run(workers, auto_promote, executor=executor,
                                                                 ray_address=address)
    print(json.dumps(res, indent=2))


@research_app.command("resume")
def research_resume(program: Path, workers: int = typer.Option(2, min=1), study_dir: Path | None = typer.Option(None),
                    storage: str | None = typer.Option(None), registry: Path | None = typer.Option(None)) -> None:
    """Continue a study after an interruption or a crash (same as run on an existing study)."""
    research_run(program, workers, storage, study_dir, None, registry, "local", None)


@research_app.command("worker")
def research_worker(program: Path, storage: str = typer.Option(..., help="the study's storage URL"),
                    study_dir: Path = typer.Option(Path("runs/research/worker")), hours: float = typer.Option(12.0)) -> None:
    """Join a study from any machine (shared storage, e.g. PostgreSQL)."""
    import os
    import time

    from simgate.autoresearch.worker import worker_loop

    os.environ["SIMGATE_STANDALONE_WORKER"] = "1"  # no coordinator parent to watch
    worker_loop(str(program), str(study_dir), storage, time.time() + hours * 3600)


@research_app.command("submit")
def research_submit(program: Path, params: str = typer.Option(..., help="JSON object of search-space values"),
                    rationale: str = typer.Option(..., help="why this candidate"),
                    study_dir: Path | None = typer.Option(None), storage: str | None = typer.Option(None)) -> None:
    """External proposer: queue a candidate with its rationale; the same gate judges it."""
    from simgate.autoresearch.coordinator import submit_candidate

    try:
        values = json.loads(params)
        submit_candidate(program, values, rationale, study_dir, storage)
    except (json.JSONDecodeError, ValueError) as exc:
        raise SimgateError(f"--params: {exc}") from exc
    print("queued")


@research_app.command("verify-ledger")
def research_verify(path: Path = typer.Argument(..., help="ledger.jsonl, a study dir, a program.md or a built-in program")) -> None:
    """Check the ledger's hash chain; names the first bad record."""
    from simgate.autoresearch.ledger import Ledger
    from simgate.autoresearch.program import builtin_programs

    if path.suffix == ".md" or (not path.exists() and str(path) in builtin_programs()):
        from simgate.autoresearch.coordinator import study_dir_for
        from simgate.autoresearch.program import load_program

        path = study_dir_for(load_program(path)) / "ledger.jsonl"
    elif path.is_dir():
        path = path / "ledger.jsonl"
    if not path.is_file():
        raise ConfigError(f"no ledger at {path}")
    n = Ledger(path).verify()
    print(f"ok: {n} records verify ({path})")


@research_app.command("status")
def research_status(program: Path, study_dir: Path | None = typer.Option(None)) -> None:
    """The ledger so far and the best kept trial (for people and agents)."""
    from simgate.autoresearch.coordinator import Coordinator

    print(json.dumps(Coordinator(program, study_dir).summary(), indent=2))


@research_app.command("promote")
def research_promote(program: Path, study_dir: Path | None = typer.Option(None),
                     registry: Path | None = typer.Option(None)) -> None:
    """Promote the study's incumbent if it passes the program's gates."""
    from simgate.autoresearch.coordinator import Coordinator

    print(json.dumps(Coordinator(program, study_dir, registry_dir=registry).promote(), indent=2))


@research_app.command("report")
def research_report(program: Path, study_dir: Path | None = typer.Option(None)) -> None:
    """Write report.md with plots (and a video of the promoted policy)."""
    from simgate.autoresearch.coordinator import study_dir_for
    from simgate.autoresearch.program import load_program
    from simgate.autoresearch.report import write_report

    prog = load_program(program)
    print(write_report(study_dir_for(prog, study_dir), prog.spec))


tokens_app = typer.Typer(no_args_is_help=True, help="Gateway bearer tokens (stored hashed).")
app.add_typer(tokens_app, name="tokens")
TOKENS_DEFAULT = Path(os.environ.get("SIMGATE_TOKENS", "gateway-tokens.json"))


@tokens_app.command("create")
def tokens_create(name: str, scope: str = typer.Option("read", help="read | act | admin"),
                  file: Path = typer.Option(TOKENS_DEFAULT)) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from simgate.gateway.access import TokenStore

    print(TokenStore(file).create(name, scope))


@tokens_app.command("list")
def tokens_list(file: Path = typer.Option(TOKENS_DEFAULT)) -> None:
    from simgate.gateway.access import TokenStore

    for t in TokenStore(file).list():
        print(f"{t['name']}\t{t['scope']}\t{'revoked' if t['revoked'] else 'active'}")


@tokens_app.command("revoke")
def tokens_revoke(name: str, file: Path = typer.Option(TOKENS_DEFAULT)) -> None:
    from simgate.gateway.access import TokenStore

    TokenStore(file).revoke(name)
    print(f"revoked {name}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    backend: str | None = typer.Option(None, help="sim | serial | ros2 (overrides the settings file)"),
    config: Path | None = typer.Option(None, help="gateway settings YAML (host, port, backend, safety, files)"),
    robot: str | None = typer.Option(None, help="robot spec for --backend"),
    host: str | None = typer.Option(None, help="bind address (default 127.0.0.1)"),
    port: int | None = typer.Option(None),
    tokens: Path | None = typer.Option(None, help="token file (default gateway-tokens.json)"),
    audit: Path | None = typer.Option(None, help="audit log (default gateway-audit.jsonl)"),
) -> None:
    """Serve the arm over REST, WebSocket and MCP (uvicorn), behind the safety layer.

    With --backend ros2 the gateway is a ROS 2 node (simgate_gateway): its parameters come from
    `--ros-args --params-file launch/params/gateway.yaml` (flags given here win)."""
    import uvicorn

    from simgate.gateway.settings import GatewaySettings, build_app

    if backend == "ros2":
        from simgate.gateway.ros2_node import serve_ros2

        serve_ros2(list(ctx.args), host=host, port=port, tokens_file=tokens, audit_file=audit)
        return
    if ctx.args:
        raise ConfigError(f"unexpected arguments {ctx.args} (--ros-args needs --backend ros2)")
    settings = GatewaySettings.load(config, host=host, port=port, tokens_file=tokens, audit_file=audit)
    if backend is not None:
        settings.backend = {"type": backend, **({"robot": robot} if robot else {})}
    elif robot is not None:
        settings.backend = {**settings.backend, "robot": robot}
    app, service = build_app(settings)
    service.start()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        service.close()


@app.command()
def backends() -> None:
    """List the hardware backends (chosen by `type:` in a backend config)."""
    from simgate.hardware.config import BACKENDS

    for name, what in BACKENDS.items():
        print(f"{name}\t{what}")


@app.command()
def emulate(
    protocol: str = typer.Option("feetech", help="feetech | dynamixel"),
    robot: str = typer.Option("so101", help="robot spec name or path"),
    baud: int = typer.Option(1_000_000),
    calibration_out: Path | None = typer.Option(None, "--calibration-out", help="write the matching calibration here"),
    randomize: bool = typer.Option(False, help="servos with the domain-randomization preset's dynamics (masses, damping)"),
    seed: int = typer.Option(0, help="seed of the randomization sample"),
) -> None:
    """Run an emulated servo bus on a pseudo-terminal (its servos are PyBullet joints) until Ctrl-C."""
    import time

    from simgate.hardware.emulator.bus import EmulatedServoBus
    from simgate.hardware.serial.calibration import nominal_calibration

    if protocol not in ("feetech", "dynamixel"):
        raise SimgateError(f"--protocol must be 'feetech' or 'dynamixel', got {protocol!r}")
    bus = EmulatedServoBus(protocol, robot, baud=baud, seed=seed, randomization="preset" if randomize else None).start()
    try:
        if calibration_out:
            nominal_calibration(bus.spec, bus.ids).save(calibration_out)
        print(bus.port, flush=True)
        console.print(f"{protocol} bus for {bus.spec.name} at {baud} baud; servo ids {bus.ids}; Ctrl-C to stop")
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        bus.stop()


@app.command()
def calibrate(
    port: str = typer.Option(..., help="serial device"),
    protocol: str = typer.Option("feetech", help="feetech | dynamixel"),
    robot: str = typer.Option("so101"),
    ids: str = typer.Option("", help="joint=id,... (default: 1..n in spec order)"),
    out: Path = typer.Option(Path("calibration.yaml")),
    baud: int = typer.Option(1_000_000),
    sweep_s: float = typer.Option(15.0, help="interactive: seconds to move every joint through its range"),
    joint: list[str] = typer.Option([], "--joint", help="from flags: NAME=OFFSET,DIRECTION,MIN,MAX (repeat)"),
) -> None:
    """Record a calibration: interactively (torque off, zero pose, range sweep) or from --joint flags."""
    from simgate.hardware.serial.calibrate import calibrate_from_flags, calibrate_interactive

    id_map = dict((k, int(v)) for k, v in (x.split("=") for x in ids.split(",") if x)) if ids else None
    if joint:
        cal = calibrate_from_flags(robot, joint, id_map)
    else:
        cal = calibrate_interactive(port, protocol, robot, id_map, baud, sweep_s, prompt=typer.prompt, echo=console.print)
    cal.save(out)
    console.print(f"wrote {out}")


@app.command()
def demo(episodes: int = typer.Option(20, min=1)) -> None:
    """A short tour of what exists: environments, scripted baselines, a video."""
    from simgate.demo import run_demo

    run_demo(episodes)


@app.command()
def doctor(storage: str | None = typer.Option(None, help="also check this Optuna storage URL (PostgreSQL)")) -> None:
    """Check the environment (Python, torch, PyBullet, ROS 2 + DDS, serial ports, storage, video) and
    print what is missing with the fix. Exit code 1 when a check fails."""
    from rich.table import Table

    from simgate.doctor import run_checks

    checks = run_checks(storage)
    tab = Table(title="simgate doctor")
    for col in ("check", "status", "detail", "fix"):
        tab.add_column(col, overflow="fold")
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    for c in checks:
        tab.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", c.detail, c.fix)
    Console().print(tab)
    if any(c.status == "fail" for c in checks):
        sys.exit(1)


@app.command()
def pipeline(
    out: Path = typer.Option(Path("runs/main"), help="where the study, registry, gateway files and summary go"),
    workers: int | None = typer.Option(None, min=1, help="parallel trials (default: one per core)"),
    goals: int | None = typer.Option(None, min=1, help="goals for the agent on the emulated arm (default 20)"),
) -> None:
    """The main job: research -> promote -> gateway on the emulated servo bus -> MCP agent -> summary.
    Ctrl-C is safe; running it again resumes. SIMGATE_SMOKE=1 shrinks every budget."""
    from simgate.pipeline import run_pipeline

    try:
        summary = run_pipeline(out, workers, goals)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: every child process is stopped; run the same command to resume")
        sys.exit(130)
    if summary.get("error"):
        sys.exit(1)


def main() -> None:
    try:
        app()
    except SimgateError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
