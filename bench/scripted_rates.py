"""Scripted reference controllers' success on every robot/task, randomization off and preset.

    python bench/scripted_rates.py --episodes 100 --json out/scripted_rates.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simgate.policies.evaluation import evaluate
from simgate.sim.registry import ROBOT_PREFIX, TASK_SUFFIX
from simgate.sim.robot_spec import load_robot_spec
from simgate.sim.scripted import scripted_policy_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = {}
    for robot, rname in ROBOT_PREFIX.items():
        for task, tname in TASK_SUFFIX.items():
            if task not in load_robot_spec(robot).tasks:
                continue
            env_id = f"simgate/{rname}{tname}-v0"
            off = evaluate(scripted_policy_for, env_id, list(range(args.episodes)))
            on = evaluate(scripted_policy_for, env_id, list(range(args.episodes)), {"randomization": "preset"})
            rows[env_id] = {"off": off.success_rate, "preset": on.success_rate}
            print(f"{env_id:<36} off {off.success_rate:6.2f}   preset {on.success_rate:6.2f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
