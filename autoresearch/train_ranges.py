"""Training randomization ranges as search parameters (DrEureka's idea: tune the ranges a policy is
trained under; judge it under the program's fixed evaluation conditions).

A search-space key ``train_randomization.<field>.low`` or ``.high`` (``<field>``: a range of
sim/randomization.py's RandomizationConfig, e.g. ``lateral_friction``) sets one bound of that range
of the trial's *training* randomization. Everything else comes from the trial's recipe: its
``train_randomization``, else its ``randomization`` (``preset`` = the preset's ranges), else none; a
field the recipe does not randomize starts from the preset's range (so the baseline trial, at the
base values, trains under that range too). Both bounds of a field are applied together, whatever
the order of the keys; a low drawn above its high swaps with it. What a trial is judged under never moves: the gate, selection and promotion use the
program's ``metric.under``.

Where the ranges go: ``train_randomization`` for ``twin_ppo`` (the twin's training envs only), the
recipe's ``randomization`` for the PyBullet algorithms (they train in the env they are given; the
research worker evaluates them under the metric's conditions either way).
"""

from __future__ import annotations

import re
from typing import Any

from simgate.sim.randomization import RandomizationConfig, resolve_randomization

PREFIX = "train_randomization."
_KEY = re.compile(r"^train_randomization\.([a-z_]+)\.(low|high)$")


def is_range_key(name: str) -> bool:
    return name.startswith(PREFIX)


def check_range_key(name: str, param_type: str, low: float | None, high: float | None) -> None:
    """Raise ValueError unless ``name`` is ``train_randomization.<field>.<low|high>`` of a number
    whose whole interval [low, high] is allowed for that field (friction <= 5, latency <= 10 ...)."""
    m = _KEY.fullmatch(name)
    fields = sorted(RandomizationConfig.model_fields)
    if not m or m.group(1) not in RandomizationConfig.model_fields:
        raise ValueError(f"{name!r}: a training range is searched as train_randomization.<field>.<low|high>, "
                         f"field one of {fields}")
    if param_type == "categorical":
        raise ValueError(f"{name!r}: a range bound is a number (type float or int)")
    try:
        RandomizationConfig.model_validate({m.group(1): [low, high]})
    except ValueError as exc:
        raise ValueError(f"{name!r}: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}") from None


def _ranges(cfg: RandomizationConfig) -> dict[str, list[float]]:
    return {k: [r.low, r.high] for k in type(cfg).model_fields if (r := getattr(cfg, k)) is not None}


def base_ranges(fields: dict[str, Any]) -> dict[str, list[float]]:
    """The training ranges of recipe ``fields`` before any searched bound."""
    train = fields.get("train_randomization")
    return _ranges(resolve_randomization(train if train is not None else fields.get("randomization")))


def bound_of(fields: dict[str, Any], name: str) -> float:
    """The value ``name`` (a range key) has in recipe ``fields`` (the preset's where it is off)."""
    field, which = _KEY.fullmatch(name).groups()
    lo_hi = base_ranges(fields).get(field) or _ranges(RandomizationConfig.preset())[field]
    return float(lo_hi[0 if which == "low" else 1])


def fold_range_params(fields: dict[str, Any]) -> dict[str, Any]:
    """Recipe ``fields`` with every range key folded into the training randomization (validated)."""
    bounds = {k: fields[k] for k in fields if is_range_key(k)}
    if not bounds:
        return dict(fields)
    out = {k: v for k, v in fields.items() if k not in bounds}
    ranges, preset = base_ranges(out), _ranges(RandomizationConfig.preset())
    given: dict[str, dict[str, float]] = {}  # field -> {"low"/"high": value}: both bounds first, in any key order
    for name, value in bounds.items():
        field, which = _KEY.fullmatch(name).groups()
        given.setdefault(field, {})[which] = value
    for field, b in given.items():
        lo, hi = ranges.get(field) or preset[field]
        lo, hi = b.get("low", lo), b.get("high", hi)
        ranges[field] = [min(lo, hi), max(lo, hi)]
    RandomizationConfig.model_validate(ranges)  # the allowed bounds (friction <= 5, latency <= 10 ...)
    out["train_randomization" if out.get("algo") == "twin_ppo" else "randomization"] = ranges
    return out
