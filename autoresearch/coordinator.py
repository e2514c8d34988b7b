"""The coordinator: creates the study, measures the noise floor (the baseline trained twice),
starts local worker processes, judges every finished trial with the trusted gate, writes one
ledger record per trial, promotes the winner, writes the report. Killed at any point, it
resumes: finished trials already in the ledger are skipped (never recorded twice), trials
whose worker died are failed by Optuna's heartbeat and re-queued with the same parameters.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console
from rich.live import Live
from rich.table import Table

from simgate.autoresearch.gate import judge
from simgate.autoresearch.ledger import Ledger
from simgate.autoresearch.program import Program, load_program
from simgate.autoresearch.study import encode_for_enqueue, open_study, storage_url
from simgate.autoresearch.worker import worker_loop
from simgate.policies.provenance import code_version, library_versions

console = Console(stderr=True)
TS = optuna.trial.TrialState


def study_dir_for(program: Program, study_dir: str | Path | None = None) -> Path:
    return Path(study_dir) if study_dir else Path("runs") / "research" / program.spec.name


def baseline_params(spec) -> dict[str, Any]:
    """The search-space parameters at the default recipe's values (clamped into the space)."""
    from simgate.policies.recipes import default_recipe

    rec = default_recipe(spec.task.env_id, **spec.base_recipe).model_dump()
    out: dict[str, Any] = {}
    for name, prm in spec.search_space.items():
        if prm.when and any(out.get(d, rec.get(d)) != v for d, v in prm.when.items()):
            continue
        v = rec[name]
        if prm.type == "categorical":
            out[name] = v if v in prm.choices else prm.choices[0]
        else:
            v = min(prm.high, max(prm.low, v))
            out[name] = int(round(v)) if prm.type == "int" else float(v)
    return out


def submit_candidate(program_path: str | Path, params: dict, rationale: str, study_dir=None, storage=None) -> None:
    """External-proposer API: queue a candidate (an agent's or a person's) with its rationale.
    The same gate judges it."""
    program = load_program(program_path)
    sd = study_dir_for(program, study_dir)
    sd.mkdir(parents=True, exist_ok=True)
    study = open_study(program.spec, storage_url(sd, storage), create=True)
    study.enqueue_trial(encode_for_enqueue(program.spec, params),
                        user_attrs={"proposer": "external", "rationale": rationale})


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


class Coordinator:
    def __init__(self, program_path: str | Path, study_dir=None, storage: str | None = None,
                 registry_dir=None) -> None:
        self.program = load_program(program_path)
        self.spec = self.program.spec
        self.dir = study_dir_for(self.program, study_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = storage_url(self.dir, storage)
        self.ledger = Ledger(self.dir / "ledger.jsonl")
        self.registry_dir = registry_dir
        self.state_path = self.dir / "coordinator.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {
            "elapsed_s": 0.0, "incumbent": None, "noise_floor": None, "baseline_fresh": {}}

    # ---- bookkeeping -------------------------------------------------------------------------
    def _save_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        tmp.replace(self.state_path)

    def _ledgered(self) -> set[int]:
        return {r["trial"] for r in self.ledger.records() if "trial" in r and r.get("kind") == "trial"}

    def _policy(self, trial_number: int):
        from simgate.policies.export import TorchPolicy

        return TorchPolicy(self.dir / "trials" / f"{trial_number:04d}" / "policy.ts")

    # ---- the gate ----------------------------------------------------------------------------
    def judge_finished(self, study: optuna.Study) -> int:
        done = self._ledgered()
        judged = 0
        for t in sorted(study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.PRUNED, TS.FAIL)), key=lambda t: t.number):
            if t.number in done:
                continue
            self._judge_one(t)
            judged += 1
        return judged

    def _judge_one(self, t: optuna.trial.FrozenTrial) -> None:
        ua = t.user_attrs
        incumbent = self.state["incumbent"]
        metrics: dict[str, Any] = {}
        if t.state == TS.PRUNED:
            status, reason = "pruned", "stopped early by the pruner (intermediate selection evaluations)"
            metrics = {"intermediate": {str(k): v for k, v in t.intermediate_values.items()}}
        elif t.state == TS.FAIL and ua.get("cut_by_deadline"):
            status, reason = "cut", ua["reason"]
        elif t.state == TS.FAIL:
            status = "crash"
            reason = ua.get("reason") or "worker lost (no heartbeat): re-queued with the same parameters"
        else:
            inc_pol = self._policy(incumbent) if incumbent is not None else None
            v = judge(self.spec, t.number, float(t.value), self._policy(t.number), inc_pol,
                      self.state["noise_floor"] or 0.0)
            status, reason, metrics = v.status, v.reason, v.metrics
            if ua.get("role") == "baseline" and status != "rejected":
                self.state["baseline_fresh"][str(t.number)] = metrics["fresh"]
                if len(self.state["baseline_fresh"]) >= 2 and self.state["noise_floor"] is None:
                    a, b = list(self.state["baseline_fresh"].values())[:2]
                    self.state["noise_floor"] = abs(a - b)
            if status == "keep":
                self.state["incumbent"] = t.number
        rec = {
            "kind": "trial", "trial": t.number, "parent": incumbent,
            "params": ua.get("params", t.params), "role": ua.get("role", "search"),
            "proposer": ua.get("proposer", self.spec.proposer.sampler), "rationale": ua.get("rationale"),
            "worker": ua.get("worker"), "code": code_version(), "libraries": library_versions(),
            "seeds": {"train": ua.get("train_seed"), "selection": [1_000_000, self.spec.acceptance.selection_episodes]},
            "metrics": metrics, "status": status, "reason": reason, "artifact_hash": ua.get("artifact_hash"),
            "steps": ua.get("steps"), "wall_s": ua.get("wall_s"), "noise_floor": self.state["noise_floor"],
        }
        self.ledger.append(rec)
        self._save_state()
        console.print(f"trial {t.number}: [bold]{status}[/bold] - {reason}")

    # ---- the run -----------------------------------------------------------------------------
    def run(self, workers: int = 2, auto_promote: bool | None = None, progress: bool = True,
            executor: str = "local", ray_address: str | None = None) -> dict:
        """``executor="local"``: worker processes on this machine; ``"ray"``: worker tasks on a Ray
        cluster (``ray_address``; none = start a local head). Ray workers need storage they can
        all reach (PostgreSQL) unless the cluster is this one machine."""
        spec = self.spec
        shutil.copyfile(self.program.path, self.dir / "program.md")
        study = open_study(spec, self.url, create=True)  # created before any worker joins
        optuna.storages.fail_stale_trials(study)  # after a crash: re-queue what was running
        self._requeue_orphans(study)
        if not study.trials:
            for _ in range(2):  # the noise floor: the baseline, trained twice
                study.enqueue_trial(encode_for_enqueue(spec, baseline_params(spec)), user_attrs={"role": "baseline"})
        remaining = spec.budgets.total_wall_s - self.state["elapsed_s"]
        t_start = time.monotonic()
        deadline = time.time() + max(0.0, remaining)
        if executor == "ray":
            procs = _RayWorkers(workers, ray_address, (str(Path(self.program.path).resolve()), str(self.dir.resolve()),
                                                       self.url, deadline))
        elif executor == "local":
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=worker_loop, args=(self.program.path, str(self.dir), self.url, deadline, f"local-{i}"),
                                 daemon=True, name=f"simgate-research-{i}") for i in range(workers)]
            for p in procs:
                p.start()
                time.sleep(0.5)  # stagger the first asks
        else:
            raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
        try:
            with Live(self._view(study, deadline), console=console, refresh_per_second=1, transient=not progress) as live:
                while any(p.is_alive() for p in procs):
                    optuna.storages.fail_stale_trials(study)  # dead workers' trials: FAIL + re-queue
                    self.judge_finished(study)
                    self.state["elapsed_s"] += time.monotonic() - t_start
                    t_start = time.monotonic()
                    self._save_state()
                    live.update(self._view(study, deadline))
                    time.sleep(1.0)
            self.judge_finished(study)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join(timeout=10)
            self.state["elapsed_s"] += time.monotonic() - t_start
            self._save_state()
        promoted = None
        if auto_promote if auto_promote is not None else spec.promotion.auto_promote:
            promoted = self.promote()
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
            keep = {k: v for k, v in ua.items() if k in ("role", "proposer", "rationale")}
            study.enqueue_trial(encode_for_enqueue(self.spec, ua.get("params", t.params)),
                                user_attrs={**keep, "requeued_from": t.number})

    def _view(self, study: optuna.Study, deadline: float) -> Table:
        trials = study.get_trials(deepcopy=False)
        recs = self.ledger.latest_by_trial()
        tab = Table(title=f"research: {self.spec.name}")
        for c in ("done", "running", "kept", "rejected", "incumbent", "fresh", "time left"):
            tab.add_column(c)
        inc = self.state["incumbent"]
        inc_fresh = recs.get(inc, {}).get("metrics", {}).get("fresh") if inc is not None else None
        tab.add_row(str(len(recs)), str(sum(t.state == TS.RUNNING for t in trials)),
                    str(sum(r["status"] == "keep" for r in recs.values())),
                    str(sum(r["status"] == "rejected" for r in recs.values())),
                    "-" if inc is None else str(inc), "-" if inc_fresh is None else f"{inc_fresh:.3f}",
                    f"{max(0, deadline - time.time()):.0f} s")
        return tab

    def summary(self) -> dict:
        recs = [r for r in self.ledger.records() if r.get("kind") == "trial"]
        by = {s: sum(r["status"] == s for r in recs) for s in ("keep", "discard", "rejected", "crash", "pruned", "cut")}
        return {"trials": len(recs), **by, "incumbent": self.state["incumbent"], "noise_floor": self.state["noise_floor"],
                "ledger": str(self.ledger.path), "ledger_records": self.ledger.verify()}

    # ---- promotion ---------------------------------------------------------------------------
    def promote(self) -> dict | None:
        from simgate.policies.evaluation import evaluate, seeds_for
        from simgate.policies.promotion import env_spec
        from simgate.policies.registry import Registry

        inc = self.state["incumbent"]
        if inc is None:
            self.ledger.append({"kind": "promotion", "status": "refused", "reason": "no kept trial"})
            return None
        rec = self.ledger.latest_by_trial()[inc]
        pol, pr = self._policy(inc), self.spec.promotion
        hold = evaluate(pol, self.spec.task.env_id, seeds_for("holdout", pr.holdout_episodes))
        robust = evaluate(pol, self.spec.task.env_id, seeds_for("holdout", pr.holdout_episodes), {"randomization": "preset"})
        problems = []
        if hold.success_rate < pr.min_holdout_success:
            problems.append(f"holdout success {hold.success_rate:.3f} < {pr.min_holdout_success}")
        if robust.success_rate < pr.min_robust_success:
            problems.append(f"robust success {robust.success_rate:.3f} < {pr.min_robust_success}")
        if hold.self_collision_steps > pr.max_safety_violations:
            problems.append(f"{hold.self_collision_steps} self-collision steps > {pr.max_safety_violations}")
        entry = {"kind": "promotion", "trial": None, "candidate": inc, "holdout": hold.summary(),
                 "robustness": robust.summary()}
        if problems:
            self.ledger.append({**entry, "status": "refused", "reason": "; ".join(problems)})
            console.print(f"[yellow]promotion refused[/yellow]: {'; '.join(problems)}")
            return None
        trial_dir = self.dir / "trials" / f"{inc:04d}"
        run_cfg = json.loads((trial_dir / "run.json").read_text()) if (trial_dir / "run.json").exists() else {}
        import yaml

        meta = {**env_spec(self.spec.task.env_id), "holdout": hold.summary(),
                "robustness": {"randomization": "preset", **robust.summary()},
                "training": {"config": yaml.safe_load((trial_dir / "config.yaml").read_text()),
                             "steps": run_cfg.get("steps"), "wall_s": run_cfg.get("wall_s")},
                "ledger_entry": {"path": str(self.ledger.path), "seq": rec["seq"], "hash": rec["hash"], "trial": inc},
                "study": self.spec.name}
        digest = Registry(self.registry_dir).promote(trial_dir / "policy.ts", meta, name=self.spec.name)
        self.ledger.append({**entry, "status": "promoted", "registry_id": digest,
                            "reason": f"holdout {hold.success_rate:.3f}, robust {robust.success_rate:.3f}"})
        console.print(f"[green]promoted[/green] trial {inc} as {digest[:12]} (holdout {hold.success_rate:.3f})")
        return {"registry_id": digest, "trial": inc, "holdout_success": hold.success_rate,
                "robust_success": robust.success_rate}
