"""One twin step captured in a CUDA graph and replayed (``TwinVecEnv(cuda_graph=True)``).

A Push step is ~3,500 small torch ops; eager CUDA pays a kernel launch for each, so the GPU
idles between them. A CUDA graph launches the whole step at once. Graphs replay fixed memory:
the step's state lives in *static* tensors, and every state tensor the step rebinds
(``self.q = torch.where(...)``) is copied back into its static tensor at the end of the step,
inside the graph. Outputs are the graph's own tensors, rewritten by each replay.

Capture needs a sync-free step (no tensor read back to Python; ``TwinVecEnv.sync_free``) and
graph-safe randomness: the env's draws use the default CUDA generator (``env.gen = None``).
Capturing runs a few warm-up steps on a side stream; the env's state before them is restored.
"""

from __future__ import annotations

import torch

from simgate.errors import ConfigError

WARMUP_STEPS = 3


class StaticState:
    """The env's state tensors by key (attributes, ``box`` and ``dr`` entries), and the copy of
    rebound ones back into the static tensors: after ``restore(before)`` every key again names
    the tensor it named in ``before``, holding the new value."""

    def __init__(self, env) -> None:
        self.env = env

    def snapshot(self) -> dict[tuple[str, str], torch.Tensor]:
        env, out = self.env, {}
        for name, v in vars(env).items():
            if isinstance(v, torch.Tensor):
                out[("attr", name)] = v
        for group in ("box", "dr"):
            for k, v in getattr(env, group).items():
                out[(group, k)] = v
        return out

    def restore(self, before: dict[tuple[str, str], torch.Tensor]) -> None:
        now = self.snapshot()
        for key, static in before.items():
            cur = now[key]
            if cur is not static:
                static.copy_(cur)
                self._set(key, static)

    def _set(self, key, tensor) -> None:
        group, name = key
        if group == "attr":
            setattr(self.env, name, tensor)
        else:
            getattr(self.env, group)[name] = tensor


class CudaGraphStep:
    """Captures ``env._step`` at the first ``step`` call and replays it from then on."""

    def __init__(self, env) -> None:
        if env.device.type != "cuda":
            raise ConfigError(f"cuda_graph needs a CUDA twin, got device {env.device}")
        self.env, self.state = env, StaticState(env)
        env.gen = None  # graph-safe randomness: the default CUDA generator
        self.graph: torch.cuda.CUDAGraph | None = None
        self.action: torch.Tensor | None = None
        self.out = None

    def run_eager(self, fn, *args):
        """Run ``fn`` on the env outside the graph, keeping the static tensors the graph reads."""
        before = self.state.snapshot()
        result = fn(*args)
        self.state.restore(before)
        return result

    def _body(self):
        before = self.state.snapshot()
        out = self.env._step(self.action)
        self.state.restore(before)
        return out

    def _capture(self) -> None:
        keep = {k: v.clone() for k, v in self.state.snapshot().items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._body()
        for key, static in self.state.snapshot().items():  # undo the warm-up steps
            if key in keep:
                static.copy_(keep[key])

    def step(self, actions):
        a = torch.as_tensor(actions, device=self.env.device, dtype=self.env.dtype)
        if self.action is None:
            self.action = torch.zeros_like(a)
        self.action.copy_(a)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        obs, reward, terminated, truncated, infos = self.out  # fresh dicts: a caller may edit its own
        infos = {k: dict(v) if isinstance(v, dict) else v for k, v in infos.items()}
        return dict(obs), reward, terminated, truncated, infos
