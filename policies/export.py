"""Export an SB3 policy to a self-contained TorchScript actor (torch alone runs it) and the
adapters that run policies: SB3 models, exported torch modules.

The exported module takes one float32 tensor (B, n): the Dict observation's arrays concatenated
in ``obs_keys`` order; it applies the training-time observation normalization itself and returns
the deterministic action (B, n_act) in the action space's bounds.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simgate.errors import ConfigError, SimgateError


class ExportedActor(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module, squash: bool, mean: torch.Tensor, std: torch.Tensor,
                 clip: float, low: torch.Tensor, high: torch.Tensor) -> None:
        super().__init__()
        self.body, self.head, self.squash, self.clip = body, head, squash, clip
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp((x - self.mean) / self.std, -self.clip, self.clip)
        a = self.head(self.body(x))
        if self.squash:
            a = torch.tanh(a)
            return self.low + 0.5 * (a + 1.0) * (self.high - self.low)
        return torch.maximum(torch.minimum(a, self.high), self.low)


def _norm_stats(obs_keys: list[str], sizes: list[int], vecnorm) -> tuple[torch.Tensor, torch.Tensor, float]:
    n = sum(sizes)
    if vecnorm is None or not getattr(vecnorm, "norm_obs", False):
        return torch.zeros(n), torch.ones(n), float("inf")
    means, stds = [], []
    for k in obs_keys:
        rms = vecnorm.obs_rms[k]
        means.append(torch.as_tensor(rms.mean, dtype=torch.float32).reshape(-1))
        stds.append(torch.sqrt(torch.as_tensor(rms.var, dtype=torch.float32).reshape(-1) + vecnorm.epsilon))
    return torch.cat(means), torch.cat(stds), float(vecnorm.clip_obs)


def build_actor(model, vecnorm=None) -> tuple[ExportedActor, dict]:
    """A plain torch module reproducing ``model.predict(obs, deterministic=True)``."""
    import copy

    space = model.observation_space
    obs_keys = list(space.spaces.keys())
    sizes = [int(np.prod(space[k].shape)) for k in obs_keys]
    pol = model.policy
    if hasattr(pol, "actor") and hasattr(pol.actor, "mu"):  # SAC / TQC
        body, head, squash = copy.deepcopy(pol.actor.latent_pi), copy.deepcopy(pol.actor.mu), True
    elif hasattr(pol, "action_net"):  # PPO (shared or separate extractor: both flatten + concat)
        body, head, squash = copy.deepcopy(pol.mlp_extractor.policy_net), copy.deepcopy(pol.action_net), False
    else:
        raise ConfigError(f"cannot export a {type(pol).__name__}")
    mean, std, clip = _norm_stats(obs_keys, sizes, vecnorm)
    low = torch.as_tensor(model.action_space.low, dtype=torch.float32)
    high = torch.as_tensor(model.action_space.high, dtype=torch.float32)
    actor = ExportedActor(body.cpu(), head.cpu(), squash, mean, std, clip, low, high).eval()
    meta = {"obs_keys": obs_keys, "obs_sizes": sizes, "action_dim": int(model.action_space.shape[0]),
            "format": "torchscript", "input": "float32 (B, sum(obs_sizes)) in obs_keys order"}
    return actor, meta


def export_torchscript(model, out_path: str | Path, vecnorm=None) -> dict:
    """Write ``out_path`` (TorchScript) and ``<out_path>.json`` (input layout). Returns the layout."""
    actor, meta = build_actor(model, vecnorm)
    example = torch.zeros(1, sum(meta["obs_sizes"]))
    with torch.no_grad():
        scripted = torch.jit.trace(actor, example)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(out_path))
    out_path.with_suffix(out_path.suffix + ".json").write_text(json.dumps(meta, indent=2))
    return meta


def flatten_obs(obs: dict, keys: list[str]) -> np.ndarray:
    """Concatenate a Dict observation (single or batched) in ``keys`` order, float32."""
    parts = [np.asarray(obs[k], dtype=np.float32) for k in keys]
    if parts[0].ndim == 1:
        return np.concatenate(parts)[None, :]
    return np.concatenate(parts, axis=-1)


class TorchPolicy:
    """Runs an exported TorchScript actor: torch only, no SB3 (what the gateway uses).

    ``TorchPolicy(path)`` loads a file this process trusts (its own export). A file from anyone
    else (a research worker, a registry entry) goes through :func:`load_checked_policy`."""

    def __init__(self, module_path: str | Path | None, layout: dict | None = None, module=None) -> None:
        if module is None:
            module_path = Path(module_path)
            module = torch.jit.load(str(module_path), map_location="cpu")
        self.module = module.eval()
        self.layout = layout or json.loads(Path(module_path).with_suffix(Path(module_path).suffix + ".json").read_text())
        self.keys = self.layout["obs_keys"]
        self.max_act_s: float | None = None  # set for checked artifacts: one forward over this is refused

    def act(self, observation: dict) -> np.ndarray:
        x = torch.from_numpy(flatten_obs(observation, self.keys))
        t0 = time.monotonic()
        with torch.no_grad():
            a = self.module(x).numpy()
        if self.max_act_s is not None and time.monotonic() - t0 > self.max_act_s:
            raise UnsafeArtifact(f"one forward pass took {time.monotonic() - t0:.2f} s, over the "
                                 f"{self.max_act_s:.2f} s limit for a checked artifact")
        return a[0] if np.asarray(observation[self.keys[0]]).ndim == 1 else a

    def reset(self) -> None:
        pass


class SB3Policy:
    """Runs an SB3 model (with its VecNormalize statistics, if any) deterministically."""

    def __init__(self, model, vecnorm=None) -> None:
        self.model, self.vecnorm = model, vecnorm

    def act(self, observation: dict) -> np.ndarray:
        obs = observation
        if self.vecnorm is not None and self.vecnorm.norm_obs:
            obs = self.vecnorm.normalize_obs({k: np.asarray(v, dtype=np.float32) for k, v in observation.items()})
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, dtype=np.float32)

    def reset(self) -> None:
        pass


# ---- artifacts from others: checked before anything in them runs -----------------------------------
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024
MAX_LAYOUT_BYTES = 64 * 1024
PROBE_LIMIT_S = 2.0  # one forward pass of a checked artifact (a honest MLP actor takes well under 10 ms)

# What simgate's own exports contain (trace of ExportedActor: SAC and PPO actors, every activation
# an SB3 net_arch can use) plus shape plumbing. Pure tensor arithmetic: no I/O, no loops, no
# branches, no exceptions, no calls left after inlining, no custom classes.
ALLOWED_OPS = frozenset({
    "prim::Constant", "prim::GetAttr", "prim::ListConstruct", "prim::TupleConstruct", "prim::TupleUnpack",
    "prim::ListUnpack", "prim::NumToTensor", "prim::TupleIndex", "prim::device", "prim::dtype",
    "aten::linear", "aten::addmm", "aten::matmul", "aten::mm", "aten::bmm", "aten::t", "aten::transpose",
    "aten::relu", "aten::tanh", "aten::elu", "aten::leaky_relu", "aten::sigmoid", "aten::gelu", "aten::silu",
    "aten::softplus", "aten::hardtanh", "aten::selu", "aten::mish",
    "aten::add", "aten::sub", "aten::rsub", "aten::mul", "aten::div", "aten::neg", "aten::abs", "aten::exp",
    "aten::sqrt", "aten::rsqrt", "aten::pow", "aten::clamp", "aten::clamp_min", "aten::clamp_max",
    "aten::maximum", "aten::minimum",
    "aten::cat", "aten::slice", "aten::select", "aten::unsqueeze", "aten::squeeze", "aten::reshape", "aten::view",
    "aten::flatten", "aten::contiguous", "aten::to", "aten::size", "aten::dim", "aten::Int", "aten::Float",
    "aten::ScalarImplicit", "aten::detach", "aten::layer_norm",
})


class UnsafeArtifact(SimgateError):
    """An artifact refused before (or while) running: the message is simgate's own, safe to record."""


def read_regular_file(path: str | Path, cap: int = MAX_ARTIFACT_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file (not a symlink, FIFO, device...) of at most
    ``cap`` bytes; reads at most cap + 1 bytes whatever the file claims. Raises UnsafeArtifact."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UnsafeArtifact(f"{path}: no such file") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise UnsafeArtifact(f"{path}: {what} (mode {oct(st.st_mode)}); refusing to read it")
    if st.st_size > cap:
        raise UnsafeArtifact(f"{path}: {st.st_size} bytes, over the {cap}-byte cap")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise UnsafeArtifact(f"{path}: cannot open it safely ({type(exc).__name__})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between lstat and open
            raise UnsafeArtifact(f"{path}: not a regular file; refusing to read it")
        chunks, total = [], 0
        while total <= cap:
            b = os.read(fd, min(1 << 20, cap + 1 - total))
            if not b:
                break
            chunks.append(b)
            total += len(b)
    finally:
        os.close(fd)
    if total > cap:
        raise UnsafeArtifact(f"{path}: over the {cap}-byte cap")
    return b"".join(chunks)


def _check_layout(layout) -> dict:
    ok = (isinstance(layout, dict) and isinstance(layout.get("obs_keys"), list) and isinstance(layout.get("obs_sizes"), list)
          and len(layout["obs_keys"]) == len(layout["obs_sizes"]) > 0
          and all(isinstance(k, str) for k in layout["obs_keys"])
          and all(type(n) is int and 0 < n <= 4096 for n in layout["obs_sizes"])
          and type(layout.get("action_dim")) is int and 0 < layout["action_dim"] <= 256)
    if not ok:
        raise UnsafeArtifact("layout (policy.ts.json) malformed: needs obs_keys, obs_sizes (positive ints) and action_dim")
    return layout


_SAFE_TYPES = (torch._C.TensorType, torch._C.IntType, torch._C.FloatType, torch._C.BoolType, torch._C.NoneType,
               torch._C.NumberType, torch._C.DeviceObjType)


def _type_ok(t) -> bool:
    if isinstance(t, _SAFE_TYPES):
        return True
    if isinstance(t, (torch._C.ListType, torch._C.OptionalType)):
        return _type_ok(t.getElementType())
    if isinstance(t, torch._C.TupleType):
        return all(_type_ok(e) for e in t.elements())
    return False


def _check_block(block, where: str, module_types: set[str], bad: list[str]) -> None:
    for node in block.nodes():
        kind = node.kind()
        if kind not in ALLOWED_OPS:
            bad.append(f"{kind} in {where}")
        for out in node.outputs():
            t = out.type()
            if _type_ok(t):
                continue
            if kind == "prim::Constant" and isinstance(t, torch._C.StringType):
                continue
            if kind == "prim::GetAttr" and isinstance(t, torch._C.ClassType) and t.qualified_name() in module_types:
                continue
            bad.append(f"a {str(t)[:60]} value from {kind} in {where}")
        for b in node.blocks():
            _check_block(b, where, module_types, bad)


def check_torchscript(data: bytes, layout: dict) -> torch.jit.ScriptModule:
    """THE check for a TorchScript actor from someone else (research workers, registry entries).

    Before anything in the archive runs: no ``__setstate__`` (torch.jit.load would run it). Then
    every method of every submodule, inlined, recursively through blocks, may use only
    ``ALLOWED_OPS`` on tensors and numbers (no file or process ops, no loops, no branches, no
    raise, no custom classes, no strings but constants). Then one forward pass on zeros must
    finish within ``PROBE_LIMIT_S`` and return a finite (1, action_dim) action. Returns the module;
    raises UnsafeArtifact (a message made by simgate: never the artifact's own text)."""
    layout = _check_layout(layout)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
        for name in names:
            if "/data/" in name and not name.endswith((".py", ".pkl")):
                continue  # tensor storage
            if re.search(rb"__setstate__|__getstate__", zf.read(name)):
                raise UnsafeArtifact(f"archive member {name[:80]!r} defines __setstate__/__getstate__ (code that "
                                     "would run on load)")
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnsafeArtifact(f"not a TorchScript archive ({type(exc).__name__})") from None
    try:
        mod = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any load failure is a refusal; its text is not echoed
        raise UnsafeArtifact(f"does not load as TorchScript ({type(exc).__name__})") from None
    if not isinstance(mod, torch.jit.ScriptModule):
        raise UnsafeArtifact("not a TorchScript module")
    subs = list(mod.named_modules())
    module_types = {m._c._type().qualified_name() for _, m in subs}
    bad: list[str] = []
    for mname, m in subs:
        for meth in m._c._method_names():
            g = m._c._get_method(meth).graph.copy()
            torch._C._jit_pass_inline(g)
            _check_block(g, f"{mname or 'root'}.{meth}"[:80], module_types, bad)
    if bad:
        uniq = sorted(set(bad))
        raise UnsafeArtifact(f"operations outside the pure-tensor allow-list: {'; '.join(uniq[:8])}"
                             + (f" (+{len(uniq) - 8} more)" if len(uniq) > 8 else ""))
    x = torch.zeros(1, sum(layout["obs_sizes"]))
    t0 = time.monotonic()
    try:
        with torch.no_grad():
            y = mod(x)
    except Exception as exc:  # noqa: BLE001
        raise UnsafeArtifact(f"forward pass on zeros failed ({type(exc).__name__})") from None
    dt = time.monotonic() - t0
    if dt > PROBE_LIMIT_S:
        raise UnsafeArtifact(f"one forward pass took {dt:.2f} s, over the {PROBE_LIMIT_S} s limit")
    if (not isinstance(y, torch.Tensor) or tuple(y.shape) != (1, layout["action_dim"])
            or not bool(torch.isfinite(y).all())):
        raise UnsafeArtifact(f"forward pass on zeros does not return a finite (1, {layout['action_dim']}) action")
    return mod


def load_checked_policy(module_path: str | Path) -> TorchPolicy:
    """A :class:`TorchPolicy` from someone else's files: regular files only, size-capped, the
    TorchScript checked by :func:`check_torchscript` before it is used; each forward is timed."""
    module_path = Path(module_path)
    data = read_regular_file(module_path)
    raw = read_regular_file(module_path.with_suffix(module_path.suffix + ".json"), MAX_LAYOUT_BYTES)
    try:
        layout = json.loads(raw)
    except ValueError:
        raise UnsafeArtifact("layout (policy.ts.json) is not JSON") from None
    mod = check_torchscript(data, layout)
    pol = TorchPolicy(None, layout=layout, module=mod)
    pol.max_act_s = PROBE_LIMIT_S
    return pol
