"""Registry entries checked against the ledger record they cite.

A research promotion's metadata carries ``ledger_entry`` (ledger path, key id, seq and hash of
the judged trial record, the judged artifact hash, the ledger head at promotion). An entry
verifies when: its content hash and attestation check out, the cited ledger verifies, the cited
record is that trial's ``keep`` with the same artifact hash as the entry's ``policy.ts``, and a
``promoted`` record of that ledger names the entry with the same holdout figures.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from simgate.autoresearch.ledger import Ledger, LedgerError


def entry_problem(registry, entry: dict) -> str | None:
    """None when the registry entry verifies; else the first problem found."""
    bad = registry.attested(entry["id"])
    if bad:
        return bad
    le = entry.get("ledger_entry")
    if not le:
        return None  # a manual promotion (`simgate policies promote`): attested, no ledger to cite
    if not isinstance(le, dict) or not all(k in le for k in ("path", "seq", "hash", "artifact_sha256")):
        return "ledger_entry: malformed (needs path, seq, hash, artifact_sha256)"
    led = Ledger(Path(le["path"]))
    try:
        led.verify()
        if le.get("key_id") and led.key_id() != le["key_id"]:
            return f"ledger_entry.key_id {le['key_id']} is not the key of {led.path}"
    except (LedgerError, OSError) as exc:
        return f"cited ledger does not verify: {exc}"
    recs = led.records()
    seq = le["seq"]
    if not isinstance(seq, int) or not 0 <= seq < len(recs) or recs[seq]["hash"] != le["hash"]:
        return f"ledger_entry: record {seq} with hash {str(le['hash'])[:12]} is not in {led.path}"
    rec = recs[seq]
    if rec.get("kind") != "trial" or rec.get("status") != "keep":
        return f"ledger_entry: record {seq} is not a kept trial"
    actual = hashlib.sha256((registry.root / entry["id"] / "policy.ts").read_bytes()).hexdigest()
    judged = str(rec["verified"].get("artifact_sha256"))
    if not actual == judged == le["artifact_sha256"]:
        return f"policy.ts sha256 {actual[:12]} is not the judged artifact {judged[:12]}"
    promos = [r for r in recs if r.get("kind") == "promotion" and r.get("registry_id") == entry["id"]]
    if not promos:
        return "no promotion record in the ledger names this entry"
    hold = (promos[-1].get("holdout") or {}).get("success_rate")
    if hold != (entry.get("holdout") or {}).get("success_rate"):
        return f"holdout figure {entry.get('holdout', {}).get('success_rate')} differs from the ledger's {hold}"
    return None
