"""Where PyBullet tips the Push box: the tool goes 6 cm behind the box at a fixed height z, then
pushes it toward its goal at 0.3 m/s for 20 steps; the share of goals (8 per cell) where the box
tilts more than 0.1 rad, by lateral friction f (box-table coefficient mu = f^2) and z.
Figures: docs/twin.md ("Where PyBullet tips the box"). About 2 minutes on one core.

    python bench/push_tip_probe.py
"""

import numpy as np

from simgate.sim import make


def run(f, z, seed):
    env = make("simgate/PandaPush-v0", randomization={"lateral_friction": {"low": f, "high": f}})
    obs, _ = env.reset(seed=seed)
    box = obs["observation"][6:9].copy()
    d = obs["desired_goal"][:2] - box[:2]
    if np.linalg.norm(d) < 0.05:
        env.close()
        return None
    u = d / np.linalg.norm(d)
    behind = np.array([*(box[:2] - u * 0.06), z])
    for _ in range(25):  # go above the point behind the box, then down
        tool = obs["observation"][:3]
        tgt = behind.copy()
        if np.linalg.norm(tool[:2] - behind[:2]) > 0.01:
            tgt[2] = max(z, 0.08)
        a = np.clip((tgt - tool) / 0.05, -1, 1)
        obs, *_ = env.step(a)
    tilt = 0.0
    for _ in range(20):  # push along u at 0.3 m/s (0.012 m per 40-ms step), holding height z
        tool = obs["observation"][:3]
        tgt = np.array([*(tool[:2] + u * 0.012), z])
        a = np.clip((tgt - tool) / 0.05, -1, 1)
        obs, *_ = env.step(a)
        rp = obs["observation"][9:11]
        tilt = max(tilt, float(np.abs(rp).max()))
    moved = float(np.linalg.norm(obs["observation"][6:8] - box[:2]))
    env.close()
    return tilt, moved, float(obs["observation"][2])


def main() -> None:
    for f in (0.6, 0.8, 1.0, 1.1, 1.2):
        row = []
        for z in (0.008, 0.012, 0.016, 0.020, 0.026):
            res = [r for r in (run(f, z, s) for s in range(8)) if r]
            tipped = np.mean([r[0] > 0.1 for r in res])
            moved = np.mean([r[1] for r in res])
            tz = np.mean([r[2] for r in res])
            row.append(f"z{z*1000:.0f}mm: tip {tipped:.2f} moved {moved*100:.1f}cm toolz {tz*1000:.0f}")
        print(f"f={f} (mu={f*f:.2f}) | " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
