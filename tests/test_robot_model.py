"""The robot model (spec, URDF tools, kinematics, world, randomization) imports without Gymnasium;
`import simgate.sim` still gives `gym.make("simgate/...")` in either import order."""

import subprocess
import sys

MODEL = "simgate.sim.robot_spec, simgate.sim.urdf_tools, simgate.sim.robot, simgate.sim.world, simgate.sim.randomization"


def _py(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout


def test_robot_model_imports_without_gymnasium():
    out = _py(f"import sys\nimport {MODEL}\nimport simgate.hardware.safety\nprint('gymnasium' in sys.modules)")
    assert out.strip() == "False"


def test_gym_make_after_import_simgate_sim_in_either_order():
    for first, second in (("simgate.sim", "gymnasium"), ("gymnasium", "simgate.sim")):
        out = _py(f"import {first}\nimport {second}\nimport gymnasium as gym\n"
                  "env = gym.make('simgate/PandaReach-v0')\nprint(env.reset(seed=0)[0]['observation'].shape)")
        assert out.strip().endswith("(6,)"), (first, out)
