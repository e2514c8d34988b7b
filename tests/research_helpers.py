"""Shared by the research tests that drive `simgate research ...` in real processes, with worker
processes whose training a ``sitecustomize`` hook replaces by a fixed controller."""

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent


def research_cli(args, cwd, env=None, timeout=600):
    """``python -m simgate.cli ARGS`` in ``cwd``; ``env`` is added to this process's environment."""
    return subprocess.run([sys.executable, "-m", "simgate.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def hook_env(hook_dir, **flags) -> dict:
    """Environment of a study whose workers load ``hook_dir/sitecustomize.py`` (and can import this module)."""
    return {"PYTHONPATH": os.pathsep.join([str(hook_dir), str(TESTS_DIR)]), **flags}


def save_controller(module, env_id: str, out_dir) -> None:
    """A trial's artifact from a torch module of pure tensor ops: ``policy.ts`` and its observation layout."""
    import torch

    from simgate.sim import make

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module).save(str(out / "policy.ts"))
    env = make(env_id)
    try:
        keys = list(env.observation_space.spaces)
        assert keys[:2] == ["achieved_goal", "desired_goal"], keys
        layout = {"obs_keys": keys, "obs_sizes": [int(env.observation_space[k].shape[0]) for k in keys],
                  "action_dim": int(env.action_space.shape[0])}
    finally:
        env.close()
    (out / "policy.ts.json").write_text(json.dumps(layout))
