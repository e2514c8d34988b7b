"""`--robot NAME|SPEC.yaml` for the commands that make envs: the spec's ids registered, the env
chosen (given, else the policy's, else the robot's Reach), and a mismatch refused naming both."""

from __future__ import annotations

ROBOT_HELP = ("robot: a built-in name or a spec .yaml you bring (its envs are simgate/<Name><Task>-v0, "
              "see `simgate envs --robot SPEC`)")


def env_for(env: str | None, robot: str | None, rec: dict | None = None,
            default: str = "simgate/PandaReach-v0") -> str:
    """The env id a command runs: ``env``, else the policy's recorded one, else ``robot``'s Reach."""
    from simgate.policies.robot_meta import prepare_recipe_robot, register_recorded_robot
    from simgate.sim.registry import register_robot, robot_env_id

    if robot is not None:
        register_robot(robot)
    else:
        register_recorded_robot(rec)
    env = env or (rec or {}).get("env_id") or (robot_env_id(robot) if robot else default)
    prepare_recipe_robot(env, robot)
    return env
