"""Gymnasium conformance, determinism, rewards, randomization, bad input."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import simgate.sim  # noqa: F401  (registers ids)
from simgate.errors import ConfigError, RobotLoadError, UnknownEnvError
from simgate.sim import make
from simgate.sim.robot_spec import load_robot_spec


def test_every_registered_id_passes_check_env(env_ids):
    assert len(env_ids) >= 20
    for env_id in env_ids:
        env = gym.make(env_id)
        check_env(env.unwrapped, skip_render_check=True)
        env.close()


def test_ids_cover_robots_and_tasks(env_ids):
    for needed in ("simgate/PandaReach-v0", "simgate/PandaPush-v0", "simgate/PandaPickAndPlace-v0",
                   "simgate/XArm6PickAndPlace-v0", "simgate/SO101Reach-v0", "simgate/PandaPushJointsDense-v0"):
        assert needed in env_ids


@pytest.mark.parametrize("env_id", ["simgate/PandaPickAndPlace-v0", "simgate/SO101PushJoints-v0"])
@pytest.mark.parametrize("randomization", [None, "preset"])
def test_same_seed_same_trajectory(env_id, randomization):
    def rollout():
        env = make(env_id, randomization=randomization)
        obs, info = env.reset(seed=123)
        rng = np.random.default_rng(7)
        traj = [obs["observation"].copy()]
        for _ in range(60):
            obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            traj.append(obs["observation"].copy())
            if trunc:
                obs, info = env.reset()
        env.close()
        return np.array(traj), info

    a, ia = rollout()
    b, ib = rollout()
    np.testing.assert_array_equal(a, b)
    assert ia.get("randomization") == ib.get("randomization")


def test_different_seeds_differ():
    env = make("simgate/PandaPush-v0")
    g1 = env.reset(seed=1)[0]["desired_goal"].copy()
    g2 = env.reset(seed=2)[0]["desired_goal"].copy()
    env.close()
    assert not np.allclose(g1, g2)


@pytest.mark.parametrize("env_id", ["simgate/PandaReach-v0", "simgate/PandaPushDense-v0"])
def test_batched_compute_reward_equals_per_sample(env_id):
    env = make(env_id)
    rng = np.random.default_rng(0)
    achieved = rng.uniform(-0.2, 0.2, (256, 3))
    desired = achieved + rng.normal(0, 0.05, (256, 3))
    batched = env.compute_reward(achieved, desired, [{}] * 256)
    single = np.array([env.compute_reward(a, d, {}) for a, d in zip(achieved, desired, strict=True)])
    assert batched.shape == (256,)
    np.testing.assert_allclose(batched, single)
    if "Dense" not in env_id:
        assert set(np.unique(batched)) <= {0.0, -1.0} and (batched == 0).any() and (batched == -1).any()
    env.close()


def test_reward_matches_step_and_success_flag():
    env = make("simgate/PandaReach-v0")
    obs, _ = env.reset(seed=3)
    for _ in range(30):
        a = np.clip((obs["desired_goal"] - obs["observation"][:3]) / 0.05, -1, 1).astype(np.float32)
        obs, r, _, _, info = env.step(a)
        assert r == env.compute_reward(obs["achieved_goal"], obs["desired_goal"], info)
    assert info["is_success"] and r == 0.0
    env.close()


def test_time_limit_truncates():
    env = make("simgate/PandaReach-v0", max_episode_steps=7)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(7)]
    assert flags == [False] * 6 + [True]
    env.close()


def test_randomization_values_in_info_and_ranges_respected():
    from simgate.sim.randomization import RandomizationConfig

    cfg = RandomizationConfig.preset()
    env = make("simgate/PandaPush-v0", randomization=cfg)
    seen = []
    for seed in range(5):
        _, info = env.reset(seed=seed)
        dr = info["randomization"]
        seen.append(dr["object_mass_scale"])
        for field in type(cfg).model_fields:
            rng = getattr(cfg, field)
            assert rng.low <= dr[field] <= rng.high, field
        assert isinstance(dr["action_latency_steps"], int)
    assert len(set(seen)) == 5
    env.close()
    off = make("simgate/PandaPush-v0")
    assert "randomization" not in off.reset(seed=0)[1]
    off.close()


def test_identity_randomization_changes_nothing():
    """Randomization at scale 1 (masses, object size) and nominal friction reproduces the nominal
    rollout exactly: Bullet must not recompute the links' inertia from their collision shapes."""
    identity = {"link_mass_scale": [1.0, 1.0], "object_size_scale": [1.0, 1.0], "lateral_friction": [0.5, 0.5]}
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, (40, 3)).astype(np.float32)
    runs = []
    for dr in (None, identity):
        env = make("simgate/PandaPush-v0", randomization=dr)
        env.reset(seed=11)
        runs.append(np.array([env.step(a)[0]["observation"] for a in actions]))
        env.close()
    np.testing.assert_array_equal(runs[0], runs[1])
    heavy = make("simgate/PandaPush-v0", randomization={"link_mass_scale": [1.2, 1.2]})
    heavy.reset(seed=11)
    moved = np.array([heavy.step(a)[0]["observation"] for a in actions])
    heavy.close()
    assert np.abs(moved[:, :3] - runs[0][:, :3]).max() > 1e-6  # and a real change does change the motion


def test_action_latency_delays_motion():
    env = make("simgate/PandaReach-v0", randomization={"action_latency_steps": [2, 2]})
    obs, _ = env.reset(seed=0)
    start = obs["observation"][:3].copy()
    up = np.array([0, 0, 1], np.float32)
    moved = []
    for _ in range(4):
        obs, *_ = env.step(up)
        moved.append(obs["observation"][2] - start[2])
    env.close()
    assert abs(moved[0]) < 0.004 and abs(moved[1]) < 0.004 and moved[3] > 0.02


def test_unknown_env_id_is_named():
    with pytest.raises(UnknownEnvError, match="simgate/PandaJump-v0"):
        make("simgate/PandaJump-v0")


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"object_mass_scale": [2.0, 1.0]}, "object_mass_scale"),
        ({"action_noise_std": [0.0, 5.0]}, "action_noise_std"),
        ({"friction_typo": [0.1, 0.2]}, "friction_typo"),
    ],
)
def test_out_of_range_randomization_is_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        make("simgate/PandaPush-v0", randomization=bad)


def test_malformed_robot_spec_is_named(tmp_path):
    spec = tmp_path / "arm.yaml"
    spec.write_text("name: arm\nurdf: x.urdf\nee_link: tip\narm_joints:\n  - {name: j1, lower: 1.0, upper: -1.0, velocity: 1, effort: 1}\n")
    with pytest.raises(RobotLoadError, match=r"arm_joints\.0.*lower"):
        load_robot_spec(spec)
    spec.write_text("name: arm\nurdf: missing.urdf\nee_link: tip\narm_joints:\n  - {name: j1, lower: -1, upper: 1, velocity: 1, effort: 1}\n")
    with pytest.raises(RobotLoadError, match="missing.urdf"):
        load_robot_spec(spec)


def test_urdf_that_does_not_load_is_named(tmp_path):
    (tmp_path / "broken.urdf").write_text("<robot name='x'><link name='a'></robot")
    spec = tmp_path / "arm.yaml"
    spec.write_text("name: arm\nurdf: broken.urdf\nee_link: a\ntasks: [reach]\narm_joints:\n  - {name: j1, lower: -1, upper: 1, velocity: 1, effort: 1}\n")
    with pytest.raises(RobotLoadError, match="broken.urdf"):
        make("simgate/PandaReach-v0", robot=str(spec))


def test_add_a_robot_with_a_spec_file_and_no_code(tmp_path):
    """A user copies a URDF and writes a spec; the env runs it."""
    import shutil

    from simgate.sim.robot_spec import ROBOTS_DIR

    shutil.copy(ROBOTS_DIR / "so101.urdf", tmp_path / "my_arm.urdf")
    text = (ROBOTS_DIR / "so101.yaml").read_text().replace("urdf: so101.urdf", "urdf: my_arm.urdf").replace("name: so101", "name: my_arm")
    (tmp_path / "my_arm.yaml").write_text(text)
    env = make("simgate/SO101Reach-v0", robot=str(tmp_path / "my_arm.yaml"))
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.zeros(3, np.float32))
    assert env.spec_robot.name == "my_arm" and obs["observation"].shape == (6,)
    env.close()


def test_rgb_render():
    env = make("simgate/PandaPush-v0", render_mode="rgb_array", render_size=(64, 48))
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8 and img.std() > 5
    env.close()


def test_self_collision_detector():
    import pybullet as p

    env = make("simgate/PandaReachJoints-v0")
    env.reset(seed=0)
    robot = env.robot
    assert not robot.in_self_collision(0.001)
    folded = [0.81, -0.84, -2.72, -3.02, 1.86, 3.42, 0.63]  # elbow folded back into the base
    for j, q in zip(robot.motor_ids, folded, strict=True):
        p.resetJointState(robot.body, j, q, physicsClientId=env.world.cid)
    assert robot.in_self_collision(0.001)
    env.close()
