"""The coordinator - the *trusted* half: pins the program, creates the study, copies every
finished trial's artifact into its own store, judges it on secret seeds (gate.py), writes one
authenticated ledger record per trial, promotes the winner (promote.py), writes the report.

Its state (incumbent, noise floor, judged trials, promotion attempts) is derived from the
verified ledger on every start, so a kill -9 anywhere leaves nothing to reconcile: finished
trials already in the ledger are skipped (never judged twice), trials whose worker died are
failed by Optuna's heartbeat and re-queued with the same parameters, a torn last ledger line is
truncated with a notice. Only one coordinator runs a study at a time (a lock file on the trusted
side, next to the keys). The elapsed wall-clock budget lives in the study's trusted anchor (see
ledger.py), never in coordinator.json, which workers can write.
"""

from __future__ import annotations

import fcntl
import json
import math
import multiprocessing as mp
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console
from rich.live import Live
from rich.table import Table

from simgate.autoresearch import gate
from simgate.autoresearch.ledger import Ledger, LedgerError, read_anchor, trusted_study_path, update_anchor
from simgate.autoresearch.program import Program, check_pinned, load_program, smoke_mode, validate_params
from simgate.autoresearch.records import NoticeRecord, Reported, StudyRecord, TrialRecord, Verified, clip_text
from simgate.autoresearch.state import StudyState, derive_state
from simgate.autoresearch.store import ArtifactStore, StoreError, private_dir
from simgate.autoresearch.study import HEARTBEAT_ATTR, PIN_ATTRS, encode_for_enqueue, open_study, storage_url
from simgate.autoresearch.worker import count_trials, worker_loop
from simgate.errors import ConfigError, SimgateError
from simgate.policies.export import UnsafeArtifact
from simgate.policies.provenance import code_version, library_versions

console = Console(stderr=True)
TS = optuna.trial.TrialState
BASELINE_TRIALS = (0, 1)  # the coordinator enqueues the baseline twice: the noise floor


def study_dir_for(program: Program, study_dir: str | Path | None = None) -> Path:
    return Path(study_dir) if study_dir else Path("runs") / "research" / program.spec.name


def baseline_params(spec) -> dict[str, Any]:
    """The search-space parameters at the default recipe's values (clamped into the space)."""
    from simgate.autoresearch.train_ranges import bound_of, is_range_key
    from simgate.policies.recipes import default_recipe

    rec = default_recipe(spec.task.env_id, **spec.base_recipe, robot=spec.task.robot).model_dump()
    out: dict[str, Any] = {}
    for name, prm in spec.search_space.items():
        if prm.when and any(out.get(d, rec.get(d)) != v for d, v in prm.when.items()):
            continue
        v = bound_of(rec, name) if is_range_key(name) else rec[name]
        if prm.type == "categorical":
            out[name] = v if v in prm.choices else prm.choices[0]
        else:
            v = min(prm.high, max(prm.low, v))
            out[name] = int(round(v)) if prm.type == "int" else float(v)
    return out


def pinned_study(ledger_path: Path) -> dict | None:
    """Record 0 of a verified ledger (the pin), or None when there is no ledger yet (and none was
    anchored: a deleted ledger of an anchored study raises LedgerError)."""
    led = Ledger(ledger_path)
    if (not ledger_path.exists() or not ledger_path.stat().st_size) and led.anchor() is None:
        return None
    led.verify()
    return led.records()[0]


def enqueue_study_start(study: optuna.Study, spec) -> None:
    """A new study's first trials: the baseline twice (trials 0 and 1, the noise floor), then the
    program's initial candidates (its warm start, gated like any candidate)."""
    for _ in BASELINE_TRIALS:
        study.enqueue_trial(encode_for_enqueue(spec, baseline_params(spec)), user_attrs={"role": "baseline"})
    for point in spec.proposer.initial_candidates:
        study.enqueue_trial(encode_for_enqueue(spec, point, complete=True),
                            user_attrs={"proposer": "program", "rationale": "initial candidate named by the program"})


def submit_candidate(program_path: str | Path, params: Any, rationale: str, study_dir=None, storage=None,
                     proposer: str = "external") -> int:
    """External-proposer API: queue a candidate (an agent's or a person's) with its rationale.
    Values are checked strictly against the pinned program's space; the same gate judges it.
    Returns the queued trial's number."""
    program = load_program(program_path)
    sd = study_dir_for(program, study_dir)
    pin = pinned_study(sd / "ledger.jsonl")
    if pin:
        check_pinned(program, pin["program_sha256"], pin["spec_sha256"], f"the study in {sd}")
    enc = encode_for_enqueue(program.spec, params)  # ValueError names the parameter
    if pin:  # within the search space's latest accepted revision too (research serve's narrowing)
        from simgate.autoresearch.ledger import Ledger
        from simgate.autoresearch.revisions import current_space

        version, space = current_space(Ledger(sd / "ledger.jsonl").records(), program.spec)
        if version:
            try:
                validate_params(program.spec.model_copy(update={"search_space": space}), params, complete=False)
            except ValueError as exc:
                raise ValueError(f"outside the search space's revision {version}: {exc}") from None
    sd.mkdir(parents=True, exist_ok=True)
    study = open_study(program.spec, storage_url(sd, storage), create=True)
    from simgate.autoresearch.worker import check_study_pin

    check_study_pin(program, study)
    if not study.trials:  # the baselines keep trials 0 and 1 when a candidate arrives before the study runs
        enqueue_study_start(study, program.spec)
    import secrets

    cid = secrets.token_hex(8)  # finds the queued trial (enqueue_trial returns nothing); kept on re-queues
    study.enqueue_trial(enc, user_attrs={"proposer": clip_text(proposer, 200), "rationale": clip_text(rationale),
                                         "candidate_id": cid})
    return min(t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get("candidate_id") == cid)


class _RayWorker:
    def __init__(self, ref) -> None:
        self.ref = ref

    def is_alive(self) -> bool:
        import ray

        ready, _ = ray.wait([self.ref], timeout=0)
        if ready:
            ray.get(self.ref)  # re-raise a worker's exception here
        return not ready

    def terminate(self) -> None:
        import ray

        ray.cancel(self.ref, force=True)

    def join(self, timeout: float | None = None) -> None:
        pass


def _RayWorkers(n: int, address: str | None, args: tuple) -> list[_RayWorker]:  # noqa: N802 - a factory
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(n, 1), include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(worker_loop)
    return [_RayWorker(remote.remote(*args, f"ray-{i}")) for i in range(n)]


def untrusted_error(exc: BaseException) -> str:
    """An exception raised by (or through) an artifact, for the ledger: its type and a hash of its
    text, never the text (an artifact could put anything there - a key it read)."""
    import hashlib

    try:
        text = str(exc)
    except Exception:  # noqa: BLE001
        text = ""
    return f"{type(exc).__name__} (message withheld, sha256 {hashlib.sha256(text.encode(errors='replace')).hexdigest()[:16]})"


def _num(v: Any, kind: type) -> Any:
    return v if type(v) is kind or (kind is float and type(v) is int) else None


def reported_of(t: optuna.trial.FrozenTrial) -> Reported:
    """What the worker (or whoever wrote the storage) claims, bounded and typed."""
    ua = t.user_attrs
    params = ua.get("params")
    if not isinstance(params, dict) or len(json.dumps(params, default=str)) > 4000:
        params = None
    claimed = t.value if t.state == TS.COMPLETE and isinstance(t.value, (int, float)) else None
    return Reported(params=params, claimed=claimed, steps=_num(ua.get("steps"), int),
                    train_seed=_num(ua.get("train_seed"), int), worker=clip_text(ua.get("worker")),
                    wall_s=_num(ua.get("wall_s"), float), artifact_sha256=clip_text(ua.get("artifact_hash"), 100),
                    proposer=clip_text(ua.get("proposer")), rationale=clip_text(ua.get("rationale")))


class Coordinator:
    def __init__(self, program_path: str | Path, study_dir=None, storage: str | None = None,
                 registry_dir=None) -> None:
        self.program = load_program(program_path)
        self.spec = self.program.spec
        self.dir = study_dir_for(self.program, study_dir)
        self.url = storage_url(self.dir, storage)
        self.ledger = Ledger(self.dir / "ledger.jsonl")
        self.store = ArtifactStore(self.dir / "store")
        self.registry_dir = registry_dir
        self.plan = gate.plan_for(self.spec)
        self.state_path = self.dir / "coordinator.json"
        self._lock_fd: int | None = None

    # ---- the ledger: creation, pin, repair -----------------------------------------------------
    def open_ledger(self) -> None:
        """Create the ledger (pinning the program), or repair + verify it and check the pin."""
        if self.ledger.path.is_dir():
            raise ConfigError(f"{self.ledger.path} is a directory, not a study's ledger")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.ledger.path.exists() or not self.ledger.path.stat().st_size:
            Ledger.create(self.ledger.path, dict(
                study=self.spec.name, program_sha256=self.program.sha256, spec_sha256=self.program.spec_sha256,
                program_text=self.program.text, smoke=smoke_mode(),
                created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
            return
        note = self.ledger.repair()
        self.ledger.verify()
        self.ledger.anchor_head()
        pin = self.ledger.records()[0]
        check_pinned(self.program, pin["program_sha256"], pin["spec_sha256"], f"the study in {self.dir}")
        if note:
            self.ledger.append(NoticeRecord(reason=note))
            console.print(f"[yellow]ledger[/yellow]: {note}")

    def check_pin(self) -> None:
        """Refuse a different program (read-only commands: status, report)."""
        pin = pinned_study(self.ledger.path)
        if pin:
            check_pinned(self.program, pin["program_sha256"], pin["spec_sha256"], f"the study in {self.dir}")

    def lock(self) -> None:
        """One coordinator per study: a second one (or a promote during a run) is refused."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = trusted_study_path(self.ledger.path, ".lock")  # not in the study dir: workers write there
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SimgateError(f"{self.dir}: another coordinator holds this study (lock {path})") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def derived(self) -> StudyState:
        return derive_state(self.ledger.records(), self.spec)

    @property
    def state(self) -> dict[str, Any]:
        """For people and older callers: the derived state as a dict (``incumbent`` = trial number)."""
        s = self.derived
        return {"incumbent": s.incumbent.trial if s.incumbent else None, "noise_floor": s.noise_floor,
                "promotion_attempts": s.promotion_attempts}

    def _write_cache(self, elapsed_s: float) -> None:
        update_anchor(self.ledger.path, elapsed_s=elapsed_s)  # the budget, on the trusted side
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"elapsed_s": elapsed_s, **self.state,
                                   "note": "a cache for people: the coordinator derives its state from the ledger"},
                                  indent=2))
        tmp.replace(self.state_path)

    def _elapsed(self) -> float:
        """The study's elapsed wall-clock budget, from its trusted anchor (never coordinator.json)."""
        v = (read_anchor(self.ledger.path) or {}).get("elapsed_s", 0.0)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 else 0.0

    # ---- the gate ----------------------------------------------------------------------------
    def judge_finished(self, study: optuna.Study) -> int:
        judged = 0
        for t in sorted(study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.PRUNED, TS.FAIL)),
                        key=lambda t: t.number):
            if t.number in self.derived.judged:
                continue
            self._record(t)
            judged += 1
        return judged

    def _role(self, t: optuna.trial.FrozenTrial, rep: Reported) -> str:
        ok = t.number in BASELINE_TRIALS and rep.params == baseline_params(self.spec)
        return "baseline" if ok else "search"

    def _record(self, t: optuna.trial.FrozenTrial) -> None:
        state = self.derived
        rep = reported_of(t)
        role = self._role(t, rep)
        try:
            status, reason, verified = self._verdict(t, rep, role, state)
        except (StoreError, UnsafeArtifact) as exc:  # simgate's own messages
            status, reason, verified = "rejected", f"artifact refused: {exc}", Verified()
        except Exception as exc:  # noqa: BLE001 - a forged or broken trial is rejected, never fatal
            status, reason, verified = "rejected", f"could not be judged: {untrusted_error(exc)}", Verified()
        self._record_notes(t.number)
        rec = TrialRecord(trial=t.number, status=status, reason=clip_text(reason), role=role,
                          parent=state.incumbent.trial if state.incumbent else None, verified=verified, reported=rep,
                          code=code_version(), libraries=library_versions())
        self.ledger.append(rec)
        console.print(f"trial {t.number}: [bold]{status}[/bold] - {reason}")

    def _verdict(self, t, rep: Reported, role: str, state: StudyState) -> tuple[str, str, Verified]:
        ua = t.user_attrs
        if t.state == TS.PRUNED:
            return "pruned", "stopped early by the pruner (intermediate selection evaluations)", Verified()
        if t.state == TS.FAIL:
            if ua.get("refused"):
                return "rejected", f"refused by the worker: {clip_text(ua.get('reason'), 400)}", Verified()
            if ua.get("cut_by_deadline"):
                return "cut", clip_text(ua.get("reason"), 400) or "cut at the deadline", Verified()
            return "crash", clip_text(ua.get("reason"), 400) or "worker lost (no heartbeat): re-queued", Verified()
        try:
            params = validate_params(self.spec, rep.params)
        except ValueError as exc:
            return "rejected", f"outside the pinned search space: {exc}", Verified()
        if rep.claimed is None or not math.isfinite(rep.claimed):
            return "rejected", "no finite claimed score", Verified(params=params)
        try:
            sha, lsha = self.store.ingest(self.dir / "trials" / f"{t.number:04d}" / "policy.ts")
        except StoreError as exc:
            return "rejected", f"no usable artifact: {exc}", Verified(params=params)
        try:
            cand = _Checkout(self.store, sha, lsha).__enter__()
        except (StoreError, UnsafeArtifact) as exc:
            return "rejected", f"artifact refused before running: {exc}", Verified(
                artifact_sha256=sha, layout_sha256=lsha, params=params)
        with cand:
            base = dict(artifact_sha256=sha, layout_sha256=lsha, params=params)
            if state.incumbent is None:
                v = gate.judge(self.plan, rep.claimed, cand.policy, None, self._evaluate, self._threshold(state))
                return v.status, v.reason, Verified(**base, **v.verified)
            inc = state.incumbent
            with _Checkout(self.store, inc.artifact_sha256, inc.layout_sha256) as incp:
                v = gate.judge(self.plan, rep.claimed, cand.policy, incp.policy, self._evaluate, self._threshold(state))
            extra: dict[str, Any] = {"incumbent": inc.trial}
            if (role == "baseline" and inc.trial in BASELINE_TRIALS and state.noise_floor is None
                    and v.verified.get("delta") is not None):
                extra["noise_floor"] = abs(v.verified["delta"])  # two baselines, the same secret seeds
            return v.status, v.reason, Verified(**base, **v.verified, **extra)

    def _record_notes(self, trial: int | None = None) -> None:
        for note in self.store.take_notes():
            self.ledger.append(NoticeRecord(reason=clip_text(note), trial=trial))
            console.print(f"[yellow]store[/yellow]: {note}")

    def _threshold(self, state: StudyState) -> float:
        return max(self.plan.min_improvement, min(state.noise_floor or 0.0, self.plan.noise_floor_cap))

    def _evaluate(self, policy, seeds: list[int]) -> list[float]:
        from simgate.policies.evaluation import evaluate

        res = evaluate(policy, self.spec.task.env_id, seeds, self.spec.metric.env_kwargs())  # the metric's conditions
        return [float(x) for x in (res.per_episode_success if self.plan.binary else res.per_episode_return)]

    # ---- the run -----------------------------------------------------------------------------
    def run(self, workers: int = 2, auto_promote: bool | None = None, progress: bool = True,
            executor: str = "local", ray_address: str | None = None) -> dict:
        """``executor="local"``: worker processes on this machine; ``"ray"``: worker tasks on a Ray
        cluster. ``workers=0``: judge only (workers join from elsewhere with `research worker`)."""
        self.lock()
        try:
            return self._run(workers, auto_promote, progress, executor, ray_address)
        finally:
            self.unlock()

    def _open_study(self) -> optuna.Study:
        self.open_ledger()
        shutil.copyfile(self.program.path, self.dir / "program.md")
        study = open_study(self.spec, self.url, create=True)  # created before any worker joins
        for a in PIN_ATTRS:
            want = self.program.sha256 if a == "program_sha256" else self.program.spec_sha256
            if study.user_attrs.get(a) != want:
                study.set_user_attr(a, want)
        study.set_user_attr(HEARTBEAT_ATTR, time.time())
        return study

    def _start_workers(self, workers: int, executor: str, ray_address: str | None, deadline: float) -> list:
        if workers == 0:
            return []
        if executor == "ray":
            return _RayWorkers(workers, ray_address, (str(Path(self.program.path).resolve()), str(self.dir.resolve()),
                                                      self.url, deadline))
        if executor != "local":
            raise ConfigError(f"executor must be 'local' or 'ray', got {executor!r}")
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=worker_loop, args=(self.program.path, str(self.dir), self.url, deadline, f"local-{i}"),
                             daemon=True, name=f"simgate-research-{i}") for i in range(workers)]
        for p in procs:
            p.start()
            time.sleep(0.5)  # stagger the first asks
        return procs

    def _done(self, study: optuna.Study, procs: list, deadline: float) -> bool:
        if procs:
            return not any(p.is_alive() for p in procs)
        open_ = study.get_trials(deepcopy=False, states=(TS.RUNNING, TS.WAITING))
        return time.time() > deadline or (count_trials(study) >= self.spec.budgets.max_trials and not open_)

    def _run(self, workers, auto_promote, progress, executor, ray_address) -> dict:
        spec = self.spec
        study = self._open_study()
        optuna.storages.fail_stale_trials(study)  # after a crash: re-queue what was running
        self._requeue_orphans(study)
        if not study.trials:
            enqueue_study_start(study, spec)
        elapsed = self._elapsed()
        t_start = time.monotonic()
        deadline = time.time() + max(0.0, spec.budgets.total_wall_s - elapsed)
        stop_beat = _coordinator_heartbeat(self.spec, self.url)
        procs = self._start_workers(workers, executor, ray_address, deadline)
        try:
            with Live(self._view(study, deadline), console=console, refresh_per_second=1, transient=not progress) as live:
                while not self._done(study, procs, deadline):
                    optuna.storages.fail_stale_trials(study)  # dead workers' trials: FAIL + re-queue
                    self.judge_finished(study)
                    self._write_cache(elapsed + time.monotonic() - t_start)
                    live.update(self._view(study, deadline))
                    time.sleep(1.0)
            optuna.storages.fail_stale_trials(study)
            self.judge_finished(study)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join(timeout=10)
            stop_beat.set()
            self._write_cache(elapsed + time.monotonic() - t_start)
        promoted = None
        if auto_promote if auto_promote is not None else spec.promotion.auto_promote:
            promoted = self._promote_locked()
        from simgate.autoresearch.report import write_report

        report = write_report(self.dir, self.spec)
        return {**self.summary(), "promoted": promoted, "report": str(report)}

    def _requeue_orphans(self, study: optuna.Study) -> None:
        """Trials left RUNNING by this machine's previous coordinator (its local or Ray workers died
        with it) are failed and re-queued with the same parameters now, not after the heartbeat
        grace period. Trials of `simgate research worker` processes elsewhere are left to their
        heartbeats."""
        for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,)):
            ua = t.user_attrs
            if not str(ua.get("worker", "")).startswith(("local-", "ray-")):
                continue
            study._storage.set_trial_user_attr(t._trial_id, "reason", "worker lost when the coordinator stopped: "
                                                                      "re-queued with the same parameters")
            study._storage.set_trial_state_values(t._trial_id, TS.FAIL)
            keep = {k: v for k, v in ua.items() if k in ("role", "proposer", "rationale", "candidate_id")}
            try:
                enc = encode_for_enqueue(self.spec, ua.get("params", {}))
            except ValueError:
                continue  # not re-queued: outside the space (its FAIL is recorded)
            study.enqueue_trial(enc, user_attrs={**keep, "requeued_from": t.number})

    def _view(self, study: optuna.Study, deadline: float) -> Table:
        trials = study.get_trials(deepcopy=False)
        recs = self.ledger.latest_by_trial()
        tab = Table(title=f"research: {self.spec.name}")
        for c in ("done", "running", "kept", "rejected", "incumbent", "fresh", "time left"):
            tab.add_column(c)
        inc = self.derived.incumbent
        inc_fresh = recs[inc.trial]["verified"].get("fresh") if inc is not None else None
        tab.add_row(str(len(recs)), str(sum(t.state == TS.RUNNING for t in trials)),
                    str(sum(r["status"] == "keep" for r in recs.values())),
                    str(sum(r["status"] == "rejected" for r in recs.values())),
                    "-" if inc is None else str(inc.trial), "-" if inc_fresh is None else f"{inc_fresh:.3f}",
                    f"{max(0, deadline - time.time()):.0f} s")
        return tab

    def summary(self) -> dict:
        """Counts and the incumbent (no secret seeds: those are in the ledger with each verdict)."""
        self.check_pin()
        recs = [r for r in self.ledger.records() if r.get("kind") == "trial"]
        by = {s: sum(r["status"] == s for r in recs) for s in ("keep", "discard", "rejected", "crash", "pruned", "cut")}
        try:
            n = self.ledger.verify()
        except LedgerError as exc:
            n = f"DOES NOT VERIFY: {exc}"
        s = self.derived
        return {"trials": len(recs), **by, "incumbent": s.incumbent.trial if s.incumbent else None,
                "noise_floor": s.noise_floor, "promotion_attempts": s.promotion_attempts,
                "ledger": str(self.ledger.path), "ledger_records": n}

    # ---- promotion ---------------------------------------------------------------------------
    def promote(self) -> dict | None:
        no_ledger = not self.ledger.path.exists() or not self.ledger.path.stat().st_size  # open_ledger would create one
        if no_ledger and self.ledger.anchor() is None:  # an anchored one: open_ledger names it
            raise ConfigError(f"no study in {self.dir} (no ledger): run `simgate research run` first, "
                              "or pass the study's --study-dir")
        self.lock()
        try:
            self.open_ledger()
            return self._promote_locked()
        finally:
            self.unlock()

    def _promote_locked(self) -> dict | None:
        from simgate.autoresearch.promote import promote_incumbent

        res = promote_incumbent(self)
        self._write_cache(self._elapsed())  # the people's cache shows the attempt too
        return res


class _Checkout:
    """A hash-checked private copy of stored bytes, loaded as a policy; removed on exit."""

    def __init__(self, store: ArtifactStore, sha: str, layout_sha: str) -> None:
        self.store, self.sha, self.lsha = store, sha, layout_sha

    def __enter__(self) -> _Checkout:
        from simgate.policies.export import load_checked_policy

        self.tmp = private_dir("simgate-judge-")
        try:
            self.path = self.store.checkout(self.sha, self.lsha, self.tmp)
            self.policy = load_checked_policy(self.path)  # nothing in it runs before the allow-list check
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _coordinator_heartbeat(spec, url: str) -> threading.Event:
    """Tell standalone workers on the storage that a coordinator is judging (they stop when it goes)."""
    stop = threading.Event()

    def beat() -> None:
        study = open_study(spec, url, create=False)
        while not stop.is_set():
            try:
                study.set_user_attr(HEARTBEAT_ATTR, time.time())
            except Exception:  # noqa: BLE001 - a busy SQLite file: next beat
                pass
            stop.wait(5.0)

    threading.Thread(target=beat, daemon=True, name="simgate-coordinator-heartbeat").start()
    return stop


__all__ = ["Coordinator", "StudyRecord", "baseline_params", "study_dir_for", "submit_candidate"]
