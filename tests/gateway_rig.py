"""A live gateway (uvicorn on loopback, in this process) around any backend, with tokens of each
scope - for tests that attack it from outside."""

import contextlib
import socket
import threading
import time

from simgate.gateway.access import AuditLog, RateLimiter, TokenStore
from simgate.gateway.app import create_app
from simgate.gateway.service import ArmService


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_gateway(backend, tmp_path, safety=None):
    import uvicorn

    tokens = TokenStore(tmp_path / "tokens.json")
    toks = {s: tokens.create(f"{s}-client", s) for s in ("read", "act", "admin")}
    service = ArmService(backend, AuditLog(tmp_path / "audit.jsonl"), safety)
    service.start()
    app = create_app(service, tokens, RateLimiter(rate_hz=5000, burst=10_000))
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    t0 = time.monotonic()
    while not server.started and time.monotonic() - t0 < 20:
        time.sleep(0.05)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "tokens": toks, "service": service, "token_store": tokens,
               "audit": tmp_path / "audit.jsonl"}
    finally:
        server.should_exit = True
        th.join(timeout=10)
        service.close()


def H(tok):
    return {"Authorization": f"Bearer {tok}"}


