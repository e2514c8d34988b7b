"""twin_ppo's graphed PPO update (recipe ``cuda_graph: true`` on CUDA), checked where it can be
on a CPU machine: the minibatch body never reads a tensor back to the host (a CUDA graph cannot
capture that), the graph refuses what it cannot capture, and a CPU recipe with ``cuda_graph``
trains exactly as without it. On a machine with CUDA, graphed iterations are compared with eager
ones, from a fresh optimizer and from a resumed one."""

import copy

import pytest
import torch
from test_twin_graph import no_host_traffic

from simgate.errors import ConfigError
from simgate.policies.batched_ppo import Learner
from simgate.policies.ppo_graph import GraphedMinibatchStep, ppo_minibatch_loss
from simgate.policies.recipes import load_recipe
from simgate.sim.twin.env import make_twin

RECIPE = "docs/recipes/panda_push_twin_ppo.yaml"


def learner(device: str, **overrides) -> Learner:
    cfg = load_recipe(RECIPE, device=device, num_envs=64, batch_size=1024, **overrides)
    env = make_twin(cfg.env_id, cfg.num_envs, randomization="preset", device=device, seed=cfg.seed,
                    cuda_graph=cfg.cuda_graph and device == "cuda")
    return Learner(cfg, env, device)


def params(learner: Learner) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in learner.model.parameters()]).double().cpu()


def test_minibatch_loss_and_backward_never_touch_the_host():
    lrn = learner("cpu")
    xs, ts, acts, logps, vals, rews, dones, last_v = lrn.collect()
    adv, ret = lrn.gae(vals, rews, dones, last_v)
    data = [torch.cat(xs), torch.cat(ts), torch.cat(acts), torch.cat(logps), adv.reshape(-1), ret.reshape(-1)]
    idx = torch.randperm(data[0].shape[0])[:256]
    with no_host_traffic():
        loss, _, _ = ppo_minibatch_loss(lrn.model, 0.2, 0.0, *[d[idx] for d in data])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lrn.model.parameters(), 1.0)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lrn.model.parameters())


def test_graph_refuses_a_cpu_model_and_a_plain_optimizer():
    lrn = learner("cpu")
    with pytest.raises(ConfigError, match="CUDA"):
        GraphedMinibatchStep(lrn.model, lrn.opt, 0.2, 0.0)
    assert lrn.graphed is None


def test_cuda_graph_recipe_on_cpu_trains_as_the_plain_one():
    plain, flagged = learner("cpu"), learner("cpu", cuda_graph=True)
    for lrn in (plain, flagged):
        for _ in range(2):
            lrn.update(lrn.collect())
    assert torch.equal(params(plain), params(flagged))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("resumed", [False, True])
def test_graphed_update_makes_the_eager_updates(resumed):
    eager, graphed = learner("cuda"), learner("cuda", cuda_graph=True)
    assert graphed.graphed is not None and eager.graphed is None
    if resumed:  # Adam's state exists before the capture: its warm-up must not change it
        eager.update(eager.collect())
        graphed.load_state_dict(copy.deepcopy(eager.state_dict()))  # a saved checkpoint: no shared tensors
    for _ in range(3):
        batch = eager.collect()
        graphed_batch = [[t.clone() for t in part] if isinstance(part, list) else part.clone() for part in batch]
        graphed.gen.set_state(eager.gen.get_state())
        s_e, s_g = eager.update(batch), graphed.update(graphed_batch)
        assert torch.allclose(params(eager), params(graphed), atol=1e-4), "graphed parameters drifted"
        assert s_g["loss/value"] == pytest.approx(s_e["loss/value"], rel=1e-3, abs=1e-5)
