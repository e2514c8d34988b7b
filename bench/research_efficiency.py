"""Search quality at a fixed budget: the holdout success of what each way of tuning picks, same
program, same budget (trials and wall clock), each method repeated as independent studies.

  simgate        TPE proposals; the trusted gate judges every trial on secret fresh seeds; the
                 pick is the gate's incumbent
  random_search  random proposals, the same gate; the pick is the incumbent
  rl_zoo_style   TPE + median pruner (forced on), no gate: finished trials are recorded, never
                 evaluated by the trusted side; the pick is the trial with the best self-reported
                 ("claimed") selection score

Every method runs ``--repeats`` independent studies (fresh work dirs; Optuna samplers are seeded
per process; the repeat index is the program's ``study_seed``, so trial n of repeat r trains with
seed 7000 + 1000 r + n: the baselines and initial candidates of one repeat are the same trainings
for every method, a paired comparison, and differ between repeats), interleaved: repeat 0 runs every
method, then repeat 1, ... so drifting machine load hits all methods alike. Each pick is then
evaluated on ``seeds_for("holdout", --holdout-episodes)`` (seeds no search sees) under the
program's metric conditions (``metric.under``: the same env kwargs the gate evaluates with). All
picks of a run share those seeds.

Per study: ``trials`` (trial records in the ledger), ``finished`` (those not crashed and not cut
at the deadline: kept, discarded, rejected or pruned), ``study_wall_s`` (Coordinator.run only; the
holdout evaluation is timed apart as ``holdout_eval_s``), ``trials_per_hour`` = finished /
study_wall_s * 3600, the pick's ``holdout_success`` and ``claimed`` score, and
``false_keeps_caught``, defined as the number of trial records

  whose verdict is not "keep" (status discard or rejected) although their claimed score
  (``reported.claimed``: the worker's own evaluation on the public selection seeds) is strictly
  better, in the metric's direction, than the claimed score of the incumbent at the time they
  were judged (the record's ``parent``: the incumbent when judged; its claim is that keep
  record's ``reported.claimed``).

A search that trusts claims would have adopted each of them; the gate refused it. Trials judged
before any incumbent existed are not counted. "Caught" means refused, not proven worse: the
gate's paired test has finite power. rl_zoo_style has no gate, so its column is "-" (its
ledger records finished trials as "discard" with the reason "not judged").

``--json`` (every study and the summary) and ``--markdown`` (the summary table under the command
line that produced it) are rewritten after every study, so an interrupted run keeps what it did.

    python bench/research_efficiency.py --program push-robust --repeats 3 --workers 2 \\
        --json out/research_efficiency.json --markdown out/research_efficiency.md
    python bench/research_efficiency.py --program reach --trials 4 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

METHODS = (("simgate", "tpe", True), ("random_search", "random", True), ("rl_zoo_style", "tpe", False))


def _override_budgets(data: dict, trials: int | None, wall_s: float | None, trial_steps: int | None) -> None:
    """The bench's budget overrides, applied in place to a program's front matter."""
    data["budgets"].update({k: v for k, v in (("max_trials", trials), ("total_wall_s", wall_s),
                                              ("trial_env_steps", trial_steps)) if v})


def _variant_program(src: str | Path, out: Path, name: str, sampler: str, gated: bool, trials: int | None,
                     wall_s: float | None, trial_steps: int | None, study_seed: int = 0) -> Path:
    from simgate.autoresearch.program import resolve_program_path, split_front_matter

    data, prose = split_front_matter(resolve_program_path(src))
    data["name"] = name
    data["study_seed"] = study_seed  # repeats train other seeds; the methods of one repeat share trial n's seed
    data["proposer"] = {**data.get("proposer", {}), "sampler": sampler, **({} if gated else {"prune": True})}
    _override_budgets(data, trials, wall_s, trial_steps)
    data.setdefault("promotion", {})["auto_promote"] = False
    out.write_text("---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n" + prose)
    return out


def _coordinator_class(gated: bool):
    from simgate.autoresearch.coordinator import TS, Coordinator
    from simgate.autoresearch.records import Verified

    if gated:
        return Coordinator

    class Ungated(Coordinator):
        """rl-zoo style: a finished trial is recorded as reported; no gate evaluation costs CPU."""

        def _verdict(self, t, rep, role, state):
            if t.state != TS.COMPLETE:
                return super()._verdict(t, rep, role, state)
            return "discard", "not judged (rl-zoo style: the claimed score is trusted)", Verified()

    return Ungated


def false_keeps_caught(trials: list[dict], sign: float) -> int:
    """Trials not kept although their claim beat the incumbent's claim when judged (see above)."""
    kept_claim = {r["trial"]: r["reported"].get("claimed") for r in trials if r["status"] == "keep"}
    n = 0
    for r in trials:
        claim, inc_claim = r["reported"].get("claimed"), kept_claim.get(r.get("parent"))
        if r["status"] in ("discard", "rejected") and claim is not None and inc_claim is not None:
            n += sign * (claim - inc_claim) > 0
    return n


def _pick(coord, trials: list[dict], gated: bool, sign: float) -> int | None:
    if gated:
        return coord.state["incumbent"]
    scored = [r for r in trials if r["reported"].get("claimed") is not None]
    return max(scored, key=lambda r: sign * r["reported"]["claimed"])["trial"] if scored else None


def holdout_success(coord, pick: int | None, episodes: int) -> float | None:
    """The pick on the holdout seeds under the metric's conditions (the gate's env kwargs)."""
    from simgate.policies.evaluation import evaluate, seeds_for
    from simgate.policies.export import TorchPolicy

    if pick is None:
        return None
    pol = TorchPolicy(coord.dir / "trials" / f"{pick:04d}" / "policy.ts")
    res = evaluate(pol, coord.spec.task.env_id, seeds_for("holdout", episodes), coord.spec.metric.env_kwargs())
    return res.success_rate


def run_study(args, work: Path, repeat: int, label: str, sampler: str, gated: bool) -> dict:
    from simgate.autoresearch.ledger import Ledger

    name = f"effic-{label}-r{repeat}"
    prog = _variant_program(args.program, work / f"{name}.md", name, sampler, gated, args.trials, args.wall_s,
                            args.trial_steps, repeat)
    load_1min = os.getloadavg()[0]
    coord = _coordinator_class(gated)(prog, work / name)
    t0 = time.perf_counter()
    coord.run(args.workers, auto_promote=False, progress=False)
    wall_s = time.perf_counter() - t0
    trials = [r for r in Ledger(coord.ledger.path).records() if r.get("kind") == "trial"]
    sign = 1.0 if coord.spec.metric.direction == "maximize" else -1.0
    pick = _pick(coord, trials, gated, sign)
    t1 = time.perf_counter()
    hold = holdout_success(coord, pick, args.holdout_episodes)
    pick_rec = next((r for r in trials if r["trial"] == pick), {"reported": {}})
    finished = sum(r["status"] not in ("crash", "cut") for r in trials)
    return {"method": label, "study_seed": repeat, "pick": pick, "pick_params": pick_rec["reported"].get("params"),
            "claimed": pick_rec["reported"].get("claimed"), "holdout_success": hold,
            "holdout_episodes": args.holdout_episodes, "conditions": coord.spec.metric.conditions(),
            "trials": len(trials), "finished": finished,
            "by_status": {s: sum(r["status"] == s for r in trials) for s in sorted({r["status"] for r in trials})},
            "false_keeps_caught": false_keeps_caught(trials, sign) if gated else None,
            "study_wall_s": round(wall_s, 1), "trials_per_hour": round(finished / wall_s * 3600, 2),
            "holdout_eval_s": round(time.perf_counter() - t1, 1), "load_avg_1min_at_start": round(load_1min, 2),
            "study_dir": str(coord.dir)}


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _stats(xs: list) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(xs), "mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None,
            "min": min(xs), "max": max(xs)}


def summarize(studies: list[dict]) -> dict:
    out = {}
    for label, _, gated in METHODS:
        rows = [s for s in studies if s["method"] == label]
        out[label] = {"studies": len(rows), "holdout_success": _stats([s["holdout_success"] for s in rows]),
                      "claimed_mean": _stats([s["claimed"] for s in rows])["mean"],
                      "false_keeps_caught": sum(s["false_keeps_caught"] for s in rows) if gated else None,
                      "trials_per_hour_mean": _stats([s["trials_per_hour"] for s in rows])["mean"]}
    return out


def separations(summary: dict) -> list[str]:
    """Pairs whose holdout ranges over the repeats do not overlap (A's worst study beats B's best)."""
    h = {k: v["holdout_success"] for k, v in summary.items() if v["holdout_success"]["n"]}
    return [f"{a} > {b}" for a in h for b in h if a != b and h[a]["min"] > h[b]["max"]]


def table_rows(summary: dict) -> list[list[str]]:
    rows = []
    for label, m in summary.items():
        h = m["holdout_success"]
        rows.append([label, str(m["studies"]), f"{_fmt(h['mean'])} +- {_fmt(h['std'])}",
                     f"{_fmt(h['min'])}-{_fmt(h['max'])}", _fmt(m["claimed_mean"]),
                     "-" if m["false_keeps_caught"] is None else str(m["false_keeps_caught"]),
                     _fmt(m["trials_per_hour_mean"], ".1f")])
    return rows


HEADER = ["method", "studies", "holdout success mean +- std", "holdout min-max", "claimed (selection) mean",
          "false keeps caught", "trials/hour"]


def noise_note(episodes: int) -> str:
    return (f"std and min-max over the repeats; one holdout figure on {episodes} episodes has a binomial "
            f"standard error of up to {0.5 / math.sqrt(episodes):.3f}")


def markdown(summary: dict, command: str, episodes: int) -> str:
    sep = separations(summary)
    lines = [f"`{command}`", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(summary)]
    lines += ["", noise_note(episodes) + ".", "Separated (non-overlapping holdout ranges): "
              + (", ".join(sep) if sep else "none") + "."]
    return "\n".join(lines) + "\n"


def print_summary(summary: dict, episodes: int) -> None:
    cols = ["method", "studies", "holdout mean +- std", "min-max", "claimed", "false keeps", "trials/h"]
    widths = [15, 8, 22, 13, 9, 12, 10]
    for r in [cols, *table_rows(summary)]:
        print("".join(f"{c:>{w}}" for c, w in zip(r, widths, strict=True)))
    sep = separations(summary)
    print(noise_note(episodes) + "\nseparated: " + (", ".join(sep) if sep else "none (holdout ranges overlap)"))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--program", default="reach", help="a built-in program name or a program file")
    ap.add_argument("--trials", type=int, default=None, help="max trials per study (default: the program's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wall-s", type=float, default=None, help="a study's total wall clock (default: the program's)")
    ap.add_argument("--trial-steps", type=int, default=None, help="override the per-trial env steps (a harder budget)")
    ap.add_argument("--repeats", type=int, default=3, help="independent studies per method (study seeds 0..N-1)")
    ap.add_argument("--holdout-episodes", type=int, default=200)
    ap.add_argument("--json", type=Path, help="write every study and the summary")
    ap.add_argument("--markdown", type=Path, help="write the summary table (and the command line) as Markdown")
    ap.add_argument("--resume", action="store_true",
                    help="keep the studies already in --json (same program and budget) and run only the missing "
                         "(study seed, method) pairs: a table of many hours can be built over several sessions")
    return ap.parse_args()


def program_digest(program: str | Path, trials: int | None, wall_s: float | None, trial_steps: int | None) -> str:
    """sha256 of the program's front matter with the bench's budget overrides applied: a resumed table
    refuses studies of an edited program (search space, initial candidates, trial_wall_s, ...)."""
    from simgate.autoresearch.program import resolve_program_path, split_front_matter

    data, _ = split_front_matter(resolve_program_path(program))
    _override_budgets(data, trials, wall_s, trial_steps)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def budget_of(args) -> dict:
    """What makes two studies comparable: the same program text, budget and seeding."""
    return {"program": args.program, "trials": args.trials, "workers": args.workers, "wall_s": args.wall_s,
            "trial_steps": args.trial_steps, "holdout_episodes": args.holdout_episodes,
            "seeding": "study_seed",  # older files re-trained one seed per trial number in every repeat
            "program_sha256": program_digest(args.program, args.trials, args.wall_s, args.trial_steps)}


def done_studies(args) -> list[dict]:
    """Studies of an earlier run to keep (``--resume``); refuses a file with another budget."""
    if not (args.resume and args.json and args.json.exists()):
        return []
    try:
        data = json.loads(args.json.read_text())
        budget, studies = data.get("budget"), data["studies"]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SystemExit(f"--resume: {args.json} is not a table this bench wrote ({type(exc).__name__}: {exc}); "
                         "use another --json") from None
    if budget != budget_of(args):
        raise SystemExit(f"--resume: {args.json} holds studies of another program or budget "
                         f"({budget} vs {budget_of(args)}); use another --json")
    return studies


def main() -> None:
    args = parse_args()
    command = "python " + shlex.join(sys.argv)
    work = Path(tempfile.mkdtemp(prefix="simgate-effic-"))
    studies = done_studies(args)
    done = {(s["study_seed"], s["method"]) for s in studies}
    for repeat in range(args.repeats):
        for label, sampler, gated in METHODS:
            if (repeat, label) in done:
                continue
            s = run_study(args, work, repeat, label, sampler, gated)
            studies.append(s)
            print(f"study seed {repeat} {label}: {s['trials']} trials ({s['finished']} finished) in "
                  f"{s['study_wall_s']:.0f} s = {s['trials_per_hour']:.1f}/h, pick {s['pick']} claimed "
                  f"{_fmt(s['claimed'])} holdout {_fmt(s['holdout_success'])}, false keeps caught "
                  f"{_fmt(s['false_keeps_caught'], 'd')}", flush=True)
            write_outputs(args, command, studies)  # after every study: a long run interrupted keeps what it did
    if not any(work.iterdir()):
        work.rmdir()  # nothing ran (every pair resumed): leave no empty directory behind
    print_summary(summarize(studies), args.holdout_episodes)


def write_outputs(args, command: str, studies: list[dict]) -> None:
    summary = summarize(studies)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "program": args.program, "budget": budget_of(args),
                                         "studies": studies,
                                         "summary": summary, "separated": separations(summary)}, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(summary, command, args.holdout_episodes))


if __name__ == "__main__":
    main()
