"""Revisions of a study's search space, proposed by researchers (an agent over MCP): the
"program.md written by models" step, inside the protected boundaries of the pinned program.

A revision may only *narrow* the program the study pinned in ledger record 0: a float or int range
to a sub-range of the original one, a categorical to a non-empty subset of the original choices.
It cannot add or drop a parameter, change a parameter's type, scale, step or condition, or touch
any other field of the program (task, metric, budgets, acceptance, promotion, base recipe, the
protected fields). Within the original boundaries it may narrow or re-widen the last revision.

An accepted revision is a ``RevisionRecord`` appended to the ledger (authenticated and chained like
every record): a new pinned program version, with its rendered program.md and hashes. The
latest one is the space later agent submissions are checked against, and the space Optuna's
workers sample from (they read it from the study's storage, ``STUDY_ATTR``, and use it only when
it re-checks as a narrowing of the pinned space). The gate still judges every trial against the
pinned program: a revision steers the search, it never moves a boundary.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simgate.autoresearch.program import Param, Program, ProgramSpec, same_value
from simgate.autoresearch.records import MAX_PROGRAM_CHARS, RevisionRecord, clip_text

STUDY_ATTR = "search_space_revision"  # the latest accepted revision, for workers (storage attribute)
PROGRAM_FIELDS = frozenset(ProgramSpec.model_fields) - {"search_space"}


class RevisionRefused(ValueError):
    """A proposed revision outside the program's boundaries; the message names the field and why."""


class ParamRevision(BaseModel):
    """The new bounds of one parameter: ``low``/``high`` for float and int parameters, ``choices``
    for categorical ones. Anything else about a parameter is fixed by the program."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float | None = Field(None, allow_inf_nan=False,
                              description="new lower bound (float/int parameters), >= the program's")
    high: float | None = Field(None, allow_inf_nan=False,
                               description="new upper bound (float/int parameters), <= the program's")
    choices: list[Any] | None = Field(None, description="new choices (categorical): a subset of the program's")


def _errs(exc: ValidationError, where: str) -> str:
    return "; ".join(f"{'.'.join([where, *(str(x) for x in e['loc'])])}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors()[:5])


def space_sha256(space: dict[str, Param]) -> str:
    dumped = {k: v.model_dump(mode="json") for k, v in sorted(space.items())}
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()


def current_space(records: list[dict[str, Any]], spec: ProgramSpec) -> tuple[int, dict[str, Param]]:
    """(version, search space) in force after ``records`` (a verified ledger's): the latest
    accepted revision that still re-checks as a narrowing of the pinned space, or version 0 = the
    pinned program's own space. A revision that does not (one recorded by an older, laxer check)
    is passed over: it can neither widen the space nor lock the study."""
    version, space = 0, dict(spec.search_space)
    for r in records:
        if r.get("kind") != "revision":
            continue
        try:
            revised = {k: Param.model_validate(v) for k, v in r["search_space"].items()}
            check_narrowing(spec.search_space, revised)
        except (ValidationError, RevisionRefused, KeyError, TypeError, AttributeError):
            continue
        version, space = r["version"], revised
    return version, space


def _same_choice(a: Any, b: Any) -> bool:
    return same_value(a, b)


def check_narrowing(original: dict[str, Param], revised: dict[str, Param]) -> None:
    """Raise RevisionRefused unless ``revised`` lies within ``original`` (the protected boundaries)."""
    added = sorted(set(revised) - set(original))
    if added:
        raise RevisionRefused(f"{added[0]}: not in the pinned search space; adding parameters is refused")
    dropped = sorted(set(original) - set(revised))
    if dropped:
        raise RevisionRefused(f"{dropped[0]}: missing; a revision keeps every parameter (narrow it instead)")
    for name, o in original.items():
        r = revised[name]
        for f in ("type", "log", "step", "when"):
            if getattr(r, f) != getattr(o, f):
                raise RevisionRefused(f"{name}.{f}: {getattr(r, f)!r} differs from the program's {getattr(o, f)!r}; "
                                      "only ranges and choices can be revised")
        if o.type == "categorical":
            extra = [c for c in r.choices if not any(_same_choice(c, x) for x in o.choices)]
            if extra:
                raise RevisionRefused(f"{name}.choices: {extra[0]!r} is not one of the program's choices {o.choices}: "
                                      "widening past the protected boundary is refused")
            if len({json.dumps(c, sort_keys=True) for c in r.choices}) != len(r.choices):
                raise RevisionRefused(f"{name}.choices: repeated choice")
            continue
        if r.low < o.low:
            raise RevisionRefused(f"{name}.low: {r.low} is below the program's boundary {o.low}: widening past the "
                                  "protected boundary is refused")
        if r.high > o.high:
            raise RevisionRefused(f"{name}.high: {r.high} is above the program's boundary {o.high}: widening past the "
                                  "protected boundary is refused")
        if o.type == "int" and not (float(r.low).is_integer() and float(r.high).is_integer()):
            raise RevisionRefused(f"{name}: an int parameter needs integer bounds, got [{r.low}, {r.high}]")


def _revise_one(name: str, cur: Param, change: ParamRevision) -> Param:
    fields = cur.model_dump()
    if cur.type == "categorical":
        if change.low is not None or change.high is not None or change.choices is None:
            raise RevisionRefused(f"{name}: a categorical parameter is revised by 'choices' only")
        fields["choices"] = list(change.choices)
    else:
        if change.choices is not None:
            raise RevisionRefused(f"{name}.choices: a {cur.type} parameter is revised by 'low'/'high' only")
        if change.low is None and change.high is None:
            raise RevisionRefused(f"{name}: give 'low' and/or 'high'")
        fields["low"] = cur.low if change.low is None else change.low
        fields["high"] = cur.high if change.high is None else change.high
    try:
        return Param.model_validate(fields)
    except ValidationError as exc:
        raise RevisionRefused(_errs(exc, name)) from None


def _describe(name: str, a: Param, b: Param) -> str:
    if a.type == "categorical":
        return f"{name}: choices {a.choices} -> {b.choices}"
    return f"{name}: [{a.low:g}, {a.high:g}] -> [{b.low:g}, {b.high:g}]"


_FRONT = re.compile(r"^---\s*\n(.*?)\n---\s*\n?(.*)$", re.S)


def render_program(program: Program, space: dict[str, Param], version: int, rationale: str, proposer: str) -> str:
    """The pinned program.md with its search space replaced: the revised program version, as text."""
    m = _FRONT.match(program.text)
    front, prose = (yaml.safe_load(m.group(1)) or {}, m.group(2)) if m else ({}, program.text)
    if isinstance(front.get("proposer"), dict):  # enqueued once at the study's start; may not fit a narrowed space
        front["proposer"].pop("initial_candidates", None)
    front["search_space"] = {k: {"type": p.type} | p.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
                             for k, p in space.items()}
    note = (f"<!-- revision {version} of program sha256 {program.sha256[:16]}, proposed by {proposer}: "
            f"{rationale.replace('--', '- -')} -->\n")
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + note + prose


def propose(program: Program, records: list[dict[str, Any]], changes: Any, rationale: str,
            proposer: str) -> RevisionRecord:
    """A revision record for ``changes`` ({param: {low, high} | {choices}}) on top of the space in
    force after ``records``, or RevisionRefused naming the field and the boundary."""
    spec = program.spec
    if not isinstance(changes, dict) or not changes:
        raise RevisionRefused("search_space: give at least one parameter to revise ({name: {low, high} | {choices}})")
    for name in changes:
        if name in spec.protected or name in PROGRAM_FIELDS:
            raise RevisionRefused(
                f"{name}: protected; a revision changes only the ranges and choices of the search space "
                f"(protected: {', '.join(spec.protected)}; fixed program fields: {', '.join(sorted(PROGRAM_FIELDS))})")
        if name not in spec.search_space:
            raise RevisionRefused(f"{name}: not in the pinned search space; adding parameters is refused "
                                  f"(parameters: {', '.join(spec.search_space)})")
    version, space = current_space(records, spec)
    new = dict(space)
    for name, raw in changes.items():
        try:
            change = raw if isinstance(raw, ParamRevision) else ParamRevision.model_validate(raw)
        except ValidationError as exc:
            raise RevisionRefused(_errs(exc, name)) from None
        new[name] = _revise_one(name, space[name], change)
    check_narrowing(spec.search_space, new)
    described = [_describe(n, space[n], new[n]) for n in changes if new[n] != space[n]]
    if not described:
        raise RevisionRefused(f"search_space: the revision changes nothing (version {version} already has these bounds)")
    rationale = clip_text(rationale) or ""
    text = render_program(program, new, version + 1, rationale, proposer)
    if len(text) > MAX_PROGRAM_CHARS:
        raise RevisionRefused(f"search_space: the revised program is {len(text)} characters, over {MAX_PROGRAM_CHARS}")
    return RevisionRecord(
        version=version + 1, parent_version=version,
        search_space={k: p.model_dump(mode="json") for k, p in new.items()},
        search_space_sha256=space_sha256(new), program_sha256=hashlib.sha256(text.encode()).hexdigest(),
        program_text=text, base_program_sha256=program.sha256, changes=described, rationale=rationale,
        proposer=clip_text(proposer, 200) or "unknown", created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def study_attr(rec: RevisionRecord) -> dict[str, Any]:
    """What workers read from the study's storage (they re-check it against the pinned space)."""
    return {"version": rec.version, "search_space": rec.search_space, "search_space_sha256": rec.search_space_sha256}


def proposal_spec(spec: ProgramSpec, study, trial) -> ProgramSpec:
    """The spec a worker samples a new trial from: the pinned one with the study's latest revision
    of the search space, when there is one and it is a narrowing of the pinned space. Queued
    trials (baselines, submitted candidates) keep the pinned spec: their values are fixed."""
    try:
        if study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params"):
            return spec
        rev = study.user_attrs.get(STUDY_ATTR)
        if not rev:
            return spec
        space = {k: Param.model_validate(v) for k, v in rev["search_space"].items()}
        check_narrowing(spec.search_space, space)
        if space_sha256(space) != rev.get("search_space_sha256"):
            raise RevisionRefused("search_space_sha256 does not match the space")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        print(f"ignoring the study's search-space revision (sampling the pinned space): {exc}", flush=True)
        return spec
    return spec.model_copy(update={"search_space": space})
