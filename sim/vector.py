"""Vectorized envs: worker processes that each step several envs, exchanging data through
shared memory.

``make_vec(env_id, num_envs, num_workers)`` returns an :class:`ArmVectorEnv` (a Gymnasium
``VectorEnv`` with same-step autoreset). Each worker owns ``num_envs / num_workers`` envs and
steps them back to back per command, so one pipe round trip is amortized over several robots;
observations, rewards and flags travel through one shared-memory block (only a one-byte
command and, when an episode ends, its final info cross the pipe).

Lifecycle: workers ignore SIGINT (the parent decides), exit when the parent's pipe closes, and
are terminated by ``close()`` (also called on garbage collection and at interpreter exit). A
worker that dies raises :class:`WorkerCrashedError` in the parent naming the worker and its
exit code.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import traceback
import weakref
from multiprocessing.connection import wait
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from simgate.errors import SimgateError, WorkerCrashedError

OBS_KEYS = ("observation", "achieved_goal", "desired_goal")


class _Layout:
    """Offsets of every array inside the shared block."""

    def __init__(self, num_envs: int, obs_dims: dict[str, int], act_dim: int) -> None:
        self.fields: dict[str, tuple[int, tuple[int, ...], str]] = {}
        off = 0

        def add(name: str, shape: tuple[int, ...], dtype: str) -> None:
            nonlocal off
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            off = (off + 7) // 8 * 8
            self.fields[name] = (off, shape, dtype)
            off += size

        add("action", (num_envs, act_dim), "float32")
        for k, d in obs_dims.items():
            add(f"obs_{k}", (num_envs, d), "float32")
            add(f"final_{k}", (num_envs, d), "float32")
        add("reward", (num_envs,), "float64")
        for flag in ("terminated", "truncated", "is_success", "final_success"):
            add(flag, (num_envs,), "bool")
        add("commands_clipped", (num_envs,), "int64")
        add("joint_limit_hits", (num_envs,), "int64")
        self.nbytes = max(off, 8)

    def views(self, buf) -> dict[str, np.ndarray]:
        mem = np.frombuffer(buf, dtype=np.uint8)
        return {
            name: mem[o : o + int(np.prod(s)) * np.dtype(dt).itemsize].view(dt).reshape(s)
            for name, (o, s, dt) in self.fields.items()
        }


def _worker(index: int, env_id: str, kwargs: dict, count: int, start: int, layout: _Layout, buf, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from simgate.sim import make

    v = layout.views(buf)
    envs = [make(env_id, **kwargs) for _ in range(count)]
    obs_keys = [k for k in OBS_KEYS]

    def write(slot: int, obs: dict, prefix: str = "obs_") -> None:
        for k in obs_keys:
            v[prefix + k][slot] = obs[k]

    def write_info(slot: int, info: dict) -> None:
        v["is_success"][slot] = info.get("is_success", False)
        v["commands_clipped"][slot] = info.get("commands_clipped", 0)
        v["joint_limit_hits"][slot] = info.get("joint_limit_hits", 0)

    try:
        while True:
            try:
                cmd = conn.recv()
            except (EOFError, OSError):
                break  # parent went away
            op = cmd[0]
            try:
                if op == "step":
                    extra: dict[int, dict] = {}
                    for i, env in enumerate(envs):
                        slot = start + i
                        obs, rew, term, trunc, info = env.step(v["action"][slot])
                        v["reward"][slot], v["terminated"][slot], v["truncated"][slot] = rew, term, trunc
                        if term or trunc:
                            write(slot, obs, "final_")
                            v["final_success"][slot] = info.get("is_success", False)
                            obs, reset_info = env.reset()
                            extra[slot] = {"final_info": info, "reset_info": reset_info}
                            write_info(slot, reset_info)
                        else:
                            write_info(slot, info)
                            if "randomization" in info:
                                extra.setdefault(slot, {})["randomization"] = info["randomization"]
                        write(slot, obs)
                    conn.send(("ok", extra))
                elif op == "reset":
                    seeds, options = cmd[1], cmd[2]
                    infos = []
                    for i, env in enumerate(envs):
                        obs, info = env.reset(seed=seeds[i], options=options)
                        write(start + i, obs)
                        write_info(start + i, info)
                        infos.append(info)
                    conn.send(("ok", infos))
                elif op == "call":
                    _, local, name, args, kwargs = cmd
                    attr = getattr(envs[local], name)
                    conn.send(("ok", attr(*args, **kwargs) if callable(attr) else attr))
                elif op == "set":
                    _, local, name, value = cmd
                    setattr(envs[local], name, value)
                    conn.send(("ok", None))
                elif op == "close":
                    conn.send(("ok", None))
                    break
            except Exception:  # noqa: BLE001 - reported to the parent with the traceback
                conn.send(("error", traceback.format_exc()))
    finally:
        for env in envs:
            env.close()
        conn.close()


class ArmVectorEnv(VectorEnv):
    """``num_envs`` envs stepped by ``num_workers`` processes, the calling process being one of
    them (it steps its share while the others step theirs). ``num_workers <= 1``: all in this
    process. Same-step autoreset."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env_id: str, num_envs: int, num_workers: int | None = None,
                 env_kwargs: dict | None = None, start_method: str | None = None) -> None:
        from simgate.sim import make

        if num_envs < 1:
            raise SimgateError("num_envs must be >= 1")
        kwargs = dict(env_kwargs or {})
        probe = make(env_id, **kwargs)  # validates the id and kwargs here, with a clear error
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self._compute_reward = probe.compute_reward  # pure function of goals (threshold, type)
        self.env_id, self.num_envs = env_id, num_envs
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        if num_workers is None:
            num_workers = min(num_envs, os.cpu_count() or 1)
        self.num_workers = max(1, min(num_workers, num_envs))
        obs_dims = {k: self.single_observation_space[k].shape[0] for k in OBS_KEYS}
        self._layout = _Layout(num_envs, obs_dims, self.single_action_space.shape[0])
        self._closed = False
        bounds = np.linspace(0, num_envs, self.num_workers + 1).round().astype(int)
        slices = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        n_local = slices[0][1]
        self._local = [probe] + [make(env_id, **kwargs) for _ in range(n_local - 1)]
        self._procs: list = []
        self._conns: list = []
        self._slices = slices[1:]
        if not self._slices:
            self._buf = bytearray(self._layout.nbytes)
            self._v = self._layout.views(self._buf)
            return
        # fork starts in milliseconds and works from any script; workers only run PyBullet.
        # Pass start_method="forkserver" or "spawn" when the parent holds threads that matter.
        ctx = mp.get_context(start_method or ("fork" if "fork" in mp.get_all_start_methods() else "spawn"))
        self._buf = ctx.RawArray("b", self._layout.nbytes)
        self._v = self._layout.views(self._buf)
        for w, (a, b) in enumerate(self._slices, start=1):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(w, env_id, kwargs, b - a, a, self._layout, self._buf, child),
                               daemon=True, name=f"simgate-vec-{w}")
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns)
        atexit.register(self._finalizer)

    # ---- plumbing ----------------------------------------------------------------------------
    def _gather(self, conns) -> list[Any]:
        """Wait for one reply per conn (in worker order); a dead worker raises WorkerCrashedError."""
        pending = {c: i for i, c in enumerate(self._conns) if c in conns}
        results: dict[int, Any] = {}
        sentinels = {self._procs[i].sentinel: i for i in pending.values()}
        while pending:
            for r in wait(list(pending) + list(sentinels)):
                if r in pending:
                    i = pending.pop(r)
                    try:
                        status, payload = r.recv()
                    except (EOFError, OSError):
                        self._crash(i)
                    if status == "error":
                        self.close()
                        raise SimgateError(f"vector env worker {i + 1} raised:\n{payload}")
                    results[i] = payload
                    sentinels = {k: v for k, v in sentinels.items() if v != i}
                elif r in sentinels and sentinels[r] in pending.values():
                    self._crash(sentinels[r])
        return [results[i] for i in sorted(results)]

    def _crash(self, i: int):
        proc = self._procs[i]
        proc.join(timeout=1.0)
        code = proc.exitcode
        self.close()
        raise WorkerCrashedError(f"vector env worker {i + 1} (pid {proc.pid}) died with exit code {code}")

    def _check_open(self) -> None:
        if self._closed:
            raise SimgateError("vector env is closed")

    def _obs(self, prefix: str = "obs_") -> dict[str, np.ndarray]:
        return {k: self._v[prefix + k].copy() for k in OBS_KEYS}

    def _write_local(self, i: int, obs: dict, info: dict, prefix: str = "obs_") -> None:
        v = self._v
        for k in OBS_KEYS:
            v[prefix + k][i] = obs[k]
        if prefix == "obs_":
            v["is_success"][i] = info.get("is_success", False)
            v["commands_clipped"][i] = info.get("commands_clipped", 0)
            v["joint_limit_hits"][i] = info.get("joint_limit_hits", 0)

    # ---- Gymnasium VectorEnv API ---------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        self._check_open()
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        for c, (a, b) in zip(self._conns, self._slices, strict=True):
            c.send(("reset", seeds[a:b], options))
        infos = []
        for i, env in enumerate(self._local):
            obs, info = env.reset(seed=seeds[i], options=options)
            self._write_local(i, obs, info)
            infos.append(info)
        for part in self._gather(set(self._conns)):
            infos.extend(part)
        return self._obs(), self._batch_infos(infos)

    def step(self, actions):
        self._check_open()
        acts = np.asarray(actions, dtype=np.float32)
        if acts.shape != self.action_space.shape or not np.all(np.isfinite(acts)):
            raise ValueError(f"actions must be finite with shape {self.action_space.shape}, got shape {acts.shape}")
        try:
            return self._step(acts)
        except BaseException:
            self.close()  # a half-done step leaves workers out of sync: stop them all
            raise

    def _step(self, acts: np.ndarray):
        v = self._v
        v["action"][:] = acts
        for c in self._conns:
            c.send(("step",))
        extras: dict[int, dict] = {}
        for i, env in enumerate(self._local):
            obs, rew, term, trunc, info = env.step(v["action"][i])
            v["reward"][i], v["terminated"][i], v["truncated"][i] = rew, term, trunc
            if term or trunc:
                self._write_local(i, obs, info, "final_")
                v["final_success"][i] = info.get("is_success", False)
                obs, rinfo = env.reset()
                extras[i] = {"final_info": info, "reset_info": rinfo}
                info = rinfo
            elif "randomization" in info:
                extras[i] = {"randomization": info["randomization"]}
            self._write_local(i, obs, info)
        for part in self._gather(set(self._conns)):
            extras.update(part)
        n = self.num_envs
        infos: dict[str, Any] = {}
        for key in ("is_success", "commands_clipped", "joint_limit_hits"):
            infos[key], infos["_" + key] = v[key].copy(), np.ones(n, bool)
        done = v["terminated"] | v["truncated"]
        if done.any():
            final_obs = np.empty(n, dtype=object)
            final_info = np.empty(n, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = {k: v["final_" + k][i].copy() for k in OBS_KEYS}
                final_info[i] = extras.get(i, {}).get("final_info", {"is_success": bool(v["final_success"][i])})
            infos["final_obs"], infos["_final_obs"] = final_obs, done.copy()
            infos["final_info"], infos["_final_info"] = final_info, done.copy()
        for i, e in sorted(extras.items()):  # nested like gymnasium's vector infos
            r = e.get("randomization") or e.get("reset_info", {}).get("randomization")
            if r is not None:
                infos = self._add_info(infos, {"randomization": r}, i)
        return self._obs(), v["reward"].copy(), v["terminated"].copy(), v["truncated"].copy(), infos

    def _batch_infos(self, infos: list[dict]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, info in enumerate(infos):
            out = self._add_info(out, info, i)
        return out

    def compute_reward(self, achieved_goal, desired_goal, info=None) -> np.ndarray:
        """Batched reward, computed here (it depends only on the goals)."""
        return self._compute_reward(achieved_goal, desired_goal, info)

    def _targets(self):
        """(conn or None, local index) for every env, in env order."""
        out = [(None, i) for i in range(len(self._local))]
        for c, (a, b) in zip(self._conns, self._slices, strict=True):
            out += [(c, k) for k in range(b - a)]
        return out

    def call(self, name: str, *args, **kwargs) -> tuple[Any, ...]:
        self._check_open()
        results = []
        for conn, k in self._targets():
            if conn is None:
                attr = getattr(self._local[k], name)
                results.append(attr(*args, **kwargs) if callable(attr) else attr)
            else:
                conn.send(("call", k, name, args, kwargs))
                results.extend(self._gather({conn}))
        return tuple(results)

    def set_attr(self, name: str, values) -> None:
        self._check_open()
        values = values if isinstance(values, list | tuple) else [values] * self.num_envs
        for (conn, k), val in zip(self._targets(), values, strict=True):
            if conn is None:
                setattr(self._local[k], name, val)
            else:
                conn.send(("set", k, name, val))
                self._gather({conn})

    def close_extras(self, **kwargs) -> None:
        if self._closed:
            return
        self._closed = True
        if self._procs:
            self._finalizer()
        for env in self._local:
            env.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _shutdown(procs, conns) -> None:
    for c in conns:
        try:
            c.send(("close",))
        except (OSError, BrokenPipeError):
            pass
    for p in procs:
        p.join(timeout=1.0)
        if p.is_alive():
            p.terminate()
            p.join(timeout=1.0)
        if p.is_alive():
            p.kill()
            p.join()
    for c in conns:
        c.close()


def make_vec(env_id: str, num_envs: int, num_workers: int | None = None, **env_kwargs) -> ArmVectorEnv:
    """A Gymnasium ``VectorEnv`` of ``num_envs`` copies of ``env_id`` stepped by ``num_workers``
    processes including this one (default: one per core, at most ``num_envs``; 1 = all here).
    Keyword arguments go to each env (e.g. ``randomization="preset"``)."""
    return ArmVectorEnv(env_id, num_envs, num_workers, env_kwargs=env_kwargs)

