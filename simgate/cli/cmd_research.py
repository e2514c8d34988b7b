"""Commands of the AutoResearch loop: research run|resume|worker|submit|serve|verify-ledger|status|promote|report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from simgate.cli._app import app
from simgate.errors import ConfigError, SimgateError

research_app = typer.Typer(no_args_is_help=True, help="The AutoResearch loop.")
app.add_typer(research_app, name="research")


@research_app.command("run")
def research_run(
    program: Path = typer.Argument(..., help="program.md"),
    workers: int = typer.Option(
        os.cpu_count() or 1, min=0,
        help="parallel trials (default: one per core; measured on 2 cores: two independent trials run 2.0x, "
             "while 2 envs inside one learner-bound trial give 1.1-1.3x, so cores go to trials; "
             "0 = judge only, workers join with `research worker`)"),
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
def research_resume(program: Path, workers: int = typer.Option(2, min=0), study_dir: Path | None = typer.Option(None),
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

    os.environ["SIMGATE_STANDALONE_WORKER"] = "1"  # no parent to watch: the coordinator's heartbeat on the storage
    worker_loop(str(program), str(study_dir), storage, time.time() + hours * 3600)


@research_app.command("submit")
def research_submit(program: Path, params: str = typer.Option(..., help="JSON object of search-space values"),
                    rationale: str = typer.Option(..., help="why this candidate"),
                    study_dir: Path | None = typer.Option(None), storage: str | None = typer.Option(None)) -> None:
    """External proposer: queue a candidate with its rationale; the same gate judges it."""
    from simgate.autoresearch.coordinator import submit_candidate

    try:
        values = json.loads(params)
    except json.JSONDecodeError as exc:
        raise SimgateError(f"--params: not JSON: {exc}") from None
    try:
        submit_candidate(program, values, rationale, study_dir, storage)
    except ValueError as exc:
        raise SimgateError(f"--params: {exc}") from None
    print("queued")


@research_app.command("verify-ledger")
def research_verify(path: Path = typer.Argument(..., help="ledger.jsonl, a study dir, a program.md or a built-in program"),
                    registry: Path | None = typer.Option(None, help="also check the registry entries citing it")) -> None:
    """Authenticate the ledger (key, chain, anchored head); names the first bad record. With
    --registry, every entry citing this ledger must match the record it cites."""
    from simgate.autoresearch.ledger import Ledger
    from simgate.autoresearch.program import builtin_programs

    if path.suffix == ".md" or (not path.exists() and str(path) in builtin_programs()):
        from simgate.autoresearch.coordinator import study_dir_for
        from simgate.autoresearch.program import load_program

        path = study_dir_for(load_program(path)) / "ledger.jsonl"
    elif path.is_dir():
        path = path / "ledger.jsonl"
    if not path.is_file() and Ledger(path).anchor() is None:
        raise ConfigError(f"no ledger at {path}")  # an anchored study's missing ledger: verify names its head
    n = Ledger(path).verify()
    checked = 0
    if registry is not None:
        from simgate.autoresearch.anchor import entry_problem
        from simgate.policies.registry import Registry

        reg = Registry(registry)
        for e in reg.entries():
            cited = (e.get("ledger_entry") or {}).get("path")
            if not cited or Path(cited).resolve() != path.resolve():
                continue
            problem = entry_problem(reg, e)
            if problem:
                raise SimgateError(f"registry entry {e['id'][:12]}: {problem}")
            checked += 1
    print(f"ok: {n} records verify ({path})" + (f"; {checked} registry entries match" if registry else ""))


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
    from simgate.autoresearch.coordinator import Coordinator
    from simgate.autoresearch.report import write_report

    coord = Coordinator(program, study_dir)
    coord.check_pin()
    print(write_report(coord.dir, coord.spec))


@research_app.command("serve")
def research_serve(
    program: Path = typer.Argument(..., help="program.md or a built-in program"),
    tokens: Path = typer.Option(Path("research-tokens.json"),
                                help="token file (`simgate tokens create NAME --scope act --file FILE`): read | act"),
    host: str = typer.Option("127.0.0.1", help="bind address (loopback by default)"),
    port: int = typer.Option(8765),
    workers: int = typer.Option(1, min=1, help="trial workers of the coordinator the server runs"),
    max_pending: int = typer.Option(4, min=1, help="candidates one token may have waiting or running"),
    study_dir: Path | None = typer.Option(None),
    storage: str | None = typer.Option(None, help="Optuna storage URL (default: SQLite in the study dir)"),
) -> None:
    """MCP server for an LLM agent as a researcher: read the program, list trials, read the report, submit
    candidates, wait for verdicts, narrow the search space - the same trusted gate judges everything."""
    from simgate.autoresearch.mcp_server import serve

    serve(program, tokens, study_dir, storage, host, port, workers, max_pending)
