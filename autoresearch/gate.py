"""Keep only what is real: the trusted evaluator and its statistics.

Nothing a worker reports decides anything. For a finished trial the gate draws *secret* fresh
seeds from OS randomness (disclosed in the ledger only with the verdict), evaluates the judged
bytes on them, and:
  * reproduce check: the claimed selection score against the fresh score, a one-sided Fisher
    exact test (``reproduce_alpha``) plus a slack (``reproduce_tolerance``)  -> ``rejected``;
  * no incumbent yet                                                        -> ``keep``;
  * otherwise a paired, sequential comparison with the incumbent on the *same* secret seeds:
    looks at n0, 2 n0, 4 n0 ... up to ``max_fresh_episodes`` new episodes; at each look an exact
    sign test on the paired episodes at ``alpha_look`` = ``false_keep_per_study`` / (max_trials x
    looks) (Bonferroni over candidates and looks, so the chance of keeping any equal candidate in
    a study is at most ``false_keep_per_study``); keep when significant and the gain exceeds the
    threshold; stop early (discard) when the gain is not above the threshold at an interim look.
The threshold is max(min_improvement, the noise floor capped at ``noise_floor_cap``); the noise
floor is |difference| between the two baseline trainings measured on the same secret seeds.
bench/gate_statistics.py simulates this decision rule (false keeps, power, false rejections).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

SECRET_SEED_LOW = 10_000_000  # above the public selection (1e6) and holdout (9e6) ranges
SECRET_SEED_HIGH = 2**31 - 1


def secret_seeds(n: int) -> list[int]:
    """``n`` distinct seeds from OS randomness: nobody can know them before they are drawn."""
    out: set[int] = set()
    while len(out) < n:
        out.add(SECRET_SEED_LOW + secrets.randbelow(SECRET_SEED_HIGH - SECRET_SEED_LOW))
    return sorted(out)


def sign_test_p(cand: list[float], inc: list[float]) -> float:
    """One-sided exact sign test on paired episodes: P(at least this many wins | no difference)."""
    wins = sum(1 for a, b in zip(cand, inc, strict=True) if a > b)
    losses = sum(1 for a, b in zip(cand, inc, strict=True) if a < b)
    return binom_sf(wins, wins + losses)


def binom_sf(k: int, n: int) -> float:
    """P(X >= k), X ~ Binomial(n, 1/2)."""
    if n == 0 or k <= 0:
        return 1.0
    try:
        from scipy.stats import binom

        return float(binom.sf(k - 1, n, 0.5))
    except ImportError:  # pragma: no cover - scipy ships with the learners' stack
        return sum(math.comb(n, j) for j in range(k, n + 1)) / 2**n


def fisher_greater_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact test: P(group 1 has >= k1 successes | both rates equal, margins fixed)."""
    total, kk = n1 + n2, k1 + k2
    denom = math.comb(total, n1)
    return sum(math.comb(kk, j) * math.comb(total - kk, n1 - j) for j in range(k1, min(kk, n1) + 1)) / denom


@dataclass(frozen=True)
class GatePlan:
    looks: tuple[int, ...]  # cumulative fresh episodes at each look
    alpha_look: float
    min_improvement: float
    noise_floor_cap: float
    reproduce_alpha: float
    reproduce_tolerance: float
    selection_episodes: int
    binary: bool  # success_rate (per-episode 0/1) or a continuous return
    sign: float = 1.0  # +1 maximize, -1 minimize
    conditions: str | dict = "nominal"  # the metric's evaluation conditions (recorded with every verdict)
    conditions_label: str = "nominal"


def doubling_looks(first: int, maximum: int) -> tuple[int, ...]:
    looks, n = [], first
    while n < maximum:
        looks.append(n)
        n *= 2
    return tuple([*looks, maximum])


def plan_for(spec) -> GatePlan:
    acc = spec.acceptance
    looks = doubling_looks(acc.fresh_episodes, max(acc.fresh_episodes, acc.max_fresh_episodes))
    return GatePlan(looks=looks, alpha_look=acc.false_keep_per_study / (spec.budgets.max_trials * len(looks)),
                    min_improvement=acc.min_improvement, noise_floor_cap=acc.noise_floor_cap,
                    reproduce_alpha=acc.reproduce_alpha, reproduce_tolerance=acc.reproduce_tolerance,
                    selection_episodes=acc.selection_episodes, binary=spec.metric.name == "success_rate",
                    sign=1.0 if spec.metric.direction == "maximize" else -1.0,
                    conditions=spec.metric.conditions(), conditions_label=spec.metric.label())


def reproduce_p(plan: GatePlan, claimed: float, fresh: list[float]) -> float:
    """How surprising the claim is if the claimed and the fresh score have the same true value."""
    mean = sum(fresh) / len(fresh)
    if plan.sign * (claimed - mean) <= plan.reproduce_tolerance:
        return 1.0
    if not plan.binary:
        return 0.0  # a continuous claim beyond the slack is not reproduced
    k1 = round(claimed * plan.selection_episodes)
    return fisher_greater_p(k1, plan.selection_episodes, int(round(sum(fresh))), len(fresh))


def confirmed_reproduce_p(plan: GatePlan, claimed: float, fresh: list[float],
                          draw_more: Callable[[int], list[float]]) -> tuple[float, list[float]]:
    """``reproduce_p``, where a rejection on the first fresh sample stands only if it holds on that
    sample pooled with as many more fresh episodes: an honest trial's unlucky first draw does not
    make it a liar, and an inflated claim fails the pooled test too. Returns (p, fresh episodes)."""
    rp = reproduce_p(plan, claimed, fresh)
    if rp < plan.reproduce_alpha:
        fresh = fresh + draw_more(len(fresh))
        rp = reproduce_p(plan, claimed, fresh)
    return rp, fresh


@dataclass
class Comparison:
    keep: bool
    delta: float
    p_value: float
    episodes: int
    looks: int
    cand_mean: float
    inc_mean: float


Draw = Callable[[int], tuple[list[float], list[float]]]  # n more paired episodes -> (candidate, incumbent)


def sequential_compare(plan: GatePlan, draw: Draw, threshold: float, first: tuple[list[float], list[float]] | None = None
                       ) -> Comparison:
    """The paired sequential test; ``first`` = already drawn episodes for the first look."""
    cand, inc = (list(first[0]), list(first[1])) if first else ([], [])
    delta, p = 0.0, 1.0
    for k, n in enumerate(plan.looks):
        if len(cand) < n:
            c, i = draw(n - len(cand))
            cand += c
            inc += i
        a = [plan.sign * x for x in cand]
        b = [plan.sign * x for x in inc]
        delta = (sum(a) - sum(b)) / len(a)
        p = sign_test_p(a, b)
        if p <= plan.alpha_look and delta > threshold:
            return Comparison(True, delta, p, len(a), k + 1, sum(cand) / len(a), sum(inc) / len(a))
        if delta <= threshold:  # futility: not even above the threshold at this look
            break
    return Comparison(False, delta, p, len(cand), k + 1, sum(cand) / len(cand), sum(inc) / len(inc))


@dataclass
class Verdict:
    status: str  # keep | discard | rejected
    reason: str
    verified: dict = field(default_factory=dict)


Evaluate = Callable[[object, list[int]], list[float]]  # (policy, seeds) -> per-episode metric


def judge(plan: GatePlan, claimed: float, policy, incumbent_policy, evaluate: Evaluate, threshold: float,
          draw_seeds: Callable[[int], list[int]] = secret_seeds) -> Verdict:
    """The verdict on one trial. ``evaluate`` runs a policy on seeds; seeds come from ``draw_seeds``."""
    seeds = draw_seeds(plan.looks[0])

    def more(n: int) -> list[float]:
        extra = draw_seeds(n)
        seeds.extend(extra)
        return evaluate(policy, extra)

    rp, cand0 = confirmed_reproduce_p(plan, claimed, evaluate(policy, seeds), more)
    fresh = sum(cand0) / len(cand0)
    v = {"fresh": fresh, "fresh_episodes": len(seeds), "fresh_seeds": list(seeds), "reproduce_p": rp,
         "conditions": plan.conditions}
    under = "" if plan.conditions == "nominal" else f" under {plan.conditions_label}"
    if rp < plan.reproduce_alpha:
        return Verdict("rejected", f"not reproduced: claimed {claimed:.3f} on {plan.selection_episodes} selection "
                                   f"episodes, {fresh:.3f} on {len(seeds)} secret fresh seeds{under} (p={rp:.2g})", v)
    if incumbent_policy is None:
        return Verdict("keep", "first reproduced result: becomes the incumbent", v)
    all_seeds = list(seeds)

    def draw(n: int) -> tuple[list[float], list[float]]:
        s = draw_seeds(n)
        all_seeds.extend(s)
        return evaluate(policy, s), evaluate(incumbent_policy, s)

    cmp = sequential_compare(plan, draw, threshold, first=(cand0, evaluate(incumbent_policy, seeds)))
    v.update(fresh=cmp.cand_mean, fresh_episodes=cmp.episodes, fresh_seeds=all_seeds, incumbent_fresh=cmp.inc_mean,
             delta=cmp.delta, p_value=cmp.p_value, alpha=plan.alpha_look, threshold=threshold, looks=cmp.looks)
    if cmp.keep:
        return Verdict("keep", f"beats the incumbent by {cmp.delta:+.3f} on {cmp.episodes} paired secret seeds{under} "
                               f"(p={cmp.p_value:.2g} <= {plan.alpha_look:.2g})", v)
    return Verdict("discard", f"no significant gain over the incumbent (delta {cmp.delta:+.3f} on {cmp.episodes} "
                              f"paired secret seeds{under}, p={cmp.p_value:.2g}, alpha {plan.alpha_look:.2g}, "
                              f"threshold {threshold:.3f})", v)
