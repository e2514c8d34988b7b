"""The README's main command on embedded defaults (today: a tour of the simulation layer)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

console = Console()


def run_demo(episodes: int = 20, out_dir: Path = Path("out/demo")) -> dict:
    from simgate.policies.evaluation import evaluate
    from simgate.sim import env_ids
    from simgate.sim.scripted import scripted_policy_for
    from simgate.sim.video import record_video

    out_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]simgate[/bold]: {len(env_ids())} registered environments")
    rows = []
    tasks = ["simgate/PandaReach-v0", "simgate/PandaPush-v0", "simgate/PandaPickAndPlace-v0"]
    with Progress(console=console) as prog:
        for env_id in tasks:
            t = prog.add_task(f"scripted {env_id}", total=episodes)
            t0 = time.perf_counter()
            res = evaluate(scripted_policy_for, env_id, list(range(episodes)),
                           progress=lambda d, n, t=t: prog.update(t, completed=d))
            rows.append((env_id, res.success_rate, res.success_ci95, time.perf_counter() - t0))
    table = Table(title=f"Scripted reference controllers ({episodes} seeded episodes each)")
    for col in ("env", "success", "95% CI", "wall s"):
        table.add_column(col)
    for env_id, sr, ci, wall in rows:
        table.add_row(env_id, f"{sr:.0%}", f"[{ci[0]:.2f}, {ci[1]:.2f}]", f"{wall:.1f}")
    console.print(table)
    video = out_dir / "pick_and_place.mp4"
    frames = record_video("simgate/PandaPickAndPlace-v0", scripted_policy_for, video, episodes=1, size=(320, 240))
    console.print(f"video of a scripted pick-and-place: {video} ({frames} frames)")
    summary = {"scripted": {r[0]: r[1] for r in rows}, "video": str(video)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
