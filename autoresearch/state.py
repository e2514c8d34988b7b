"""The coordinator's state, derived from the verified ledger alone (never from coordinator.json,
which is a cache for people): judged trials, incumbent, noise floor, promotion attempts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Incumbent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    trial: int
    artifact_sha256: str
    layout_sha256: str
    params: dict[str, Any]
    seq: int
    hash: str


class StudyState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    judged: frozenset[int] = frozenset()
    incumbent: Incumbent | None = None
    noise_floor: float | None = None
    promotion_attempts: int = 0
    promoted: dict[str, Any] | None = None  # the last promoted record


def derive_state(records: list[dict[str, Any]]) -> StudyState:
    judged: set[int] = set()
    inc, noise, attempts, promoted = None, None, 0, None
    for r in records:
        kind = r.get("kind")
        if kind == "trial":
            judged.add(r["trial"])
            v = r["verified"]
            if v.get("noise_floor") is not None:
                noise = v["noise_floor"]
            if r["status"] == "keep":
                inc = Incumbent(trial=r["trial"], artifact_sha256=v["artifact_sha256"], layout_sha256=v["layout_sha256"],
                                params=v["params"] or {}, seq=r["seq"], hash=r["hash"])
        elif kind == "promotion":
            attempts += r.get("attempt") is not None
            if r["status"] == "promoted":
                promoted = r
    return StudyState(judged=frozenset(judged), incumbent=inc, noise_floor=noise, promotion_attempts=attempts,
                      promoted=promoted)
