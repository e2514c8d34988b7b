"""The coordinator's content-addressed artifact store.

Before judging, the coordinator copies a trial's ``policy.ts`` and its layout out of the worker's
folder into ``store/<sha256>/``; the ledger records that hash as verified. Judging and promotion
read the bytes back, check the hash, and use a private copy - so a file swapped in the worker's
folder (or in the store) after the verdict is never what gets promoted.

Files a worker can write are read only when they are regular files (no symlink, FIFO or device),
at most ``MAX_ARTIFACT_BYTES`` whatever they claim. The study's ``store/`` is in the shared study
directory, so every copy is also kept in a trusted mirror next to the keys
(``provenance.key_dir()/store``), and no entry is trusted without checking its hashes: a
pre-planted or corrupted ``store/<sha>`` is replaced from the bytes being ingested or from the
mirror, and what was done is left in ``notes`` for the coordinator to record.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from simgate.errors import SimgateError
from simgate.policies.export import MAX_ARTIFACT_BYTES, UnsafeArtifact, read_regular_file

POLICY, LAYOUT = "policy.ts", "policy.ts.json"


class StoreError(SimgateError):
    """An artifact is missing, too large, not a regular file, or its bytes do not match the judged hash."""


def _read(path: Path) -> bytes:
    try:
        return read_regular_file(path, MAX_ARTIFACT_BYTES)
    except UnsafeArtifact as exc:
        raise StoreError(str(exc)) from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry_ok(d: Path, sha: str, lsha: str) -> tuple[bytes, bytes] | None:
    """The entry's (policy, layout) bytes when both match the hashes; None otherwise."""
    try:
        policy, layout = _read(d / POLICY), _read(d / LAYOUT)
    except (StoreError, OSError):
        return None
    return (policy, layout) if sha256_bytes(policy) == sha and sha256_bytes(layout) == lsha else None


def _install(root: Path, sha: str, policy: bytes, layout: bytes) -> bool:
    """Put (policy, layout) at ``root/sha`` unless an entry with these exact bytes is there; a
    mismatching entry (pre-planted, corrupted) is moved aside and removed. True if one was replaced."""
    final = root / sha
    if _entry_ok(final, sha, sha256_bytes(layout)) is not None:
        return False
    root.mkdir(parents=True, exist_ok=True)
    replaced = os.path.lexists(final)
    if replaced:
        aside = root / f".bad-{sha[:16]}-{os.urandom(4).hex()}"
        os.replace(final, aside)
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ingest-", dir=root))
    (tmp / POLICY).write_bytes(policy)
    (tmp / LAYOUT).write_bytes(layout)
    try:
        os.replace(tmp, final)
    except OSError:  # another copy landed first: keep it only if it is right
        shutil.rmtree(tmp, ignore_errors=True)
        if _entry_ok(final, sha, sha256_bytes(layout)) is None:
            raise StoreError(f"{final}: could not install the artifact (another entry is in the way)") from None
    return replaced


def mirror_dir() -> Path:
    from simgate.policies.provenance import key_dir

    return key_dir() / "store"


class ArtifactStore:
    def __init__(self, root: str | Path, mirror: str | Path | None = None) -> None:
        self.root = Path(root)
        self._mirror = Path(mirror) if mirror else None
        self.notes: list[str] = []  # repairs made, for the coordinator to record

    @property
    def mirror(self) -> Path:
        return self._mirror or mirror_dir()

    def ingest(self, policy_path: Path) -> tuple[str, str]:
        """Copy a worker's policy and layout into the store (and the trusted mirror); returns
        (policy sha256, layout sha256). A mismatching ``store/<sha>`` already there is replaced."""
        policy = _read(policy_path)
        layout = _read(policy_path.with_name(policy_path.name + ".json"))
        sha, lsha = sha256_bytes(policy), sha256_bytes(layout)
        _install(self.mirror, sha, policy, layout)
        if _install(self.root, sha, policy, layout):
            self.notes.append(f"store entry {sha[:16]} did not match its hashes (pre-planted or corrupted): "
                              "replaced with the ingested bytes")
        return sha, lsha

    def checkout(self, sha: str, layout_sha: str, dest: Path) -> Path:
        """The judged bytes, hash-checked, copied into ``dest`` (a private folder); returns the policy
        path. A study-store entry that does not match is restored from the trusted mirror (noted)."""
        got = _entry_ok(self.root / sha, sha, layout_sha)
        if got is None:
            got = _entry_ok(self.mirror / sha, sha, layout_sha)
            if got is None:
                raise StoreError(f"{self.root / sha}: stored bytes do not match the judged hash {sha[:16]} (changed "
                                 "after the verdict) and no trusted copy does either; refusing to use them")
            _install(self.root, sha, *got)
            self.notes.append(f"store entry {sha[:16]} did not match the judged hash (changed after the verdict): "
                              "restored from the trusted mirror")
        policy, layout = got
        dest.mkdir(parents=True, exist_ok=True)
        (dest / POLICY).write_bytes(policy)
        (dest / LAYOUT).write_bytes(layout)
        return dest / POLICY

    def take_notes(self) -> list[str]:
        out, self.notes = self.notes, []
        return out


def private_dir(prefix: str) -> Path:
    """A 0700 temporary folder outside the study directory."""
    return Path(tempfile.mkdtemp(prefix=prefix))
