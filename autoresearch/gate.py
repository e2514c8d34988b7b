"""Keep only what is real: the trusted evaluator.

A finished trial's self-reported (selection) metric is never trusted. The gate re-runs the
trial's policy on *fresh* seeds the proposer never saw, and the incumbent on the same seeds:
  * claimed - fresh > reproduce_tolerance          -> ``rejected: not reproduced``
  * no incumbent yet                               -> ``keep`` (it becomes the incumbent)
  * fresh gain >= threshold and paired sign test p <= significance -> ``keep``
  * otherwise                                      -> ``discard``
The threshold is max(program's min_improvement, the measured noise floor: the baseline trained
twice with different seeds, both evaluated on the same fresh seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simgate.policies.evaluation import EvalResult, evaluate

FRESH_BASE = 5_000_000  # disjoint from the selection (1e6) and holdout (9e6) seed ranges


def fresh_seeds(trial_number: int, n: int) -> list[int]:
    return list(range(FRESH_BASE + trial_number * 1000, FRESH_BASE + trial_number * 1000 + n))


def sign_test_p(cand: list[float], inc: list[float]) -> float:
    """One-sided exact sign test on paired episodes: P(at least this many wins | no difference)."""
    wins = sum(1 for a, b in zip(cand, inc, strict=True) if a > b)
    losses = sum(1 for a, b in zip(cand, inc, strict=True) if a < b)
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


@dataclass
class Verdict:
    status: str  # keep | discard | rejected
    reason: str
    metrics: dict = field(default_factory=dict)


def _metric(res: EvalResult, name: str) -> float:
    return res.success_rate if name == "success_rate" else res.mean_return


def _per_episode(res: EvalResult, name: str) -> list[float]:
    return [float(x) for x in (res.per_episode_success if name == "success_rate" else res.per_episode_return)]


def judge(spec, trial_number: int, claimed: float, policy, incumbent_policy, noise_floor: float = 0.0) -> Verdict:
    acc, metric = spec.acceptance, spec.metric.name
    sign = 1.0 if spec.metric.direction == "maximize" else -1.0
    seeds = fresh_seeds(trial_number, acc.fresh_episodes)
    cand = evaluate(policy, spec.task.env_id, seeds)
    fresh = _metric(cand, metric)
    m = {"claimed_selection": claimed, "fresh": fresh, "fresh_seeds": [seeds[0], len(seeds)],
         "fresh_ci95": list(cand.success_ci95)}
    if sign * (claimed - fresh) > acc.reproduce_tolerance:
        return Verdict("rejected", f"not reproduced: claimed {claimed:.3f}, fresh seeds give {fresh:.3f}", m)
    if incumbent_policy is None:
        return Verdict("keep", "first reproduced result: becomes the incumbent", m)
    inc = evaluate(incumbent_policy, spec.task.env_id, seeds)
    inc_fresh = _metric(inc, metric)
    a, b = _per_episode(cand, metric), _per_episode(inc, metric)
    if sign < 0:
        a, b = [-x for x in a], [-x for x in b]
    p = sign_test_p(a, b)
    delta = sign * (fresh - inc_fresh)
    threshold = max(acc.min_improvement, noise_floor)
    m.update(incumbent_fresh=inc_fresh, delta=delta, p_value=p, threshold=threshold)
    if delta > threshold and p <= acc.significance:
        return Verdict("keep", f"beats the incumbent on fresh seeds by {delta:.3f} (p={p:.3g})", m)
    return Verdict("discard", f"no significant gain over the incumbent (delta {delta:+.3f}, p={p:.3g}, "
                              f"threshold {threshold:.3f})", m)
