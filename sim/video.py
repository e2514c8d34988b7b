"""Rollout videos: offscreen PyBullet rendering (TinyRenderer, no display) written with imageio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simgate.errors import ConfigError


def record_video(env_id: str, policy_factory, out: Path, episodes: int = 1, seed: int = 0,
                 size: tuple[int, int] = (480, 360), fps: int = 25, env_kwargs: dict | None = None) -> int:
    """Roll out ``episodes`` episodes and write them to ``out`` (.mp4 via ffmpeg, or .gif).

    Returns the number of frames written.
    """
    import imageio.v2 as imageio

    from simgate.sim import make

    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise ConfigError(f"video output must end in .mp4 or .gif, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = make(env_id, render_mode="rgb_array", render_size=size, **(env_kwargs or {}))
    frames = 0
    try:
        policy = policy_factory(env)
        kwargs = {"fps": fps}
        if out.suffix.lower() == ".mp4":
            kwargs.update(codec="libx264", quality=7, macro_block_size=8)
        with imageio.get_writer(str(out), **kwargs) as writer:
            for ep in range(episodes):
                obs, _ = env.reset(seed=seed + ep)
                policy.reset()
                writer.append_data(np.ascontiguousarray(env.render()))
                frames += 1
                done = False
                while not done:
                    obs, _, term, trunc, _ = env.step(policy.act(obs))
                    writer.append_data(np.ascontiguousarray(env.render()))
                    frames += 1
                    done = term or trunc
    finally:
        env.close()
    return frames
