"""The twin's CUDA-graph path, checked where it can be on a CPU machine: the sync-free step is
the same step (nominal Push and Reach, bit for bit, episode end included), it never reads a
tensor back to the host or copies one to the device (a CUDA graph cannot capture either), and
the static-state copy-back leaves every state tensor where the graph will read it. On a machine
with CUDA, a captured graph's replays are compared with eager steps."""

import contextlib

import pytest
import torch

from simgate.errors import ConfigError
from simgate.sim.twin.env import make_twin
from simgate.sim.twin.graph import StaticState

TASKS = ["simgate/PandaPush-v0", "simgate/PandaReach-v0"]


@contextlib.contextmanager
def no_host_traffic():
    """Any tensor read to the host, host-to-device copy or op that reads its result back raises."""
    saved = {}

    def refuse(name):
        def f(*_a, **_k):
            raise AssertionError(f"the sync-free step called {name}")
        return f

    for name in ("item", "__bool__", "cpu", "numpy", "tolist", "__int__", "__float__"):
        saved[(torch.Tensor, name)] = getattr(torch.Tensor, name)
        setattr(torch.Tensor, name, refuse(f"Tensor.{name}"))
    saved[(torch, "tensor")] = torch.tensor
    torch.tensor = refuse("torch.tensor")
    as_tensor = torch.as_tensor
    saved[(torch, "as_tensor")] = as_tensor
    torch.as_tensor = lambda x, *a, **k: (as_tensor(x, *a, **k) if isinstance(x, torch.Tensor)
                                          else refuse("torch.as_tensor on host data")())
    for name in ("solve", "inv", "cholesky"):  # check their inputs on the host: a sync on CUDA
        saved[(torch.linalg, name)] = getattr(torch.linalg, name)
        setattr(torch.linalg, name, refuse(f"torch.linalg.{name}"))
    for name in ("nonzero", "masked_select", "unique"):
        saved[(torch, name)] = getattr(torch, name)
        setattr(torch, name, refuse(f"torch.{name}"))
    try:
        yield
    finally:
        for (owner, name), fn in saved.items():
            setattr(owner, name, fn)


@pytest.mark.parametrize("env_id", TASKS)
def test_sync_free_step_is_the_same_step(env_id):
    eager = make_twin(env_id, 32, seed=3)
    free = make_twin(env_id, 32, seed=3, sync_free=True)
    state = StaticState(free)
    eager.reset(seed=11)
    free.reset(seed=11)
    gen = torch.Generator().manual_seed(0)
    for t in range(eager.max_episode_steps):
        a = torch.rand(32, 3, generator=gen) * 2 - 1
        o_e, r_e, _, tr_e, i_e = eager.step(a)
        before = state.snapshot()
        o_f, r_f, _, tr_f, i_f = free._step(a)
        state.restore(before)
        assert all(now is before[k] for k, now in state.snapshot().items()), "a state tensor moved"
        assert torch.equal(tr_e, tr_f) and torch.equal(r_e, r_f)
        if t < eager.max_episode_steps - 1:
            assert "final_obs" in i_f and not i_f["_final_obs"].any()
            for k in o_e:
                assert torch.equal(o_e[k], o_f[k]), (t, k)
    assert tr_f.all()
    for k in i_e["final_obs"]:
        assert torch.equal(i_e["final_obs"][k], i_f["final_obs"][k]), k
    assert torch.equal(i_e["final_info"]["is_success"], i_f["final_info"]["is_success"])


def _copy_state(src, dst) -> None:
    for name, v in vars(src).items():
        if isinstance(v, torch.Tensor):
            setattr(dst, name, v.clone())
    for group in ("box", "dr"):
        getattr(dst, group).update({k: v.clone() for k, v in getattr(src, group).items()})
    dst.gen.set_state(src.gen.get_state())


@pytest.mark.parametrize("env_id", TASKS)
def test_sync_free_step_is_the_same_step_under_randomization(env_id):
    """From the same state and random stream, one sync-free step equals one eager step under the
    preset (jittered periods, latency, action noise, sticking fingers, mass and damping), step after
    step. The sync-free step then draws masked resets (and redraws observation noise after them, so
    that is left out), so the state is handed over again each step."""
    from simgate.sim.randomization import resolve_randomization

    dr = resolve_randomization("preset").model_copy(update={"obs_noise_std": None})
    eager = make_twin(env_id, 32, seed=3, randomization=dr)
    free = make_twin(env_id, 32, seed=3, randomization=dr, sync_free=True)
    eager.reset(seed=11)
    gen = torch.Generator().manual_seed(0)
    for t in range(eager.max_episode_steps - 1):
        _copy_state(eager, free)
        a = torch.rand(32, 3, generator=gen) * 2 - 1
        a[:, 2] = torch.where(torch.arange(32) % 2 == 0, -1.0, a[:, 2])  # half the envs land on the table
        o_e, r_e, _, _, i_e = eager.step(a)
        o_f, r_f, _, _, i_f = free._step(a)
        assert torch.equal(r_e, r_f), t
        assert torch.equal(i_e["tipped"], i_f["tipped"]), t
        for k in o_e:
            assert torch.equal(o_e[k], o_f[k]), (t, k)


@pytest.mark.parametrize("randomization", [None, "preset"])
@pytest.mark.parametrize("env_id", TASKS)
def test_sync_free_step_never_touches_the_host(env_id, randomization):
    env = make_twin(env_id, 16, randomization=randomization, sync_free=True)
    env.reset(seed=1)
    a = torch.rand(16, 3) * 2 - 1
    env.step(a)  # device constants are built on first use
    with no_host_traffic():
        for _ in range(env.max_episode_steps + 5):  # across an autoreset
            env.step(a)
    plain = make_twin(env_id, 4)
    plain.reset(seed=1)
    with pytest.raises(AssertionError, match="the sync-free step called Tensor"), no_host_traffic():
        plain.step(torch.zeros(4, 3))  # the plain step does sync: the detector sees it


def test_cuda_graph_needs_cuda():
    with pytest.raises(ConfigError, match="CUDA"):
        make_twin("simgate/PandaPush-v0", 8, device="cpu", cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("env_id", TASKS)
def test_cuda_graph_replays_match_eager_steps(env_id):
    eager = make_twin(env_id, 256, device="cuda", sync_free=True)
    graph = make_twin(env_id, 256, device="cuda", cuda_graph=True)
    eager.reset(seed=5)
    graph.reset(seed=5)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(eager.max_episode_steps - 1):  # nominal: no random draws before the autoreset
        a = torch.rand(256, 3, generator=gen, device="cuda") * 2 - 1
        o_e = eager.step(a)[0]
        o_g = graph.step(a)[0]
        for k in o_e:
            torch.testing.assert_close(o_g[k], o_e[k], rtol=0, atol=1e-5)


def test_eager_push_solves_only_reachable_boxes_yet_equals_the_full_solve():
    """The eager Push step leaves out envs whose box is at rest and out of the fingers' reach (a
    broadphase); the sync-free step solves every env. Driving half the tools into their boxes (and
    the other half around), every observation and tip flag is the same, step after step."""
    eager = make_twin("simgate/PandaPush-v0", 64, seed=5)
    free = make_twin("simgate/PandaPush-v0", 64, seed=5, sync_free=True)
    eager.reset(seed=21)
    gen = torch.Generator().manual_seed(2)
    moved = torch.zeros(64, dtype=torch.bool)
    for t in range(eager.max_episode_steps - 1):
        _copy_state(eager, free)
        start = eager.box["xy"].clone()
        toward = torch.cat([(eager.box["xy"] - eager.tool[:, :2]) / 0.05, torch.full((64, 1), -1.0)], -1)
        a = torch.where((torch.arange(64) % 2 == 0)[:, None], toward, torch.rand(64, 3, generator=gen) * 2 - 1)
        o_e, _, _, trunc, i_e = eager.step(a.clamp(-1, 1))
        o_f, _, _, _, i_f = free._step(a.clamp(-1, 1))
        assert torch.equal(i_e["tipped"], i_f["tipped"]), t
        for k in o_e:
            assert torch.equal(o_e[k], o_f[k]), (t, k)
        moved |= ((eager.box["xy"] - start).norm(dim=-1) > 1e-3) & ~trunc
    assert int(moved.sum()) >= 5  # boxes were pushed: the contact path ran
