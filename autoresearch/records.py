"""What the ledger holds: frozen, closed (``extra="forbid"``) record models.

A trial record separates what the trusted side *verified* (the bytes it judged, the secret seeds
it drew, what it measured) from what the worker *reported* (params, steps, seed, worker name,
wall time, claimed score). Only ``verified`` fields decide anything.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_TEXT_CHARS = 2000  # a reported string longer than this is cut (records stay under the size cap)
MAX_PROGRAM_CHARS = 32_000
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def clip_text(value: Any, n: int = MAX_TEXT_CHARS) -> str | None:
    """A worker-supplied value as a bounded string (None stays None)."""
    if value is None:
        return None
    s = value if isinstance(value, str) else repr(value)
    return s if len(s) <= n else s[: n - 20] + " ...(truncated)"


class StudyRecord(_Frozen):
    """Record 0: the study, its key and the pinned program (hash and full text)."""

    kind: Literal["study"] = "study"
    study: str
    key_id: str
    program_sha256: str
    spec_sha256: str
    program_text: Annotated[str, StringConstraints(max_length=MAX_PROGRAM_CHARS)]
    smoke: bool
    created_at: str


class Reported(_Frozen):
    """The worker's word: recorded, never trusted."""

    params: dict[str, Any] | None = None
    claimed: float | None = None
    steps: int | None = None
    train_seed: int | None = None
    worker: Text | None = None
    wall_s: float | None = None
    artifact_sha256: Text | None = None
    proposer: Text | None = None
    rationale: Text | None = None


class Verified(_Frozen):
    """Measured by the trusted evaluator on secret seeds drawn after the trial finished."""

    artifact_sha256: str | None = None
    layout_sha256: str | None = None
    params: dict[str, Any] | None = None  # the reported params, once checked against the pinned space
    fresh: float | None = None
    fresh_episodes: int = 0
    fresh_seeds: list[int] = Field(default_factory=list)  # disclosed only with the verdict
    incumbent: int | None = None
    incumbent_fresh: float | None = None
    delta: float | None = None
    p_value: float | None = None
    alpha: float | None = None
    threshold: float | None = None
    reproduce_p: float | None = None
    looks: int = 0
    noise_floor: float | None = None
    conditions: str | dict[str, list[float]] | None = None  # the metric's evaluation conditions (program.Metric.under)


TrialStatus = Literal["keep", "discard", "rejected", "crash", "pruned", "cut"]


class TrialRecord(_Frozen):
    kind: Literal["trial"] = "trial"
    trial: int
    status: TrialStatus
    reason: Text
    role: Literal["baseline", "search"] = "search"
    parent: int | None = None  # the incumbent when judged
    verified: Verified = Verified()
    reported: Reported = Reported()
    code: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, Any] = Field(default_factory=dict)


class PromotionRecord(_Frozen):
    kind: Literal["promotion"] = "promotion"
    status: Literal["promoted", "refused"]
    reason: Text
    candidate: int | None = None
    attempt: int | None = None  # 1.. max_attempts; None = refused without using an attempt
    artifact_sha256: str | None = None
    holdout: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None
    registry_id: str | None = None
    conditions: str | dict[str, list[float]] | None = None  # of ``metric`` and ``baseline``
    metric: dict[str, Any] | None = None  # the candidate on the holdout sample under the metric's conditions
    baseline: dict[str, Any] | None = None  # the baseline trial on the same seeds and conditions, paired test


class NoticeRecord(_Frozen):
    """Something the trusted side repaired or refused outside a trial's verdict."""

    kind: Literal["notice"] = "notice"
    reason: Text
    trial: int | None = None


class RevisionRecord(_Frozen):
    """A revision of the search space proposed by a researcher (an agent over MCP) and accepted by
    the trusted side: a new pinned program version, always within the original program's
    boundaries (see revisions.py). Version 0 is the program pinned in record 0."""

    kind: Literal["revision"] = "revision"
    version: int = Field(ge=1)
    parent_version: int = Field(ge=0)
    search_space: dict[str, dict[str, Any]]  # the whole revised space, as Param fields
    search_space_sha256: str
    program_sha256: str  # of the rendered revised program.md (``program_text``)
    program_text: Annotated[str, StringConstraints(max_length=MAX_PROGRAM_CHARS)]
    base_program_sha256: str  # the program pinned in record 0: the protected boundaries
    changes: list[Text]
    rationale: Text
    proposer: Text
    created_at: str


RECORD_MODELS: dict[str, type[_Frozen]] = {"study": StudyRecord, "trial": TrialRecord, "promotion": PromotionRecord,
                                          "notice": NoticeRecord, "revision": RevisionRecord}


def parse_body(body: Any) -> _Frozen:
    """A ledger body as its record model (raises ValueError naming the field)."""
    from pydantic import ValidationError

    if not isinstance(body, dict) or body.get("kind") not in RECORD_MODELS:
        raise ValueError(f"unknown record kind {body.get('kind') if isinstance(body, dict) else body!r}")
    try:
        return RECORD_MODELS[body["kind"]].model_validate(body)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ValueError(f"field {'.'.join(str(x) for x in e['loc'])}: {e['msg']}") from None
