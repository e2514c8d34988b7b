"""The research gate's error rates, by simulation of its decision rule (the same functions the
coordinator calls: gate.plan_for, gate.reproduce_p, gate.sequential_compare) on Bernoulli
episode outcomes:

  false keeps   a study whose every candidate equals the incumbent (success p0): the baseline
                pair sets the noise floor, then max_trials - 2 equal candidates are judged; the
                share of studies that keep any of them (target <= 1 %)
  power         one candidate at p0 + 0.10 against an incumbent at p0 (0.8), the threshold from a
                simulated baseline pair; the share kept (target >= 80 %)
  false rejects an honest trial (claimed on the selection episodes, fresh on the first look and,
                when that rejects, pooled with as many more; the same true rate) rejected as
                "not reproduced"
  episodes      mean fresh episodes per comparison (the evaluation cost)

    python bench/gate_statistics.py --studies 2000 --json out/gate_statistics.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _draw(rng: np.random.Generator, p_cand: float, p_inc: float):
    def draw(n: int) -> tuple[list[float], list[float]]:
        return (rng.random(n) < p_cand).astype(float).tolist(), (rng.random(n) < p_inc).astype(float).tolist()

    return draw


def _threshold(plan, noise: float | None) -> float:
    return max(plan.min_improvement, min(noise or 0.0, plan.noise_floor_cap))


def _noise_floor(plan, rng, p0: float) -> float:
    from simgate.autoresearch.gate import sequential_compare

    return abs(sequential_compare(plan, _draw(rng, p0, p0), plan.min_improvement).delta)


def false_keep_rate(plan, max_trials: int, p0: float, studies: int, rng) -> tuple[float, float]:
    from simgate.autoresearch.gate import sequential_compare

    kept, episodes, comparisons = 0, 0, 0
    for _ in range(studies):
        c = sequential_compare(plan, _draw(rng, p0, p0), plan.min_improvement)  # the second baseline
        noise, any_keep = abs(c.delta), c.keep
        episodes, comparisons = episodes + c.episodes, comparisons + 1
        for _ in range(max_trials - 2):
            c = sequential_compare(plan, _draw(rng, p0, p0), _threshold(plan, noise))
            any_keep |= c.keep
            episodes, comparisons = episodes + c.episodes, comparisons + 1
        kept += any_keep
    return kept / studies, episodes / comparisons


def power(plan, p0: float, gain: float, trials: int, rng) -> tuple[float, float]:
    from simgate.autoresearch.gate import sequential_compare

    kept, episodes = 0, 0
    for _ in range(trials):
        c = sequential_compare(plan, _draw(rng, p0 + gain, p0), _threshold(plan, _noise_floor(plan, rng, p0)))
        kept += c.keep
        episodes += c.episodes
    return kept / trials, episodes / trials


def false_reject_rate(plan, p: float, trials: int, rng) -> float:
    from simgate.autoresearch.gate import confirmed_reproduce_p

    def more(n: int) -> list[float]:
        return (rng.random(n) < p).astype(float).tolist()

    bad = 0
    for _ in range(trials):
        claimed = float(rng.binomial(plan.selection_episodes, p)) / plan.selection_episodes
        bad += confirmed_reproduce_p(plan, claimed, more(plan.looks[0]), more)[0] < plan.reproduce_alpha
    return bad / trials


def main() -> None:
    from simgate.autoresearch.gate import plan_for
    from simgate.autoresearch.program import load_program

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--programs", nargs="+", default=["reach", "push"])
    ap.add_argument("--studies", type=int, default=2000, help="simulated studies (and power / reproduce trials)")
    ap.add_argument("--p0", type=float, default=0.8)
    ap.add_argument("--gain", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = {}
    for name in args.programs:
        t0 = time.perf_counter()
        spec = load_program(name).spec
        plan = plan_for(spec)
        fk, fk_eps = false_keep_rate(plan, spec.budgets.max_trials, args.p0, args.studies, rng)
        pw, pw_eps = power(plan, args.p0, args.gain, args.studies, rng)
        rows[spec.name] = {
            "program": name, "max_trials": spec.budgets.max_trials, "looks": list(plan.looks),
            "alpha_look": plan.alpha_look, "false_keep_per_study": fk, "episodes_per_equal_comparison": round(fk_eps, 1),
            f"power_{args.p0:.1f}_to_{args.p0 + args.gain:.1f}": pw, "episodes_per_improved_comparison": round(pw_eps, 1),
            "false_reject": {f"{p:.2f}": false_reject_rate(plan, p, args.studies, rng) for p in (0.5, 0.8, 0.95)},
            "studies": args.studies, "wall_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps({spec.name: rows[spec.name]}), flush=True)
    print(f"{'program':<24}{'false keep/study':>17}{'power':>8}{'false reject @.5/.8/.95':>26}{'eps equal/better':>18}")
    for k, r in rows.items():
        pw = next(v for kk, v in r.items() if kk.startswith("power_"))
        fr = "/".join(f"{v:.3f}" for v in r["false_reject"].values())
        print(f"{k:<24}{r['false_keep_per_study']:>17.4f}{pw:>8.3f}{fr:>26}"
              f"{r['episodes_per_equal_comparison']:>9}/{r['episodes_per_improved_comparison']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
