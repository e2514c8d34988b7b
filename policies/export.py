"""Export an SB3 policy to a self-contained TorchScript actor (torch alone runs it) and the
adapters that run policies: SB3 models, exported torch modules.

The exported module takes one float32 tensor (B, n): the Dict observation's arrays concatenated
in ``obs_keys`` order; it applies the training-time observation normalization itself and returns
the deterministic action (B, n_act) in the action space's bounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simgate.errors import ConfigError


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
    """Runs an exported TorchScript actor: torch only, no SB3 (what the gateway uses)."""

    def __init__(self, module_path: str | Path, layout: dict | None = None) -> None:
        module_path = Path(module_path)
        self.module = torch.jit.load(str(module_path), map_location="cpu").eval()
        self.layout = layout or json.loads(module_path.with_suffix(module_path.suffix + ".json").read_text())
        self.keys = self.layout["obs_keys"]

    def act(self, observation: dict) -> np.ndarray:
        x = torch.from_numpy(flatten_obs(observation, self.keys))
        with torch.no_grad():
            a = self.module(x).numpy()
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
