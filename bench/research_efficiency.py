"""Search quality on a fixed budget: the best *holdout* metric each way of tuning finds, same
program, same trial budget, same run.

  simgate          TPE proposals, the trusted gate on fresh seeds, the incumbent is the pick
  random search    random proposals, the trusted gate, the incumbent is the pick
  rl-zoo style     TPE + median pruner, one run per trial trusted as reported (its selection
                   score), the best reported trial is the pick

Each pick is then evaluated on the holdout seeds (never seen by any of them).

    python bench/research_efficiency.py --program reach --trials 8 --json out/research_efficiency.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml


def _variant_program(src: str | Path, out: Path, name: str, sampler: str, trials: int, wall_s: float | None,
                     trial_steps: int | None = None) -> Path:
    from simgate.autoresearch.program import resolve_program_path, split_front_matter

    data, prose = split_front_matter(resolve_program_path(src))
    data["name"] = name
    data["proposer"] = {**data.get("proposer", {}), "sampler": sampler}
    data["budgets"]["max_trials"] = trials
    if wall_s:
        data["budgets"]["total_wall_s"] = wall_s
    if trial_steps:
        data["budgets"]["trial_env_steps"] = trial_steps
    data.setdefault("promotion", {})["auto_promote"] = False
    out.write_text("---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n" + prose)
    return out


def main() -> None:
    from simgate.autoresearch.coordinator import Coordinator
    from simgate.autoresearch.ledger import Ledger
    from simgate.policies.evaluation import evaluate, seeds_for
    from simgate.policies.export import TorchPolicy

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--program", default="reach", help="a built-in program name or a program file")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wall-s", type=float, default=None, help="override the program's total wall clock")
    ap.add_argument("--holdout-episodes", type=int, default=100)
    ap.add_argument("--trial-steps", type=int, default=None, help="override the per-trial env steps (a harder budget)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="simgate-effic-"))
    rows = {}
    for label, sampler, trusted in (("simgate", "tpe", True), ("random_search", "random", True),
                                    ("rl_zoo_style", "tpe", False)):
        prog = _variant_program(args.program, work / f"{label}.md", f"effic-{label}", sampler, args.trials, args.wall_s,
                                args.trial_steps)
        t0 = time.perf_counter()
        coord = Coordinator(prog, work / label)
        coord.run(args.workers, auto_promote=False, progress=False)
        trials = [r for r in Ledger(coord.ledger.path).records() if r.get("kind") == "trial"]
        if trusted:
            pick = coord.state["incumbent"]
        else:  # trust the single-run self-reported score
            scored = [r for r in trials if r["reported"].get("claimed") is not None]
            pick = max(scored, key=lambda r: r["reported"]["claimed"])["trial"] if scored else None
        hold = None
        if pick is not None:
            pol = TorchPolicy(coord.dir / "trials" / f"{pick:04d}" / "policy.ts")
            hold = evaluate(pol, coord.spec.task.env_id, seeds_for("holdout", args.holdout_episodes)).success_rate
        claimed = next((r["reported"].get("claimed") for r in trials if r["trial"] == pick), None)
        rows[label] = {"pick": pick, "claimed_selection": claimed, "holdout": hold, "trials": len(trials),
                       "wall_s": round(time.perf_counter() - t0, 1)}
        print(label, rows[label], flush=True)
    print(f"{'method':<15}{'trials':>7}{'claimed':>9}{'holdout':>9}{'wall s':>8}")
    for k, r in rows.items():
        c = "-" if r["claimed_selection"] is None else f"{r['claimed_selection']:.3f}"
        h = "-" if r["holdout"] is None else f"{r['holdout']:.3f}"
        print(f"{k:<15}{r['trials']:>7}{c:>9}{h:>9}{r['wall_s']:>8}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
