"""Command ``simgate check``: a policy on the emulated hardware through the gateway, judged by
thresholds, for CI (exit 1 when a threshold is not met; JUnit XML and a Markdown summary)."""

from __future__ import annotations

from pathlib import Path

import typer

from simgate.cli._app import app, console


@app.command()
def check(
    policy: str = typer.Argument(..., help="registry reference (hash, prefix, name), run directory or .ts file"),
    registry: Path | None = typer.Option(None, help="registry directory (default $SIMGATE_REGISTRY or ./registry)"),
    env: str | None = typer.Option(None, help="env id, for a .ts file without its .metadata.json"),
    goals: int = typer.Option(10, help="goals to run"),
    max_steps: int = typer.Option(50, help="policy steps per goal"),
    protocol: str = typer.Option("feetech", help="emulated bus: feetech | dynamixel"),
    randomize: bool = typer.Option(False, help="servos with the randomization preset's dynamics"),
    seed: int = typer.Option(0, help="seed of the randomized dynamics and of the faults"),
    drop_replies: float = typer.Option(0.0, help="fault: probability that a servo reply is dropped"),
    corrupt: float = typer.Option(0.0, help="fault: probability that a reply's checksum is wrong"),
    latency_ms: float = typer.Option(0.0, help="fault: added before every reply (ms)"),
    dead_id: list[int] = typer.Option([], "--dead-id", help="fault: a servo id that never answers (repeat)"),
    unplug_after_goal: int | None = typer.Option(None, help="fault: unplug the bus after this goal ..."),
    unplug_s: float = typer.Option(1.0, help="... for this many seconds"),
    min_success: float = typer.Option(0.9, help="threshold: fraction of goals reached"),
    max_refusals: int = typer.Option(0, help="threshold: safety refusals"),
    max_peak_speed: float = typer.Option(1.05, help="threshold: peak joint speed / velocity limit"),
    max_estops: int = typer.Option(0, help="threshold: e-stops"),
    out: Path = typer.Option(Path("check"), help="writes junit.xml, summary.md, results.json here"),
) -> None:
    """Run a policy on the emulated arm through the gateway; exit 1 under the thresholds."""
    from simgate.testing.check import CheckConfig, Thresholds, run_check
    from simgate.testing.rigs import BusFaults

    cfg = CheckConfig(policy=policy, registry_dir=registry, env_id=env, goals=goals, max_steps=max_steps,
                      protocol=protocol, randomize=randomize, seed=seed, out_dir=out,
                      faults=BusFaults(drop_reply_prob=drop_replies, corrupt_prob=corrupt, latency_ms=latency_ms,
                                       dead_ids=frozenset(dead_id)),
                      unplug_after_goal=unplug_after_goal, unplug_s=unplug_s,
                      thresholds=Thresholds(min_success=min_success, max_refusals=max_refusals,
                                            max_peak_speed_frac=max_peak_speed, max_estops=max_estops))
    res = run_check(cfg)
    print((out / "summary.md").read_text())
    if not res["passed"]:
        console.print(f"[red]simgate check failed[/red]: {', '.join(res['failed'])} (see {out / 'junit.xml'})")
        raise typer.Exit(1)
    console.print(f"[green]simgate check passed[/green] ({res['wall_s']:.0f} s)")
