"""``simgate check``: a policy on the emulated hardware, through the gateway, judged by thresholds.

The policy (a registry reference, a training run directory or a TorchScript file) runs in
simulation on N goals, then on the same N goals on an emulated servo bus (its own process;
optional randomized dynamics and injected faults) behind the serial backend and ``simgate
serve``, driven by the main job's MCP agent (:func:`simgate.pipeline._agent`). Measured: success,
safety refusals and e-stops (the gateway's audit log), peak joint speed (the emulated servos'
physical angles, finite differences over >= 100 ms windows, as a fraction of each joint's limit)
and the sim-vs-emulated gap. Written: ``junit.xml`` (one test case per threshold), ``summary.md``,
``results.json``; the exit code is non-zero when a threshold is not met.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simgate.errors import SimgateError
from simgate.testing import rigs
from simgate.testing.report import Verdict, write_junit, write_summary


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    min_success: float = Field(0.9, ge=0, le=1, description="fraction of goals reached on the emulated hardware")
    max_refusals: int = Field(0, ge=0, description="safety refusals (audit records with outcome 'refused')")
    max_peak_speed_frac: float = Field(1.05, gt=0, description="peak joint speed / the joint's velocity limit")
    max_estops: int = Field(0, ge=0, description="e-stops latched during the check")


class CheckConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    policy: str = Field(description="registry reference, training run directory or TorchScript .ts file")
    registry_dir: Path | None = None
    env_id: str | None = Field(None, description="for a .ts file without metadata next to it")
    goals: int = Field(10, ge=1, le=1000)
    max_steps: int = Field(50, ge=1, le=1000, description="policy steps per goal")
    protocol: str = "feetech"
    randomize: bool = Field(False, description="emulated servos with the randomization preset's dynamics")
    seed: int = 0
    faults: rigs.BusFaults = rigs.BusFaults()
    unplug_after_goal: int | None = Field(None, ge=1, description="unplug the bus after this goal ...")
    unplug_s: float = Field(1.0, gt=0, le=30, description="... for this long")
    thresholds: Thresholds = Thresholds()
    out_dir: Path = Path("check")


class _Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    ref: str
    registry_dir: Path
    env_id: str
    robot: str
    holdout_success: float | None


def _metadata_for(cfg: CheckConfig) -> tuple[Path | None, dict]:
    """(TorchScript file to register, metadata) for a run dir / .ts file; (None, metadata) for a ref."""
    import yaml

    from simgate.policies.promotion import env_spec

    p = Path(cfg.policy)
    if p.is_dir() and (p / "policy.ts").exists():
        env_id = cfg.env_id or yaml.safe_load((p / "config.yaml").read_text())["env_id"]
        return p / "policy.ts", env_spec(env_id)
    if p.suffix == ".ts" and p.exists():
        side = p.with_suffix(p.suffix + ".metadata.json")
        env_id = cfg.env_id or (json.loads(side.read_text())["env_id"] if side.exists() else None)
        if env_id is None:
            raise SimgateError(f"{p}: no {side.name} next to it; give --env")
        return p, env_spec(env_id)
    from simgate.policies.registry import Registry

    return None, Registry(cfg.registry_dir).metadata(cfg.policy)


def resolve_policy(cfg: CheckConfig, sim_success: float | None = None) -> _Policy:
    from simgate.policies.registry import Registry

    ts, meta = _metadata_for(cfg)
    if ts is None:
        reg = Registry(cfg.registry_dir)
        return _Policy(ref=meta["id"], registry_dir=reg.root, env_id=meta["env_id"], robot=meta["robot"],
                       holdout_success=meta.get("holdout", {}).get("success_rate"))
    # not promoted: registered in the check's own registry (the gateway runs registry policies only)
    reg = Registry(cfg.out_dir / "registry")
    note = {"success_rate": sim_success if sim_success is not None else 0.0, "episodes": cfg.goals,
            "note": "simgate check's own simulation goals, not a holdout evaluation"}
    digest = reg.promote(ts, {**meta, "holdout": note}, name="simgate-check")
    return _Policy(ref=digest, registry_dir=reg.root, env_id=meta["env_id"], robot=meta["robot"], holdout_success=None)


def sim_success(cfg: CheckConfig, seeds: list[int]) -> tuple[float, str]:
    """Success in simulation on the check's goals (the same env seeds as on the hardware)."""
    from simgate.policies.evaluation import evaluate
    from simgate.policies.resolve import policy_factory

    _, meta = _metadata_for(cfg)
    res = evaluate(policy_factory(cfg.policy, cfg.registry_dir), meta["env_id"], seeds)
    return res.success_rate, meta["env_id"]


class PeakSpeed:
    """Peak joint speed of the emulated servos, from their physical angles (rad/s per joint)."""

    WINDOW_S = 0.1

    def __init__(self, bus: rigs.EmulatedBus, limits: dict[str, float], period_s: float = 0.02) -> None:
        self.bus, self.limits, self.period_s = bus, limits, period_s
        self.peak = dict.fromkeys(limits, 0.0)
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        hist: list[tuple[float, dict[str, float]]] = []
        while not self._stop.is_set():
            with contextlib.suppress(RuntimeError):
                hist.append((time.monotonic(), self.bus.present_positions()))
                while len(hist) > 1 and hist[-1][0] - hist[1][0] >= self.WINDOW_S:
                    hist.pop(0)
                (t0, q0), (t1, q1) = hist[0], hist[-1]
                if t1 - t0 >= self.WINDOW_S:
                    for n in self.limits:
                        self.peak[n] = max(self.peak[n], abs(q1[n] - q0[n]) / (t1 - t0))
            time.sleep(self.period_s)

    def worst(self) -> tuple[str, float, float]:
        """(joint, peak rad/s, peak / limit) of the joint closest to (or past) its limit."""
        name = max(self.limits, key=lambda n: self.peak[n] / self.limits[n])
        return name, self.peak[name], self.peak[name] / self.limits[name]

    def __enter__(self) -> PeakSpeed:
        self._th.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._th.join(timeout=2)


def _unplugger(bus: rigs.EmulatedBus, cfg: CheckConfig):
    def on_goal(k: int) -> None:
        if cfg.unplug_after_goal == k:
            bus.unplug()
            threading.Timer(cfg.unplug_s, bus.replug).start()

    return on_goal


def drive(cfg: CheckConfig, pol: _Policy, targets: list[dict]) -> dict[str, Any]:
    from simgate.pipeline import _agent
    from simgate.sim.robot_spec import resolve_spec

    spec = resolve_spec(pol.robot)
    limits = {j.name: j.velocity for j in spec.arm_joints}
    bus_cfg = rigs.BusConfig(protocol=cfg.protocol, robot=pol.robot, randomize=cfg.randomize, seed=cfg.seed,
                             faults=cfg.faults)
    with rigs.emulated_bus(cfg.out_dir / "hardware", bus_cfg) as bus, \
            rigs.live_gateway(cfg.out_dir / "hardware", bus.serial_config(), pol.registry_dir) as gw:
        unplug, done = _unplugger(bus, cfg), [0]

        def on_goal(res: dict) -> None:
            done[0] += 1
            unplug(done[0])

        with PeakSpeed(bus, limits) as speed:
            results = asyncio.run(_agent(gw.url, gw.tokens["act"], pol.ref, targets, on_goal, cfg.max_steps))
        audit = gw.audit()
    joint, peak, frac = speed.worst()
    reached = sum(r["reached"] for r in results)
    return {"results": results, "goals": len(results), "reached": reached,
            "success": reached / len(results) if results else 0.0,
            "refusals": sum(a.get("outcome") == "refused" for a in audit),
            "refusal_reasons": sorted({a.get("reason", "").split(":")[0][:80] for a in audit
                                       if a.get("outcome") == "refused"})[:5],
            "estops": sum(a.get("action") == "estop" for a in audit),
            "peak_joint": joint, "peak_speed_rad_s": peak, "peak_speed_frac": frac,
            "randomization": bus.randomization, "audit": str(gw.audit_path)}


def verdicts(cfg: CheckConfig, hw: dict) -> list[Verdict]:
    t = cfg.thresholds
    return [
        Verdict("success_rate", f"success rate >= {t.min_success:.0%}", hw["success"] >= t.min_success,
                f"{hw['success']:.0%} ({hw['reached']}/{hw['goals']} goals)"),
        Verdict("safety_refusals", f"safety refusals <= {t.max_refusals}", hw["refusals"] <= t.max_refusals,
                f"{hw['refusals']}" + (f": {'; '.join(hw['refusal_reasons'])}" if hw["refusal_reasons"] else "")),
        Verdict("peak_joint_speed", f"peak joint speed <= {t.max_peak_speed_frac:.2f} x limit",
                hw["peak_speed_frac"] <= t.max_peak_speed_frac,
                f"{hw['peak_speed_frac']:.2f} x limit ({hw['peak_joint']}: {hw['peak_speed_rad_s']:.2f} rad/s)"),
        Verdict("estops", f"e-stops <= {t.max_estops}", hw["estops"] <= t.max_estops, f"{hw['estops']}"),
    ]


def run_check(cfg: CheckConfig) -> dict[str, Any]:
    from simgate.pipeline import GOAL_SEEDS, goals

    t0 = time.monotonic()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [GOAL_SEEDS + k for k in range(cfg.goals)]
    sim, env_id = sim_success(cfg, seeds)
    pol = resolve_policy(cfg, sim)
    hw = drive(cfg, pol, goals(cfg.goals, env_id))
    out = {"policy": cfg.policy, "registry_id": pol.ref, "env_id": env_id, "robot": pol.robot,
           "sim_success": sim, "holdout_success": pol.holdout_success, **hw,
           "gap_points": round((sim - hw["success"]) * 100, 1), "config": json.loads(cfg.model_dump_json())}
    checks = verdicts(cfg, hw)
    out["passed"] = all(v.ok for v in checks)
    out["failed"] = [v.name for v in checks if not v.ok]
    out["wall_s"] = round(time.monotonic() - t0, 1)
    write_junit(cfg.out_dir / "junit.xml", checks, out["wall_s"])
    write_summary(cfg.out_dir / "summary.md", out, checks)
    (cfg.out_dir / "results.json").write_text(json.dumps(out, indent=2, default=str))
    return out
