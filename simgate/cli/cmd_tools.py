"""Commands around the whole system: demo, doctor, pipeline (the main job)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from simgate.cli._app import app, console


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
