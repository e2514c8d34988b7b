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
from simgate.policies.batched_ppo import Learner, shaped_reward
from simgate.policies.ppo_graph import GraphedMinibatchStep, ppo_minibatch_loss
from simgate.policies.recipes import load_recipe
from simgate.sim.twin.env import make_twin

RECIPE = "docs/recipes/panda_push_twin_ppo.yaml"


def learner(device: str, sync_free: bool = False, wrap=None, **overrides) -> Learner:
    cfg = load_recipe(RECIPE, device=device, num_envs=64, batch_size=1024, **overrides)
    env = make_twin(cfg.env_id, cfg.num_envs, randomization="preset", device=device, seed=cfg.seed,
                    cuda_graph=cfg.cuda_graph and device == "cuda", sync_free=sync_free)
    return Learner(cfg, env if wrap is None else wrap(env), device)


class RecordingEnv:
    """The twin, with every step's outputs kept."""

    def __init__(self, env) -> None:
        self.env, self.steps_seen = env, []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, actions):
        out = self.env.step(actions)
        self.steps_seen.append(out)
        return out


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


def test_rollout_rewards_use_the_observation_the_policy_acts_on_next():
    """A sync-free twin sends final_obs every step with its own observation-noise draw: the reward
    of an env whose episode goes on is computed on the obs it acts on next, as on the plain twin."""
    lrn = learner("cpu", sync_free=True, wrap=RecordingEnv)
    rews = lrn.collect()[5]
    seen, limit = lrn.env.steps_seen, lrn.cfg.push_speed_limit_m_s
    differs = False
    for k, (obs, _, _, trunc, info) in enumerate(seen):
        assert not trunc.any() if k < len(seen) - 1 else trunc.all()
        src, fi = (info["final_obs"], info["final_info"]) if trunc.all() else (obs, info)
        want = shaped_reward("push", src, fi["is_success"].float(), fi["tipped"].float(), limit)
        assert torch.allclose(rews[k], want), f"step {k}"
        other = shaped_reward("push", info["final_obs"], info["is_success"].float(), info["tipped"].float(), limit)
        differs |= not trunc.any() and not torch.allclose(other, want)
    assert differs, "the noise draws never differed: this test would not see the difference"


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_state_loaded_after_the_capture_is_the_state_the_graph_updates():
    eager, graphed = learner("cuda"), learner("cuda", cuda_graph=True)
    graphed.update(graphed.collect())  # captured
    eager.update(eager.collect())
    graphed.load_state_dict(copy.deepcopy(eager.state_dict()))
    for _ in range(2):
        batch = eager.collect()
        graphed_batch = [[t.clone() for t in part] if isinstance(part, list) else part.clone() for part in batch]
        graphed.gen.set_state(eager.gen.get_state())
        eager.update(batch), graphed.update(graphed_batch)
        assert torch.allclose(params(eager), params(graphed), atol=1e-4), "the graph kept the pre-load state"
