"""PPO on the batched twin, judged by PyBullet (recipe ``algo: twin_ppo``).

Thousands of twin envs step together (``num_envs``); every iteration collects one rollout of
``n_steps`` steps per env, computes GAE on a shaped dense reward, and runs ``n_epochs`` epochs
of clipped PPO in minibatches of ``batch_size``. Actor and critic are separate ELU MLPs on
running-normalized observations; the critic also sees the episode's time step.

Shaped reward (the learner's, not the env's): Reach ``-d(tool, goal)``; Push
``-d(object, goal) - 0.2 d(tool, push point)`` with the push point 4.5 cm behind the object on
the side away from the goal, ``-0.1`` per step once the twin's tip rule fired; both ``+0.1`` on
success. With ``push_speed_limit_m_s`` Push also loses ``speed - limit`` per step while the
object slides faster than the limit (PyBullet tips boxes pushed fast; the planar twin cannot).

PyBullet is the judge: every ``eval_every_steps`` the deterministic actor runs on the PyBullet
env's ``selection`` seeds (and the twin's, for the gap); the best PyBullet evaluation is the
checkpoint that is exported (``policy.ts``, the same TorchScript actor as the SB3 runs) and
``stop_at_success`` counts PyBullet success only.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from simgate.policies.evaluation import evaluate, seeds_for
from simgate.policies.export import ExportedActor
from simgate.policies.ppo_graph import GraphedMinibatchStep, minibatch_step, set_capturable
from simgate.policies.recipes import RecipeConfig

OBS_KEYS = ["observation", "achieved_goal", "desired_goal"]
PUSH_POINT_BEHIND_M = 0.045
# Push observation: tool xyz, tool velocity, object xyz, object rpy, object velocity (x, y, z), ...
OBJECT_PLANAR_VEL = slice(12, 14)
CONSTANT_FEATURE_VAR = 1e-12  # no training batch varied the feature more than this: the twin holds it constant


def constant_feature_var(env) -> float:
    """A feature the twin holds constant still varies by the observation noise it trains under
    (std up to ``obs_noise_std.high``): below twice that noise it counts as constant."""
    rand = getattr(env, "randomization", None)
    noise = getattr(rand, "obs_noise_std", None) if rand is not None else None
    return max(CONSTANT_FEATURE_VAR, (2.0 * noise.high) ** 2) if noise is not None else CONSTANT_FEATURE_VAR


def mlp(n_in: int, hidden: list[int], n_out: int) -> tuple[nn.Sequential, nn.Linear]:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ELU()]
        n_in = h
    return nn.Sequential(*layers), nn.Linear(n_in, n_out)


class RunningNorm:
    """Running mean/variance of observation features (merged per batch)."""

    def __init__(self, n: int, device, var_floor: float = 1e-4, ignore_constant: bool = False,
                 constant_var: float = CONSTANT_FEATURE_VAR) -> None:
        self.var_floor, self.ignore_constant, self.constant_var = var_floor, ignore_constant, constant_var
        self.mean = torch.zeros(n, device=device)
        self.var = torch.ones(n, device=device)
        self.count = 1e-4
        self.max_batch_var = torch.zeros(n, device=device)

    def update(self, x: torch.Tensor) -> None:
        b_mean, b_var, b_n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        self.max_batch_var = torch.maximum(self.max_batch_var, b_var)
        tot = self.count + b_n
        delta = b_mean - self.mean
        self.mean = self.mean + delta * b_n / tot
        self.var = (self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / tot) / tot
        self.count = tot

    def std(self) -> torch.Tensor:
        std = torch.sqrt(self.var + self.var_floor)
        if self.ignore_constant:  # a feature that never varied in training reads 0 whatever its value
            std = torch.where(self.max_batch_var < self.constant_var, torch.full_like(std, 1e6), std)
        return std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / self.std(), -10.0, 10.0)


class ActorCritic(nn.Module):
    def __init__(self, n_obs: int, n_act: int, hidden: list[int]) -> None:
        super().__init__()
        self.body, self.head = mlp(n_obs, hidden, n_act)
        c_body, c_head = mlp(n_obs + 1, hidden, 1)
        self.critic = nn.Sequential(c_body, c_head)
        self.log_std = nn.Parameter(torch.full((n_act,), -0.5))
        nn.init.zeros_(self.head.bias)
        self.head.weight.data.mul_(0.01)

    def mean(self, x):
        return self.head(self.body(x))

    def value(self, x, t):
        return self.critic(torch.cat([x, t[:, None]], -1))[:, 0]


def flat(obs: dict) -> torch.Tensor:
    return torch.cat([obs[k] for k in OBS_KEYS], -1)


def shaped_reward(task: str, obs: dict, success: torch.Tensor, tipped: torch.Tensor,
                  push_speed_limit_m_s: float | None = None) -> torch.Tensor:
    o, goal = obs["observation"], obs["desired_goal"]
    tool = o[:, :3]
    if task == "reach":
        return -torch.linalg.vector_norm(tool - goal, dim=-1) + 0.1 * success
    obj = obs["achieved_goal"]
    d_goal = torch.linalg.vector_norm(obj - goal, dim=-1)
    away = (obj[:, :2] - goal[:, :2]) / torch.clamp(d_goal[:, None], min=1e-6)
    point = torch.cat([obj[:, :2] + away * PUSH_POINT_BEHIND_M, obj[:, 2:3]], -1)
    d_tool = torch.linalg.vector_norm(tool - point, dim=-1)
    r = -d_goal - 0.2 * d_tool + 0.1 * success - 0.1 * tipped
    if push_speed_limit_m_s is not None:
        speed = torch.linalg.vector_norm(o[:, OBJECT_PLANAR_VEL], dim=-1)
        r = r - torch.clamp(speed - push_speed_limit_m_s, min=0.0)
    return r


class Learner:
    """PPO state (model, optimizer, normalizer) and one iteration of collect + update."""

    def __init__(self, cfg: RecipeConfig, env, device: str) -> None:
        self.cfg, self.env, self.device = cfg, env, torch.device(device)
        torch.manual_seed(cfg.seed)
        n_obs = sum(int(np.prod(env.single_observation_space[k].shape)) for k in OBS_KEYS)
        self.n_act = int(env.single_action_space.shape[0])
        self.model = ActorCritic(n_obs, self.n_act, cfg.net_arch).to(self.device)
        graph = cfg.cuda_graph and self.device.type == "cuda"  # the twin's step and this update, graphed
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate, capturable=graph)
        self.graphed = (GraphedMinibatchStep(self.model, self.opt, cfg.clip_range, cfg.ent_coef) if graph else None)
        # the variance floor keeps features the twin holds constant (box roll/pitch, vertical
        # speeds) from turning PyBullet's small non-zero values into huge normalized inputs
        self.norm = RunningNorm(n_obs, self.device, cfg.norm_obs_epsilon, cfg.ignore_constant_features,
                                constant_feature_var(env))
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.obs, _ = env.reset(seed=cfg.seed * 1_000_003)
        self.steps = 0

    def collect(self):
        env, m, T = self.env, self.model, self.cfg.n_steps
        xs, ts, acts, logps, vals, rews, dones = [], [], [], [], [], [], []
        with torch.no_grad():
            for _ in range(T):
                x_raw = flat(self.obs)
                self.norm.update(x_raw)
                x = self.norm(x_raw)
                t = env.steps.to(x.dtype) / env.max_episode_steps
                mu = m.mean(x)
                std = m.log_std.exp()
                a = mu + std * torch.randn(mu.shape, generator=self.gen, device=self.device)
                logp = (-0.5 * ((a - mu) / std) ** 2 - m.log_std).sum(-1)
                obs, _, _, trunc, info = env.step(a.clamp(-1.0, 1.0))
                final, fi = self._final(obs, info)
                r = shaped_reward(env.task_name, final, fi["is_success"].float(), fi["tipped"].float(),
                                  self.cfg.push_speed_limit_m_s)
                xs.append(x), ts.append(t), acts.append(a), logps.append(logp), vals.append(m.value(x, t))
                rews.append(r), dones.append(trunc.float())
                self.obs = obs
            x_last = self.norm(flat(self.obs))
            last_v = m.value(x_last, env.steps.to(x_last.dtype) / env.max_episode_steps)
        self.steps += T * env.num_envs
        return xs, ts, acts, logps, vals, rews, dones, last_v

    @staticmethod
    def _final(obs: dict, info: dict) -> tuple[dict, dict]:
        """The observation and info a step's reward is computed on: the pre-reset ones of envs whose
        episode ended (``_final_obs``), ``obs`` elsewhere. A sync-free twin sends ``final_obs`` every
        step, with a fresh observation-noise draw: masked here, so no host read of ``trunc``."""
        if "final_obs" not in info:
            return obs, info
        ended = info["_final_obs"][:, None]
        return {k: torch.where(ended, info["final_obs"][k], v) for k, v in obs.items()}, info["final_info"]

    def gae(self, vals, rews, dones, last_v):
        cfg = self.cfg
        adv = torch.zeros_like(last_v)
        advs = []
        for k in reversed(range(len(rews))):
            nxt = last_v if k == len(rews) - 1 else vals[k + 1]
            # a time-limit end bootstraps from the final state's value ~ the truncation: no bootstrap
            nonterm = 1.0 - dones[k]
            delta = rews[k] + cfg.gamma * nxt * nonterm - vals[k]
            adv = delta + cfg.gamma * cfg.gae_lambda * nonterm * adv
            advs.append(adv)
        advs.reverse()
        adv = torch.stack(advs)
        return adv, adv + torch.stack(vals)

    def update(self, batch) -> dict[str, float]:
        xs, ts, acts, logps, vals, rews, dones, last_v = batch
        adv, ret = self.gae(vals, rews, dones, last_v)
        data = [torch.cat(xs), torch.cat(ts), torch.cat(acts), torch.cat(logps), adv.reshape(-1), ret.reshape(-1)]
        n, mb, cfg = data[0].shape[0], min(self.cfg.batch_size, data[0].shape[0]), self.cfg
        if self.graphed is not None:
            self.graphed.load(data)
        losses = None
        for _ in range(cfg.n_epochs):
            perm = torch.randperm(n, generator=self.gen, device=self.device)
            for i in range(0, n - mb + 1, mb):
                idx = perm[i : i + mb]
                if self.graphed is not None:
                    losses = self.graphed.step(idx)
                else:
                    self.opt.zero_grad(set_to_none=True)
                    losses = minibatch_step(self.model, self.opt, cfg.clip_range, cfg.ent_coef, [d[idx] for d in data])
        stats = {}
        if losses is not None:  # one host read per iteration
            pg, vf, std = torch.stack([*losses, self.model.log_std.detach().exp().mean()]).tolist()
            stats = {"loss/policy": pg, "loss/value": vf, "policy/std": std}
        succ = torch.stack([r > 0.05 for r in rews]).float().mean()  # shaped reward carries +0.1 on success
        stats["twin/step_success"] = float(succ)
        return stats

    # ---- export / checkpoint ------------------------------------------------------------------
    def actor(self) -> ExportedActor:
        import copy

        low, high = -torch.ones(self.n_act), torch.ones(self.n_act)
        return ExportedActor(copy.deepcopy(self.model.body).cpu(), copy.deepcopy(self.model.head).cpu(), False,
                             self.norm.mean.cpu().clone(), self.norm.std().cpu().clone(), 10.0, low, high).eval()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "norm": [self.norm.mean, self.norm.var,
                self.norm.count, self.norm.max_batch_var], "steps": self.steps, "gen": self.gen.get_state()}

    def load_state_dict(self, s: dict) -> None:
        """Load a checkpoint saved on any device (``torch.load(..., map_location="cpu")`` is enough)."""
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        set_capturable(self.opt, self.graphed is not None)  # the saved flag is the saving run's mode
        if self.graphed is not None and self.graphed.graph is not None:  # the graph holds the old state tensors
            self.graphed = GraphedMinibatchStep(self.model, self.opt, self.cfg.clip_range, self.cfg.ent_coef)
        norm = [t.to(self.device) if torch.is_tensor(t) else t for t in s["norm"]]
        self.norm.mean, self.norm.var, self.norm.count = norm[:3]
        if len(norm) > 3:
            self.norm.max_batch_var = norm[3]
        self.steps = int(s["steps"])
        if s["gen"].numel() == self.gen.get_state().numel():  # a CPU and a CUDA generator's states differ
            self.gen.set_state(s["gen"])


def export_actor(actor: ExportedActor, out_path: Path, n_obs_sizes: list[int]) -> dict:
    meta = {"obs_keys": OBS_KEYS, "obs_sizes": n_obs_sizes, "action_dim": int(actor.low.shape[0]),
            "format": "torchscript", "input": "float32 (B, sum(obs_sizes)) in obs_keys order"}
    with torch.no_grad():
        scripted = torch.jit.trace(actor, torch.zeros(1, sum(n_obs_sizes)))
    tmp = out_path.with_name(out_path.name + ".tmp")
    scripted.save(str(tmp))
    os.replace(tmp, out_path)
    out_path.with_suffix(out_path.suffix + ".json").write_text(json.dumps(meta, indent=2))
    return meta


class _ActorPolicy:
    def __init__(self, actor: ExportedActor) -> None:
        self.actor = actor

    def act(self, observation: dict) -> np.ndarray:
        x = np.concatenate([np.asarray(observation[k], dtype=np.float32) for k in OBS_KEYS])[None]
        with torch.no_grad():
            return self.actor(torch.from_numpy(x)).numpy()[0]

    def reset(self) -> None:
        pass


def twin_success(actor: ExportedActor, cfg: RecipeConfig, seeds: list[int]) -> float:
    """Deterministic actor on the twin, one env per seed (same goals as PyBullet's seeds)."""
    from simgate.sim.twin.env import make_twin

    env = make_twin(cfg.env_id, len(seeds), randomization=cfg.randomization)
    obs, _ = env.reset(seed=list(seeds))
    with torch.no_grad():
        for _ in range(env.max_episode_steps):
            obs, _, _, trunc, info = env.step(actor(flat(obs)))
    return float(info["final_info"]["is_success"].float().mean())


def pybullet_eval(actor: ExportedActor, cfg: RecipeConfig, seeds: list[int]):
    kwargs = {"randomization": cfg.randomization} if cfg.randomization else None
    return evaluate(_ActorPolicy(actor), cfg.env_id, seeds, kwargs)


def train_twin(cfg: RecipeConfig, out_dir: str | Path, progress_bar: bool = True, max_wall_s: float | None = None,
               on_eval=None) -> dict:
    """Train ``cfg`` (algo twin_ppo) into ``out_dir``; same layout, resume and run.json as `train`."""
    from torch.utils.tensorboard import SummaryWriter

    from simgate.policies.provenance import code_version, library_versions
    from simgate.policies.robot_meta import env_robot_meta
    from simgate.policies.train import _Interrupt, _Progress, pick_device
    from simgate.sim.twin.env import make_twin

    torch.set_num_threads(cfg.torch_threads)
    out, device = Path(out_dir), pick_device(cfg.device)
    ck = out / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    train_dr = cfg.randomization if cfg.train_randomization is None else cfg.train_randomization
    env = make_twin(cfg.env_id, cfg.num_envs, randomization=train_dr, device=device, seed=cfg.seed,
                    cuda_graph=cfg.cuda_graph and device == "cuda", compile=cfg.compile_twin)
    learner = Learner(cfg, env, device)
    sizes = [int(np.prod(env.single_observation_space[k].shape)) for k in OBS_KEYS]
    state = {"evals": [], "wall_s": 0.0, "best": None}
    resumed = (ck / "latest.pt").exists()
    if resumed:
        saved = torch.load(ck / "latest.pt", weights_only=False, map_location="cpu")
        learner.load_state_dict(saved["learner"])
        state = saved["state"]
    elif cfg.init_from is not None:
        learner.load_state_dict(torch.load(Path(cfg.init_from) / "checkpoints" / "latest.pt", weights_only=False,
                                           map_location="cpu")["learner"])
        state["init_from"] = {"run": str(cfg.init_from), "steps": learner.steps}
    writer = SummaryWriter(str(out / "tb"))
    seeds = seeds_for("selection", cfg.eval_episodes)
    t_start = time.perf_counter() - state["wall_s"]
    status = "completed"
    next_eval = (learner.steps // cfg.eval_every_steps + 1) * cfg.eval_every_steps
    next_ck = (learner.steps // cfg.checkpoint_every_steps + 1) * cfg.checkpoint_every_steps

    def save_checkpoint() -> None:
        state["wall_s"] = time.perf_counter() - t_start
        state["steps"] = learner.steps
        torch.save({"learner": learner.state_dict(), "state": state}, ck / "latest.tmp.pt")
        os.replace(ck / "latest.tmp.pt", ck / "latest.pt")
        (ck / "state.json").write_text(json.dumps({k: v for k, v in state.items()}, indent=2))

    def run_eval() -> float:
        actor = learner.actor()
        t0 = time.perf_counter()
        res = pybullet_eval(actor, cfg, seeds)
        tw = twin_success(actor, cfg, seeds)
        wall = time.perf_counter() - t_start
        rec = {"steps": learner.steps, "wall_s": round(wall, 2), "success": res.success_rate,
               "twin_success": tw, "gap": round(tw - res.success_rate, 4), "mean_return": res.mean_return,
               "eval_s": round(time.perf_counter() - t0, 2)}
        state["evals"].append(rec)
        with open(out / "eval.csv", "a") as f:
            f.write(f"{learner.steps},{wall:.2f},{res.success_rate:.4f},{res.mean_return:.4f},{tw:.4f}\n")
        writer.add_scalar("eval/selection_success", res.success_rate, learner.steps)
        writer.add_scalar("eval/twin_success", tw, learner.steps)
        if state["best"] is None or res.success_rate > state["best"]["success"]:
            state["best"] = rec
            export_actor(actor, out / "policy.ts", sizes)
            torch.save(learner.state_dict(), ck / "best.pt")
        return res.success_rate

    interrupt = _Interrupt()
    bar = _Progress(cfg.total_steps, learner.steps, cfg.env_id.split("/")[-1] + " twin") if progress_bar else None
    try:
        with interrupt, bar or nullcontext():
            while learner.steps < cfg.total_steps:
                stats = learner.update(learner.collect())
                for k, v in stats.items():
                    writer.add_scalar(k, v, learner.steps)
                if bar is not None:
                    bar.update(learner.steps)
                if learner.steps >= next_eval:
                    next_eval += cfg.eval_every_steps * max(1, (learner.steps - next_eval) // cfg.eval_every_steps + 1)
                    sr = run_eval()
                    if bar is not None:
                        bar.update(learner.steps, sr)
                    if cfg.stop_at_success is not None and sr >= cfg.stop_at_success:
                        status = "solved"
                        break
                    if on_eval is not None and on_eval(learner.steps, sr):
                        status = "pruned"
                        break
                if learner.steps >= next_ck:
                    next_ck += cfg.checkpoint_every_steps
                    save_checkpoint()
                if interrupt.flag:
                    status = "interrupted"
                    break
                if max_wall_s is not None and time.perf_counter() - t_start > max_wall_s:
                    status = "wall_clock_budget"
                    break
                if not all(np.isfinite(v) for v in stats.values()):
                    raise FloatingPointError(f"non-finite loss at step {learner.steps}")
    finally:
        save_checkpoint()
        writer.close()
    if status != "interrupted" and not (out / "policy.ts").exists():
        run_eval()
    run = {"status": status, "env_id": cfg.env_id, "algo": cfg.algo, "device": device, "trained_in": "twin",
           "steps": learner.steps, "wall_s": round(time.perf_counter() - t_start, 2), "resumed": resumed,
           "init_from": state.get("init_from"), "evals": state["evals"], "selected": state["best"],
           "twin_pybullet_gap": None if state["best"] is None else state["best"]["gap"],
           "twin": {"params": env.params.model_dump(), "num_envs": cfg.num_envs,
                    "train_randomization": env.randomization.model_dump(exclude_none=True)},
           "code": code_version(), "libraries": library_versions(), **env_robot_meta(cfg.env_id)}
    (out / "run.json").write_text(json.dumps(run, indent=2))
    if status == "interrupted":
        raise KeyboardInterrupt(f"training interrupted at {run['steps']} steps; checkpoint in {ck}")
    return run
