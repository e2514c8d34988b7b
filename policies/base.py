"""The Policy protocol: what the evaluation harness, the research loop and the gateway run."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """``act(observation) -> action`` for one env (Dict observation in, (n_act,) float32 out),
    ``reset()`` at the start of every episode."""

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray: ...

    def reset(self) -> None: ...


class RandomPolicy:
    """Uniform random actions in [-1, 1]; seeded."""

    def __init__(self, action_dim: int, seed: int = 0) -> None:
        self.action_dim = action_dim
        self.rng = np.random.default_rng(seed)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)

    def reset(self) -> None:
        pass
