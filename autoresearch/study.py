"""Optuna plumbing: storage, samplers (proposers), suggesting a program's search space
(including conditional parameters), and the external-proposer queue.

Storage: SQLite in the study directory by default (Optuna's RDB storage: heartbeats, so a trial
whose worker was killed is failed and re-queued with the same parameters), or any URL Optuna
accepts (``postgresql://...`` for many machines). The study is always created before workers
start (two processes creating one SQLite study at once crash).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import optuna

from simgate.autoresearch.program import ProgramSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

HEARTBEAT_S = float(os.environ.get("SIMGATE_HEARTBEAT_S", 5))
GRACE_S = float(os.environ.get("SIMGATE_HEARTBEAT_GRACE_S", 20))


def storage_url(study_dir: Path, storage: str | None = None) -> str:
    return storage or f"sqlite:///{(study_dir / 'optuna.db').resolve()}"


def make_storage(url: str):
    """RDB storage with heartbeats: a RUNNING trial whose worker stopped beating is failed and
    re-queued with the same parameters (at most twice)."""
    import warnings

    from optuna.storages import RDBStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from optuna.storages import RetryHeartbeatStaleTrialCallback

            retry = {"heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=2)}
        except ImportError:  # Optuna < 4.9
            from optuna.storages import RetryFailedTrialCallback

            retry = {"failed_trial_callback": RetryFailedTrialCallback(max_retry=2)}
        return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, **retry,
                          engine_kwargs={"connect_args": {"timeout": 30}} if url.startswith("sqlite") else None)


def make_sampler(spec: ProgramSpec, seed: int = 0):
    p = spec.proposer
    if p.sampler == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=p.n_startup_trials, seed=seed, multivariate=True,
                                          group=True, constant_liar=True)
    if p.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(n_startup_trials=p.n_startup_trials, seed=seed)
    if p.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    grid = {}
    for name, prm in spec.search_space.items():
        if prm.type == "categorical":
            grid[name] = [repr(c) for c in prm.choices]  # suggest() encodes categoricals so
        else:
            import numpy as np

            n = 3
            vals = np.geomspace(prm.low, prm.high, n) if prm.log else np.linspace(prm.low, prm.high, n)
            grid[name] = [int(round(v)) for v in vals] if prm.type == "int" else [float(v) for v in vals]
    return optuna.samplers.GridSampler(grid, seed=seed)


def random_seed() -> int:
    """A sampler seed per process: parallel workers must not propose identical trials."""
    import secrets

    return secrets.randbits(31)


def open_study(spec: ProgramSpec, url: str, create: bool = True, seed: int | None = None) -> optuna.Study:
    storage = make_storage(url)
    seed = random_seed() if seed is None else seed
    direction = "maximize" if spec.metric.direction == "maximize" else "minimize"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if spec.proposer.prune else optuna.pruners.NopPruner()
    if create:
        return optuna.create_study(study_name=spec.name, storage=storage, direction=direction,
                                   sampler=make_sampler(spec, seed), pruner=pruner, load_if_exists=True)
    return optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(spec, seed), pruner=pruner)


def suggest(trial: optuna.Trial, spec: ProgramSpec) -> dict[str, Any]:
    """Sample the search space; conditional parameters only when their ``when`` holds.
    Categorical choices that are lists (e.g. network sizes) are passed to Optuna as strings."""
    params: dict[str, Any] = {}
    pending = dict(spec.search_space)
    for _ in range(len(pending) + 1):
        for name, prm in list(pending.items()):
            if prm.when and not all(d in params for d in prm.when):
                continue
            del pending[name]
            if prm.when and any(params[d] != v for d, v in prm.when.items()):
                continue
            if prm.type == "float":
                params[name] = trial.suggest_float(name, prm.low, prm.high, log=prm.log, step=prm.step)
            elif prm.type == "int":
                params[name] = trial.suggest_int(name, int(prm.low), int(prm.high), log=prm.log,
                                                 step=int(prm.step or 1))
            else:
                enc = {repr(c): c for c in prm.choices}
                params[name] = enc[trial.suggest_categorical(name, list(enc))]
    return params


def encode_for_enqueue(spec: ProgramSpec, params: dict[str, Any], complete: bool = False) -> dict[str, Any]:
    """Map proposed values (checked strictly against the space) to what ``suggest`` reads back
    (categoricals as repr). Raises ValueError naming the parameter."""
    from simgate.autoresearch.program import validate_params

    params = validate_params(spec, params, complete=complete)
    return {k: repr(v) if spec.search_space[k].type == "categorical" else v for k, v in params.items()}


# ---- the study's pin and the coordinator's liveness, as seen by workers (storage attributes) ----
PIN_ATTRS = ("program_sha256", "spec_sha256")
HEARTBEAT_ATTR = "coordinator_heartbeat"
COORDINATOR_STALE_S = float(os.environ.get("SIMGATE_COORDINATOR_STALE_S", 60))


def coordinator_alive(study: optuna.Study) -> bool:
    import time

    beat = study.user_attrs.get(HEARTBEAT_ATTR)
    return isinstance(beat, (int, float)) and time.time() - beat < COORDINATOR_STALE_S
