"""control_msgs (FollowJointTrajectory) where no ROS 2 install provides it.

There is no control_msgs wheel. When ``control_msgs.action`` does not import from an installed
ROS 2, the Jazzy-layout interfaces in ``hardware/ros2_interfaces/control_msgs`` (FollowJointTrajectory,
JointTolerance, JointComponentTolerance) are generated and compiled with the rosidl toolchain the
``ros-jazzy-*`` wheels ship (cmake + a C/C++ compiler), and installed into this interpreter's
prefix (the venv), where rclpy finds them with no environment set-up.

The build is cached by a hash of its inputs (interface files, CMakeLists, package.xml, Python
version): a stamp file in ``<prefix>/share/control_msgs`` says which inputs the installed build
came from, so a second run costs one hash and no import.

    python -m simgate.hardware.ros2_action_build           # ensure (build when needed)
    python -m simgate.hardware.ros2_action_build --status  # which control_msgs is in use
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from simgate.errors import ConfigError

SOURCE_DIR = Path(__file__).resolve().parent / "ros2_interfaces" / "control_msgs"
STAMP_NAME = ".simgate-build"


def prefix() -> Path:
    return Path(sys.prefix)


def stamp_path() -> Path:
    return prefix() / "share" / "control_msgs" / STAMP_NAME


def inputs_hash() -> str:
    """sha256 (16 hex) of everything the build depends on in the repository, plus the Python version."""
    h = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    for f in sorted(p for p in SOURCE_DIR.rglob("*") if p.is_file()):
        h.update(f.relative_to(SOURCE_DIR).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def built_here() -> bool:
    """The venv holds simgate's build of exactly these inputs."""
    s = stamp_path()
    return s.is_file() and s.read_text().strip() == inputs_hash()


def _probe_import() -> str | None:
    """Where ``control_msgs.action.FollowJointTrajectory`` imports from (a fresh interpreter, so a
    build just installed is seen), or None."""
    code = "import control_msgs.action as a, control_msgs; a.FollowJointTrajectory; print(control_msgs.__file__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None


def source() -> tuple[str, str]:
    """(kind, detail): kind is ``built`` (simgate's build in this venv), ``ros2`` (an installed
    ROS 2's control_msgs) or ``missing``."""
    if built_here():
        return "built", f"built by simgate from the Jazzy interfaces (inputs {inputs_hash()}) in {prefix()}"
    where = _probe_import()
    if where is None:
        return "missing", "control_msgs does not import"
    if Path(where).resolve().is_relative_to(prefix().resolve()) and stamp_path().is_file():
        return "missing", f"simgate's build in {prefix()} is out of date (interfaces changed)"
    return "ros2", f"installed ROS 2: {Path(where).parent}"


def missing_tools() -> list[str]:
    """Build tools absent here, each named with what provides it."""
    out = []
    if not shutil.which("cmake"):
        out.append("cmake (apt-get install cmake)")
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        out.append("a C compiler (apt-get install gcc)")
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        out.append("a C++ compiler (apt-get install g++)")
    if not (shutil.which("ninja") or shutil.which("make")):
        out.append("ninja or make (apt-get install ninja-build)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        out.append(f"Python {sys.version_info.major}.{sys.version_info.minor} headers (apt-get install python3-dev)")
    rosidl = prefix() / "share" / "rosidl_default_generators"
    if not rosidl.is_dir():
        out.append("the rosidl generators (pip install -e '.[ros2build]')")
    return out


def build(log=sys.stderr) -> float:
    """Generate, compile and install control_msgs into the prefix; returns the seconds it took."""
    missing = missing_tools()
    if missing:
        raise ConfigError("cannot build control_msgs (FollowJointTrajectory): missing " + ", ".join(missing))
    t0 = time.monotonic()
    pre = str(prefix())
    env = {**os.environ, "AMENT_PREFIX_PATH": pre + os.pathsep + os.environ.get("AMENT_PREFIX_PATH", ""),
           "CMAKE_PREFIX_PATH": pre, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    with tempfile.TemporaryDirectory(prefix="simgate-control-msgs-") as tmp:
        steps = [["cmake", "-S", str(SOURCE_DIR), "-B", tmp, *gen, f"-DCMAKE_PREFIX_PATH={pre}",
                  f"-DCMAKE_INSTALL_PREFIX={pre}", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
                  "-DCMAKE_BUILD_TYPE=Release"],
                 ["cmake", "--build", tmp, "--parallel", str(os.cpu_count() or 2)],
                 ["cmake", "--install", tmp]]
        for cmd in steps:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                tail = (r.stdout + r.stderr)[-3000:]
                raise ConfigError(f"building control_msgs failed at `{' '.join(cmd[:3])}`:\n{tail}")
    stamp_path().parent.mkdir(parents=True, exist_ok=True)
    stamp_path().write_text(inputs_hash() + "\n")
    dt = time.monotonic() - t0
    print(f"[simgate] built control_msgs (FollowJointTrajectory) into {pre} in {dt:.1f} s", file=log)
    return dt


def ensure(log=sys.stderr) -> str:
    """control_msgs importable: nothing to do when it already is (cached build or ROS 2 install),
    else build it. Returns the source kind (see ``source``)."""
    kind, _ = source()
    if kind == "missing":
        build(log)
        kind = "built"
    return kind


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--status" in args:
        kind, detail = source()
        print(f"{kind}: {detail}")
        return 0 if kind != "missing" else 1
    try:
        ensure()
    except ConfigError as exc:
        print(f"[simgate] {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
