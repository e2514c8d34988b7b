"""A research worker - the *untrusted* half: asks the study for a candidate, trains it with
policies/ under the trial budget, evaluates it on the ``selection`` seeds (the only seeds a
proposer ever sees), and tells the study its claim. Nothing it reports is trusted: the
coordinator copies the artifact, re-checks the parameters and judges on secret seeds.

An honest worker still refuses what the trusted side would reject anyway: a program other than
the one the study pinned (both hashes named), a queued trial outside the search space (recorded
as refused, not trained). It exits when its coordinator dies (parent-death signal, a changed
parent pid, or a stale coordinator heartbeat on the storage) before it starts another trial.
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

from simgate.autoresearch.program import check_pinned, load_program, validate_params
from simgate.autoresearch.study import PIN_ATTRS, coordinator_alive, open_study, suggest

TRAIN_SEED_BASE = 7_000


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_seed(trial_number: int, study_seed: int = 0) -> int:
    """Trial n's training seed; the program's ``study_seed`` separates repeats of one study."""
    return TRAIN_SEED_BASE + 1000 * study_seed + trial_number


def _selection_episodes(spec) -> int:
    """PyBullet episodes per in-training evaluation, which picks the checkpoint a trial reports.
    A twin_ppo trial's only PyBullet contact before the gate: the program's selection_episodes (10
    episodes would pick noise); other trials evaluate the env they train in, cheaply, on 10."""
    return spec.acceptance.selection_episodes if spec.base_recipe.get("algo") == "twin_ppo" else 10


def trial_recipe(spec, params: dict, trial_number: int):
    """The recipe a trial trains (the audit re-trains exactly this from the reported params)."""
    from simgate.autoresearch.program import validate_params
    from simgate.autoresearch.train_ranges import fold_range_params
    from simgate.policies.recipes import default_recipe

    params = validate_params(spec, params)  # strict: no key outside the pinned space (init_from included)
    budget = spec.budgets
    return default_recipe(
        spec.task.env_id,
        **fold_range_params({**spec.base_recipe, **params, "robot": spec.task.robot,
                             "total_steps": budget.trial_env_steps, "seed": train_seed(trial_number, spec.study_seed),
                             "eval_every_steps": max(500, budget.trial_env_steps // 4),
                             "eval_episodes": _selection_episodes(spec),
                             "checkpoint_every_steps": 10 ** 9, "stop_at_success": None}),
    )


def run_one_trial(study: optuna.Study, spec, study_dir: Path, worker: str, deadline_ts: float) -> None:
    import torch

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
        _run(study, trial, spec, run_dir, worker, deadline_ts)
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
            if os.getppid() != parent and not _standalone():
                os._exit(3)  # the coordinator died: stop (this trial is re-queued on resume)
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception:  # noqa: BLE001 - the trial may have just finished
                pass
            stop.wait(HEARTBEAT_S)

    threading.Thread(target=beat, daemon=True, name="simgate-heartbeat").start()
    return stop


def _refuse(study, trial, reason: str) -> None:
    trial.set_user_attr("refused", True)
    trial.set_user_attr("reason", reason[:500])
    study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _run(study, trial, spec, run_dir: Path, worker: str, deadline_ts: float) -> None:
    from simgate.policies.evaluation import evaluate, seeds_for
    from simgate.policies.export import TorchPolicy
    from simgate.policies.train import train

    n = trial.number
    trial.set_user_attr("worker", worker)
    try:
        from simgate.autoresearch.revisions import proposal_spec

        params = validate_params(spec, suggest(trial, proposal_spec(spec, study, trial)))  # a revision narrows it
    except ValueError as exc:
        _refuse(study, trial, f"outside the search space: {exc}")
        return
    trial.set_user_attr("params", params)
    t0 = time.monotonic()
    budget = spec.budgets
    try:
        recipe = trial_recipe(spec, params, n)

        def on_eval(steps: int, success: float) -> bool:
            trial.report(success, steps)
            return trial.should_prune()

        wall = max(1.0, min(budget.trial_wall_s, deadline_ts - time.time()))
        run = train(recipe, run_dir, progress_bar=False, max_wall_s=wall, on_eval=on_eval,
                    eval_env_kwargs=spec.metric.env_kwargs())  # the pruner compares trials under one condition
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
        res = evaluate(TorchPolicy(policy_path), spec.task.env_id, seeds_for("selection", spec.acceptance.selection_episodes),
                       spec.metric.env_kwargs())  # the metric's conditions, as the gate judges
        value = res.success_rate if spec.metric.name == "success_rate" else res.mean_return
        trial.set_user_attr("artifact_hash", sha256_file(policy_path))
        trial.set_user_attr("wall_s", round(time.monotonic() - t0, 2))
        trial.set_user_attr("train_seed", train_seed(n, spec.study_seed))
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


def _standalone() -> bool:
    return os.environ.get("SIMGATE_STANDALONE_WORKER") == "1"


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the coordinator that started it dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def check_study_pin(program, study: optuna.Study) -> None:
    pin = [study.user_attrs.get(a) for a in PIN_ATTRS]
    if all(pin):
        check_pinned(program, pin[0], pin[1], f"study {study.study_name!r}")


def coordinator_gone(study: optuna.Study, parent: int, waited_s: float) -> bool:
    """Before each trial: is there still a coordinator to judge it?"""
    if not _standalone():
        return os.getppid() != parent
    if coordinator_alive(study):
        return False
    from simgate.autoresearch.study import COORDINATOR_STALE_S

    return waited_s >= COORDINATOR_STALE_S


def worker_loop(program_path: str, study_dir: str, storage: str, deadline_ts: float, worker: str | None = None) -> None:
    """Run trials until the trial count or the deadline is reached (entry point of worker processes
    and of `simgate research worker` on other machines)."""
    parent = os.getppid()
    if not _standalone():
        _die_with_parent()
    program = load_program(program_path)
    spec = program.spec
    study = open_study(spec, storage, create=False)
    check_study_pin(program, study)
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    sd = Path(study_dir)
    waited = 0.0
    while time.time() < deadline_ts - 1.0:
        if coordinator_gone(study, parent, waited):
            print(f"worker {worker}: the coordinator is gone; exiting", flush=True)
            return
        if not _standalone() or coordinator_alive(study):
            waited = 0.0
        else:
            waited += 1.0
            time.sleep(1.0)
            continue
        if count_trials(study) >= spec.budgets.max_trials and not study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                break
            time.sleep(1.0)  # a running trial may yet fail and be re-queued (heartbeats): wait for it
            continue
        run_one_trial(study, spec, sd, worker, deadline_ts)

