"""Promotion of a study's incumbent, on the trusted side.

The incumbent comes from the verified ledger (never from coordinator.json); its bytes come from
the store, hash-checked against the judged hash, into a private folder - the registry gets
exactly what was judged. Each attempt draws a fresh secret holdout sample; attempts per study
are capped (``promotion.max_attempts``). With ``promotion.audit`` the candidate is re-trained
from its reported parameters and seed on this machine first: an artifact that clearly beats its
own re-training (a hand-written controller, weights from elsewhere) is refused.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from simgate.autoresearch import gate
from simgate.autoresearch.records import PromotionRecord
from simgate.autoresearch.store import StoreError, private_dir

if TYPE_CHECKING:
    from simgate.autoresearch.coordinator import Coordinator


def _refuse(coord: Coordinator, reason: str, **fields: Any) -> None:
    from simgate.autoresearch.coordinator import console

    coord.ledger.append(PromotionRecord(status="refused", reason=reason[:1900], **fields))
    console.print(f"[yellow]promotion refused[/yellow]: {reason}")


def audit(coord: Coordinator, trial: int, params: dict, artifact_per_episode: list[float], seeds: list[int]) -> dict:
    """Re-train the trial from its reported params and seed; compare with the artifact on the same
    secret seeds. Returns {"ok", "reason", ...}."""
    from simgate.autoresearch.worker import trial_recipe
    from simgate.policies.export import TorchPolicy
    from simgate.policies.train import train

    work = private_dir("simgate-audit-")
    try:
        recipe = trial_recipe(coord.spec, params, trial)
        run = train(recipe, work, progress_bar=False, max_wall_s=coord.spec.budgets.trial_wall_s * 2)
        retrained = coord._evaluate(TorchPolicy(work / "policy.ts"), seeds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plan = coord.plan
    a = [plan.sign * x for x in artifact_per_episode]
    b = [plan.sign * x for x in retrained]
    delta = (sum(a) - sum(b)) / len(a)
    p = gate.sign_test_p(a, b)
    same = all(abs(x - y) <= 1e-6 for x, y in zip(a, b, strict=True))
    ok = same or not (p < plan.reproduce_alpha and delta > plan.reproduce_tolerance)
    what = ("re-training reproduces the artifact's episodes exactly" if same else
            f"artifact {sum(artifact_per_episode) / len(a):.3f} vs its re-training {sum(retrained) / len(b):.3f} "
            f"on {len(a)} secret seeds (p={p:.2g})")
    return {"ok": ok, "reason": ("audit passed: " if ok else "audit failed: the artifact is not what its reported "
                                 "training produces: ") + what,
            "retrained": sum(retrained) / len(b), "artifact": sum(artifact_per_episode) / len(a), "p_value": p,
            "steps": run.get("steps")}


def _per_episode(coord: Coordinator, res) -> list[float]:
    return [float(x) for x in (res.per_episode_success if coord.plan.binary else res.per_episode_return)]


def _metric_value(coord: Coordinator, res) -> float:
    return res.success_rate if coord.plan.binary else res.mean_return


def baseline_comparison(coord: Coordinator, inc_trial: int, cand: list[float], seeds: list[int]) -> dict | None:
    """The study's baseline (the first judged baseline trial, else the first judged trial of the
    base recipe's parameters) on the same secret holdout seeds and conditions as the candidate:
    its score and the one-sided paired sign test candidate > baseline.
    None when no baseline was judged; a baseline artifact that cannot run is reported, not fatal."""
    from simgate.autoresearch.coordinator import _Checkout, baseline_params, untrusted_error

    judged = [r for r in coord.ledger.records() if r.get("kind") == "trial" and r["verified"].get("artifact_sha256")
              and r["verified"].get("fresh") is not None]
    base_params = baseline_params(coord.spec)  # a baseline re-queued after a crash has a later number
    base = next((r for r in judged if r.get("role") == "baseline"), None) or next(
        (r for r in judged if r["verified"].get("params") == base_params), None)
    if base is None:
        return None
    out: dict[str, Any] = {"trial": base["trial"], "episodes": len(seeds)}
    if base["trial"] == inc_trial:
        per = list(cand)
    else:
        v = base["verified"]
        try:
            with _Checkout(coord.store, v["artifact_sha256"], v["layout_sha256"]) as b:
                per = coord._evaluate(b.policy, seeds)
        except Exception as exc:  # noqa: BLE001 - the comparison is information, never a veto
            return {**out, "error": untrusted_error(exc)}
    plan = coord.plan
    a, b_ = [plan.sign * x for x in cand], [plan.sign * x for x in per]
    out.update(value=sum(per) / len(per), candidate=sum(cand) / len(cand),
               delta=(sum(cand) - sum(per)) / len(per), p_value=gate.sign_test_p(a, b_))
    return out


def _checks(coord: Coordinator, hold, robust) -> list[str]:
    pr = coord.spec.promotion
    problems = []
    if hold.success_rate < pr.min_holdout_success:
        problems.append(f"holdout success {hold.success_rate:.3f} < {pr.min_holdout_success}")
    if robust.success_rate < pr.min_robust_success:
        problems.append(f"robust success {robust.success_rate:.3f} < {pr.min_robust_success}")
    if hold.self_collision_steps > pr.max_safety_violations:
        problems.append(f"{hold.self_collision_steps} self-collision steps > {pr.max_safety_violations}")
    return problems


def promote_incumbent(coord: Coordinator) -> dict | None:
    from simgate.autoresearch.coordinator import console
    from simgate.policies.evaluation import evaluate
    from simgate.policies.export import UnsafeArtifact, load_checked_policy

    state, pr = coord.derived, coord.spec.promotion
    inc = state.incumbent
    if state.invalid_keeps:
        _refuse(coord, "the ledger holds kept trials whose params fail the pinned search space (forged or stale "
                       "records): " + "; ".join(state.invalid_keeps), candidate=inc.trial if inc else None)
        return None
    if inc is None:
        _refuse(coord, "no kept trial")
        return None
    try:
        from simgate.autoresearch.worker import trial_recipe

        trial_recipe(coord.spec, inc.params, inc.trial)  # strict: refuses keys outside the space
    except Exception as exc:  # noqa: BLE001 - a recorded refusal, never a crash
        _refuse(coord, f"the incumbent's params do not make a recipe: {type(exc).__name__}: {str(exc)[:300]}",
                candidate=inc.trial)
        return None
    if state.promotion_attempts >= pr.max_attempts:
        _refuse(coord, f"promotion attempts exhausted ({state.promotion_attempts}/{pr.max_attempts}): each attempt "
                       "used a fresh holdout sample; start a new study", candidate=inc.trial)
        return None
    attempt = state.promotion_attempts + 1
    work = private_dir("simgate-promote-")
    try:
        try:
            path = coord.store.checkout(inc.artifact_sha256, inc.layout_sha256, work)
        except StoreError as exc:
            _refuse(coord, str(exc), candidate=inc.trial, artifact_sha256=inc.artifact_sha256)
            return None
        finally:
            coord._record_notes()
        try:
            pol = load_checked_policy(path)  # nothing in it runs before the allow-list check
        except UnsafeArtifact as exc:
            _refuse(coord, f"artifact refused before running: {exc}", candidate=inc.trial,
                    artifact_sha256=inc.artifact_sha256)
            return None
        seeds = gate.secret_seeds(pr.holdout_episodes)  # a fresh secret holdout sample per attempt
        under = coord.spec.metric.under
        try:
            hold = evaluate(pol, coord.spec.task.env_id, seeds)
            robust = evaluate(pol, coord.spec.task.env_id, seeds, {"randomization": "preset"})
            measured = {"nominal": hold, "preset": robust}.get(under) if isinstance(under, str) else None
            measured = measured or evaluate(pol, coord.spec.task.env_id, seeds, coord.spec.metric.env_kwargs())
        except UnsafeArtifact as exc:
            _refuse(coord, f"artifact refused while running: {exc}", candidate=inc.trial, attempt=attempt,
                    artifact_sha256=inc.artifact_sha256)
            return None
        except Exception as exc:  # noqa: BLE001 - the artifact's own text never reaches the ledger
            from simgate.autoresearch.coordinator import untrusted_error

            _refuse(coord, f"artifact failed on the holdout: {untrusted_error(exc)}", candidate=inc.trial,
                    attempt=attempt, artifact_sha256=inc.artifact_sha256)
            return None
        per_ep = _per_episode(coord, measured)  # under the metric's conditions: what the gate judged
        fields = {"candidate": inc.trial, "attempt": attempt, "artifact_sha256": inc.artifact_sha256,
                  "holdout": hold.summary(), "robustness": {"randomization": "preset", **robust.summary()},
                  "conditions": coord.spec.metric.conditions(),
                  "metric": {"name": coord.spec.metric.name, "value": _metric_value(coord, measured),
                             "episodes": measured.episodes, "success_rate": measured.success_rate,
                             "success_ci95": list(measured.success_ci95), "mean_return": measured.mean_return}}
        try:
            fields["baseline"] = baseline_comparison(coord, inc.trial, per_ep, seeds)
        finally:
            coord._record_notes()
        problems = _checks(coord, hold, robust)
        if not problems and pr.audit:
            fields["audit"] = audit(coord, inc.trial, inc.params, per_ep, seeds)
            if not fields["audit"]["ok"]:
                problems.append(fields["audit"]["reason"])
        if problems:
            _refuse(coord, "; ".join(problems), **fields)
            return None
        digest = _register(coord, path, inc, hold, robust)
        coord.ledger.append(PromotionRecord(status="promoted", registry_id=digest, **fields,
                                            reason=f"holdout {hold.success_rate:.3f}, robust {robust.success_rate:.3f}, "
                                                   f"{coord.spec.metric.name} under {coord.spec.metric.label()} "
                                                   f"{fields['metric']['value']:.3f}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print(f"[green]promoted[/green] trial {inc.trial} as {digest[:12]} (holdout {hold.success_rate:.3f})")
    return promoted_summary(fields, digest)


def promoted_summary(rec: dict, registry_id: str) -> dict:
    """What callers (the CLI, the main job) get back from a promotion record's fields."""
    return {"registry_id": registry_id, "trial": rec["candidate"], "holdout_success": rec["holdout"]["success_rate"],
            "robust_success": rec["robustness"]["success_rate"], "conditions": rec.get("conditions") or "nominal",
            "metric": rec.get("metric"), "baseline": rec.get("baseline")}


def _register(coord: Coordinator, path, inc, hold, robust) -> str:
    from simgate.autoresearch.worker import trial_recipe
    from simgate.policies.promotion import env_spec
    from simgate.policies.registry import Registry

    head = coord.ledger.head()
    meta = {**env_spec(coord.spec.task.env_id), "holdout": hold.summary(),
            "robustness": {"randomization": "preset", **robust.summary()},
            "metric": {"name": coord.spec.metric.name, "under": coord.spec.metric.conditions()},
            "training": {"config": trial_recipe(coord.spec, inc.params, inc.trial).model_dump(mode="json"),
                         "trial": inc.trial},
            "ledger_entry": {"path": str(coord.ledger.path.resolve()), "key_id": coord.ledger.key_id(),
                             "seq": inc.seq, "hash": inc.hash, "trial": inc.trial,
                             "artifact_sha256": inc.artifact_sha256, "head": head},
            "study": coord.spec.name}
    return Registry(coord.registry_dir).promote(path, meta, name=coord.spec.name)
