"""A research worker: asks the study for a candidate, trains it with policies/ under the trial
budget, evaluates it with the shared harness on the ``selection`` seeds (the only seeds a
proposer ever sees), and tells the study. Crashes, divergence (NaN) and budget overruns are
recorded on the trial; the loop goes on. Intermediate evaluations feed Optuna's pruner.

Fault injection for tests: ``SIMGATE_FAULT_LIE=all|N,M`` makes this worker claim a selection
success of 1.0 for those trials (a lying worker; the trusted gate must catch it).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import traceback
from pathlib import Path

import optuna

from simgate.autoresearch.program import load_program
from simgate.autoresearch.study import open_study, suggest

TRAIN_SEED_BASE = 7_000


def _lies(number: int) -> bool:
    v = os.environ.get("SIMGATE_FAULT_LIE", "")
    return v == "all" or str(number) in v.split(",")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_one_trial(study: optuna.Study, spec, study_dir: Path, worker: str, deadline_ts: float) -> None:
    import torch

    from simgate.policies.evaluation import evaluate, seeds_for
    from simgate.policies.export import TorchPolicy
    from simgate.policies.recipes import default_recipe
    from simgate.policies.train import train

    torch.set_num_threads(1)
    trial = study.ask()
    run_dir = study_dir / "trials" / f"{trial.number:04d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:  # SQLite has no row locks: two workers can pop the same queued trial; one keeps it
        os.close(os.open(run_dir / "owner", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    stop_beat = _start_heartbeat(study, trial)
    try:
        _run(study, trial, spec, study_dir, worker, deadline_ts, train, evaluate, seeds_for, TorchPolicy, default_recipe)
    finally:
        stop_beat.set()


def _start_heartbeat(study: optuna.Study, trial: optuna.Trial) -> threading.Event:
    """Record a heartbeat for the running trial (ask/tell gets none from Optuna): a worker killed
    mid-trial stops beating and the coordinator fails and re-queues the trial."""
    from simgate.autoresearch.study import HEARTBEAT_S

    stop = threading.Event()
    storage = study._storage  # RDB storage (heartbeat-enabled)
    parent = os.getppid()

    def beat() -> None:
        while not stop.is_set():
            if os.getppid() != parent and os.environ.get("SIMGATE_STANDALONE_WORKER") != "1":
                os._exit(3)  # the coordinator died: stop (this trial is re-queued on resume)
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception:  # noqa: BLE001 - the trial may have just finished
                pass
            stop.wait(HEARTBEAT_S)

    threading.Thread(target=beat, daemon=True, name="simgate-heartbeat").start()
    return stop


def _run(study, trial, spec, study_dir, worker, deadline_ts, train, evaluate, seeds_for, TorchPolicy, default_recipe):
    params = suggest(trial, spec)
    n = trial.number
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("params", params)
    run_dir = study_dir / "trials" / f"{n:04d}"
    t0 = time.monotonic()
    budget = spec.budgets
    try:
        recipe = default_recipe(
            spec.task.env_id,
            **{**spec.base_recipe, **params,
               "total_steps": budget.trial_env_steps, "seed": TRAIN_SEED_BASE + n,
               "eval_every_steps": max(500, budget.trial_env_steps // 4), "eval_episodes": 10,
               "checkpoint_every_steps": 10 ** 9, "stop_at_success": None},
        )

        def on_eval(steps: int, success: float) -> bool:
            trial.report(success, steps)
            return trial.should_prune()

        wall = max(1.0, min(budget.trial_wall_s, deadline_ts - time.time()))
        run = train(recipe, run_dir, progress_bar=False, max_wall_s=wall, on_eval=on_eval)
        trial.set_user_attr("steps", run["steps"])
        if run["status"] == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        if run["status"] == "wall_clock_budget":
            if wall < budget.trial_wall_s:  # the study's deadline, not the trial's own budget, stopped it
                trial.set_user_attr("cut_by_deadline", True)
                trial.set_user_attr("reason", f"stopped at the study's deadline after {run['steps']} steps")
            else:
                trial.set_user_attr("reason", f"overran its wall-clock budget ({wall:.0f} s) at {run['steps']} steps")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        policy_path = run_dir / "policy.ts"
        res = evaluate(TorchPolicy(policy_path), spec.task.env_id, seeds_for("selection", spec.acceptance.selection_episodes))
        value = res.success_rate if spec.metric.name == "success_rate" else res.mean_return
        if _lies(n):
            value = 1.0 if spec.metric.name == "success_rate" else 0.0
        trial.set_user_attr("artifact", str(policy_path))
        trial.set_user_attr("artifact_hash", sha256_file(policy_path))
        trial.set_user_attr("wall_s", round(time.monotonic() - t0, 2))
        trial.set_user_attr("train_seed", TRAIN_SEED_BASE + n)
        study.tell(trial, value)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and the loop goes on
        kind = "diverged (non-finite values)" if isinstance(exc, FloatingPointError) or "nan" in str(exc).lower() else "crashed"
        trial.set_user_attr("reason", f"{kind}: {type(exc).__name__}: {exc}"[:500])
        trial.set_user_attr("traceback", traceback.format_exc()[-2000:])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def count_trials(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL,
              optuna.trial.TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=states))


def worker_loop(program_path: str, study_dir: str, storage: str, deadline_ts: float, worker: str | None = None) -> None:
    """Run trials until the trial count or the deadline is reached (entry point of worker processes
    and of `simgate research worker` on other machines)."""
    spec = load_program(program_path).spec
    study = open_study(spec, storage, create=False)
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    sd = Path(study_dir)
    while time.time() < deadline_ts - 1.0:
        if count_trials(study) >= spec.budgets.max_trials and not study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                break
            time.sleep(1.0)  # a running trial may yet fail and be re-queued (heartbeats): wait for it
            continue
        run_one_trial(study, spec, sd, worker, deadline_ts)
