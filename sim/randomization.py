"""Domain randomization: a typed config of ranges, sampled once per episode from the env's seeded RNG.

Every field is ``None`` (off) or a ``[low, high]`` range; values are drawn uniformly (integers
for ``action_latency_steps``). The sampled values are returned in ``info["randomization"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Range(BaseModel):
    """Closed interval [low, high]."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            if len(v) != 2:
                raise ValueError(f"a range needs exactly [low, high], got {v!r}")
            return {"low": v[0], "high": v[1]}
        return v

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise ValueError("range bounds must be finite")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high)) if self.high > self.low else float(self.low)


def _bounded(name: str, r: Range | None, lo: float, hi: float) -> None:
    if r is not None and (r.low < lo or r.high > hi):
        raise ValueError(f"{name}: range [{r.low}, {r.high}] outside the allowed [{lo}, {hi}]")


class RandomizationConfig(BaseModel):
    """Per-episode domain randomization. All ``None`` = off (the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    link_mass_scale: Range | None = Field(None, description="multiplier on every robot link mass")
    lateral_friction: Range | None = Field(None, description="friction coefficient of object, table, fingers")
    joint_damping: Range | None = Field(None, description="joint damping, N*m*s/rad")
    object_size_scale: Range | None = Field(None, description="multiplier on the object edge length")
    object_mass_scale: Range | None = Field(None, description="multiplier on the object mass")
    action_latency_steps: Range | None = Field(None, description="delay of actions, in control steps (int)")
    action_noise_std: Range | None = Field(None, description="std of Gaussian noise on normalized actions")
    obs_noise_std: Range | None = Field(None, description="std of Gaussian noise on observations (m, m/s)")
    control_period_jitter: Range | None = Field(
        None, description="relative jitter of the control period; substeps drawn per step"
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> RandomizationConfig:
        _bounded("link_mass_scale", self.link_mass_scale, 0.1, 10.0)
        _bounded("lateral_friction", self.lateral_friction, 0.0, 5.0)
        _bounded("joint_damping", self.joint_damping, 0.0, 100.0)
        _bounded("object_size_scale", self.object_size_scale, 0.25, 4.0)
        _bounded("object_mass_scale", self.object_mass_scale, 0.05, 20.0)
        _bounded("action_latency_steps", self.action_latency_steps, 0, 10)
        _bounded("action_noise_std", self.action_noise_std, 0.0, 1.0)
        _bounded("obs_noise_std", self.obs_noise_std, 0.0, 0.1)
        _bounded("control_period_jitter", self.control_period_jitter, 0.0, 0.5)
        return self

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f) is not None for f in type(self).model_fields)

    @classmethod
    def preset(cls) -> RandomizationConfig:
        """A sensible sim-to-real preset (ranges typical of tabletop arm transfer work)."""
        return cls(
            link_mass_scale=Range(low=0.8, high=1.2),
            lateral_friction=Range(low=0.6, high=1.2),
            joint_damping=Range(low=0.0, high=0.5),
            object_size_scale=Range(low=0.9, high=1.1),
            object_mass_scale=Range(low=0.5, high=1.5),
            action_latency_steps=Range(low=0, high=1),
            action_noise_std=Range(low=0.0, high=0.05),
            obs_noise_std=Range(low=0.0, high=0.002),
            control_period_jitter=Range(low=0.0, high=0.1),
        )

    def sample(self, rng: np.random.Generator) -> dict[str, float]:
        """Draw one episode's values. Keys are present only for enabled fields."""
        out: dict[str, float] = {}
        for name in type(self).model_fields:
            r: Range | None = getattr(self, name)
            if r is None:
                continue
            if name == "action_latency_steps":
                out[name] = int(rng.integers(int(round(r.low)), int(round(r.high)) + 1))
            else:
                out[name] = r.sample(rng)
        return out


def resolve_randomization(value: RandomizationConfig | dict | str | bool | None) -> RandomizationConfig:
    """Accept a config, a dict, ``"preset"``/``True`` (the preset) or ``None``/``False`` (off)."""
    if value is None or value is False:
        return RandomizationConfig()
    if value is True or value == "preset":
        return RandomizationConfig.preset()
    if isinstance(value, RandomizationConfig):
        return value
    if isinstance(value, dict):
        return RandomizationConfig.model_validate(value)
    from simgate.errors import ConfigError

    raise ConfigError(f"randomization: expected a mapping, 'preset', true or false, got {value!r}")
