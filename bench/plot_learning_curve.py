"""Plot a training run's learning curve (selection success and mean return vs env steps, with
wall time on a second axis) from its eval.csv, e.g. the PandaPush recipe:

    simgate train --config docs/recipes/panda_push_sac_her.yaml --out runs/push
    simgate eval --policy runs/push/checkpoints/latest.zip --env simgate/PandaPush-v0 --seed-set holdout --episodes 200
    python bench/plot_learning_curve.py --run runs/push --out docs/push_learning_curve.png --target 0.9 \
        --holdout 250000:0.96:200

``--holdout STEPS:RATE:EPISODES[:NOTE]`` (repeatable) marks holdout evaluations of checkpoints;
``--vline STEPS:LABEL`` marks a point of the run (where a fine-tune starts).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="training run directory (has eval.csv)")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--target", type=float, default=None, help="success rate to mark (e.g. 0.9)")
    ap.add_argument("--title", default=None)
    ap.add_argument("--holdout", action="append", default=[], metavar="STEPS:RATE:EPISODES[:NOTE]",
                    help="a holdout evaluation of a checkpoint to mark (repeatable)")
    ap.add_argument("--vline", action="append", default=[], metavar="STEPS:LABEL",
                    help="a vertical line with a label, e.g. where a fine-tune starts (repeatable)")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(int(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in csv.reader((args.run / "eval.csv").open())]
    if not rows:
        raise SystemExit(f"{args.run / 'eval.csv'} has no evaluations yet")
    steps, wall, success, ret = zip(*rows, strict=True)
    fig, ax = plt.subplots(figsize=(7, 4) if not args.holdout else (11, 4.2))
    ax.plot(steps, success, "o-", color="tab:blue", ms=3, label="selection success (50 episodes)")
    if args.target is not None:
        ax.axhline(args.target, color="tab:green", ls="--", label=f"target {args.target:.0%}")
        hit = [(s, w) for s, w, x in zip(steps, wall, success, strict=True) if x >= args.target]
        if hit:
            ax.axvline(hit[0][0], color="tab:green", ls=":")
            ax.annotate(f"{hit[0][0]:,} steps\n{hit[0][1] / 60:.0f} min", (hit[0][0], args.target),
                        textcoords="offset points", xytext=(5, -30))
    for k, spec in enumerate(args.holdout):
        h_steps, h_rate, h_eps, *note = spec.split(":", 3)
        ax.plot([int(h_steps)], [float(h_rate)], "*", ms=13, color=("tab:red", "tab:purple", "tab:orange", "tab:brown")[k % 4],
                label=f"holdout {float(h_rate):.1%} at {int(h_steps):,} steps ({h_eps} episodes{', ' + note[0] if note else ''})")
    for spec in args.vline:
        v_steps, v_label = spec.split(":", 1)
        ax.axvline(int(v_steps), color="grey", ls="-.", lw=1)
        ax.annotate(v_label, (int(v_steps), 0.02), textcoords="offset points", xytext=(4, 0), color="grey", fontsize=8)
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    top = ax.secondary_xaxis("top", functions=(lambda s: _interp(s, steps, wall) / 60, lambda m: m))
    top.set_xlabel("wall time (min, this run's machine)")
    ax.grid(alpha=0.3)
    if args.holdout:  # beside the axes: the curve fills them
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    else:
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title(args.title or f"learning curve: {args.run.name}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"{args.out}: {len(rows)} evaluations, last {steps[-1]:,} steps at {success[-1]:.0%} "
          f"(best {max(success):.0%}), {wall[-1] / 60:.1f} min")


def _interp(x, xs, ys):
    import numpy as np

    return np.interp(x, xs, ys)


if __name__ == "__main__":
    main()
