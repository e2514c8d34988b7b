"""Access: bearer tokens with scopes (read < act < admin), stored hashed; per-token rate limits;
an append-only audit log of every actuation attempt; one actuating client at a time (a lease).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path

from simgate.errors import SimgateError

SCOPES = ("read", "act", "admin")


class AuthError(SimgateError):
    """Missing, wrong or insufficient credentials (HTTP 401/403)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """JSON file: {name: {sha256, scope, created, revoked}}; tokens themselves are never stored."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache: tuple[tuple, dict] | None = None

    def _load(self) -> dict:
        """The file's content, re-read whenever it changed (a revocation takes effect at the next request)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        data = json.loads(self.path.read_text())
        self._cache = (key, data)
        return data

    def _save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def create(self, name: str, scope: str) -> str:
        if scope not in SCOPES:
            raise SimgateError(f"scope must be one of {SCOPES}, got {scope!r}")
        token = "sg_" + secrets.token_urlsafe(32)
        with self._lock:
            data = self._load()
            if name in data and not data[name].get("revoked"):
                raise SimgateError(f"a token named {name!r} exists; revoke it first")
            data[name] = {"sha256": _hash(token), "scope": scope, "created": time.time(), "revoked": False}
            self._save(data)
        return token

    def revoke(self, name: str) -> None:
        with self._lock:
            data = self._load()
            if name not in data:
                raise SimgateError(f"no token named {name!r}")
            data[name]["revoked"] = True
            self._save(data)

    def list(self) -> list[dict]:
        return [{"name": n, "scope": v["scope"], "revoked": v["revoked"], "created": v["created"]}
                for n, v in self._load().items()]

    def identify(self, token: str | None) -> tuple[str, str]:
        """(name, scope) of a valid token, else AuthError."""
        if not token:
            raise AuthError("missing bearer token (Authorization: Bearer ...)")
        h = _hash(token)
        for name, v in self._load().items():
            if not v["revoked"] and hmac.compare_digest(v["sha256"], h):
                return name, v["scope"]
        raise AuthError("invalid or revoked token")


def require(scope_have: str, scope_need: str) -> None:
    if SCOPES.index(scope_have) < SCOPES.index(scope_need):
        raise AuthError(f"this needs the {scope_need!r} scope; the token has {scope_have!r}", status=403)


class RateLimiter:
    """Token bucket per client: ``rate_hz`` sustained, ``burst`` at once."""

    def __init__(self, rate_hz: float = 250.0, burst: int = 500) -> None:
        self.rate, self.burst = rate_hz, burst
        self._b: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, who: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, t = self._b.get(who, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - t) * self.rate)
            ok = tokens >= 1.0
            self._b[who] = (tokens - 1.0 if ok else tokens, now)
            return ok


class AuditLog:
    """Append-only JSONL: who, what was asked, what was sent or why it was refused."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, who: str, via: str, action: str, asked: dict, outcome: str, sent=None, reason: str = "") -> None:
        rec = {"t": time.time(), "who": who, "via": via, "action": action, "asked": asked, "outcome": outcome,
               "sent": sent, "reason": reason}
        line = json.dumps(rec, default=str) + "\n"
        with self._lock, open(self.path, "a") as f:
            f.write(line)


class Lease:
    """One actuating client at a time; a lease expires after ``ttl_s`` without commands."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self.holder: str | None = None
        self.expires = 0.0
        self._lock = threading.Lock()

    def acquire(self, who: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if self.holder in (None, who) or now > self.expires:
                self.holder, self.expires = who, now + self.ttl_s
                return True
            return False

    def release(self, who: str) -> None:
        with self._lock:
            if self.holder == who:
                self.holder = None
