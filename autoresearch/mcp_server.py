"""`simgate research serve PROGRAM`: an MCP server (streamable HTTP at /mcp, bearer tokens,
127.0.0.1 by default) that is an LLM agent's whole interface to one study - read the program,
list trials, read the report, submit candidates, wait for verdicts, revise the search space within
the program's boundaries (desk.py, revisions.py).

Beside it, a supervisor runs the trusted coordinator (`simgate research run ... --no-auto-promote`)
as a child process whenever candidates wait and wall-clock budget remains: Optuna's trials and the
agent's candidates are trained by the same workers and judged by the same gate into the same
ledger. Promotion stays a person's `simgate research promote`.

Tokens: the gateway's token files (`simgate tokens create NAME --scope act --file FILE`): ``read``
reads, ``act`` also submits and revises. A request without a valid token gets HTTP 401 before any
MCP session sees it. Every tool call, accepted or refused, is a line in ``mcp-audit.jsonl``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, Image
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, Strict

from simgate.autoresearch.desk import MAX_WAIT_S, Desk, Refused
from simgate.autoresearch.revisions import ParamRevision
from simgate.errors import SimgateError
from simgate.gateway.access import AuditLog, AuthError, RateLimiter, TokenStore, require
from simgate.gateway.deps import bearer
from simgate.gateway.mcp_tools import AuditedMCP

MAX_WAITS_PER_TOKEN = 4  # concurrent wait_for_verdict calls per token (each polls; none holds a thread)
Rationale = Annotated[str, Field(min_length=1, max_length=2000, description="why this, in a few sentences")]


class Supervisor(threading.Thread):
    """Runs the trusted coordinator as a child process whenever the study has waiting trials and
    wall-clock budget left (and once at start: it creates the study and queues the baselines)."""

    def __init__(self, desk: Desk, workers: int, log_path: Path) -> None:
        super().__init__(daemon=True, name="simgate-research-supervisor")
        self.desk, self.workers, self.log_path = desk, workers, log_path
        self.child: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.runs = 0

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "simgate.cli", "research", "run", str(Path(self.desk.program.path).resolve()),
               "--workers", str(self.workers), "--no-auto-promote", "--study-dir", str(self.desk.dir)]
        return cmd + (["--storage", self.desk.storage] if self.desk.storage else [])

    def start_child(self) -> None:
        self.desk.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes it
        log.write(f"\n--- coordinator run {self.runs + 1} at {time.strftime('%H:%M:%S')}\n")
        log.flush()
        self.child = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)  # a terminal's Ctrl-C reaches it once, via stop()
        log.close()
        self.runs += 1

    def running(self) -> bool:
        return self.child is not None and self.child.poll() is None

    def wanted(self) -> bool:
        waiting = any(t.state.name == "WAITING" for t in self.desk.optuna_trials())
        return waiting and self.desk.budget()["remaining_wall_s"] > 1.0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if not self.running():
                    if self.child is not None and self.child.returncode not in (0, None):
                        self.stopping.wait(10.0)  # a failing coordinator: its log says why; do not spin
                    if self.wanted() and not self.stopping.is_set():
                        self.start_child()
                self.desk.sync_revision()
            except Exception as exc:  # noqa: BLE001 - the server stays up; the log says what failed
                with open(self.log_path, "a") as f:
                    f.write(f"supervisor: {type(exc).__name__}: {exc}\n")
            self.desk.woken.wait(2.0)
            self.desk.woken.clear()

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until the study exists (ledger + Optuna study with its first trials), or the child failed."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.desk.ledger.path.exists() and self.desk.optuna_trials():
                return
            if self.child is not None and self.child.poll() not in (None, 0):
                tail = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
                raise SimgateError(f"the coordinator failed to start the study (exit {self.child.returncode}):\n{tail}")
            time.sleep(0.5)
        raise SimgateError(f"the study did not start within {timeout_s:.0f} s (see {self.log_path})")

    def stop(self) -> None:
        self.stopping.set()
        self.desk.woken.set()
        if self.running():
            self.child.send_signal(signal.SIGINT)  # the coordinator stops its workers and records what it judged
            try:
                self.child.wait(30)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()


def make_research_mcp(desk: Desk, tokens: TokenStore, audit: AuditLog, rate: RateLimiter) -> AuditedMCP:
    spec = desk.spec
    mcp = AuditedMCP(name="simgate-research", audit=audit, tokens=tokens, log_level="WARNING", instructions=(
        f"You are a researcher on the study {spec.name!r} (task {spec.task.env_id}, metric {spec.metric.name}, "
        f"{spec.metric.direction}). Read the program, look at the trials and the report, submit candidates "
        "(search-space values + your rationale) and wait for their verdicts; you may narrow the search space within "
        "the program's boundaries. A trusted gate judges every candidate on secret fresh episodes: claims are not "
        "trusted, seeds are never shown."))
    ro = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
    act = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)

    def who(ctx: Context, scope: str, tool: str, asked: dict) -> str:
        req = getattr(ctx.request_context, "request", None)
        token = bearer(req.headers.get("authorization")) if req is not None else None
        name = "anonymous"
        try:
            name, have = tokens.identify(token)
            require(have, scope)
        except AuthError as exc:
            audit.record(name, "mcp", tool, asked, "refused", reason=f"{exc.status}: {exc}")
            raise ToolError(f"{exc} (HTTP-equivalent {exc.status})") from exc
        if not rate.allow(name):
            audit.record(name, "mcp", tool, asked, "refused", reason="429: rate limit")
            raise ToolError(f"rate limit exceeded for token {name!r}")
        return name

    def call(ctx: Context, scope: str, tool: str, asked: dict, fn, *args):
        name = who(ctx, scope, tool, asked)
        try:
            out = fn(*args, name) if scope == "act" else fn(*args)
        except SimgateError as exc:
            audit.record(name, "mcp", tool, asked, "refused", reason=str(exc))
            raise ToolError(f"refused: {exc}") from exc
        audit.record(name, "mcp", tool, asked, "ok", sent=out if scope == "act" else None)
        return out

    @mcp.tool(annotations=ro)
    def read_program(ctx: Context) -> dict[str, Any]:
        """The program: goal (prose), task, metric, budgets (spent and left), the current search space and its
        version, the boundaries a revision must stay within (original space, protected and fixed fields),
        acceptance and promotion rules, and the revisions so far."""
        return call(ctx, "read", "read_program", {}, desk.program_view)

    @mcp.tool(annotations=ro)
    def list_trials(ctx: Context, limit: Annotated[int, Strict(), Field(ge=1, le=1000, description="latest N")] = 100
                    ) -> dict[str, Any]:
        """Judged trials (verdict keep | discard | rejected | crash | pruned | cut, the gate's reason and fresh-episode
        figures, the reported params, proposer and rationale), the trials still waiting or running, the incumbent."""
        return call(ctx, "read", "list_trials", {"limit": limit}, desk.trials_view, limit)

    @mcp.tool(annotations=ro, structured_output=False)
    def read_report(ctx: Context) -> list:
        """The study report as `simgate research report` writes it: Markdown (counts, noise floor, promotion, the
        per-trial table) and its figures as PNG images (metric per trial, parameter importance, fresh-seed spread)."""
        def render() -> list:
            from simgate.autoresearch.report import write_report

            if not desk.records():
                raise Refused("the study has not started yet (no ledger)")
            md = write_report(desk.dir, spec, video=False)
            figs = [Image(data=p.read_bytes(), format="png") for p in sorted((desk.dir / "report").glob("*.png"))]
            return [md.read_text(), *figs]

        return call(ctx, "read", "read_report", {}, render)

    @mcp.tool(annotations=act)
    def submit_candidate(ctx: Context,
                         params: Annotated[dict[str, Any], Field(description=(
                             "search-space values, {name: value}; omitted parameters are sampled by the proposer"))],
                         rationale: Rationale) -> dict[str, Any]:
        """Queue a candidate for training and the trusted gate. Values are checked strictly against the current search
        space (a value outside it is refused, the reason naming the parameter). Returns its trial number."""
        asked = {"params": params, "rationale": rationale}
        return call(ctx, "act", "submit_candidate", asked, desk.submit, params, rationale)

    waiting: dict[str, int] = {}  # token name -> its wait_for_verdict calls in progress

    @mcp.tool(annotations=ro)
    async def wait_for_verdict(ctx: Context, trial: Annotated[int, Strict(), Field(ge=0, description="trial number")],
                               timeout_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S, description="longest wait, s")]
                               = 60.0) -> dict[str, Any]:
        """Block until the gate judged the trial (or timeout_s passed: status 'pending' with its state). The verdict
        carries the gate's reason and figures on fresh episodes (fresh, delta, p_value, ...). At most
        MAX_WAITS_PER_TOKEN waits per token at once."""
        import anyio

        asked = {"trial": trial, "timeout_s": timeout_s}
        name = who(ctx, "read", "wait_for_verdict", asked)
        if waiting.get(name, 0) >= MAX_WAITS_PER_TOKEN:
            audit.record(name, "mcp", "wait_for_verdict", asked, "refused", reason="too many waits")
            raise ToolError(f"refused: {MAX_WAITS_PER_TOKEN} wait_for_verdict calls of yours are already waiting")
        waiting[name] = waiting.get(name, 0) + 1
        try:  # the wait itself holds no thread: one quick look per half second
            deadline = time.monotonic() + timeout_s
            while True:
                look = await anyio.to_thread.run_sync(desk.verdict, trial, 0.0)
                if look.get("status") != "pending" or time.monotonic() >= deadline:
                    break
                await anyio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        except SimgateError as exc:
            audit.record(name, "mcp", "wait_for_verdict", asked, "refused", reason=str(exc))
            raise ToolError(f"refused: {exc}") from exc
        finally:
            waiting[name] -= 1
        audit.record(name, "mcp", "wait_for_verdict", asked, "ok")
        return {**look, "waited_s": round(timeout_s - max(0.0, deadline - time.monotonic()), 1)} \
            if look.get("status") == "pending" else look

    @mcp.tool(annotations=act)
    def revise_search_space(ctx: Context,
                            search_space: Annotated[dict[str, ParamRevision], Field(description=(
                                "{param: {low, high}} for float/int parameters, {param: {choices}} for categorical "
                                "ones; parameters not named keep their current bounds"))],
                            rationale: Rationale) -> dict[str, Any]:
        """Propose a new version of the search space. Narrowing (sub-ranges, subsets of choices) within the program's
        boundaries is accepted, pinned in the ledger as a new program version and used for later submissions and
        the proposer's samples; widening past a boundary, new parameters or other fields are refused with why."""
        asked = {"search_space": {k: v.model_dump(exclude_none=True) for k, v in search_space.items()},
                 "rationale": rationale}
        return call(ctx, "act", "revise_search_space", asked, desk.revise, search_space, rationale)

    return mcp


class RequireBearer:
    """ASGI: every HTTP request needs a valid, unrevoked bearer token (else 401) before MCP sees it."""

    def __init__(self, app, tokens: TokenStore, audit: AuditLog) -> None:
        self.app, self.tokens, self.audit = app, tokens, audit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        auth = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
        try:
            self.tokens.identify(bearer(auth.decode("latin-1")) if auth else None)
        except AuthError as exc:
            self.audit.record("anonymous", "http", f"{scope.get('method')} {scope.get('path')}", {}, "refused",
                              reason=f"401: {exc}")
            body = json.dumps({"detail": str(exc)}).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer")]})
            return await send({"type": "http.response.body", "body": body})
        return await self.app(scope, receive, send)


def create_research_app(desk: Desk, tokens: TokenStore, audit: AuditLog, host: str = "127.0.0.1"):
    mcp = make_research_mcp(desk, tokens, audit, RateLimiter(rate_hz=20.0, burst=100))
    return RequireBearer(mcp.streamable_http_app(streamable_http_path="/mcp", host=host), tokens, audit)


def serve(program: str | Path, tokens_file: Path, study_dir: Path | None = None, storage: str | None = None,
          host: str = "127.0.0.1", port: int = 8765, workers: int = 1, max_pending: int = 4) -> None:
    import uvicorn

    from simgate.gateway.app import redact_server_logs

    if not Path(tokens_file).is_file():
        raise SimgateError(f"no token file at {tokens_file}: create one with "
                           f"`simgate tokens create NAME --scope act --file {tokens_file}`")
    desk = Desk(program, study_dir, storage, max_pending=max_pending)
    tokens, audit = TokenStore(tokens_file), AuditLog(desk.dir / "mcp-audit.jsonl")
    sup = Supervisor(desk, workers, desk.dir / "coordinator.log")
    sup.start_child()  # creates the study (ledger, baselines) before any agent can submit
    sup.wait_ready()
    sup.start()
    print(f"research MCP server for {desk.spec.name!r}: http://{host}:{port}/mcp (study {desk.dir})", flush=True)
    try:
        config = uvicorn.Config(create_research_app(desk, tokens, audit, host), host=host, port=port,
                                log_level=os.environ.get("SIMGATE_LOG_LEVEL", "warning"))
        server = uvicorn.Server(config)
        redact_server_logs()
        signal.signal(signal.SIGTERM, _interrupt)  # uvicorn re-raises the signal it stopped on: stop cleanly
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        sup.stop()
    print("research MCP server stopped; the coordinator stopped with it", flush=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
