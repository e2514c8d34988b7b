"""The research program: ``program.md`` = validated YAML front matter + free prose.

Every field is checked before any compute is spent; each error names the field. The prose after
the front matter is kept for humans and agents (``Program.prose``).
"""

from __future__ import annotations

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
                                "init_from"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Task(_Strict):
    env_id: str
    robot: str | None = None


class Metric(_Strict):
    name: str = "success_rate"
    direction: Literal["maximize", "minimize"] = "maximize"

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"metric {v!r} is not produced by the evaluation harness; choose one of {sorted(METRICS)}")
        return v


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
            if self.low >= self.high:
                raise ValueError(f"low ({self.low}) must be < high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("log scale needs low > 0")
        return self


class Acceptance(_Strict):
    selection_episodes: int = Field(30, gt=0, description="episodes per trial on the selection seeds")
    fresh_episodes: int = Field(50, gt=0, description="episodes of the trusted re-evaluation on fresh seeds")
    min_improvement: float = Field(0.0, ge=0, description="required gain over the incumbent on fresh seeds")
    significance: float = Field(0.05, gt=0, lt=1, description="one-sided p-value of the paired test")
    reproduce_tolerance: float = Field(0.1, ge=0, description="claimed - fresh metric larger than this = not reproduced")


class Promotion(_Strict):
    holdout_episodes: int = Field(100, gt=0)
    min_holdout_success: float = Field(0.95, ge=0, le=1)
    min_robust_success: float = Field(0.0, ge=0, le=1, description="under the randomization preset")
    max_safety_violations: int = Field(0, ge=0, description="self-collision steps on the holdout episodes")
    auto_promote: bool = True


class Proposer(_Strict):
    sampler: Literal["tpe", "cmaes", "random", "grid"] = "tpe"
    n_startup_trials: int = Field(4, ge=0)
    prune: bool = True


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
    protected: list[str] = Field(default_factory=lambda: sorted(PROTECTED))

    @field_validator("search_space")
    @classmethod
    def _space(cls, v: dict[str, Param]) -> dict[str, Param]:
        if not v:
            raise ValueError("search space is empty: nothing to search")
        from simgate.policies.recipes import RecipeConfig

        allowed = set(RecipeConfig.model_fields) - RECIPE_FIELDS_NOT_SEARCHABLE
        for name, p in v.items():
            if name not in allowed:
                raise ValueError(f"{name!r} cannot be searched (searchable: {sorted(allowed)})")
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
        from simgate.sim.registry import parse_env_id

        parse_env_id(self.task.env_id)
        bad = set(self.base_recipe) - set(RecipeConfig.model_fields)
        if bad:
            raise ValueError(f"base_recipe: unknown recipe field(s) {sorted(bad)}")
        overlap = set(self.base_recipe) & set(self.search_space)
        if overlap:
            raise ValueError(f"base_recipe and search_space both set {sorted(overlap)}")
        return self


class Program(BaseModel):
    spec: ProgramSpec
    prose: str
    path: str


_FRONT = re.compile(r"^---\s*\n(.*?)\n---\s*\n?(.*)$", re.S)


PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"


def builtin_programs() -> list[str]:
    """Names of the programs shipped with simgate (``reach``, ``push``)."""
    return sorted(p.stem for p in PROGRAMS_DIR.glob("*.md"))


def resolve_program_path(path: str | Path) -> Path:
    """A program file, or the name of a built-in program."""
    p = Path(path)
    if p.exists():
        return p
    if str(path) in builtin_programs():
        return PROGRAMS_DIR / f"{path}.md"
    raise ConfigError(f"program file not found: {p} (built-in programs: {', '.join(builtin_programs())})")


# SIMGATE_SMOKE=1: every program's budgets shrink to a smoke run (CI, the README's commands);
# the figures such a run prints say nothing about the recipe
SMOKE_OVERRIDES: dict[str, Any] = {
    "budgets": {"trial_env_steps": 1500, "trial_wall_s": 90, "total_wall_s": 120, "max_trials": 2},
    "acceptance": {"selection_episodes": 5, "fresh_episodes": 10, "reproduce_tolerance": 1.0},
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
    data, prose = split_front_matter(path)
    if smoke_mode() and isinstance(data, dict):
        data = merge(data, SMOKE_OVERRIDES)
    try:
        spec = ProgramSpec.model_validate(data)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {errs}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return Program(spec=spec, prose=prose.strip(), path=str(path))
