"""The research program: ``program.md`` = validated YAML front matter + free prose.

Every field is checked before any compute is spent; each error names the field. The prose after
the front matter is kept for humans and agents (``Program.prose``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simgate.errors import ConfigError

METRICS = {"success_rate": "maximize", "mean_return": "maximize"}  # what the harness produces
PROTECTED = {"evaluation_harness", "holdout_seeds", "selection_seeds"}
RECIPE_FIELDS_NOT_SEARCHABLE = {"env_id", "eval_every_steps", "eval_episodes", "checkpoint_every_steps", "device",
                                "init_from", "seed"}  # a trial's seed comes from its number and the study_seed
# training seeds stay below 1e6, where the public selection seeds begin (policies/evaluation.py), and
# trial n < 1000 of one study seed never meets a trial of the next
MAX_STUDY_SEED, MAX_SEEDED_TRIALS = 899, 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Task(_Strict):
    env_id: str
    robot: str | None = Field(None, description="robot spec (built-in name or .yaml, relative to the program "
                                                "file) the env id belongs to; a spec you bring registers its ids")


CONDITIONS = ("nominal", "preset")  # named evaluation conditions of a metric (or a mapping of ranges)


class Metric(BaseModel):
    """What the harness measures and under which conditions: ``under`` = ``nominal`` (the task as
    defined), ``preset`` (sim/randomization.py's sim-to-real preset: the emulated hardware's
    dynamics) or a mapping of randomization ranges (RandomizationConfig fields, e.g.
    ``{action_latency_steps: [0, 2]}``). The gate, the trials' selection evaluation and promotion
    all evaluate under these conditions."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "success_rate"
    direction: Literal["maximize", "minimize"] = "maximize"
    under: str | dict[str, list[float]] = Field("nominal", description="evaluation conditions: 'nominal', 'preset' "
                                                                       "or a mapping of randomization ranges")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"metric {v!r} is not produced by the evaluation harness; choose one of {sorted(METRICS)}")
        return v

    @field_validator("under", mode="before")
    @classmethod
    def _conditions(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v not in CONDITIONS:
                raise ValueError(f"{v!r} is not an evaluation condition: use one of {list(CONDITIONS)} or a mapping "
                                 "of randomization ranges")
            return v
        if not isinstance(v, dict) or not v:
            raise ValueError(f"expected one of {list(CONDITIONS)} or a non-empty mapping of randomization ranges, "
                             f"got {v!r}")
        from simgate.sim.randomization import RandomizationConfig

        try:
            cfg = RandomizationConfig.model_validate(v)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ValueError(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}") from None
        return {k: [r.low, r.high] for k in type(cfg).model_fields if (r := getattr(cfg, k)) is not None}

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``sim.make`` for these conditions."""
        return {} if self.under == "nominal" else {"randomization": self.under}

    def conditions(self) -> str | dict[str, list[float]]:
        """What the ledger records: the name, or the ranges."""
        return self.under if isinstance(self.under, str) else dict(self.under)

    def label(self) -> str:
        """For people: 'nominal', 'the randomization preset', 'randomized (k ranges)'."""
        if self.under == "nominal":
            return "nominal"
        if self.under == "preset":
            return "the randomization preset"
        return "randomization " + ", ".join(f"{k} {lo:g}-{hi:g}" for k, (lo, hi) in self.under.items())


class Budgets(_Strict):
    trial_env_steps: int = Field(gt=0)
    trial_wall_s: float = Field(gt=0, description="a trial running longer is killed and recorded as such")
    total_wall_s: float = Field(gt=0)
    max_trials: int = Field(gt=0)


class Param(_Strict):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    when: dict[str, Any] | None = Field(None, description="only sampled when these other params have these values")

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical parameter needs a non-empty 'choices'")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"{self.type} parameter needs 'low' and 'high'")
            if not (math.isfinite(self.low) and math.isfinite(self.high)):
                raise ValueError(f"low and high must be finite numbers, got [{self.low}, {self.high}]")
            if self.low >= self.high:
                raise ValueError(f"low ({self.low}) must be < high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("log scale needs low > 0")
        return self


class Acceptance(_Strict):
    selection_episodes: int = Field(30, gt=0, description="episodes per trial on the selection seeds")
    fresh_episodes: int = Field(100, gt=0, description="secret fresh episodes at the gate's first look")
    max_fresh_episodes: int = Field(800, gt=0, description="the sequential test's last look (close calls only)")
    min_improvement: float = Field(0.0, ge=0, description="required gain over the incumbent on fresh seeds")
    false_keep_per_study: float = Field(0.01, gt=0, lt=1, description="chance of keeping any equal candidate in a study")
    reproduce_alpha: float = Field(0.01, gt=0, lt=1, description="claim vs fresh: one-sided Fisher test level")
    reproduce_tolerance: float = Field(0.0, ge=0, description="claimed - fresh within this slack is never rejected")
    noise_floor_cap: float = Field(0.05, ge=0, le=1, description="the measured noise floor raises the threshold "
                                                                "at most to this (a bad baseline cannot block the study)")


class Promotion(_Strict):
    holdout_episodes: int = Field(100, gt=0)
    min_holdout_success: float = Field(0.95, ge=0, le=1)
    min_robust_success: float = Field(0.0, ge=0, le=1, description="under the randomization preset")
    max_safety_violations: int = Field(0, ge=0, description="self-collision steps on the holdout episodes")
    auto_promote: bool = True
    max_attempts: int = Field(3, ge=1, description="promotion attempts per study, each on a fresh secret holdout sample")
    audit: bool = Field(True, description="re-train the candidate from its reported params and seed before promotion")


class Proposer(_Strict):
    sampler: Literal["tpe", "cmaes", "random", "grid"] = "tpe"
    n_startup_trials: int = Field(4, ge=0)
    prune: bool = True
    initial_candidates: list[dict[str, Any]] = Field(
        default_factory=list, description="complete points of the search space the coordinator enqueues after the "
                                          "baselines, before the sampler's own: a configuration known to be worth "
                                          "trying (warm start). They go through the gate like every candidate")


class ProgramSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    task: Task
    metric: Metric = Metric()
    budgets: Budgets
    base_recipe: dict[str, Any] = Field(default_factory=dict, description="recipe fields fixed for every trial")
    search_space: dict[str, Param]
    acceptance: Acceptance = Acceptance()
    promotion: Promotion = Promotion()
    proposer: Proposer = Proposer()
    study_seed: int = Field(0, ge=0, le=MAX_STUDY_SEED,
                            description="trial n trains with seed 7000 + 1000 * study_seed + n (the audit re-trains "
                                        "with the same): studies that differ only here are independent repeats")
    protected: list[str] = Field(default_factory=lambda: sorted(PROTECTED))

    @field_validator("search_space")
    @classmethod
    def _space(cls, v: dict[str, Param]) -> dict[str, Param]:
        if not v:
            raise ValueError("search space is empty: nothing to search")
        from simgate.autoresearch.train_ranges import check_range_key, is_range_key
        from simgate.policies.recipes import RecipeConfig

        allowed = set(RecipeConfig.model_fields) - RECIPE_FIELDS_NOT_SEARCHABLE
        for name, p in v.items():
            if is_range_key(name):
                check_range_key(name, p.type, p.low, p.high)
            elif name not in allowed:
                raise ValueError(f"{name!r} cannot be searched (searchable: {sorted(allowed)}, and training "
                                 "ranges as train_randomization.<field>.<low|high>)")
            if p.when:
                for dep in p.when:
                    if dep not in v:
                        raise ValueError(f"{name}.when refers to {dep!r}, which is not in the search space")
        return v

    @field_validator("protected")
    @classmethod
    def _protected(cls, v: list[str]) -> list[str]:
        missing = PROTECTED - set(v)
        if missing:
            raise ValueError(f"{sorted(missing)} are always protected and cannot be removed")
        return v

    @model_validator(mode="after")
    def _recipe(self) -> ProgramSpec:
        from simgate.policies.recipes import RecipeConfig
        from simgate.policies.robot_meta import prepare_recipe_robot
        from simgate.sim.registry import parse_env_id

        prepare_recipe_robot(self.task.env_id, self.task.robot)
        parse_env_id(self.task.env_id)
        bad = set(self.base_recipe) - set(RecipeConfig.model_fields)
        if bad:
            raise ValueError(f"base_recipe: unknown recipe field(s) {sorted(bad)}")
        if "seed" in self.base_recipe:
            raise ValueError("base_recipe.seed: a trial's training seed is 7000 + 1000 * study_seed + its number; "
                             "set study_seed instead")
        if self.study_seed and self.budgets.max_trials > MAX_SEEDED_TRIALS:
            raise ValueError(f"budgets.max_trials: at most {MAX_SEEDED_TRIALS} with a study_seed (trial 1000 would "
                             "train the next study seed's trial 0)")
        overlap = set(self.base_recipe) & set(self.search_space)
        if overlap:
            raise ValueError(f"base_recipe and search_space both set {sorted(overlap)}")
        _check_randomizations(self)
        for i, point in enumerate(self.proposer.initial_candidates):
            try:
                validate_params(self, point, complete=True)
            except ValueError as exc:
                raise ValueError(f"proposer.initial_candidates[{i}]: {exc}") from None
        return self


def _check_randomizations(spec: ProgramSpec) -> None:
    """Checked at load, not after the study is pinned: the base recipe, and the base recipe with each
    choice of a searched categorical, are valid recipes (RecipeConfig's own rules, e.g.
    train_randomization for twin_ppo only) whose randomizations are valid RandomizationConfigs."""
    from simgate.policies.recipes import default_recipe
    from simgate.sim.randomization import resolve_randomization

    cases = [("base_recipe", {})] + [(f"search_space.{k}.choices[{i}]", {k: c}) for k, p in spec.search_space.items()
                                     if p.type == "categorical" for i, c in enumerate(p.choices)]
    def check(where: str, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except (ValueError, ConfigError) as exc:
            msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ValueError(f"{where}: {msg}") from None

    for where, choice in cases:
        fields = {**spec.base_recipe, **choice}
        for k in ("randomization", "train_randomization"):
            check(f"{where}.{k}" if where == "base_recipe" else where, resolve_randomization, fields.get(k))
        check(where, default_recipe, spec.task.env_id, **fields, robot=spec.task.robot)


class Program(BaseModel):
    spec: ProgramSpec
    prose: str
    path: str
    text: str  # the file as read: pinned by the study
    sha256: str  # of ``text``
    spec_sha256: str  # of the effective spec (smoke overrides applied)


_FRONT = re.compile(r"^---\s*\n(.*?)\n---\s*\n?(.*)$", re.S)


PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"


def builtin_programs() -> list[str]:
    """Names of the programs shipped with simgate (``reach``, ``push``)."""
    return sorted(p.stem for p in PROGRAMS_DIR.glob("*.md"))


def resolve_program_path(path: str | Path) -> Path:
    """A program file, or the name of a built-in program."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p} is a directory, not a program: pass a program file or a built-in name "
                          f"({', '.join(builtin_programs())}), and a study's directory as --study-dir")
    if p.exists():
        return p
    if str(path) in builtin_programs():
        return PROGRAMS_DIR / f"{path}.md"
    raise ConfigError(f"program file not found: {p} (built-in programs: {', '.join(builtin_programs())})")


# SIMGATE_SMOKE=1: every program's budgets shrink to a smoke run (CI, the README's commands);
# the figures such a run prints say nothing about the recipe
# The gate's logic stays on: secret seeds, the reproduce test, the paired sequential test, the
# audit, bounded promotion attempts; only episode counts and the promotion thresholds a 1500-step
# policy cannot meet are smaller.
SMOKE_OVERRIDES: dict[str, Any] = {
    "budgets": {"trial_env_steps": 1500, "trial_wall_s": 90, "total_wall_s": 120, "max_trials": 2},
    "acceptance": {"selection_episodes": 10, "fresh_episodes": 10, "max_fresh_episodes": 40},
    "promotion": {"holdout_episodes": 10, "min_holdout_success": 0.0, "min_robust_success": 0.0,
                  "max_safety_violations": 100000},
}


def smoke_mode() -> bool:
    return os.environ.get("SIMGATE_SMOKE", "") not in ("", "0")


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` applied recursively (nested dicts merged, other values replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def split_front_matter(path: Path) -> tuple[dict, str]:
    """(front matter as a dict, prose) of a program file."""
    m = _FRONT.match(path.read_text())
    if not m:
        raise ConfigError(f"{path}: needs YAML front matter between '---' lines at the top")
    try:
        return yaml.safe_load(m.group(1)) or {}, m.group(2)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: front matter is not valid YAML: {exc}") from exc


def load_program(path: str | Path) -> Program:
    """Load a program file (or a built-in program by name). ``SIMGATE_SMOKE=1`` shrinks its budgets."""
    path = resolve_program_path(path)
    text = path.read_text()
    data, prose = split_front_matter(path)
    if smoke_mode() and isinstance(data, dict):
        data = merge(data, SMOKE_OVERRIDES)
    robot = (data.get("task") or {}).get("robot") if isinstance(data, dict) else None
    if isinstance(robot, str) and Path(robot).suffix and (path.parent / robot).exists():
        data = merge(data, {"task": {"robot": str((path.parent / robot).resolve())}})
    try:
        spec = ProgramSpec.model_validate(data)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {errs}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    spec_sha = hashlib.sha256(spec.model_dump_json(exclude=_unhashed_defaults(spec)).encode()).hexdigest()
    return Program(spec=spec, prose=prose.strip(), path=str(path), text=text,
                   sha256=hashlib.sha256(text.encode()).hexdigest(), spec_sha256=spec_sha)


def _unhashed_defaults(spec: ProgramSpec) -> dict:
    """A nominal metric and study seed 0 hash as before ``under`` and ``study_seed`` existed: studies
    pinned earlier still resume."""
    exclude: dict = {}
    if spec.metric.under == "nominal":
        exclude["metric"] = {"under"}
    if spec.study_seed == 0:
        exclude["study_seed"] = True
    return exclude


def check_pinned(program: Program, pinned_sha256: str, pinned_spec_sha256: str, where: str) -> None:
    """Refuse a program other than the one the study pinned (naming both hashes)."""
    if program.sha256 != pinned_sha256:
        raise ConfigError(f"{program.path}: program sha256 {program.sha256[:16]} differs from the one {where} pinned "
                          f"({pinned_sha256[:16]}); a study runs one program - use a new study name")
    if program.spec_sha256 != pinned_spec_sha256:
        raise ConfigError(f"{program.path}: effective program (spec sha256 {program.spec_sha256[:16]}) differs from the "
                          f"one {where} pinned ({pinned_spec_sha256[:16]}): SIMGATE_SMOKE set differently?")


# ---- the search space, enforced on the trusted side ---------------------------------------------
def same_value(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down: 64 is not 64.0, true is not 1, [64, 64.0]
    is not [64, 64] (a choice is trained exactly as written)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def _check_value(name: str, prm: Param, value: Any) -> None:
    if prm.type == "categorical":
        if not any(same_value(value, c) for c in prm.choices):
            raise ValueError(f"{name}: {value!r} is not one of {prm.choices}")
        return
    if prm.type == "int":
        if type(value) is not int:
            raise ValueError(f"{name}: {value!r} is not an integer")
    elif type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not a finite number")
    if not (prm.low <= value <= prm.high):
        raise ValueError(f"{name}: {value} outside [{prm.low}, {prm.high}]")


def _active(spec: ProgramSpec, params: dict[str, Any], name: str) -> bool:
    prm = spec.search_space[name]
    return not prm.when or all(d in params and params[d] == v for d, v in prm.when.items())


def validate_params(spec: ProgramSpec, params: Any, complete: bool = True) -> dict[str, Any]:
    """Strict check of parameter values against the search space: no bool for a number, no 2.5
    for an int, no lists or strings for numbers. ``complete``: every active parameter present and
    no inactive one (a trained trial); otherwise a subset (a proposal). Raises ValueError."""
    if not isinstance(params, dict):
        raise ValueError(f"params must be a JSON object of search-space values, got {type(params).__name__}")
    for name, value in params.items():
        if name not in spec.search_space:
            raise ValueError(f"{name!r} is not in the program's search space")
        _check_value(name, spec.search_space[name], value)
    if complete:
        for name in spec.search_space:
            if _active(spec, params, name) != (name in params):
                state = "missing" if name not in params else "set although its 'when' does not hold"
                raise ValueError(f"{name}: {state}")
    return dict(params)
