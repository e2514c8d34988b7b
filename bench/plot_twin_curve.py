"""Learning curve of a twin-trained run: success on the PyBullet selection seeds and on the
twin (same seeds) against wall time, from the run's eval.csv (steps, wall_s, pybullet success,
mean return, twin success); optional holdout points (``--holdout wall_s:success``).

    python bench/plot_twin_curve.py --run runs/push_twin --out docs/push_twin_learning_curve.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--holdout", action="append", default=[], help="wall_s:success of a holdout evaluation")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.loadtxt(args.run / "eval.csv", delimiter=",", ndmin=2)
    minutes = rows[:, 1] / 60
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(minutes, rows[:, 2] * 100, "o-", label="PyBullet (selection seeds)")
    ax.plot(minutes, rows[:, 4] * 100, "s--", label="twin (same seeds)")
    for h in args.holdout:
        w, s = (float(x) for x in h.split(":"))
        ax.plot([w / 60], [s * 100], "k*", markersize=12, label=f"PyBullet holdout (200 goals): {s:.1%}")
    ax.axhline(90, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("training wall time, min (2-core CPU, 1 torch thread)")
    ax.set_ylabel("success, %")
    ax.set_ylim(0, 102)
    ax.set_title(args.title or f"{args.run.name}: trained in the twin, judged in PyBullet")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
