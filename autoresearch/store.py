"""The coordinator's content-addressed artifact store.

Before judging, the coordinator copies a trial's ``policy.ts`` and its layout out of the worker's
folder into ``store/<sha256>/``; the ledger records that hash as verified. Judging and promotion
read the bytes back, check the hash, and use a private copy - so a file swapped in the worker's
folder (or in the store) after the verdict is never what gets promoted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from simgate.errors import SimgateError

MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
POLICY, LAYOUT = "policy.ts", "policy.ts.json"


class StoreError(SimgateError):
    """An artifact is missing, too large, or its bytes do not match the judged hash."""


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    if size > MAX_ARTIFACT_BYTES:
        raise StoreError(f"{path}: {size} bytes, over the {MAX_ARTIFACT_BYTES}-byte cap")
    return path.read_bytes()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ingest(self, policy_path: Path) -> tuple[str, str]:
        """Copy a worker's policy and layout into the store; returns (policy sha256, layout sha256)."""
        policy = _read(policy_path)
        layout = _read(policy_path.with_name(policy_path.name + ".json"))
        sha, lsha = sha256_bytes(policy), sha256_bytes(layout)
        final = self.root / sha
        if not final.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".ingest-", dir=self.root))
            (tmp / POLICY).write_bytes(policy)
            (tmp / LAYOUT).write_bytes(layout)
            try:
                os.replace(tmp, final)
            except OSError:  # another copy landed first
                shutil.rmtree(tmp, ignore_errors=True)
        return sha, lsha

    def checkout(self, sha: str, layout_sha: str, dest: Path) -> Path:
        """The judged bytes, hash-checked, copied into ``dest`` (a private folder); returns the policy path."""
        policy, layout = _read(self.root / sha / POLICY), _read(self.root / sha / LAYOUT)
        if sha256_bytes(policy) != sha or sha256_bytes(layout) != layout_sha:
            raise StoreError(f"{self.root / sha}: stored bytes do not match the judged hash {sha[:16]} (changed after "
                             "the verdict); refusing to use them")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / POLICY).write_bytes(policy)
        (dest / LAYOUT).write_bytes(layout)
        return dest / POLICY


def private_dir(prefix: str) -> Path:
    """A 0700 temporary folder outside the study directory."""
    return Path(tempfile.mkdtemp(prefix=prefix))
