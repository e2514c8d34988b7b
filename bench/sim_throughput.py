"""Env steps per second: simgate vs panda-gym on Reach, Push and PickAndPlace, same run.

Identical physics on both sides: time step 2 ms, 20 substeps per env step (25 Hz control),
50-step episodes, random actions (pre-drawn, so action sampling is not timed), Panda robot.
simgate's differences are its own and stated: fixed links merged and a blocked gripper made
rigid at load (same rigid-body dynamics, fewer Featherstone links), collision geometry only on
links that can touch the table or object, one-step DLS IK, and 10 solver iterations instead of
Bullet's 50 (``--validate`` measures what that changes).

Measured in rounds that alternate the two simulators (A B A B ...), median per side, because
these machines are noisy. Single process, and with 2 workers: panda-gym in gymnasium's
AsyncVectorEnv (2 envs, 2 processes: its best measured 2-core configuration) and simgate's
make_vec (8 envs on 2 workers, the caller being one of them).

    python bench/sim_throughput.py --seconds 30 --json out/sim_throughput.json [--validate]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

TASKS = {"Reach": "PandaReach-v3", "Push": "PandaPush-v3", "PickAndPlace": "PandaPickAndPlace-v3"}


def _actions(shape, n=4096):
    return np.random.default_rng(0).uniform(-1, 1, (n, *shape)).astype(np.float32)


def sps_single(env, seconds: float) -> float:
    env.reset(seed=0)
    acts = _actions(env.action_space.shape)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(acts[n % len(acts)])
        n += 1
        if term or trunc:
            env.reset()
    return n / (time.perf_counter() - t0)


def sps_vector(venv, num_envs: int, seconds: float) -> float:
    venv.reset(seed=0)
    acts = _actions(venv.action_space.shape, 256)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        venv.step(acts[n % len(acts)])
        n += 1
    return n * num_envs / (time.perf_counter() - t0)


def make_panda_gym(task: str):
    import gymnasium as gym
    import panda_gym  # noqa: F401  (registers the ids)

    return gym.make(TASKS[task])


def make_simgate(task: str):
    import gymnasium as gym

    import simgate.sim  # noqa: F401

    return gym.make(f"simgate/Panda{task}-v0")


def _pg_vec_factory(task: str):
    def f():
        return make_panda_gym(task)

    return f


def bench(seconds: float, rounds: int = 3, tasks=tuple(TASKS)) -> dict:
    import gymnasium as gym

    from simgate.sim.vector import make_vec

    per = seconds / (4 * rounds * len(tasks))
    out: dict[str, dict] = {}
    for task in tasks:
        sg, pg, sg2, pg2 = [], [], [], []
        e_sg, e_pg = make_simgate(task), make_panda_gym(task)
        v_sg = make_vec(f"simgate/Panda{task}-v0", 8, 2)
        v_pg = gym.vector.AsyncVectorEnv([_pg_vec_factory(task) for _ in range(2)])
        for _ in range(rounds):
            sg.append(sps_single(e_sg, per))
            pg.append(sps_single(e_pg, per))
            sg2.append(sps_vector(v_sg, 8, per))
            pg2.append(sps_vector(v_pg, 2, per))
        for e in (e_sg, e_pg, v_sg, v_pg):
            e.close()
        s, p_, s2, p2 = (statistics.median(x) for x in (sg, pg, sg2, pg2))
        out[task] = {
            "simgate_sps": round(s, 1),
            "panda_gym_sps": round(p_, 1),
            "ratio": round(s / p_, 3),
            "simgate_2w_sps": round(s2, 1),
            "panda_gym_2w_sps": round(p2, 1),
            "ratio_2w": round(s2 / p2, 3),
            "simgate_2w_over_1w": round(s2 / s, 3),
        }
    return out


def validate(episodes: int = 50) -> dict:
    """What 10 solver iterations change vs Bullet's 50: joint tracking on a sinusoid sweep and
    scripted task outcomes on the same seeds."""
    from simgate.policies.evaluation import evaluate
    from simgate.sim import make
    from simgate.sim.scripted import scripted_policy_for

    result: dict[str, dict] = {}
    for iters in (10, None):
        env = make("simgate/PandaReachJoints-v0", solver_iterations=iters)
        env.reset(seed=0)
        robot = env.robot
        errs = []
        for k in range(200):
            a = np.sin(0.15 * k + np.arange(robot.dof)).astype(np.float32)
            env.step(a)
            q, _, _ = robot.joint_state()
            errs.append(np.abs(q[: robot.dof] - robot.target[: robot.dof]))
        env.close()
        errs = np.array(errs)
        entry = {"tracking_err_mean_rad": float(errs.mean()), "tracking_err_p99_rad": float(np.percentile(errs, 99))}
        for task in ("Reach", "Push", "PickAndPlace"):
            res = evaluate(scripted_policy_for, f"simgate/Panda{task}-v0", list(range(episodes)),
                           {"solver_iterations": iters})
            entry[f"scripted_{task}_success"] = res.success_rate
        result["iters_10" if iters else "iters_50_default"] = entry
    a, b = result["iters_10"], result["iters_50_default"]
    result["tracking_err_mean_diff_rad"] = abs(a["tracking_err_mean_rad"] - b["tracking_err_mean_rad"])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="total measuring time (split over tasks/rounds)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--validate", action="store_true", help="also compare 10 vs 50 solver iterations")
    args = ap.parse_args()
    res = {"physics": {"time_step_s": 0.002, "substeps": 20, "control_hz": 25, "episode_steps": 50},
           "tasks": bench(args.seconds, args.rounds)}
    print(f"{'task':<14}{'simgate':>10}{'panda-gym':>11}{'ratio':>7}{'sg 2w':>9}{'pg 2w':>9}{'ratio':>7}{'sg 2w/1w':>10}")
    for t, r in res["tasks"].items():
        print(f"{t:<14}{r['simgate_sps']:>10.0f}{r['panda_gym_sps']:>11.0f}{r['ratio']:>7.2f}"
              f"{r['simgate_2w_sps']:>9.0f}{r['panda_gym_2w_sps']:>9.0f}{r['ratio_2w']:>7.2f}{r['simgate_2w_over_1w']:>10.2f}")
    if args.validate:
        res["validation"] = validate()
        print(json.dumps(res["validation"], indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
