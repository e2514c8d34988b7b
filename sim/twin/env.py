"""TwinVecEnv: N Reach or Push envs in torch tensors (CPU or CUDA), a Gymnasium ``VectorEnv``
with the PyBullet env's Dict observation layout, goal ranges, rewards, ``is_success``, time
limit and same-step autoreset (``ee`` control; PickAndPlace stays PyBullet-only).

Tensors in, tensors out: observations are a dict of (N, ·) float32 tensors on the twin's
device; ``infos`` holds ``is_success`` (N,), ``tipped`` (N,) (the tip rule fired: the box is
frozen and the episode cannot succeed) and, at episode ends, ``final_obs`` (dict of tensors)
with the mask ``_final_obs`` and ``final_info = {"is_success": (N,)}``.

Sync-free steps (``sync_free=True``, implied by ``cuda_graph=True``): the step never reads a
tensor back to Python (no early exits, autoreset always runs masked, a jittered control period
runs its longest substep count with the rest masked), so it can be captured in a CUDA graph;
``infos`` then always carries ``final_obs`` with its ``_final_obs`` mask. ``cuda_graph=True``
(CUDA only) captures one step at the first ``step`` and replays it (``sim/twin/graph.py``):
the returned tensors are rewritten by the next step, so copy what you keep; randomness then
comes from the default CUDA generator, seeded by ``reset(seed=...)``. ``compile=True`` runs the
sync-free step through ``torch.compile`` (fused kernels; the first step compiles, ~1-2 min).

Seeds: ``reset(seed=s)`` draws env i's randomization and goals from ``np.random.default_rng(s + i)``
exactly as ``ArmEnv.reset(seed=s + i)`` does (same goals and objects as PyBullet on the same
seeds); autoresets draw from one seeded torch generator, batched.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from simgate.errors import ConfigError
from simgate.sim.control_rules import ee_target, ik_step, limit_command
from simgate.sim.randomization import RandomizationConfig, resolve_randomization
from simgate.sim.robot_spec import RobotSpec, resolve_spec
from simgate.sim.task_rules import (
    distance_threshold_m,
    object_range_m,
    object_size_m,
    reach_goal_range_m,
    reward_from_distance,
)
from simgate.sim.twin.dynamics import ArmDynamics, joint_damping
from simgate.sim.twin.kinematics import Kinematics
from simgate.sim.twin.params import TwinParams, load_params
from simgate.sim.twin.physics import MotorStep, box_substeps, envs_in_contact_range

TWIN_TASKS = ("reach", "push")
TIME_STEP_S = 0.002


class TwinVecEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, robot: str | RobotSpec = "panda", task: str = "reach", num_envs: int = 1024,
                 reward_type: str = "sparse", randomization=None, max_episode_steps: int = 50,
                 device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0,
                 max_ee_step_m: float = 0.05, params: TwinParams | None = None, sync_free: bool = False,
                 cuda_graph: bool = False, compile: bool = False) -> None:
        self.spec_robot = spec = resolve_spec(robot)
        if task not in TWIN_TASKS:
            raise ConfigError(f"the twin has tasks {TWIN_TASKS}; {task!r} stays PyBullet-only")
        if task not in spec.tasks:
            raise ConfigError(f"robot {spec.name!r} does not support task {task!r}")
        if reward_type not in ("sparse", "dense"):
            raise ConfigError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
        self.task_name, self.reward_type, self.num_envs = task, reward_type, num_envs
        self.max_episode_steps, self.max_ee_step_m = max_episode_steps, max_ee_step_m
        self.randomization: RandomizationConfig = resolve_randomization(randomization)
        self.params = params or load_params(spec)
        self.device, self.dtype = torch.device(device), dtype
        self.kin = Kinematics(spec, device, dtype)
        self.dof = spec.dof
        self.substeps = max(1, int(round(spec.control_period_s / TIME_STEP_S)))
        self.scale = spec.workspace_scale
        self.threshold_m = distance_threshold_m(self.scale)
        self.nominal_size_m = object_size_m(self.scale)
        self.control, self.use_gripper = "ee", False
        t = dict(device=self.device, dtype=dtype)
        arm = spec.arm_joints
        self.lower = torch.tensor([j.lower for j in arm], **t)
        self.upper = torch.tensor([j.upper for j in arm], **t)
        self.step_limit = torch.tensor([j.velocity for j in arm], **t) * spec.control_period_s
        self.home = torch.tensor([j.home for j in arm], **t)
        self.dynamics = ArmDynamics(spec, self.kin, device, dtype, bodies=self.params.bodies())
        self.effort = [j.effort for j in arm]
        damping = joint_damping(spec)
        self.nominal_damping = torch.tensor(damping, **t)[:, None] if any(damping) else None  # (dof, 1)
        self.down = None if spec.ee_down_orientation is None else torch.tensor(spec.ee_down_orientation, **t)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.sync_free = sync_free or cuda_graph or compile
        if compile:  # fuses the step's small ops (first steps pay the compile); sync-free: no graph breaks
            self._step = torch.compile(self._step)
        self._consts: dict[tuple, torch.Tensor] = {}
        self._graph = None
        if cuda_graph:
            from simgate.sim.twin.graph import CudaGraphStep

            self._graph = CudaGraphStep(self)
        jitter = self.randomization.control_period_jitter
        self.max_substeps = max(1, int(round(self.substeps * (1.0 + (jitter.high if jitter else 0.0)))))
        n_obs = 6 + (12 if task == "push" else 0)
        single_obs = spaces.Dict({"observation": spaces.Box(-np.inf, np.inf, (n_obs,), np.float32),
                                  "achieved_goal": spaces.Box(-np.inf, np.inf, (3,), np.float32),
                                  "desired_goal": spaces.Box(-np.inf, np.inf, (3,), np.float32)})
        self.single_observation_space = single_obs
        self.single_action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.observation_space = batch_space(single_obs, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._alloc()

    # ---- state -------------------------------------------------------------------------------
    def _zeros(self, *shape, dtype=None):
        return torch.zeros(*shape, device=self.device, dtype=dtype or self.dtype)

    def _alloc(self) -> None:
        n, d = self.num_envs, self.dof
        self.q, self.qd = self._zeros(n, d), self._zeros(n, d)
        self.target = self._zeros(n, d)
        self.goal = self._zeros(n, 3)
        self.steps = torch.zeros(n, dtype=torch.long, device=self.device)
        self.box = {"xy": self._zeros(n, 2), "yaw": self._zeros(n), "v": self._zeros(n, 2), "w": self._zeros(n),
                    "h": torch.full((n,), self.nominal_size_m / 2, device=self.device, dtype=self.dtype)}
        self.tipped = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.commands_clipped = torch.zeros(n, dtype=torch.long, device=self.device)
        self.joint_limit_hits = torch.zeros(n, dtype=torch.long, device=self.device)
        names = list(type(self.randomization).model_fields)
        self.dr = {k: self._zeros(n) for k in names}
        self._set_dr_defaults(torch.ones(n, dtype=torch.bool, device=self.device))
        self.pending = self._zeros(n, 11, 3)  # past actions for latency (<= 10 steps)
        self._fk()

    def _set_dr_defaults(self, mask) -> None:
        defaults = {"link_mass_scale": 1.0, "lateral_friction": 0.5, "joint_damping": 0.0, "object_size_scale": 1.0,
                    "object_mass_scale": 1.0, "action_latency_steps": 0.0, "action_noise_std": 0.0,
                    "obs_noise_std": 0.0, "control_period_jitter": 0.0}
        for k, v in defaults.items():
            self.dr[k] = torch.where(mask, torch.full_like(self.dr[k], v), self.dr[k])

    def _sample_dr_batched(self, mask) -> None:
        self._set_dr_defaults(mask)
        for name in type(self.randomization).model_fields:
            r = getattr(self.randomization, name)
            if r is None:
                continue
            u = torch.rand(self.num_envs, generator=self.gen, device=self.device, dtype=self.dtype)
            if name == "action_latency_steps":
                lo, hi = int(round(r.low)), int(round(r.high))
                val = torch.floor(lo + u * (hi - lo + 1)).clamp(max=hi)
            else:
                val = r.low + u * (r.high - r.low)
            self.dr[name] = torch.where(mask, val, self.dr[name])

    def _const(self, values) -> torch.Tensor:
        """A constant on the twin's device, built on first use (no host copy inside a CUDA graph)."""
        key = tuple(values)
        if key not in self._consts:
            self._consts[key] = torch.tensor(key, device=self.device, dtype=self.dtype)
        return self._consts[key]

    def _uniform(self, lo, hi, n: int, k: int):
        lo, hi = self._const(lo), self._const(hi)
        return lo + torch.rand(n, k, generator=self.gen, device=self.device, dtype=self.dtype) * (hi - lo)

    def _reset_envs(self, mask, seeds: list[int] | None = None) -> None:
        """Reset the envs in ``mask``: DR draw, home pose, goals (and the object for Push)."""
        n, r = self.num_envs, object_range_m(self.scale)
        if seeds is not None:
            self._draw_seeded(seeds)
        else:
            if self.randomization.enabled:
                self._sample_dr_batched(mask)
            if self.task_name == "reach":
                goal = self._uniform(*reach_goal_range_m(self.scale), n, 3)
            else:
                obj = self._uniform([-r, -r], [r, r], n, 2)
                goal = torch.cat([self._uniform([-r, -r], [r, r], n, 2), self._zeros(n, 1)], -1)
                self.box["xy"] = torch.where(mask[:, None], obj, self.box["xy"])
            self.goal = torch.where(mask[:, None], goal, self.goal)
        m1 = mask[:, None]
        h = self.nominal_size_m / 2 * self.dr["object_size_scale"]
        self.box["h"] = torch.where(mask, h, self.box["h"])
        if self.task_name == "push":
            self.goal[:, 2] = torch.where(mask, self.box["h"], self.goal[:, 2])
        for k in ("yaw", "w"):
            self.box[k] = torch.where(mask, 0.0, self.box[k])
        self.box["v"] = torch.where(m1, 0.0, self.box["v"])
        self.q = torch.where(m1, self.home, self.q)
        self.qd = torch.where(m1, 0.0, self.qd)
        self.target = torch.where(m1, self.home, self.target)
        self.steps = torch.where(mask, 0, self.steps)
        self.tipped = self.tipped & ~mask
        self.pending = torch.where(mask[:, None, None], 0.0, self.pending)
        self.commands_clipped = torch.where(mask, 0, self.commands_clipped)
        self.joint_limit_hits = torch.where(mask, 0, self.joint_limit_hits)
        self._fk()

    def _draw_seeded(self, seeds: list[int]) -> None:
        """Per-env numpy draws in ArmEnv.reset's order: randomization, then the task's goal/object."""
        r = object_range_m(self.scale)
        goals, objs, drs = [], [], []
        for s in seeds:
            rng = np.random.default_rng(s)
            drs.append(self.randomization.sample(rng) if self.randomization.enabled else {})
            if self.task_name == "reach":
                goals.append(rng.uniform(*reach_goal_range_m(self.scale)))
            else:
                objs.append(rng.uniform([-r, -r], [r, r]))
                goals.append([*rng.uniform([-r, -r], [r, r]), 0.0])
        self.goal = torch.tensor(np.array(goals), device=self.device, dtype=self.dtype)
        if objs:
            self.box["xy"] = torch.tensor(np.array(objs), device=self.device, dtype=self.dtype)
        self._set_dr_defaults(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        for k in self.dr:
            vals = [d.get(k) for d in drs]
            if any(v is not None for v in vals):
                cur = self.dr[k].cpu().numpy()
                self.dr[k] = torch.tensor([cur[i] if v is None else v for i, v in enumerate(vals)],
                                          device=self.device, dtype=self.dtype)

    def _fk(self) -> None:
        # the joint frames are kept as a tensor attribute (a CUDA graph's static state is those)
        self.tool, self.tool_quat, self.jl, self.ja, self.frames = self.kin.forward(self.q, frames=True)
        self.tool_vel = (self.jl.permute(2, 1, 0) * self.qd.T[:, None]).sum(0).T.contiguous()  # joint-major sum

    # ---- Gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        n = self.num_envs
        seeds = None
        if seed is not None:
            seeds = [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
            self.seed_generator(int(seeds[0]))
        everyone = torch.ones(n, dtype=torch.bool, device=self.device)
        if self._graph is not None:
            self._graph.run_eager(self._reset_envs, everyone, seeds)
        else:
            self._reset_envs(everyone, seeds)
        obs = self._obs()
        return obs, {"is_success": self._success(), "tipped": self.tipped.clone()}

    def seed_generator(self, seed: int) -> None:
        if self.gen is None:  # CUDA graph mode: the default CUDA generator
            torch.cuda.manual_seed(seed)
        else:
            self.gen.manual_seed(seed)

    def step(self, actions):
        if self._graph is not None:
            return self._graph.step(actions)
        return self._step(actions)

    def _step(self, actions):
        a = torch.as_tensor(actions, device=self.device, dtype=self.dtype).clamp(-1.0, 1.0)
        a = self._perturb_actions(a)
        floor = max(self.params.tool_floor_z_m, 0.0)
        tgt = ee_target(self.tool, a, self.max_ee_step_m, floor)
        q_des = ik_step(self.q, self.tool, self.tool_quat, self.jl, self.ja, tgt, self.down)
        sent, clipped, hit = limit_command(q_des, self.target, self.step_limit, self.lower, self.upper, self.dof)
        self.commands_clipped += clipped.long()
        self.joint_limit_hits += hit.long()
        self.target = sent
        self._advance(sent, tgt[:, 2])
        self.steps += 1
        obs = self._obs()
        success = self._success()
        reward = self.compute_reward(obs["achieved_goal"], obs["desired_goal"])
        truncated = self.steps >= self.max_episode_steps
        terminated = torch.zeros_like(truncated)
        infos = {"is_success": success, "tipped": self.tipped.clone()}
        if self.sync_free or bool(truncated.any()):
            infos["final_obs"] = {k: v.clone() for k, v in obs.items()}
            infos["_final_obs"] = truncated.clone()
            infos["final_info"] = {"is_success": success.clone(), "tipped": self.tipped.clone()}
            self._reset_envs(truncated)
            obs = self._obs()
            infos["is_success"] = torch.where(truncated, self._success(), success)
        return obs, reward, terminated, truncated, infos

    def compute_reward(self, achieved_goal, desired_goal, info=None):
        """Batched like the PyBullet env's: (B, 3), (B, 3) -> (B,)."""
        d = torch.linalg.vector_norm(torch.as_tensor(achieved_goal) - torch.as_tensor(desired_goal), dim=-1)
        return reward_from_distance(d, self.threshold_m, self.reward_type)

    # ---- internals ---------------------------------------------------------------------------
    def _perturb_actions(self, a):
        if not self.randomization.enabled:
            return a
        noise = self.dr["action_noise_std"][:, None]
        a = (a + noise * torch.randn(a.shape, generator=self.gen, device=self.device, dtype=self.dtype)).clamp(-1, 1)
        self.pending = torch.cat([a[:, None], self.pending[:, :-1]], 1)  # pending[:, k] = action k steps ago
        lat = self.dr["action_latency_steps"].long()
        return self.pending[torch.arange(self.num_envs, device=self.device), lat]

    def _advance(self, target, target_z) -> None:
        """Motor substeps (and the box for Push); FK at the end. ``target_z``: the commanded tool height."""
        p = self.params
        dt = TIME_STEP_S
        n_sub = self.substeps
        active_n = None
        if self.randomization.enabled:
            jit = self.dr["control_period_jitter"]
            u = torch.rand(self.num_envs, generator=self.gen, device=self.device, dtype=self.dtype) * 2 - 1
            active_n = torch.clamp(torch.round(n_sub * (1.0 + jit * u)), min=1)
            n_sub = self.max_substeps if self.sync_free else int(active_n.max())
            mass_scale = self.dr["link_mass_scale"]
        else:
            mass_scale = None
        damping = self.nominal_damping  # the randomization's damping replaces the URDF's on every joint
        if self.randomization.enabled and self.randomization.joint_damping is not None:
            damping = self.dr["joint_damping"][None, :]
        motor = MotorStep(*self.dynamics.mass_and_gravity_rows(self.frames), self.effort, dt, p.motor_sweeps,
                          mass_scale, damping)
        q0, tool0, jl0 = self.q, self.tool, self.jl
        self.q, self.qd, qs = motor.run(self.q, self.qd, target, p.position_gain, n_sub, active_n)
        self._fk()
        floor = max(self.params.tool_floor_z_m, 0.0)
        self._stop_at_table(floor)
        qs = self._stick_on_table(q0, tool0, target_z, floor, qs)
        if self.task_name == "push":
            self._push(q0, tool0, jl0, qs, active_n)

    def _stop_at_table(self, floor_z_m: float) -> None:
        """The table stops the fingers: a tool point the motors drove below its resting height is
        lifted back along the Jacobian's z row (least joint motion), and the joint velocity loses
        its downward tool component, as the table contact does in PyBullet. FK runs again (a landing
        lifts by up to ~3 cm: the Jacobian alone would leave the tool ~1 mm off)."""
        below = floor_z_m - self.tool[:, 2]
        if not self.sync_free and not bool((below > 0).any()):
            return
        jz = self.jl[:, 2, :]
        jj = torch.clamp((jz * jz).sum(-1), min=1e-9)
        self.q = self.q + jz * (torch.clamp(below, min=0.0) / jj)[:, None]
        vz = (jz * self.qd).sum(-1)
        self.qd = self.qd - jz * (torch.clamp(vz, max=0.0) * (below > 0) / jj)[:, None]
        self._fk()

    def _stick_on_table(self, q0, tool0, target_z, floor_z_m: float, qs):
        """Fingers pressed on a high-friction table stick: PyBullet's arm cannot drag them (finger-table
        coefficient = lateral_friction^2, the product of both bodies'; nominal 0.25). An env whose tool
        started on the table, ends on it and was not commanded up keeps its pose and loses its speed."""
        if not self.randomization.enabled:
            return qs
        mu = self.dr["lateral_friction"] ** 2
        slack = 1e-3 * self.scale
        stuck = ((mu >= self.params.finger_table_stick_mu) & (tool0[:, 2] <= floor_z_m + slack)
                 & (self.tool[:, 2] <= floor_z_m + slack) & (target_z <= floor_z_m + slack))
        if not self.sync_free and not bool(stuck.any()):
            return qs
        s = stuck[:, None]
        self.q = torch.where(s, q0, self.q)
        self.qd = torch.where(s, torch.zeros_like(self.qd), self.qd)
        self._fk()
        return [torch.where(s, q0, q) for q in qs]

    def _push(self, q0, tool0, jl0, qs, active_n) -> None:
        """Box dynamics over the substeps, the tool interpolated between the exact FK poses at the
        ends of the step (linearized with the start Jacobian, corrected to hit the end pose).
        Batch-last components throughout ((3, N) points, (N,) box state).

        Eager steps on the CPU solve only the envs where something can happen, as a broadphase
        does: a box that is at rest and that no finger comes near keeps its state exactly (no
        impulse, no friction, no tip), so those envs are left out. Sync-free steps solve every env."""
        p = self.params
        n_sub = len(qs)
        jac = jl0.permute(2, 1, 0)  # (dof, 3, N)
        q0_jm, t0 = q0.T, tool0.T.contiguous()
        corr = self.tool.T - (t0 + (jac * (qs[-1].T - q0_jm)[:, None]).sum(0))
        # a fixed stride and each env's own period: the eager step (n_sub = the longest jittered
        # period drawn) and the sync-free one (n_sub = the longest possible) give the same box
        stride = max(1, self.substeps // p.contact_substeps)
        ks = list(range(stride - 1, n_sub, stride))
        fracs = [(k + 1) / n_sub if active_n is None else torch.clamp((k + 1) / active_n, max=1.0) for k in ks]
        points = [t0 + (jac * (qs[k].T - q0_jm)[:, None]).sum(0) + corr * f for k, f in zip(ks, fracs, strict=True)]
        box = self.box
        b = {"x": box["xy"][:, 0].contiguous(), "y": box["xy"][:, 1].contiguous(), "vx": box["v"][:, 0].contiguous(),
             "vy": box["v"][:, 1].contiguous(), "yaw": box["yaw"], "w": box["w"], "h": box["h"]}
        per_env = {"t0": t0, "points": points, "ydir": torch.stack(self._tool_y_xy()),
                   "mu_t": p.table_friction * (self.dr["lateral_friction"] / 0.5) ** 2,
                   "mu_f": p.finger_friction * self.dr["lateral_friction"] / 0.5,
                   "frozen": self.tipped, "active_n": active_n}
        offsets = self._const([o * self.scale for o in p.pusher_offsets_m])[:, None]  # (D, 1)
        # the broadphase on the CPU only: on a GPU the gather/scatter launches cost more than they save
        idx = None if self.sync_free or self.device.type != "cpu" else envs_in_contact_range(points, b, p, self.scale)
        if idx is not None and idx.numel() > self.num_envs // 2:
            idx = None  # most envs in reach: solving all is cheaper than gathering them
        if idx is None:
            b, self.tipped = box_substeps(b, ks, per_env, offsets, p, self.scale, TIME_STEP_S * stride)
        elif idx.numel() > 0:
            sub, frozen = box_substeps({k: v[idx] for k, v in b.items()}, ks, _take(per_env, idx), offsets, p, self.scale,
                                       TIME_STEP_S * stride)
            b = {k: v.index_put((idx,), sub[k]) for k, v in b.items()}
            self.tipped = self.tipped.index_put((idx,), frozen)
        box["xy"], box["v"] = torch.stack([b["x"], b["y"]], -1), torch.stack([b["vx"], b["vy"]], -1)
        box["yaw"], box["w"] = b["yaw"], b["w"]

    def _tool_y_xy(self):
        """The tool's y axis in the table plane, unit length: 2 x (N,)."""
        x, y, z, w = self.tool_quat.unbind(-1)
        ax, ay = 2.0 * (x * y - z * w), 1.0 - 2.0 * (x * x + z * z)
        inv = 1.0 / torch.clamp(torch.sqrt(ax * ax + ay * ay), min=1e-6)
        return ax * inv, ay * inv

    def _achieved(self):
        if self.task_name == "reach":
            return self.tool
        return torch.cat([self.box["xy"], self.box["h"][:, None]], -1)

    def _success(self):
        d = torch.linalg.vector_norm(self._achieved() - self.goal, dim=-1)
        return (d < self.threshold_m) & ~self.tipped

    def _obs(self) -> dict[str, torch.Tensor]:
        parts = [self.tool, self.tool_vel]
        achieved = self._achieved()
        if self.task_name == "push":
            b = self.box
            z = self._zeros(self.num_envs, 1)
            parts += [achieved, z, z, b["yaw"][:, None], b["v"], z, z, z, b["w"][:, None]]
        obs = torch.cat(parts, -1)
        if self.randomization.enabled:
            std = self.dr["obs_noise_std"][:, None]
            obs = obs + std * torch.randn(obs.shape, generator=self.gen, device=self.device, dtype=self.dtype)
            achieved = achieved + std * torch.randn(achieved.shape, generator=self.gen, device=self.device, dtype=self.dtype)
        return {"observation": obs.float(), "achieved_goal": achieved.float(), "desired_goal": self.goal.float()}


def _take(per_env: dict, idx) -> dict:
    """The envs ``idx`` of per-env tensors (batch last; lists of them; None and scalars as they are)."""
    def one(v):
        if isinstance(v, list):
            return [one(x) for x in v]
        return v[..., idx] if isinstance(v, torch.Tensor) and v.dim() > 0 else v
    return {k: one(v) for k, v in per_env.items()}


def make_twin(env_id: str, num_envs: int, **kwargs) -> TwinVecEnv:
    """A twin for a registered PyBullet id (``simgate/PandaPushDense-v0`` ...), ``ee`` control only."""
    from simgate.sim.registry import parse_env_id

    base = parse_env_id(env_id)
    if base.get("control", "ee") != "ee":
        raise ConfigError(f"{env_id}: the twin runs ee control only")
    return TwinVecEnv(robot=base["robot"], task=base["task"], reward_type=base["reward_type"], num_envs=num_envs, **kwargs)
