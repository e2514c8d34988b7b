"""The append-only trial ledger, authenticated and anchored.

One JSON line per record: ``{"seq", "prev", "body", "mac"}``. ``mac`` is HMAC-SHA256 over
(seq, prev, body) with a key that lives outside the study directory (see
``policies.provenance.key_dir``); ``prev`` is the previous record's mac, so records chain. The
head (last seq + mac, itself authenticated) is written atomically after every append to the key
folder and, as a copy for people, to ``ledger.head`` next to the ledger. Without the key nobody
can rewrite, re-chain or append; dropping records is caught by the head.

A record is at most ``MAX_RECORD_BYTES``. Appends take an exclusive lock and are fsync'ed. A
torn last line (a writer killed mid-append) fails ``verify`` until ``repair`` (run by the
coordinator on resume) truncates it and appends a notice saying so.

Every study is also anchored on the trusted side: ``key_dir()/studies/<id>.json`` (``<id>`` from
the ledger's absolute path) names its key and last head (and the coordinator's elapsed budget).
A missing, shorter or different ledger at an anchored path is refused naming the anchored head,
so deleting or replacing the ledger files in the study dir cannot restart a study.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from simgate.autoresearch.records import StudyRecord, parse_body
from simgate.errors import SimgateError
from simgate.policies.provenance import key_dir, load_key, mac_hex, mac_ok

GENESIS = "0" * 64
MAX_RECORD_BYTES = 64 * 1024


class LedgerError(SimgateError):
    """The ledger does not verify; the message names the first bad record."""


def _payload(seq: int, prev: str, body: dict) -> bytes:
    return json.dumps({"seq": seq, "prev": prev, "body": body}, sort_keys=True, separators=(",", ":")).encode()


def _head_payload(key_id: str, seq: int, mac: str) -> bytes:
    return f"head:{key_id}:{seq}:{mac}".encode()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def study_id(ledger_path: str | Path) -> str:
    """The id of the study whose ledger is at ``ledger_path`` (from its absolute path)."""
    return hashlib.sha256(str(Path(ledger_path).resolve()).encode()).hexdigest()[:32]


def trusted_study_path(ledger_path: str | Path, suffix: str) -> Path:
    """``key_dir()/studies/<study id><suffix>``: the study's anchor (.json) and lock (.lock)."""
    d = key_dir() / "studies"
    d.mkdir(exist_ok=True, mode=0o700)
    return d / f"{study_id(ledger_path)}{suffix}"


def read_anchor(ledger_path: str | Path) -> dict[str, Any] | None:
    """The trusted anchor of the study at ``ledger_path`` (key_id, seq, hash, elapsed_s), or None."""
    try:
        a = json.loads(trusted_study_path(ledger_path, ".json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        raise LedgerError(f"{trusted_study_path(ledger_path, '.json')}: the study anchor is unreadable") from None
    return a if isinstance(a, dict) and isinstance(a.get("key_id"), str) and isinstance(a.get("seq"), int) else None


def retire_anchor(ledger_path: str | Path) -> Path | None:
    """The trusted operator starts a new study where one was (its whole directory gone): the old
    anchor is kept aside as ``<id>.retired-<unix time>.json``, never deleted. Returns its new path."""
    p = trusted_study_path(ledger_path, ".json")
    if not p.exists():
        return None
    retired = p.with_name(f"{p.stem}.retired-{int(time.time())}.json")
    os.replace(p, retired)
    return retired


def update_anchor(ledger_path: str | Path, **fields: Any) -> None:
    """Merge ``fields`` into the study's trusted anchor (written atomically)."""
    p = trusted_study_path(ledger_path, ".json")
    with open(trusted_study_path(ledger_path, ".anchor-lock"), "a") as lock:  # writers in several processes
        fcntl.flock(lock, fcntl.LOCK_EX)  # (the coordinator, `research serve` appending revisions): no lost update
        try:
            cur = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            cur = {}
        _atomic_write(p, json.dumps({**(cur if isinstance(cur, dict) else {}), "path": str(Path(ledger_path).resolve()),
                                     **fields}))


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ---- creation and keys -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, study: dict[str, Any]) -> Ledger:
        """A new ledger whose record 0 is the study (``study`` = StudyRecord fields but key_id)."""
        led = cls(path)
        led.path.parent.mkdir(parents=True, exist_ok=True)
        if led.path.exists() and led.path.stat().st_size:
            raise LedgerError(f"{led.path}: already exists")
        if led.anchor():
            raise led._anchored("the ledger is missing or empty", "a new ledger for it is refused")
        key_id = secrets.token_hex(8)
        load_key(key_id, create=True)
        led.path.touch()
        led.append(StudyRecord(**study, key_id=key_id))
        return led

    def _first_line(self) -> dict:
        with open(self.path) as f:
            line = f.readline()
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise LedgerError(f"{self.path}: record 0 is not valid JSON") from None

    def key_id(self) -> str:
        body = self._first_line().get("body")
        if not isinstance(body, dict) or body.get("kind") != "study" or not isinstance(body.get("key_id"), str):
            raise LedgerError(f"{self.path}: record 0 is not the study record (no key id)")
        return body["key_id"]

    def _key(self) -> bytes:
        try:
            return load_key(self.key_id())
        except (FileNotFoundError, ValueError) as exc:
            raise LedgerError(f"{self.path}: cannot authenticate: {exc}") from None

    def head_path(self) -> Path:
        return key_dir() / f"{self.key_id()}.head"

    # ---- the trusted anchor ------------------------------------------------------------------
    def anchor(self) -> dict[str, Any] | None:
        return read_anchor(self.path)

    def _anchored(self, what: str, then: str = "refusing") -> LedgerError:
        a = self.anchor() or {}
        return LedgerError(f"{self.path}: {what}; this study is anchored at record {a.get('seq')} (hash "
                           f"{str(a.get('hash'))[:16]}, key {a.get('key_id')}) in "
                           f"{trusted_study_path(self.path, '.json')}: {then} (restore its ledger; to start a new "
                           "study at this path on purpose, remove that anchor file)")

    def anchor_head(self) -> None:
        """Anchor a verified ledger that has no anchor yet (a study from before anchors)."""
        if self.anchor() is None:
            h = self.head()
            update_anchor(self.path, key_id=self.key_id(), seq=h["seq"], hash=h["hash"])

    # ---- append ------------------------------------------------------------------------------
    def append(self, record: BaseModel) -> dict[str, Any]:
        """Append a record model; returns the stored record flattened (body + ``seq`` + ``hash``)."""
        body = record.model_dump(mode="json")
        parse_body(body)
        key_id = body["key_id"] if body.get("kind") == "study" else self.key_id()
        key = load_key(key_id)
        with open(self.path, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    raise LedgerError(f"{self.path}: the last record is torn; `simgate research resume` repairs it")
                lines = data.splitlines()
                last = json.loads(lines[-1]) if lines else None
                seq, prev = (last["seq"] + 1, last["mac"]) if last else (0, GENESIS)
                line = json.dumps({"seq": seq, "prev": prev, "body": body, "mac": mac_hex(key, _payload(seq, prev, body))},
                                  sort_keys=True, separators=(",", ":")).encode() + b"\n"
                if len(line) > MAX_RECORD_BYTES:
                    raise LedgerError(f"{self.path}: record {seq} ({body.get('kind')}) is {len(line)} bytes, over the "
                                      f"{MAX_RECORD_BYTES}-byte cap")
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
                mac = json.loads(line)["mac"]
                self._write_head(key_id, key, seq, mac)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return {**body, "seq": seq, "hash": mac}

    def _write_head(self, key_id: str, key: bytes, seq: int, mac: str) -> None:
        head = json.dumps({"key_id": key_id, "seq": seq, "hash": mac, "mac": mac_hex(key, _head_payload(key_id, seq, mac))})
        _atomic_write(key_dir() / f"{key_id}.head", head)
        _atomic_write(self.path.with_name(self.path.stem + ".head"), head)
        update_anchor(self.path, key_id=key_id, seq=seq, hash=mac)

    # ---- read --------------------------------------------------------------------------------
    def _lines(self) -> list[dict]:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            raise LedgerError(f"{self.path}: record {len(lines) - 1} is torn (incomplete last line); "
                              "`simgate research resume` truncates it")
        out = []
        for n, line in enumerate(lines):
            if len(line) > MAX_RECORD_BYTES:
                raise LedgerError(f"{self.path}: record {n} is over the {MAX_RECORD_BYTES}-byte cap")
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise LedgerError(f"{self.path}: record {n} is not valid JSON (edited line)") from None
        return out

    def records(self) -> list[dict[str, Any]]:
        """Every record flattened (body + ``seq`` + ``hash``); not authenticated - see ``verify``."""
        if not self.path.exists():
            return []
        return [{**r.get("body", {}), "seq": r.get("seq"), "hash": r.get("mac")} for r in self._lines()]

    def verify(self) -> int:
        """Authenticate every record and the head; returns the number of records or raises
        LedgerError naming the first bad record."""
        anchor = self.anchor()
        if not self.path.exists() or not self.path.stat().st_size:
            if anchor:
                raise self._anchored("the ledger is missing or empty")
            raise LedgerError(f"{self.path}: empty or missing ledger")
        lines = self._lines()
        if anchor and self.key_id() != anchor["key_id"]:
            raise self._anchored(f"the ledger is a different one (key {self.key_id()})")
        key = self._key()
        prev = GENESIS
        for i, rec in enumerate(lines):
            if not isinstance(rec, dict) or set(rec) != {"seq", "prev", "body", "mac"}:
                raise LedgerError(f"{self.path}: record {i} is not a ledger record")
            if rec["seq"] != i:
                raise LedgerError(f"{self.path}: record {i} has seq {rec['seq']} (records removed or reordered)")
            if rec["prev"] != prev:
                raise LedgerError(f"{self.path}: record {i} does not follow record {i - 1} (history edited)")
            if not mac_ok(key, _payload(i, rec["prev"], rec["body"]), rec["mac"]):
                raise LedgerError(f"{self.path}: record {i} fails authentication (forged, rewritten or re-chained)")
            try:
                parse_body(rec["body"])
            except ValueError as exc:
                raise LedgerError(f"{self.path}: record {i}: {exc}") from None
            if (i == 0) != (rec["body"]["kind"] == "study"):
                raise LedgerError(f"{self.path}: record {i}: the study record must be record 0 and only record 0")
            prev = rec["mac"]
        if anchor and len(lines) <= anchor["seq"]:
            raise self._anchored(f"record {len(lines)} is missing: the ledger ends at record {len(lines) - 1} "
                                 "(records dropped, truncated or the ledger replaced)")
        self._check_head(key, lines)
        if anchor and lines[anchor["seq"]]["mac"] != anchor.get("hash"):
            raise self._anchored(f"record {anchor['seq']} differs from the anchored one (the ledger replaced)")
        return len(lines)

    def _check_head(self, key: bytes, lines: list[dict]) -> None:
        key_id = self.key_id()
        hp = key_dir() / f"{key_id}.head"
        try:
            head = json.loads(hp.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            raise LedgerError(f"{self.path}: its head {hp} is missing or unreadable: cannot rule out truncation") from None
        if not mac_ok(key, _head_payload(key_id, head.get("seq"), head.get("hash")), head.get("mac")):
            raise LedgerError(f"{hp}: head fails authentication")
        seq = head["seq"]
        if seq >= len(lines):
            raise LedgerError(f"{self.path}: record {len(lines)} is missing: the head says the ledger reaches record "
                              f"{seq}, the file ends at record {len(lines) - 1} (records dropped or truncated)")
        if lines[seq]["mac"] != head["hash"]:
            raise LedgerError(f"{self.path}: record {seq} does not match the head (rewritten)")
        # records after the head are authenticated: a crash between append and head write

    def head(self) -> dict[str, Any]:
        lines = self._lines()
        return {"seq": lines[-1]["seq"], "hash": lines[-1]["mac"]} if lines else {"seq": -1, "hash": GENESIS}

    def repair(self) -> str | None:
        """Truncate a torn last line (kill -9 mid-append); returns what was done, or None."""
        if not self.path.exists():
            return None
        with open(self.path, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                data = f.read()
                if not data or data.endswith(b"\n"):
                    return None
                cut = data.rfind(b"\n") + 1
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
                n = data[:cut].count(b"\n")
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return f"record {n} was torn ({len(data) - cut} bytes, a writer killed mid-append): truncated on resume"

    def latest_by_trial(self) -> dict[int, dict[str, Any]]:
        """The last record of every trial number."""
        return {r["trial"]: r for r in self.records() if r.get("kind") == "trial"}
