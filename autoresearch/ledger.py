"""The append-only trial ledger: one JSON line per record, each carrying the SHA-256 of the
previous record, so any edit to history is detected (``verify`` names the first bad record).

Appends take an exclusive file lock and are fsync'ed, so several worker processes can write and
a SIGKILL never leaves a half line behind (a torn last line is detected and reported).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from simgate.errors import SimgateError

GENESIS = "0" * 64


class LedgerError(SimgateError):
    """The ledger does not verify; the message names the first bad record."""


def _digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add a record (a dict of JSON values); returns it with ``seq``, ``prev_hash``, ``hash``."""
        with open(self.path, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                lines = [ln for ln in f.read().splitlines() if ln.strip()]
                prev = json.loads(lines[-1]) if lines else None
                rec = {**record, "seq": (prev["seq"] + 1) if prev else 0,
                       "prev_hash": prev["hash"] if prev else GENESIS}
                rec["hash"] = _digest(rec)
                f.seek(0, os.SEEK_END)
                f.write(json.dumps(rec, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return rec

    def records(self) -> list[dict[str, Any]]:
        out = []
        for n, line in enumerate(self.path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LedgerError(f"{self.path}: record {n} is not valid JSON (torn or edited line)") from exc
        return out

    def verify(self) -> int:
        """Check the chain; returns the number of records or raises LedgerError at the first bad one."""
        prev = GENESIS
        recs = self.records()
        for i, rec in enumerate(recs):
            if rec.get("seq") != i:
                raise LedgerError(f"{self.path}: record {i} has seq {rec.get('seq')} (records removed or reordered)")
            if rec.get("prev_hash") != prev:
                raise LedgerError(f"{self.path}: record {i} does not follow record {i - 1} (history edited)")
            if _digest(rec) != rec.get("hash"):
                raise LedgerError(f"{self.path}: record {i} (trial {rec.get('trial')}) was modified after it was written")
            prev = rec["hash"]
        return len(recs)

    def latest_by_trial(self) -> dict[int, dict[str, Any]]:
        """The last record of every trial number."""
        out: dict[int, dict[str, Any]] = {}
        for rec in self.records():
            if "trial" in rec:
                out[rec["trial"]] = rec
        return out
