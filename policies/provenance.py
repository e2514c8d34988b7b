"""Where a result came from: code version (git commit + dirty flag) and library versions."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def code_version() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"git_commit": commit or "unknown", "dirty": dirty}


def library_versions() -> dict:
    out = {}
    for pkg in ("simgate", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "pybullet", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


# ---- keys of the trusted side ---------------------------------------------------------------
# Ledgers and registry attestations are authenticated with HMAC-SHA256 keys kept *outside* any
# study or registry directory (workers may write those): $SIMGATE_KEY_DIR, else
# ~/.config/simgate/keys. A key is 32 random bytes, created 0600 on first use.

KEY_BYTES = 32


def key_dir() -> Path:
    import os

    d = Path(os.environ.get("SIMGATE_KEY_DIR") or Path.home() / ".config" / "simgate" / "keys")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def key_path(key_id: str) -> Path:
    import re

    if not isinstance(key_id, str) or not re.fullmatch(r"[a-z0-9_-]{1,64}", key_id):
        raise ValueError(f"bad key id {key_id!r}")
    return key_dir() / f"{key_id}.key"


def load_key(key_id: str, create: bool = False) -> bytes:
    """The key ``key_id`` (created with 0600 permissions when ``create`` and it is missing)."""
    import os

    p = key_path(key_id)
    if create and not p.exists():
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(KEY_BYTES))
                f.flush()
                os.fsync(f.fileno())
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"key {key_id!r} not found at {p} (set SIMGATE_KEY_DIR to the trusted key folder)") from None
    if len(data) != KEY_BYTES:
        raise ValueError(f"key file {p} has {len(data)} bytes, expected {KEY_BYTES}")
    return data


def mac_hex(key: bytes, payload: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def mac_ok(key: bytes, payload: bytes, mac: str) -> bool:
    import hmac

    return isinstance(mac, str) and hmac.compare_digest(mac_hex(key, payload), mac)
