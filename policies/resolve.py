"""Turn a policy reference into something the evaluation harness can run.

``scripted`` | ``random`` | a training run directory | an SB3 ``.zip`` (a run's ``model.zip`` or a
checkpoint ``checkpoints/latest.zip``) | a TorchScript ``.ts`` |
a registry reference (hash, hash prefix or name).
"""

from __future__ import annotations

from pathlib import Path

from simgate.errors import SimgateError


def policy_factory(ref: str, registry_dir: str | Path | None = None):
    """A callable ``env -> Policy`` (built per evaluation env)."""
    if ref == "scripted":
        from simgate.sim.scripted import scripted_policy_for

        return scripted_policy_for
    if ref == "random":
        from simgate.policies.base import RandomPolicy

        return lambda env: RandomPolicy(env.action_space.shape[0], seed=0)
    p = Path(ref)
    if p.is_dir() and (p / "policy.ts").exists():
        from simgate.policies.export import TorchPolicy

        pol = TorchPolicy(p / "policy.ts")
        return lambda env: pol
    if p.suffix == ".ts" and p.exists():
        from simgate.policies.export import TorchPolicy

        pol = TorchPolicy(p)
        return lambda env: pol
    if p.suffix == ".zip" and p.exists():
        from simgate.policies.export import SB3Policy
        from simgate.policies.train import load_trained

        # a run's model.zip, or a checkpoint (<run>/checkpoints/latest.zip) of a run still training
        run_dir = next((d for d in (p.parent, p.parent.parent) if (d / "config.yaml").exists()), None)
        if run_dir is None:
            raise SimgateError(f"{p}: an SB3 checkpoint needs the config.yaml of its run (next to it or one folder up)")
        model, vn = load_trained(run_dir, p)
        pol = SB3Policy(model, vn)
        return lambda env: pol
    from simgate.policies.registry import Registry

    pol, _ = Registry(registry_dir).load(ref)
    return lambda env: pol
