"""The PPO minibatch update of ``twin_ppo`` captured in a CUDA graph (recipe ``cuda_graph: true``).

One minibatch step (gather, clipped-PPO loss, backward, gradient clipping, Adam) is ~200 small
CUDA kernels; eager, each pays a launch from Python and the step reads its losses back to the host.
At 512 twin envs that update, not the compiled twin, bounds the training rate on a GPU. Here the
step is captured once ("whole-network capture": capturable Adam, gradients allocated inside the
graph) and replayed with the rollout in static buffers and the minibatch's indices copied into a
static index tensor, so an iteration's 30-odd minibatches cost 30-odd graph launches and one host
read of the losses at its end.

The capture's warm-up steps (run on a side stream, as capture needs) are undone: parameters and
Adam's state are put back, so the graphed update makes the same updates as the eager one.
"""

from __future__ import annotations

import torch
from torch import nn

from simgate.errors import ConfigError

WARMUP_STEPS = 3


def ppo_minibatch_loss(model, clip_range: float, ent_coef: float, x, t, a, lp0, adv, ret):
    """Clipped-PPO loss of one minibatch (advantages normalized within it): (loss, policy, value)."""
    mu = model.mean(x)
    logp = (-0.5 * ((a - mu) / model.log_std.exp()) ** 2 - model.log_std).sum(-1)
    ratio = torch.exp(logp - lp0)
    ad = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg = -torch.minimum(ratio * ad, ratio.clamp(1 - clip_range, 1 + clip_range) * ad).mean()
    vf = 0.5 * ((model.value(x, t) - ret) ** 2).mean()
    return pg + vf - ent_coef * model.log_std.sum(), pg, vf


def minibatch_step(model, opt, clip_range: float, ent_coef: float, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss, backward, clip to norm 1, optimizer step; returns the (policy, value) losses on device."""
    loss, pg, vf = ppo_minibatch_loss(model, clip_range, ent_coef, *batch)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return pg.detach(), vf.detach()


def set_capturable(opt, capturable: bool) -> None:
    """After ``load_state_dict``: Adam's ``capturable`` as this run needs it (a checkpoint carries
    the mode of the run that saved it); capturable state keeps its step count on the device."""
    for group in opt.param_groups:
        group["capturable"] = capturable
        for p in group["params"]:
            state = opt.state.get(p, {})
            if "step" in state:  # non-capturable Adam reads a device step back to the host every step
                step = torch.as_tensor(state["step"], dtype=torch.float32)
                state["step"] = step.to(p.device) if capturable else step.cpu()


class GraphedMinibatchStep:
    """``minibatch_step`` on ``data[idx]``, captured at the first call and replayed after it.

    ``load(data)`` copies an iteration's rollout (x, t, a, lp0, adv, ret; fixed shapes) into the
    static buffers; ``step(idx)`` runs one minibatch on those rows. The optimizer must be Adam with
    ``capturable=True``. The graph holds the model's and the optimizer's tensors as they were at
    the capture: a state loaded after it needs a new instance (``Learner.load_state_dict``).
    """

    def __init__(self, model, opt, clip_range: float, ent_coef: float) -> None:
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ConfigError(f"a graphed PPO update needs a CUDA model, got device {device}")
        if not all(g.get("capturable", False) for g in opt.param_groups):
            raise ConfigError("a graphed PPO update needs an optimizer built with capturable=True")
        self.model, self.opt, self.clip_range, self.ent_coef = model, opt, clip_range, ent_coef
        self.data: list[torch.Tensor] | None = None
        self.idx: torch.Tensor | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: tuple[torch.Tensor, torch.Tensor] | None = None

    def load(self, data) -> None:
        if self.data is None:
            self.data = [d.detach().clone() for d in data]
            return
        for static, d in zip(self.data, data, strict=True):
            if static.shape != d.shape:
                raise ValueError(f"rollout shape changed after capture: {tuple(d.shape)} vs {tuple(static.shape)}")
            static.copy_(d)

    def step(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.idx is None:
            self.idx = idx.clone()
        else:
            self.idx.copy_(idx)
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.out

    def _body(self):
        return minibatch_step(self.model, self.opt, self.clip_range, self.ent_coef, [d[self.idx] for d in self.data])

    def _capture(self) -> None:
        params = [p for g in self.opt.param_groups for p in g["params"]]
        keep_params = [p.detach().clone() for p in params]
        keep_state = {id(p): {k: v.clone() for k, v in self.opt.state[p].items()} for p in params if self.opt.state[p]}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):  # builds Adam's state and the allocator's pools
                self.opt.zero_grad(set_to_none=True)
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        self._undo_warmup(params, keep_params, keep_state)
        self.opt.zero_grad(set_to_none=True)  # backward allocates the gradients inside the graph
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._body()

    def _undo_warmup(self, params, keep_params, keep_state) -> None:
        with torch.no_grad():
            for p, kept in zip(params, keep_params, strict=True):
                p.copy_(kept)
                before = keep_state.get(id(p), {})
                for k, v in self.opt.state[p].items():
                    if torch.is_tensor(v):
                        v.copy_(before[k]) if k in before else v.zero_()
