"""`simgate research report`: a Markdown report with PNG plots from the ledger (and the Optuna
study when it is there): metric per trial with the best-so-far staircase, parameter
importance, the spread over fresh seeds of the kept trials, and a video of the promoted policy.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from simgate.autoresearch.ledger import Ledger  # noqa: E402


def write_report(study_dir: str | Path, spec, video: bool = True) -> Path:
    d = Path(study_dir)
    ledger = Ledger(d / "ledger.jsonl")
    n_verified = ledger.verify()
    recs = ledger.records()
    trials = [r for r in recs if r.get("kind") == "trial"]
    promos = [r for r in recs if r.get("kind") == "promotion"]
    figs = d / "report"
    figs.mkdir(exist_ok=True)
    colors = {"keep": "tab:green", "discard": "tab:gray", "rejected": "tab:red", "crash": "black", "pruned": "tab:orange",
              "cut": "tab:purple"}

    # 1. metric per trial + staircase
    fig, ax = plt.subplots(figsize=(7, 4))
    best, stair = None, []
    for r in trials:
        m, claimed = r["verified"], r["reported"].get("claimed")
        if claimed is not None:
            ax.scatter(r["trial"], claimed, marker="x", color=colors[r["status"]])
        if m.get("fresh") is not None:
            ax.scatter(r["trial"], m["fresh"], marker="o", color=colors[r["status"]], label=r["status"])
        if r["status"] == "keep":
            best = m.get("fresh")
        stair.append(best)
    xs = [r["trial"] for r in trials]
    if any(v is not None for v in stair):
        ax.step(xs, [v if v is not None else float("nan") for v in stair], where="post", color="tab:green",
                label="incumbent (fresh seeds)")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=False))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{spec.metric.name} (x claimed on selection, o fresh)")
    ax.set_title(f"{spec.name}: metric per trial")
    fig.tight_layout()
    fig.savefig(figs / "metric_per_trial.png", dpi=110)
    plt.close(fig)

    # 2. parameter importance
    importance_note = ""
    try:
        import optuna

        from simgate.autoresearch.study import open_study, storage_url

        study = open_study(spec, storage_url(d), create=False)
        imp = optuna.importance.get_param_importances(study)
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh(list(imp.keys())[::-1], list(imp.values())[::-1], color="tab:blue")
        ax.set_title("parameter importance (fANOVA)")
        fig.tight_layout()
        fig.savefig(figs / "param_importance.png", dpi=110)
        plt.close(fig)
    except Exception as exc:  # noqa: BLE001 - too few complete trials, constant params, ...
        importance_note = f"(parameter importance not available: {type(exc).__name__}: {exc})"

    # 3. spread over fresh seeds of kept trials
    from simgate.policies.evaluation import wilson_interval

    kept = [r for r in trials if r["status"] == "keep" and r["verified"].get("fresh_episodes")]
    fig, ax = plt.subplots(figsize=(6, 3))
    for r in kept:
        f, n = r["verified"]["fresh"], r["verified"]["fresh_episodes"]
        lo, hi = wilson_interval(round(f * n), n)
        ax.errorbar(r["trial"], f, yerr=[[f - lo], [hi - f]], fmt="o", color="tab:green", capsize=4)
    ax.set_xlabel("kept trial")
    ax.set_ylabel("fresh-seed success (95 % CI)")
    ax.set_title("kept trials: spread over fresh seeds")
    fig.tight_layout()
    fig.savefig(figs / "kept_spread.png", dpi=110)
    plt.close(fig)

    # 4. video of the promoted policy
    promoted = next((p for p in reversed(promos) if p.get("status") == "promoted"), None)
    video_path = None
    if promoted and video:  # after the decision, from the judged bytes
        import shutil

        from simgate.autoresearch.store import ArtifactStore, private_dir
        from simgate.policies.export import load_checked_policy
        from simgate.sim.video import record_video

        judged = next(r for r in trials if r["trial"] == promoted["candidate"] and r["status"] == "keep")["verified"]
        tmp = private_dir("simgate-video-")
        try:
            pol = load_checked_policy(ArtifactStore(d / "store").checkout(judged["artifact_sha256"], judged["layout_sha256"], tmp))
            video_path = figs / "promoted.mp4"
            record_video(spec.task.env_id, lambda env: pol, video_path, episodes=3, seed=9_000_000, size=(320, 240))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    lines = [f"# Research report: {spec.name}", "",
             f"Task `{spec.task.env_id}`, metric `{spec.metric.name}` ({spec.metric.direction})"
             + ("" if spec.metric.under == "nominal" else f", evaluated under {spec.metric.label()}") + ". "
             f"Ledger: {n_verified} records, authenticated and anchored.", ""]
    counts = {s: sum(r["status"] == s for r in trials) for s in colors}
    lines += ["| trials | " + " | ".join(counts) + " |", "|---" * (len(counts) + 1) + "|",
              f"| {len(trials)} | " + " | ".join(str(v) for v in counts.values()) + " |", ""]
    noise = next((r["verified"]["noise_floor"] for r in reversed(trials) if r["verified"].get("noise_floor") is not None),
                 None)
    lines.append(f"Noise floor (baseline trained twice, the same secret seeds): "
                 f"{noise if noise is not None else 'not measured yet'}")
    lines.append("")
    if promoted:
        lines += [f"**Promoted**: trial {promoted['candidate']} as `{promoted['registry_id'][:12]}` - holdout success "
                  f"{promoted['holdout']['success_rate']:.3f} ({promoted['holdout']['episodes']} episodes), "
                  f"under the randomization preset {promoted['robustness']['success_rate']:.3f}.", ""]
        base, m = promoted.get("baseline"), promoted.get("metric")
        if base and m and base.get("value") is not None:
            lines += [f"Baseline (trial {base['trial']}) vs promoted, {spec.metric.name}"
                      + ("" if spec.metric.under == "nominal" else f" under {spec.metric.label()}")
                      + f", on the same {base['episodes']} secret holdout seeds: {base['value']:.3f} -> {m['value']:.3f} "
                        f"(paired sign test p={base['p_value']:.2g}).", ""]
    elif promos:
        lines += [f"Promotion refused: {promos[-1].get('reason')}", ""]
    lines += ["![metric per trial](report/metric_per_trial.png)", ""]
    lines += ["![parameter importance](report/param_importance.png)" if not importance_note else importance_note, ""]
    lines += ["![kept trials](report/kept_spread.png)", ""]
    if video_path:
        lines += ["Video of the promoted policy: [report/promoted.mp4](report/promoted.mp4)", ""]
    lines += ["| trial | status | claimed (reported) | fresh (verified) | episodes | reason | params |",
              "|---|---|---|---|---|---|---|"]
    for r in trials:
        m, claimed = r["verified"], r["reported"].get("claimed")
        c = f"{claimed:.3f}" if claimed is not None else ""
        f = f"{m['fresh']:.3f}" if m.get("fresh") is not None else ""
        reason = str(r["reason"]).replace("|", "/")
        lines.append(f"| {r['trial']} | {r['status']} | {c} | {f} | {m.get('fresh_episodes') or ''} | {reason} | "
                     f"`{json.dumps(r['reported'].get('params'))}` |")
    out = d / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
