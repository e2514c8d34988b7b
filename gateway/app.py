"""The gateway: FastAPI (REST under /v1, one router per resource), the WebSocket stream and an MCP
server mounted at /mcp - all calling one ArmService (safety, lease, motions and audit live there,
never in a route).

Errors: AuthError -> 401/403, Refused (safety, lease, backend health) -> 409, bad input -> 422 with
the field named, unknown run/policy -> 404, body over ``MAX_BODY_BYTES`` -> 413, rate limits ->
429, backend failures -> 503. Every refusal, whatever its status, is one line in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from simgate.errors import ConfigError, SimgateError
from simgate.gateway.access import AuthError, RateLimiter, TokenStore
from simgate.gateway.camera import FrameRateLimited, FrameServer
from simgate.gateway.routers import motion, policies, robot, runs
from simgate.gateway.service import ArmService, Refused

MAX_BODY_BYTES = 1 << 20


class Metrics:
    def __init__(self) -> None:
        self.requests = 0


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over ``limit`` bytes, declared or streamed (chunked),
    before any route, parser or MCP session sees it. A body without a declared length is read up
    to the limit first, then replayed to the app."""

    def __init__(self, app, limit: int, on_refusal) -> None:
        self.app, self.limit, self.on_refusal = app, limit, on_refusal

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                return await self._reject(scope, send)
            return await self.app(scope, receive, send)
        if b"transfer-encoding" not in headers:
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > self.limit:
                return await self._reject(scope, send)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, scope, send):
        self.on_refusal(scope.get("method", "?"), scope.get("path", "?"))
        body = json.dumps({"detail": f"request body larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class RedactTokens(logging.Filter):
    """Server logs never carry a token, even one a client put in a URL (which is then refused)."""

    PATTERN = re.compile(r"((?:token|access_token|authorization)=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "=" in msg and self.PATTERN.search(msg):
            record.msg, record.args = self.PATTERN.sub(r"\1[redacted]", msg), ()
        return True


def redact_server_logs() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


class StateFastPath:
    """``GET /v1/state`` for an authorized reader, answered before FastAPI's routing: the cached
    snapshot bytes after the same token and rate checks the route's dependencies make. Anything
    else (a missing or bad token, the rate limit) falls through to the route, which answers and
    audits it. 50 readers then cost the event loop little, so actuation is not queued behind them."""

    def __init__(self, app, state, readers_rate_hz: float) -> None:
        self.app, self.state = app, state
        self.period_s = 1.0 / readers_rate_hz
        self._next_s = 0.0

    async def _pace(self) -> None:
        """All readers together get at most ``readers_rate_hz`` answers per second: past that they
        wait (asleep, costing nothing), and the event loop keeps room for actuation."""
        now = time.monotonic()
        self._next_s = max(self._next_s + self.period_s, now)
        if self._next_s > now + self.period_s:
            await asyncio.sleep(self._next_s - now)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/state" and scope["method"] == "GET":
            await self._pace()
            body = self._answer(scope)
            if body is not None:
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                return await send({"type": "http.response.body", "body": body})
        return await self.app(scope, receive, send)

    def _answer(self, scope) -> bytes | None:
        from simgate.gateway.deps import bearer

        st = self.state
        auth = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
        try:
            name, _scope = st.tokens.identify(bearer(auth.decode("latin-1")) if auth else None)
        except AuthError:
            return None
        if not st.rate.allow(name):
            return None  # the route answers 429 (its own check refuses too)
        st.metrics.requests += 1
        try:
            return st.service.state_json()
        except SimgateError:
            return None


class AllowHeader:
    """A 405 lists every method the path supports (Starlette lists only the first matching route's)."""

    def __init__(self, app, routes) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_fixed(msg):
            if msg["type"] == "http.response.start" and msg["status"] == 405:
                methods = sorted({m for r in self.routes() if getattr(r, "methods", None)
                                  and r.path_regex.match(scope["path"]) for m in r.methods})
                headers = [(k, v) for k, v in msg.get("headers", []) if k.lower() != b"allow"]
                msg = {**msg, "headers": headers + [(b"allow", ", ".join(methods).encode())]}
            await send(msg)

        return await self.app(scope, receive, send_fixed)


def create_app(service: ArmService, tokens: TokenStore, rate: RateLimiter | None = None, registry_dir=None,
               readers_rate_hz: float = 1200.0) -> FastAPI:
    from simgate.gateway.mcp_tools import make_mcp
    from simgate.gateway.ws import stream

    if registry_dir is not None:
        service.motions.registry_dir = registry_dir
    rate = rate or RateLimiter()
    frames = FrameServer(service.backend)
    mcp = make_mcp(service, tokens, rate, frames)
    mcp_app = mcp.streamable_http_app(streamable_http_path="/")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        redact_server_logs()  # after the server configured its loggers
        async with mcp.session_manager.run():
            yield

    app = FastAPI(title="simgate gateway", version="1", lifespan=lifespan,
                  description="Sensors and actuators of one arm for agents and policies, behind one safety layer.")
    app.state.service, app.state.tokens, app.state.rate = service, tokens, rate
    app.state.metrics, app.state.frames = Metrics(), frames
    for r in (robot.router, motion.router, runs.router, policies.router):
        app.include_router(r)
    app.add_api_websocket_route("/v1/stream", stream)
    _error_handlers(app, service)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prom() -> str:
        return (f"simgate_requests_total {app.state.metrics.requests}\n"
                f"simgate_commands_sent_total {service.sent_commands}\n"
                f"simgate_commands_refused_total {service.refused_commands}\n"
                f"simgate_estop {int(service.safety.estopped)}\n")

    app.mount("/mcp", mcp_app)
    app.add_middleware(AllowHeader, routes=lambda: app.router.routes)
    app.add_middleware(StateFastPath, state=app.state, readers_rate_hz=readers_rate_hz)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES,
                       on_refusal=lambda m, p: service.audit.record("anonymous", "rest", f"{m} {p}", {}, "refused",
                                                                    reason="413: body too large"))
    return app


def _error_handlers(app: FastAPI, service: ArmService) -> None:
    def audit(request: Request, status: int, reason: str) -> None:
        who = getattr(request.state, "who", None) or "anonymous"
        service.audit.record(who, "rest", f"{request.method} {request.url.path}", {}, "refused",
                             reason=f"{status}: {reason}")

    def reply(request: Request, status: int, detail, audited: bool = False, **extra) -> JSONResponse:
        if not audited:
            audit(request, status, detail if isinstance(detail, str) else json.dumps(detail, default=str)[:500])
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError):
        return reply(request, exc.status, str(exc))

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        return reply(request, 409, str(exc), audited=True, refused=True)  # the service audited it

    @app.exception_handler(FrameRateLimited)
    async def _frames(request: Request, exc: FrameRateLimited):
        return reply(request, 429, str(exc))

    @app.exception_handler(LookupError)
    async def _missing(request: Request, exc: LookupError):
        return reply(request, 404, str(exc).strip("'\""))

    @app.exception_handler(SimgateError)
    async def _err(request: Request, exc: SimgateError):
        from simgate.policies.registry import RegistryError

        if isinstance(exc, RegistryError):
            return reply(request, 404, str(exc), audited=True)
        if isinstance(exc, ConfigError | ValueError):
            return reply(request, 422, str(exc), audited=True)
        return reply(request, 503, str(exc), audited=True)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return reply(request, 422, detail)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return reply(request, exc.status_code, exc.detail)
