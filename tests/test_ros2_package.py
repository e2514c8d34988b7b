"""simgate as a ROS 2 package once pip-installed: the ament resource index finds it, launch and
params files land in share/simgate, executables in lib/simgate; every launch file refers only to
executables that exist and parameters the nodes declare (read without launch / launch_ros)."""

import os
import runpy
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from simgate.gateway.ros2_node import GATEWAY_PARAMETERS
from simgate.hardware.ros2_driver import DRIVER_PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
NODES = {"simgate_driver": ("simgate-ros2-driver", DRIVER_PARAMETERS),
         "simgate_gateway": ("simgate-ros2-gateway", GATEWAY_PARAMETERS)}


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """Build simgate's wheel from a copy of the tree and pip-install it into a fresh prefix
    (--ignore-installed: leave the development install in .venv alone)."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "out", "build", "*.egg-info",
                                                              "__pycache__", "registry", ".pytest_cache"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("simgate-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--ignore-installed", "--prefix", str(tmp / "prefix"), str(wheel)],
                   check=True, capture_output=True)
    return tmp / "prefix"


def test_ament_index_finds_the_package_share_and_executables(prefix, monkeypatch):
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    share = Path(get_package_share_directory("simgate"))
    assert Path(get_package_prefix("simgate")) == prefix
    assert (share / "package.xml").read_text() == (ROOT / "package.xml").read_text()
    for sub, pattern in (("launch", "*.launch.py"), ("params", "*.yaml")):
        repo = {p.name: p.read_text() for p in (ROOT / "launch" / ("params" if sub == "params" else "")).glob(pattern)}
        installed = {p.name: p.read_text() for p in (share / sub).glob(pattern)}
        assert repo and installed == repo, f"share/simgate/{sub} differs from the repository"
    for exe, _ in NODES.values():
        path = prefix / "lib" / "simgate" / exe
        assert path.is_file() and os.access(path, os.X_OK), path


def test_the_wheel_installs_every_source_package(prefix):
    """Every folder of Python modules in the tree is in the wheel (a package left out of
    pyproject's list imports in the editable install and is missing from a real one)."""
    site = next(prefix.glob("lib/python*/site-packages"))
    mapping = {"simgate": "simgate", "sim": "simgate/sim", "hardware": "simgate/hardware", "policies": "simgate/policies",
               "autoresearch": "simgate/autoresearch", "gateway": "simgate/gateway"}
    missing = []
    for top, installed in mapping.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            for module in init.parent.glob("*.py"):
                if not (site / installed / rel / module.name).is_file():
                    missing.append(f"{top}/{rel}/{module.name}")
    assert not missing, f"modules missing from the installed wheel: {missing}"


def test_installed_driver_executable_starts_with_the_installed_params(prefix):
    exe = prefix / "lib" / "simgate" / "simgate-ros2-driver"
    params = prefix / "share" / "simgate" / "params" / "sim_driver.yaml"
    proc = subprocess.Popen([str(exe), "--ros-args", "--params-file", str(params), "-p", "rate_hz:=10.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.poll() is not None else ""
    finally:
        proc.kill()
        proc.wait()


# ---- launch files, read with stand-ins for launch / launch_ros -----------------------------------
class _Entity:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stub_launch(monkeypatch):
    classes = {name: type(name, (_Entity,), {}) for name in
               ("LaunchDescription", "DeclareLaunchArgument", "LaunchConfiguration", "PathJoinSubstitution",
                "Node", "FindPackageShare")}
    mods = {"launch": ["LaunchDescription"], "launch.actions": ["DeclareLaunchArgument"],
            "launch.substitutions": ["LaunchConfiguration", "PathJoinSubstitution"],
            "launch_ros": [], "launch_ros.actions": ["Node"], "launch_ros.substitutions": ["FindPackageShare"]}
    for mod, names in mods.items():
        m = types.ModuleType(mod)
        for n in names:
            setattr(m, n, classes[n])
        monkeypatch.setitem(sys.modules, mod, m)
    return classes


def _type_ok(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, float)  # rclpy refuses an int for a double parameter
    if isinstance(default, list):
        return isinstance(value, list) and all(_type_ok(v, default[0]) for v in value) if default else True
    return isinstance(value, type(default))


def test_params_files_set_only_declared_parameters_with_their_types():
    for f in (ROOT / "launch" / "params").glob("*.yaml"):
        data = yaml.safe_load(f.read_text())
        for node, body in data.items():
            assert node in NODES, f"{f.name}: unknown node {node!r}"
            params = body["ros__parameters"]
            table = NODES[node][1]
            unknown = set(params) - set(table)
            assert not unknown, f"{f.name}: {node} does not declare {sorted(unknown)}"
            for k, v in params.items():
                assert _type_ok(v, table[k].default), f"{f.name}: {k}={v!r} is not a {type(table[k].default).__name__}"
                if table[k].range and not isinstance(v, bool):
                    lo, hi = table[k].range
                    assert lo <= v <= hi, f"{f.name}: {k}={v} outside [{lo}, {hi}]"


def test_launch_files_use_existing_executables_declared_parameters_and_arguments(prefix, monkeypatch):
    classes = _stub_launch(monkeypatch)
    share = prefix / "share" / "simgate"
    files = sorted((share / "launch").glob("*.launch.py"))
    assert {f.name for f in files} >= {"sim_arm.launch.py", "serial_arm.launch.py", "ros2_control_arm.launch.py"}
    exes = set(os.listdir(prefix / "lib" / "simgate"))
    for f in files:
        ld = runpy.run_path(str(f))["generate_launch_description"]()
        assert isinstance(ld, classes["LaunchDescription"])
        entities = ld.args[0]
        declared = {e.args[0] if e.args else e.kwargs["name"]: e for e in entities
                    if isinstance(e, classes["DeclareLaunchArgument"])}
        assert all(e.kwargs.get("description") for e in declared.values()), f"{f.name}: argument without description"
        nodes = [e for e in entities if isinstance(e, classes["Node"])]
        assert nodes, f"{f.name} starts no node"
        for n in nodes:
            kw = n.kwargs
            assert kw["package"] == "simgate" and kw["executable"] in exes, f"{f.name}: {kw['executable']} not installed"
            exe, table = NODES[kw["name"]]
            assert kw["executable"] == exe, f"{f.name}: node {kw['name']} runs {kw['executable']}, not {exe}"
            for item in kw["parameters"]:
                if isinstance(item, classes["PathJoinSubstitution"]):
                    pkg, *parts = item.args[0]
                    assert isinstance(pkg, classes["FindPackageShare"]) and pkg.args[0] == "simgate"
                    path = share.joinpath(*parts)
                    assert path.is_file(), f"{f.name}: {path} not installed"
                    body = yaml.safe_load(path.read_text())
                    assert kw["name"] in body, f"{f.name}: {path.name} has no section for {kw['name']}"
                    names = set(body[kw["name"]]["ros__parameters"])
                else:
                    names = set(item)
                    for v in item.values():
                        if isinstance(v, classes["LaunchConfiguration"]):
                            assert v.args[0] in declared, f"{f.name}: launch argument {v.args[0]!r} not declared"
                unknown = names - set(table)
                assert not unknown, f"{f.name}: {kw['name']} does not declare {sorted(unknown)}"
