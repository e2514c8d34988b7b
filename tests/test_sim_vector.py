"""Vectorized envs: correctness against single envs, autoreset, crash handling, no orphans, SB3."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from simgate.errors import WorkerCrashedError
from simgate.sim import make
from simgate.sim.vector import make_vec


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_vector_matches_single_envs():
    venv = make_vec("simgate/PandaPush-v0", 4, num_workers=2)
    singles = [make("simgate/PandaPush-v0") for _ in range(4)]
    obs, _ = venv.reset(seed=10)
    for i, env in enumerate(singles):
        o, _ = env.reset(seed=10 + i)
        np.testing.assert_array_equal(obs["observation"][i], o["observation"])
    rng = np.random.default_rng(0)
    for _ in range(60):  # crosses an episode end (50 steps)
        acts = rng.uniform(-1, 1, (4, 3)).astype(np.float32)
        obs, rew, term, trunc, infos = venv.step(acts)
        for i, env in enumerate(singles):
            o, r, te, tr, info = env.step(acts[i])
            if tr:
                np.testing.assert_array_equal(infos["final_obs"][i]["observation"], o["observation"])
                assert infos["final_info"][i]["is_success"] == info["is_success"]
                o, _ = env.reset()
            np.testing.assert_array_equal(obs["observation"][i], o["observation"])
            assert rew[i] == r and trunc[i] == tr
    venv.close()
    for env in singles:
        env.close()


def test_vector_spaces_and_randomization_infos():
    venv = make_vec("simgate/PandaPickAndPlace-v0", 3, num_workers=2, randomization="preset")
    obs, infos = venv.reset(seed=0)
    assert obs["observation"].shape == (3, venv.single_observation_space["observation"].shape[0])
    assert venv.action_space.shape == (3, 4)
    masses = infos["randomization"]["object_mass_scale"]
    assert masses.shape == (3,) and np.all(masses > 0) and len(set(masses.tolist())) == 3
    r = venv.compute_reward(obs["achieved_goal"], obs["desired_goal"], None)
    assert r.shape == (3,)
    venv.close()


def test_crashed_worker_raises_clear_error_and_leaves_no_process():
    venv = make_vec("simgate/PandaReach-v0", 4, num_workers=2)
    venv.reset(seed=0)
    worker = venv._procs[0]
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashedError, match="worker 1"):
        for _ in range(5):
            venv.step(np.zeros((4, 3), np.float32))
    assert not any(p.is_alive() for p in venv._procs)


def test_bad_action_is_refused_and_changes_nothing():
    venv = make_vec("simgate/PandaReach-v0", 4, num_workers=2)
    obs, _ = venv.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        venv.step(np.full((4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros((3, 3), np.float32))
    obs2, *_ = venv.step(np.zeros((4, 3), np.float32))  # still usable
    assert obs2["observation"].shape == obs["observation"].shape
    venv.close()


def test_close_leaves_no_children():
    venv = make_vec("simgate/PandaReach-v0", 6, num_workers=2)
    venv.reset(seed=0)
    pids = [p.pid for p in venv._procs]
    assert pids and all(pid in _children(os.getpid()) for pid in pids)
    venv.close()
    assert not any(pid in _children(os.getpid()) for pid in pids)


def _run_and_collect(tmp_path, body: str, signal_to_send=None):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, sys
        from simgate.sim.vector import make_vec
        v = make_vec("simgate/PandaReach-v0", 4, num_workers=2)
        v.reset(seed=0)
        print("ready", *[p.pid for p in v._procs], flush=True)
    """) + textwrap.dedent(body))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    assert line and line[0] == "ready"
    pids = [int(x) for x in line[1:]]
    if signal_to_send is not None:
        time.sleep(0.5)
        proc.send_signal(signal_to_send)
    proc.wait(timeout=30)
    time.sleep(0.3)

    def alive(pid):
        try:
            return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
        except FileNotFoundError:
            return False

    return proc.returncode, [pid for pid in pids if alive(pid)]


def test_unhandled_exception_leaves_no_orphans(tmp_path):
    code, alive = _run_and_collect(tmp_path, "raise RuntimeError('boom')\n")
    assert code != 0 and alive == []


def test_ctrl_c_leaves_no_orphans(tmp_path):
    code, alive = _run_and_collect(tmp_path, "while True:\n    v.step(np.zeros((4, 3), np.float32))\n", signal.SIGINT)
    assert code != 0 and alive == []


def test_sb3_sac_her_smoke():
    from stable_baselines3 import SAC, HerReplayBuffer

    from simgate.sim.sb3 import make_sb3_vec

    venv = make_sb3_vec("simgate/PandaReach-v0", 2, num_workers=2)
    model = SAC("MultiInputPolicy", venv, replay_buffer_class=HerReplayBuffer,
                replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                learning_starts=100, batch_size=64, policy_kwargs={"net_arch": [32, 32]}, device="cpu", seed=0)
    model.learn(300)
    assert model.num_timesteps >= 300 and model.replay_buffer.size() > 0
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2, 3) and np.all(np.abs(action) <= 1)
    venv.close()
