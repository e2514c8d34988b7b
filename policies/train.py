"""`simgate train`: SB3 / sb3-contrib training with progress, TensorBoard, periodic evaluation on
the harness's ``selection`` seeds, atomic checkpoints (model + replay buffer + normalization)
and resume after interruption (SIGINT saves a checkpoint, the next run continues from it).

Output directory layout:
  config.yaml          the recipe that ran
  run.json             device, library versions, code version, steps, wall time, evaluations
  eval.csv             steps, wall_s, selection success, mean return
  tb/                  TensorBoard logs
  checkpoints/         latest.zip, replay_buffer.pkl, vecnormalize.pkl, state.json
  model.zip            final SB3 model;  policy.ts (+ .json): TorchScript actor, torch only
"""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import yaml

from simgate.errors import ConfigError
from simgate.policies.evaluation import evaluate, seeds_for
from simgate.policies.export import SB3Policy, export_torchscript
from simgate.policies.provenance import code_version, library_versions
from simgate.policies.recipes import RecipeConfig
from simgate.policies.robot_meta import env_robot_meta


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class _Interrupt:
    def __init__(self) -> None:
        self.flag = False
        self._old = None

    def __enter__(self):
        self._old = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, *_):
        self.flag = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)


class _Progress:
    """Rich progress in absolute env steps (a resumed or fine-tuned run shows where it stands
    in the whole budget), with the rate and the last selection success; fits 80 columns."""

    def __init__(self, total: int, start: int, label: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=10), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]} {task.fields[success]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True))
        self.task = self.progress.add_task(label, total=total, completed=start, rate="", success="")
        self._last = (time.perf_counter(), start)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, steps: int, success: float | None = None) -> None:
        now = time.perf_counter()
        t0, s0 = self._last
        fields = {}
        if now - t0 >= 2.0:
            fields["rate"] = f"{(steps - s0) / (now - t0):.0f} steps/s"
            self._last = (now, steps)
        if success is not None:
            fields["success"] = f"selection {success:.0%}"
        self.progress.update(self.task, completed=steps, **fields)


def _algo_cls(algo: str):
    if algo == "sac":
        from stable_baselines3 import SAC

        return SAC
    if algo == "tqc":
        from sb3_contrib import TQC

        return TQC
    from stable_baselines3 import PPO

    return PPO


def make_training_env(cfg: RecipeConfig):
    from stable_baselines3.common.vec_env import VecNormalize

    from simgate.sim.sb3 import make_sb3_vec

    kwargs = {"randomization": cfg.randomization} if cfg.randomization else {}
    venv = make_sb3_vec(cfg.env_id, cfg.num_envs, cfg.num_workers, **kwargs)
    if cfg.normalize_obs:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False, gamma=cfg.gamma, epsilon=cfg.norm_obs_epsilon)
    return venv


def build_model(cfg: RecipeConfig, venv, device: str, tb_dir: str | None):
    cls = _algo_cls(cfg.algo)
    common = {"learning_rate": cfg.learning_rate, "gamma": cfg.gamma, "seed": cfg.seed, "device": device,
              "verbose": 0, "tensorboard_log": tb_dir}
    if cfg.algo == "ppo":
        return cls("MultiInputPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                   ent_coef=cfg.ent_coef, policy_kwargs={"net_arch": cfg.net_arch}, **common)
    kw = {"batch_size": cfg.batch_size, "tau": cfg.tau, "buffer_size": cfg.buffer_size,
          "learning_starts": cfg.learning_starts, "train_freq": cfg.train_freq, "gradient_steps": cfg.gradient_steps,
          "policy_kwargs": {"net_arch": cfg.net_arch, **({"n_critics": cfg.n_critics} if cfg.algo == "tqc" else {})}}
    if cfg.her_n_sampled_goal > 0:
        from stable_baselines3 import HerReplayBuffer

        kw["replay_buffer_class"] = HerReplayBuffer
        kw["replay_buffer_kwargs"] = {"n_sampled_goal": cfg.her_n_sampled_goal, "goal_selection_strategy": "future"}
    return cls("MultiInputPolicy", venv, **kw, **common)


def _init_dir(run: Path) -> Path:
    """The folder holding a run's latest.zip (+ replay buffer, normalization) to start from."""
    for d in (run / "checkpoints", run):
        if (d / "latest.zip").exists():
            return d
    raise ConfigError(f"init_from: no checkpoints/latest.zip in {run}")


def _load_checkpoint(cfg: RecipeConfig, ck: Path, venv, device: str):
    """Model (+ replay buffer, + VecNormalize statistics into ``venv``) from a checkpoint folder."""
    from stable_baselines3.common.vec_env import VecNormalize

    model = _algo_cls(cfg.algo).load(str(ck / "latest.zip"), env=venv, device=device)
    if (ck / "replay_buffer.pkl").exists() and hasattr(model, "load_replay_buffer"):
        model.load_replay_buffer(str(ck / "replay_buffer.pkl"))
    if isinstance(venv, VecNormalize) and (ck / "vecnormalize.pkl").exists():
        loaded = VecNormalize.load(str(ck / "vecnormalize.pkl"), venv.venv)
        venv.obs_rms, venv.ret_rms = loaded.obs_rms, loaded.ret_rms
    return model


def train(cfg: RecipeConfig, out_dir: str | Path, progress_bar: bool = True, max_wall_s: float | None = None,
          on_eval=None, eval_env_kwargs: dict | None = None) -> dict:
    """Train (or resume) into ``out_dir``. Returns run.json's content.

    Stops at ``cfg.total_steps`` env steps, at ``cfg.stop_at_success`` on the selection seeds,
    at ``max_wall_s``, when ``on_eval(steps, success)`` returns True (pruned), or on SIGINT
    (checkpoint saved; ``status`` says which). ``eval_env_kwargs``: the conditions of the periodic
    selection evaluations (default: the run's own randomization; a research trial passes its
    metric's conditions, twin_ppo keeps its own).
    """
    from simgate.policies.robot_meta import prepare_recipe_robot

    prepare_recipe_robot(cfg.env_id, cfg.robot)
    if cfg.algo == "twin_ppo":  # batched PPO in the torch twin, selected on PyBullet evaluations
        from simgate.policies.batched_ppo import train_twin

        return train_twin(cfg, out_dir, progress_bar, max_wall_s, on_eval)
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(cfg.torch_threads)
    out = Path(out_dir)
    ck = out / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    venv = make_training_env(cfg)
    resumed = (ck / "latest.zip").exists()
    state = json.loads((ck / "state.json").read_text()) if (ck / "state.json").exists() else {"evals": [], "wall_s": 0.0}
    if resumed:
        model = _load_checkpoint(cfg, ck, venv, device)
    elif cfg.init_from is not None:  # fine-tune: weights, replay buffer and normalization of another run
        model = _load_checkpoint(cfg, _init_dir(Path(cfg.init_from)), venv, device)
        model.tensorboard_log = str(out / "tb")
        state["init_from"] = {"run": str(cfg.init_from), "steps": int(model.num_timesteps)}
    else:
        model = build_model(cfg, venv, device, str(out / "tb"))
    vecnorm = venv if isinstance(venv, VecNormalize) else None
    eval_seeds = seeds_for("selection", cfg.eval_episodes)
    eval_kwargs = eval_env_kwargs if eval_env_kwargs is not None else (
        {"randomization": cfg.randomization} if cfg.randomization else None)
    t_start = time.perf_counter() - state["wall_s"]
    status = {"value": "completed"}

    def save_checkpoint() -> None:
        # each file is written aside and renamed into place: a kill never leaves half a file
        model.save(str(ck / "latest.tmp.zip"))
        os.replace(ck / "latest.tmp.zip", ck / "latest.zip")
        if hasattr(model, "save_replay_buffer"):
            model.save_replay_buffer(str(ck / "replay_buffer.tmp.pkl"))
            os.replace(ck / "replay_buffer.tmp.pkl", ck / "replay_buffer.pkl")
        if vecnorm is not None:
            _atomic(ck / "vecnormalize.pkl", lambda p: vecnorm.save(str(p)))
        state["wall_s"] = time.perf_counter() - t_start
        state["steps"] = int(model.num_timesteps)
        _atomic(ck / "state.json", lambda p: p.write_text(json.dumps(state, indent=2)))

    interrupt = _Interrupt()
    bar = _Progress(cfg.total_steps, int(model.num_timesteps), cfg.env_id.split("/")[-1]) if progress_bar else None

    class Hooks(BaseCallback):
        def _on_step(self) -> bool:
            n = self.model.num_timesteps
            if n % cfg.eval_every_steps < cfg.num_envs:
                vn = vecnorm
                if vn is not None:
                    vn.training = False
                # under the run's own randomization (the task being trained) unless told otherwise
                res = evaluate(SB3Policy(self.model, vn), cfg.env_id, eval_seeds, eval_kwargs)
                if vn is not None:
                    vn.training = True
                wall = time.perf_counter() - t_start
                state["evals"].append({"steps": int(n), "wall_s": round(wall, 2), "success": res.success_rate,
                                       "mean_return": res.mean_return})
                with open(out / "eval.csv", "a") as f:
                    f.write(f"{n},{wall:.2f},{res.success_rate:.4f},{res.mean_return:.4f}\n")
                self.logger.record("eval/selection_success", res.success_rate)
                if bar is not None:
                    bar.update(int(n), res.success_rate)
                if cfg.stop_at_success is not None and res.success_rate >= cfg.stop_at_success:
                    status["value"] = "solved"
                    return False
                if on_eval is not None and on_eval(int(n), res.success_rate):
                    status["value"] = "pruned"
                    return False
            if bar is not None and n % 100 < cfg.num_envs:
                bar.update(int(n))
            if n % cfg.checkpoint_every_steps < cfg.num_envs:
                save_checkpoint()
            # stop on a rollout boundary (train_freq x envs) so a resumed run lands on total_steps exactly
            chunk = (cfg.train_freq if cfg.algo != "ppo" else cfg.n_steps) * cfg.num_envs
            if interrupt.flag and n % chunk == 0:
                status["value"] = "interrupted"
                return False
            if max_wall_s is not None and time.perf_counter() - t_start > max_wall_s:
                status["value"] = "wall_clock_budget"
                return False
            if not np.all(np.isfinite(self.locals.get("rewards", 0.0))):
                raise FloatingPointError(f"non-finite reward at step {n}")
            return True

    continuing = resumed or cfg.init_from is not None
    remaining = max(0, cfg.total_steps - int(model.num_timesteps))
    try:
        with interrupt, bar or nullcontext():
            if remaining:
                model.learn(remaining, callback=Hooks(), reset_num_timesteps=not continuing, tb_log_name="run")
    finally:
        save_checkpoint()
        venv.close()
    run = {
        "status": status["value"], "env_id": cfg.env_id, "algo": cfg.algo, "device": device,
        "steps": int(model.num_timesteps), "wall_s": round(time.perf_counter() - t_start, 2),
        "resumed": resumed, "init_from": state.get("init_from"), "evals": state["evals"],
        "code": code_version(), "libraries": library_versions(),
        **env_robot_meta(cfg.env_id),  # robot_spec (name + hashes), observation_layout
    }
    if status["value"] != "interrupted":
        model.save(str(out / "model.zip"))
        if vecnorm is not None:
            vecnorm.save(str(out / "vecnormalize.pkl"))
        export_torchscript(model, out / "policy.ts", vecnorm)
    (out / "run.json").write_text(json.dumps(run, indent=2))
    if status["value"] == "interrupted":
        raise KeyboardInterrupt(f"training interrupted at {run['steps']} steps; checkpoint in {ck}")
    return run


def load_trained(run_dir: str | Path, model_file: str | Path | None = None):
    """(SB3 model, VecNormalize or None) of a run directory: its final ``model.zip``, or
    ``model_file`` (e.g. ``checkpoints/latest.zip`` of a run still training), with the
    normalization statistics saved next to that file (else the run's)."""
    from stable_baselines3.common.vec_env import VecNormalize

    from simgate.sim.sb3 import make_sb3_vec

    run_dir = Path(run_dir)
    model_file = Path(model_file) if model_file is not None else run_dir / "model.zip"
    cfg = RecipeConfig(**yaml.safe_load((run_dir / "config.yaml").read_text()))
    env = make_sb3_vec(cfg.env_id, 1, 1)  # HER models need an env to load
    model = _algo_cls(cfg.algo).load(str(model_file), env=env, device="cpu")
    vn = None
    stats = next((f for f in (model_file.parent / "vecnormalize.pkl", run_dir / "vecnormalize.pkl") if f.exists()), None)
    if stats is not None:
        vn = VecNormalize.load(str(stats), env)
        vn.training = False
    return model, vn
