"""The registry of promoted policies: immutable, content-addressed artifacts with provenance.

An artifact is a directory named by the SHA-256 of its content:
  policy.ts        TorchScript actor (torch alone runs it; see export.py)
  policy.ts.json   its input layout (observation keys and sizes)
  metadata.json    env spec (env id, robot, spaces, control rate), holdout metrics (required),
                   robustness metrics, training config, code version, library versions, the
                   ledger entry it came from, who promoted it and when
The hash covers the three files; loading recomputes it and refuses an artifact that changed.
Promotion writes into a temporary directory and renames it into place: never half-written.

A content hash certifies only itself (anyone can write a folder and name it by its hash), so
promotion also writes ``attestation.json``: an HMAC of the id with the registry key, which lives
outside the registry (``provenance.key_dir``). ``attested`` checks it; research entries are
further checked against the ledger record they cite (``simgate policies list``).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from simgate.errors import SimgateError
from simgate.policies.provenance import code_version, library_versions, load_key, mac_hex, mac_ok

FILES = ("policy.ts", "policy.ts.json", "metadata.json")
ATTESTATION = "attestation.json"
REGISTRY_KEY_ID = "registry"


def _attestation_payload(digest: str) -> bytes:
    return f"simgate-registry:{digest}".encode()


class RegistryError(SimgateError):
    """Bad reference, refused promotion, or an artifact whose content does not match its hash."""


def default_registry_dir() -> Path:
    return Path(os.environ.get("SIMGATE_REGISTRY", "registry"))


def _content_hash(d: Path) -> str:
    h = hashlib.sha256()
    for name in FILES:
        data = (d / name).read_bytes()
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


class Registry:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else default_registry_dir()

    # ---- write -------------------------------------------------------------------------------
    def promote(self, policy_ts: str | Path, metadata: dict[str, Any], name: str | None = None) -> str:
        """Add a policy; returns its content hash. Refuses without holdout metrics."""
        hold = metadata.get("holdout")
        if not hold or "success_rate" not in hold or not hold.get("episodes"):
            raise RegistryError("refusing to promote: holdout metrics (success_rate, episodes) are missing")
        for key in ("env_id", "robot"):
            if not metadata.get(key):
                raise RegistryError(f"refusing to promote: metadata field {key!r} is missing")
        policy_ts = Path(policy_ts)
        layout = policy_ts.with_suffix(policy_ts.suffix + ".json")
        if not policy_ts.exists() or not layout.exists():
            raise RegistryError(f"policy file {policy_ts} (and its .json layout) not found")
        meta = {
            **metadata,
            "name": name or metadata.get("name") or metadata["env_id"].split("/")[-1],
            "promoted_by": metadata.get("promoted_by") or getpass.getuser(),
            "promoted_at": metadata.get("promoted_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "code": metadata.get("code") or code_version(),
            "libraries": metadata.get("libraries") or library_versions(),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".promote-", dir=self.root))
        try:
            shutil.copyfile(policy_ts, tmp / "policy.ts")
            shutil.copyfile(layout, tmp / "policy.ts.json")
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            digest = _content_hash(tmp)
            final = self.root / digest
            if final.exists():
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, final)
            mac = mac_hex(load_key(REGISTRY_KEY_ID, create=True), _attestation_payload(digest))
            (final / ATTESTATION).write_text(json.dumps({"id": digest, "mac": mac}))
            return digest
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, ref: str) -> str:
        d = self.resolve(ref)
        shutil.rmtree(d)
        return d.name

    # ---- read --------------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        if not self.root.exists():
            return []
        out = []
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and (d / "metadata.json").exists():
                meta = json.loads((d / "metadata.json").read_text())
                out.append({"id": d.name, **meta})
        return sorted(out, key=lambda m: m.get("promoted_at", ""))

    def resolve(self, ref: str) -> Path:
        """A hash, a unique hash prefix, or a name (the latest promotion with that name)."""
        if not ref:
            raise RegistryError("empty policy reference")
        entries = self.entries()
        by_hash = [e for e in entries if e["id"].startswith(ref)]
        if len(by_hash) == 1:
            return self.root / by_hash[0]["id"]
        if len(by_hash) > 1:
            raise RegistryError(f"policy reference {ref!r} is ambiguous: {[e['id'][:12] for e in by_hash]}")
        by_name = [e for e in entries if e.get("name") == ref]
        if by_name:
            return self.root / by_name[-1]["id"]
        raise RegistryError(f"no promoted policy {ref!r} in {self.root} (see `simgate policies list`)")

    def verify(self, ref: str) -> Path:
        d = self.resolve(ref)
        missing = [f for f in FILES if not (d / f).exists()]
        if missing:
            raise RegistryError(f"artifact {d.name[:12]}: files {missing} missing")
        actual = _content_hash(d)
        if actual != d.name:
            raise RegistryError(f"artifact {d.name[:12]}: content hash {actual[:12]} does not match its id "
                                "(tampered with or corrupted); refusing to load")
        return d

    def attested(self, ref: str) -> str | None:
        """None when the entry's content hash and its attestation (made with the registry key at
        promotion) check out; otherwise what is wrong."""
        try:
            d = self.verify(ref)
        except RegistryError as exc:
            return str(exc)
        try:
            att = json.loads((d / ATTESTATION).read_text())
            key = load_key(REGISTRY_KEY_ID)
        except (OSError, ValueError) as exc:
            return f"no attestation: {exc}"
        if not mac_ok(key, _attestation_payload(d.name), att.get("mac")):
            return "attestation does not match (not promoted with this machine's registry key)"
        return None

    def metadata(self, ref: str) -> dict:
        d = self.resolve(ref)
        return {"id": d.name, **json.loads((d / "metadata.json").read_text())}

    def load(self, ref: str):
        """A verified :class:`TorchPolicy` and its metadata. The TorchScript is checked against the
        pure-tensor allow-list before it runs (``export.check_torchscript``, the same check the
        research gate applies); an artifact that fails is refused with RegistryError."""
        from simgate.policies.export import UnsafeArtifact, load_checked_policy

        d = self.verify(ref)
        meta = json.loads((d / "metadata.json").read_text())
        try:
            pol = load_checked_policy(d / "policy.ts")
        except UnsafeArtifact as exc:
            raise RegistryError(f"artifact {d.name[:12]}: refusing to load: {exc}") from None
        return pol, {"id": d.name, **meta}

    def export(self, ref: str, out: str | Path) -> Path:
        """Copy the verified TorchScript actor (and its layout and metadata) to ``out``."""
        d = self.verify(ref)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(d / "policy.ts", out)
        shutil.copyfile(d / "policy.ts.json", out.with_suffix(out.suffix + ".json"))
        shutil.copyfile(d / "metadata.json", out.with_suffix(out.suffix + ".metadata.json"))
        return out
