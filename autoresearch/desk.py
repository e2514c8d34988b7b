"""The research desk: what a researcher (an LLM agent over MCP, see mcp_server.py) may see and do
in one study, on the trusted side - and nothing else.

It reads the program (goal, metric, boundaries, budgets, prose), the verified ledger (verdicts,
reported params, figures) and the report; it queues candidates through ``submit_candidate``, the
path Optuna's and `research submit`'s candidates take, so the same trusted gate judges them; it
appends accepted search-space revisions to the ledger (revisions.py). No answer carries a seed:
every view is built from an allow-list of fields (selection, fresh and holdout seeds, the worker's
training seed and the key material stay behind it).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import optuna

from simgate.autoresearch.coordinator import study_dir_for, submit_candidate
from simgate.autoresearch.ledger import Ledger, read_anchor
from simgate.autoresearch.program import load_program, validate_params
from simgate.autoresearch.records import clip_text
from simgate.autoresearch.revisions import PROGRAM_FIELDS, STUDY_ATTR, current_space, propose, study_attr
from simgate.autoresearch.study import open_study, storage_url
from simgate.errors import SimgateError

TS = optuna.trial.TrialState
MAX_WAIT_S = 300.0  # the longest one wait_for_verdict call blocks
TRIAL_FIELDS = ("trial", "status", "reason", "role")
VERIFIED_FIELDS = ("fresh", "fresh_episodes", "delta", "p_value", "alpha", "threshold", "reproduce_p", "incumbent",
                   "incumbent_fresh", "looks", "noise_floor")  # never fresh_seeds
REPORTED_FIELDS = ("claimed", "steps", "wall_s", "proposer", "rationale")  # never train_seed


class Refused(SimgateError):
    """A researcher's request the desk refuses; the message says why."""


def _param_view(p) -> dict[str, Any]:
    return p.model_dump(mode="json", exclude_none=True)


def trial_view(rec: dict[str, Any]) -> dict[str, Any]:
    """A judged trial as a researcher sees it: the verdict, the gate's figures, the reported params."""
    v, rep = rec.get("verified") or {}, rec.get("reported") or {}
    out = {k: rec.get(k) for k in TRIAL_FIELDS}
    out["params"] = v.get("params") if v.get("params") is not None else rep.get("params")
    out["gate"] = {k: v.get(k) for k in VERIFIED_FIELDS if v.get(k) is not None}
    out["reported"] = {k: rep.get(k) for k in REPORTED_FIELDS if rep.get(k) is not None}
    out["incumbent_when_judged"] = rec.get("parent")
    out["ledger_record"] = rec.get("seq")
    return out


class Desk:
    def __init__(self, program_path: str | Path, study_dir: str | Path | None = None, storage: str | None = None,
                 max_pending: int = 4) -> None:
        self.program = load_program(program_path)
        self.spec = self.program.spec
        self.dir = study_dir_for(self.program, study_dir).resolve()
        self.storage = storage
        self.url = storage_url(self.dir, storage)
        self.ledger = Ledger(self.dir / "ledger.jsonl")
        self.max_pending = max_pending
        self._lock = threading.RLock()  # one revision at a time; the Optuna storage from one thread at a time
        self._study: optuna.Study | None = None
        self.woken = threading.Event()  # set on every accepted submission (the supervisor starts a coordinator)

    # ---- reading ---------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """The ledger, authenticated (a ledger that does not verify is an error, never an answer)."""
        if not self.ledger.path.exists() and self.ledger.anchor() is None:
            return []
        self.ledger.verify()
        return self.ledger.records()

    def study(self) -> optuna.Study | None:
        """The study's Optuna study, once its coordinator created it (coordinator.json is written after
        that: opening the storage earlier could race the coordinator creating its tables)."""
        if self._study is None:
            if not (self.dir / "coordinator.json").exists():
                return None
            try:
                self._study = open_study(self.spec, self.url, create=False)
            except KeyError:  # not created yet: the coordinator creates it
                return None
        return self._study

    def optuna_trials(self) -> list[optuna.trial.FrozenTrial]:
        with self._lock:
            study = self.study()
            return study.get_trials(deepcopy=False) if study is not None else []

    def budget(self) -> dict[str, Any]:
        b = self.spec.budgets
        elapsed = float((read_anchor(self.ledger.path) or {}).get("elapsed_s", 0.0)) if self.ledger.path.exists() else 0.0
        trials = self.optuna_trials()
        return {**b.model_dump(), "elapsed_wall_s": round(elapsed, 1),
                "remaining_wall_s": round(max(0.0, b.total_wall_s - elapsed), 1), "trials_so_far": len(trials),
                "note": "max_trials bounds the proposer's own trials; submitted candidates run beyond it while "
                        f"wall-clock budget remains, at most {self.max_pending} of yours waiting or running at once"}

    def program_view(self) -> dict[str, Any]:
        spec = self.spec
        recs = self.records()
        version, space = current_space(recs, spec)
        revisions = [{k: r[k] for k in ("version", "changes", "rationale", "proposer", "created_at", "program_sha256")}
                     | {"ledger_record": r["seq"]} for r in recs if r.get("kind") == "revision"]
        return {
            "name": spec.name, "program_sha256": self.program.sha256, "goal": self.program.prose,
            "task": spec.task.model_dump(mode="json"),
            "metric": spec.metric.model_dump(mode="json"),
            "budgets": self.budget(),
            "search_space": {"version": version, "params": {k: _param_view(p) for k, p in space.items()}},
            "boundaries": {
                "search_space": {k: _param_view(p) for k, p in spec.search_space.items()},
                "protected": list(spec.protected),
                "fixed_fields": sorted(PROGRAM_FIELDS),
                "rule": "submissions must lie in the current search space; a revision may narrow ranges and choices "
                        "within these boundaries (or re-widen up to them), never add parameters or touch other fields"},
            "base_recipe": spec.base_recipe,
            "acceptance": spec.acceptance.model_dump(mode="json"),
            "promotion": spec.promotion.model_dump(mode="json"),
            "proposer": spec.proposer.model_dump(mode="json"),
            "revisions": revisions,
            "how_judged": "every trial is re-evaluated by the trusted gate on secret fresh episodes drawn after it "
                          "finished: a claim that does not reproduce is rejected; a candidate is kept only when it "
                          "beats the incumbent significantly on paired fresh episodes",
        }

    def trials_view(self, limit: int = 100) -> dict[str, Any]:
        recs = self.records()
        judged = {r["trial"]: r for r in recs if r.get("kind") == "trial"}
        out = [trial_view(r) for r in sorted(judged.values(), key=lambda r: r["trial"])]
        pending = []
        for t in self.optuna_trials():
            if t.number in judged:
                continue
            state = {TS.WAITING: "waiting", TS.RUNNING: "running"}.get(t.state, "awaiting the gate")
            params = t.user_attrs.get("params") or self._decode(t.system_attrs.get("fixed_params") or {})
            pending.append({"trial": t.number, "status": state, "params": params,
                            "proposer": t.user_attrs.get("proposer") or "optuna",
                            "rationale": t.user_attrs.get("rationale")})
        inc = next((r["trial"] for r in reversed(recs) if r.get("kind") == "trial" and r["status"] == "keep"), None)
        return {"judged": out[-limit:], "judged_total": len(out), "pending": pending, "incumbent": inc}

    def sync_revision(self) -> None:
        """Workers sample from the revision on the study's storage: keep it equal to the ledger's latest."""
        revs = [r for r in self.records() if r.get("kind") == "revision"]
        if not revs:
            return
        want = {"version": revs[-1]["version"], "search_space": revs[-1]["search_space"],
                "search_space_sha256": revs[-1]["search_space_sha256"]}
        with self._lock:
            study = self.study()
            if study is not None and study.user_attrs.get(STUDY_ATTR) != want:
                study.set_user_attr(STUDY_ATTR, want)

    def _decode(self, fixed: dict[str, Any]) -> dict[str, Any]:
        """A queued trial's values as submitted (Optuna holds categorical choices as their repr)."""
        out = {}
        for k, v in fixed.items():
            prm = self.spec.search_space.get(k)
            enc = {repr(c): c for c in prm.choices} if prm is not None and prm.type == "categorical" else {}
            out[k] = enc.get(v, v) if isinstance(v, str) else v
        return out

    # ---- acting ----------------------------------------------------------------------------------
    def submit(self, params: dict[str, Any], rationale: str, who: str) -> dict[str, Any]:
        recs = self.records()
        if not recs:
            raise Refused("the study has not started yet (no ledger): try again in a few seconds")
        version, space = current_space(recs, self.spec)
        try:
            validate_params(self.spec.model_copy(update={"search_space": space}), params, complete=False)
        except ValueError as exc:
            raise Refused(f"params outside the search space (version {version}): {exc}") from None
        left = self.budget()["remaining_wall_s"]
        if left <= 0:
            raise Refused(f"the study's wall-clock budget ({self.spec.budgets.total_wall_s:g} s) is spent")
        proposer = f"mcp:{who}"
        with self._lock:  # count and queue as one step: parallel calls cannot all pass the count
            mine = [t for t in self.optuna_trials() if t.state in (TS.WAITING, TS.RUNNING)
                    and t.user_attrs.get("proposer") == proposer]
            if len(mine) >= self.max_pending:
                raise Refused(f"{len(mine)} of your candidates are waiting or running (trials "
                              f"{[t.number for t in mine]}); wait for a verdict before submitting more")
            try:
                n = submit_candidate(self.program.path, params, rationale, self.dir, self.storage, proposer=proposer)
            except ValueError as exc:
                raise Refused(f"params outside the pinned search space: {exc}") from None
        self.woken.set()
        return {"trial": n, "status": "queued", "search_space_version": version, "params": params,
                "note": "trained by a worker, then judged by the trusted gate on secret fresh episodes; "
                        "call wait_for_verdict"}

    def _final_trial(self, n: int) -> tuple[int, optuna.trial.FrozenTrial | None]:
        """The trial carrying candidate ``n`` now: ``n``, or its latest re-queue after a lost worker."""
        trials = self.optuna_trials()
        mine = next((t for t in trials if t.number == n), None)
        cid = mine.user_attrs.get("candidate_id") if mine else None
        family = sorted((t for t in trials if cid and t.user_attrs.get("candidate_id") == cid), key=lambda t: t.number)
        last = family[-1] if family else mine
        return (last.number if last else n), last

    def verdict(self, trial: int, timeout_s: float) -> dict[str, Any]:
        timeout_s = min(max(0.0, timeout_s), MAX_WAIT_S)
        t0 = time.monotonic()
        while True:
            n, t = self._final_trial(trial)
            judged = {r["trial"]: r for r in self.records() if r.get("kind") == "trial"}
            if t is None and trial not in judged:
                raise Refused(f"no trial {trial} in this study")
            if n in judged:
                return {"requested_trial": trial, **trial_view(judged[n])}
            if time.monotonic() - t0 >= timeout_s:
                state = {TS.WAITING: "waiting", TS.RUNNING: "running"}.get(t.state, "awaiting the gate")
                return {"requested_trial": trial, "trial": n, "status": "pending", "state": state,
                        "waited_s": round(time.monotonic() - t0, 1)}
            time.sleep(0.5)

    def revise(self, changes: dict[str, Any], rationale: str, who: str) -> dict[str, Any]:
        with self._lock:
            recs = self.records()
            if not recs:
                raise Refused("the study has not started yet (no ledger): try again in a few seconds")
            try:
                rec = propose(self.program, recs, changes, rationale, f"mcp:{who}")
            except ValueError as exc:
                raise Refused(f"revision refused: {exc}") from None
            stored = self.ledger.append(rec)
            study = self.study()
            if study is not None:
                study.set_user_attr(STUDY_ATTR, study_attr(rec))
        return {"accepted": True, "version": rec.version, "changes": list(rec.changes),
                "search_space": {k: {f: x for f, x in v.items() if x is not None} for k, v in rec.search_space.items()},
                "program_sha256": rec.program_sha256,
                "ledger_record": stored["seq"], "rationale": clip_text(rationale)}
