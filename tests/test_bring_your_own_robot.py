"""A robot simgate does not ship (KUKA LBR iiwa: a URDF and a spec written here, no code) through
every command, from the CLI only: scripted eval, train, holdout eval, promotion, the gateway on the
sim backend and on an emulated serial bus; a policy is refused on another robot."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pybullet_data
import pytest

SIMGATE = [sys.executable, "-m", "simgate.cli"]
KUKA_SPEC = """# KUKA LBR iiwa 14, no gripper (URDF: pybullet_data's, copied next to this spec)
name: kuka_iiwa
urdf: kuka_iiwa.urdf
base_position: [-0.6, 0.0, 0.0]
ee_link: lbr_iiwa_link_7
ee_offset: [0.0, 0.0, 0.045]
ee_down_orientation: {down}
control_rate_hz: 25
arm_joints:
  - {{name: lbr_iiwa_joint_1, lower: -2.967, upper: 2.967, velocity: 1.71, effort: 320, home: 0.0}}
  - {{name: lbr_iiwa_joint_2, lower: -2.094, upper: 2.094, velocity: 1.71, effort: 320, home: 0.6}}
  - {{name: {joint3}, lower: -2.967, upper: 2.967, velocity: 1.75, effort: 176, home: 0.0}}
  - {{name: lbr_iiwa_joint_4, lower: -2.094, upper: 2.094, velocity: 2.27, effort: 176, home: -1.5}}
  - {{name: lbr_iiwa_joint_5, lower: -2.967, upper: 2.967, velocity: 2.44, effort: 110, home: 0.0}}
  - {{name: lbr_iiwa_joint_6, lower: -2.094, upper: 2.094, velocity: 3.14, effort: 40, home: 1.05}}
  - {{name: lbr_iiwa_joint_7, lower: -3.054, upper: 3.054, velocity: 3.14, effort: 40, home: 0.0}}
"""
RECIPE = """robot: kuka_iiwa.yaml
env_id: simgate/KukaIiwaReach-v0
total_steps: 1200
learning_starts: 300
eval_every_steps: 600
eval_episodes: 2
checkpoint_every_steps: 1200
"""


def write_arm(d: Path, down="[0.0, 1.0, 0.0, 0.0]", joint3="lbr_iiwa_joint_3", name="kuka_iiwa.yaml") -> Path:
    src = Path(pybullet_data.getDataPath()) / "kuka_iiwa"
    urdf = (src / "model.urdf").read_text()
    (d / "kuka_iiwa.urdf").write_text(re.sub(r'filename="meshes/', f'filename="{src}/meshes/', urdf))
    (d / name).write_text(KUKA_SPEC.format(down=down, joint3=joint3))
    return d / name


def cli(*args, cwd, check=True, timeout=300) -> subprocess.CompletedProcess:
    out = subprocess.run([*SIMGATE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "COLUMNS": "400"})
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def metrics(out: str) -> dict:
    return json.loads(out[out.index("{"):])


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`simgate serve` in a child process, until the block ends."""

    def __init__(self, d: Path, *args):
        self.d, self.port = d, _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(d / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen([*SIMGATE, "serve", "--port", str(self.port), "--tokens", "t.json",
                                      "--audit", f"audit-{self.port}.jsonl", *args], cwd=d, stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def __enter__(self):
        for _ in range(600):
            try:
                if httpx.get(self.url + "/v1/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, (self.d / self.log.name).read_text()
            time.sleep(0.1)
        raise AssertionError("gateway not ready: " + Path(self.log.name).read_text())

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()

    def run_policy(self, token: str, ref: str) -> dict:
        h = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"{self.url}/v1/policies/{ref}/run", json={"goal_m": [0.0, 0.05, 0.15], "max_steps": 30},
                       headers=h, timeout=30)
        assert r.status_code == 200, r.text
        run_id = r.json()["id"]
        for _ in range(300):
            run = httpx.get(f"{self.url}/v1/runs/{run_id}", headers=h, timeout=10).json()
            if run["status"] != "running":
                return run
            time.sleep(0.1)
        raise AssertionError(f"policy run {run_id} did not end")


def test_spec_checks_name_the_problem(tmp_path):
    from simgate.errors import ConfigError
    from simgate.sim.registry import make

    panda_copy = write_arm(tmp_path, down="[1.0, 0.0, 0.0, 0.0]", name="copied.yaml")  # Panda's value
    with pytest.raises(ConfigError, match=r"ee_down_orientation .* 180 deg from the tool's orientation at the home pose"):
        make("simgate/PandaReach-v0", robot=str(panda_copy))
    typo = write_arm(tmp_path, joint3="lbr_iiwa_joint3", name="typo.yaml")
    with pytest.raises(ConfigError, match=r"arm_joints\[2\]\.name 'lbr_iiwa_joint3' .* lbr_iiwa_joint_1, lbr_iiwa_joint_2, lbr_iiwa_joint_3"):
        make("simgate/PandaReach-v0", robot=str(typo))
    good = write_arm(tmp_path)
    with pytest.raises(ConfigError, match="has no gripper: task 'pick_and_place' grasps the object"):
        make("simgate/PandaPickAndPlace-v0", robot=str(good))


@pytest.mark.slow
def test_a_robot_brought_as_a_spec_through_every_command(tmp_path):
    d = tmp_path
    write_arm(d)
    (d / "recipe.yaml").write_text(RECIPE)
    assert "simgate/KukaIiwaPush-v0" in cli("envs", "--robot", "kuka_iiwa.yaml", cwd=d).stdout.split()
    # scripted controllers: Reach, and Push with the KUKA's flange (not Panda's fingers)
    reach = metrics(cli("eval", "--robot", "kuka_iiwa.yaml", "--episodes", "5", cwd=d).stdout)
    assert reach["env"] == "simgate/KukaIiwaReach-v0" and reach["success_rate"] >= 0.8
    push = metrics(cli("eval", "--robot", "kuka_iiwa.yaml", "--env", "simgate/KukaIiwaPush-v0", "--episodes", "5",
                       cwd=d).stdout)
    assert push["success_rate"] >= 0.8, push
    # a short training run records the robot and the observation layout
    cli("train", "--config", "recipe.yaml", "--out", "run", cwd=d)
    run = json.loads((d / "run" / "run.json").read_text())
    assert run["robot_spec"]["name"] == "kuka_iiwa" and len(run["robot_spec"]["urdf_sha256"]) == 64
    assert [s["name"] for s in run["observation_layout"]] == ["tcp_position_m", "tcp_velocity_m_s"]
    # holdout eval from another folder: the run knows its robot, no --robot needed
    hold = metrics(cli("eval", "--policy", str(d / "run"), "--seed-set", "holdout", "--episodes", "3", cwd="/").stdout)
    assert hold["env"] == "simgate/KukaIiwaReach-v0" and hold["episodes"] == 3
    # ... and on the Panda it is refused, naming both robots
    refused = cli("eval", "--policy", "run", "--env", "simgate/PandaReach-v0", "--episodes", "2", cwd=d, check=False)
    text = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0 and "'kuka_iiwa'" in text and "'panda'" in text, text
    # promotion: the registry entry carries the robot spec
    digest = cli("policies", "promote", "run", "--holdout-episodes", "3", "--registry", "reg", cwd=d).stdout.split()[-1]
    entry = json.loads(cli("policies", "show", digest, "--registry", "reg", cwd=d).stdout)
    assert entry["robot"] == "kuka_iiwa" and entry["robot_spec"] == run["robot_spec"]
    (d / "gw.yaml").write_text(f"registry_dir: {d / 'reg'}\n")
    token = cli("tokens", "create", "agent", "--scope", "act", "--file", "t.json", cwd=d).stdout.strip()
    # the gateway on the sim backend runs the promoted policy on the KUKA
    with Served(d, "--config", "gw.yaml", "--backend", "sim", "--robot", "kuka_iiwa.yaml") as gw:
        assert httpx.get(gw.url + "/v1/robot", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "kuka_iiwa"
        assert gw.run_policy(token, digest)["status"] != "failed"
    # the gateway on an emulated serial bus of the same arm
    emu = subprocess.Popen([*SIMGATE, "emulate", "--protocol", "feetech", "--robot", "kuka_iiwa.yaml",
                            "--calibration-out", "cal.yaml"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        port = emu.stdout.readline().strip()
        ids = {f"lbr_iiwa_joint_{i}": i for i in range(1, 8)}
        (d / "serial.yaml").write_text(json.dumps({"registry_dir": str(d / "reg"), "backend": {
            "type": "serial", "port": port, "protocol": "feetech", "robot": str(d / "kuka_iiwa.yaml"), "ids": ids,
            "calibration": str(d / "cal.yaml"), "latency_timer_ms": 4.0}}))  # the test rigs' timer: see tests/hw_helpers.py
        with Served(d, "--config", "serial.yaml") as gw:
            state = httpx.get(gw.url + "/v1/state", headers={"Authorization": f"Bearer {token}"}).json()
            assert len(state["positions"]) == 7, state
            assert gw.run_policy(token, digest)["status"] != "failed"
    finally:
        emu.send_signal(signal.SIGINT)
        emu.wait(timeout=20)


def test_fit_twin_then_twin_check_from_the_cli(tmp_path):
    """The twin for an arm simgate does not ship: `fit-twin` measures its links in PyBullet and
    writes the twin parameters beside the spec; `twin-check` then passes the bars on it. The
    links' total mass must be the URDF's (PyBullet merges fixed links, it does not drop them)."""
    import xml.etree.ElementTree as ET

    import yaml

    write_arm(tmp_path)
    cli("sim", "fit-twin", "kuka_iiwa.yaml", cwd=tmp_path)
    params = yaml.safe_load((tmp_path / "kuka_iiwa.twin.yaml").read_text())
    assert len(params["links"]) == 7 and 1 <= params["motor_sweeps"] <= 4
    root = ET.parse(tmp_path / "kuka_iiwa.urdf").getroot()
    base = {j.find("parent").get("link") for j in root.findall("joint")} - {j.find("child").get("link") for j in root.findall("joint")}
    urdf_mass = sum(float(lk.find("inertial/mass").get("value")) for lk in root.findall("link")
                    if lk.find("inertial/mass") is not None and lk.get("name") not in base)
    assert sum(lk["mass_kg"] for lk in params["links"]) == pytest.approx(urdf_mass, rel=1e-6)
    out = cli("sim", "twin-check", "kuka_iiwa.yaml", "reach", "--episodes", "20", "--json", "check.json", cwd=tmp_path)
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["failed"] == [], out.stdout
    assert report["mass_matrix_max_rel_err"] <= 1e-6 and report["gravity_max_rel_err"] <= 1e-6
    assert report["tool_one_step_scripted_mean_m"] <= 1e-3 and report["scripted_success_twin"] == report["scripted_success_pybullet"]
    # a twin file that names the wrong number of links is refused, naming the file and the field
    params["links"] = params["links"][:6]
    (tmp_path / "kuka_iiwa.twin.yaml").write_text(yaml.safe_dump(params))
    bad = cli("sim", "twin-check", "kuka_iiwa.yaml", "reach", "--episodes", "2", cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "kuka_iiwa.twin.yaml" in bad.stdout + bad.stderr and "links" in bad.stdout + bad.stderr
    # a file from the earlier per-joint motor model: its fields are dropped with a warning naming them
    params.pop("links")
    params["accel_limit_rad_s2"] = [50.0] * 7
    (tmp_path / "kuka_iiwa.twin.yaml").write_text(yaml.safe_dump(params))
    old = cli("sim", "twin-check", "kuka_iiwa.yaml", "reach", "--episodes", "2", cwd=tmp_path, check=False)
    assert "accel_limit_rad_s2" in old.stderr and "fit-twin" in old.stderr, old.stderr
