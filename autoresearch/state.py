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
    invalid_keeps: tuple[str, ...] = ()  # keep records whose params fail the pinned space (never incumbents)


def _params_problem(spec, params: Any) -> str | None:
    if spec is None:
        return None
    from simgate.autoresearch.program import validate_params

    try:
        validate_params(spec, params)
    except ValueError as exc:
        return str(exc)
    return None


def derive_state(records: list[dict[str, Any]], spec=None) -> StudyState:
    """``spec``: the pinned program's spec; a keep whose verified params do not validate strictly
    against its search space (a key outside it, ``init_from`` included) never becomes the incumbent."""
    judged: set[int] = set()
    inc, noise, attempts, promoted = None, None, 0, None
    invalid: list[str] = []
    for r in records:
        kind = r.get("kind")
        if kind == "trial":
            judged.add(r["trial"])
            v = r["verified"]
            if v.get("noise_floor") is not None:
                noise = v["noise_floor"]
            problem = _params_problem(spec, v.get("params")) if r["status"] == "keep" else None
            if problem:
                invalid.append(f"trial {r['trial']} (record {r['seq']}): params outside the pinned space: {problem}")
            elif r["status"] == "keep":
                inc = Incumbent(trial=r["trial"], artifact_sha256=v["artifact_sha256"], layout_sha256=v["layout_sha256"],
                                params=v["params"] or {}, seq=r["seq"], hash=r["hash"])
        elif kind == "promotion":
            attempts += r.get("attempt") is not None
            if r["status"] == "promoted":
                promoted = r
    return StudyState(judged=frozenset(judged), incumbent=inc, noise_floor=noise, promotion_attempts=attempts,
                      promoted=promoted, invalid_keeps=tuple(invalid))
