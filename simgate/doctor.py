"""``simgate doctor``: checks the environment and says what is missing, with the fix.

Each check returns ``Check(name, status, detail, fix)``; ``status`` is ``ok``, ``warn`` (works,
but something a user would want to know) or ``fail`` (a part of simgate will not work).
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def check_python() -> Check:
    v = sys.version_info
    if v < (3, 11):
        return Check("python", "fail", f"{v.major}.{v.minor}", "simgate needs Python >= 3.11 (ROS 2 Jazzy wheels: 3.11)")
    return Check("python", "ok", f"{v.major}.{v.minor}.{v.micro} at {sys.executable}")


def check_torch() -> Check:
    try:
        import torch
    except ImportError as exc:
        return Check("torch", "fail", str(exc), "./run.sh main (installs torch==2.13.0 CPU into .venv)")
    dev = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no CUDA device)"
    return Check("torch", "ok", f"{torch.__version__}, training device {dev}, {torch.get_num_threads()} threads")


def check_pybullet() -> Check:
    try:
        import pybullet as p
        import pybullet_data
    except ImportError as exc:
        return Check("pybullet", "fail", str(exc), "pip install pybullet==3.2.7")
    cid = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(os.path.join(pybullet_data.getDataPath(), "franka_panda/panda.urdf"), physicsClientId=cid)
        n = p.getNumJoints(body, physicsClientId=cid)
        t0 = time.perf_counter()
        for _ in range(200):
            p.stepSimulation(physicsClientId=cid)
        rate = 200 / (time.perf_counter() - t0)
    finally:
        p.disconnect(cid)
    return Check("pybullet", "ok", f"Panda loaded ({n} joints), {rate:,.0f} physics steps/s")


def check_ros2() -> Check:
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String
    except ImportError as exc:
        return Check("ros2 (rclpy + DDS)", "fail", str(exc),
                     "pip install ros-jazzy-rclpy ros-jazzy-std-msgs ros-jazzy-rmw-fastrtps-cpp (Python 3.11)")
    from rclpy.utilities import get_rmw_implementation_identifier

    ctx = rclpy.Context()
    try:
        rclpy.init(context=ctx)
        node = rclpy.create_node(f"simgate_doctor_{os.getpid()}", context=ctx)
        got: list[str] = []
        node.create_subscription(String, "/simgate_doctor", lambda m: got.append(m.data), 10)
        pub = node.create_publisher(String, "/simgate_doctor", 10)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        t0 = time.monotonic()
        while not got and time.monotonic() - t0 < 3.0:
            pub.publish(String(data="ping"))
            ex.spin_once(timeout_sec=0.05)
        rmw = get_rmw_implementation_identifier()
    except Exception as exc:  # noqa: BLE001 - reported as the check's result
        return Check("ros2 (rclpy + DDS)", "fail", f"{type(exc).__name__}: {exc}",
                     "check RMW_IMPLEMENTATION (rmw_fastrtps_cpp) and that the ros-jazzy-* wheels match")
    finally:
        ctx.try_shutdown()
    domain = os.environ.get("ROS_DOMAIN_ID", "0 (default)")
    if not got:
        return Check("ros2 (rclpy + DDS)", "fail", f"{rmw}: a loopback message did not arrive in 3 s",
                     "a firewall or ROS_AUTOMATIC_DISCOVERY_RANGE=OFF blocks discovery; try =LOCALHOST")
    return Check("ros2 (rclpy + DDS)", "ok", f"rclpy {_version('ros-jazzy-rclpy')}, {rmw}, domain {domain}, "
                                             "loopback pub/sub works")


def check_control_msgs() -> Check:
    """Which control_msgs (FollowJointTrajectory) the ROS 2 driver and gateway use."""
    from simgate.hardware.ros2_action_build import source

    kind, detail = source()
    if kind == "missing":
        return Check("control_msgs (ROS 2 action)", "warn", f"{detail}: the driver serves the trajectory topic only",
                     "python -m simgate.hardware.ros2_action_build (./run.sh does it; needs cmake, gcc/g++)")
    return Check("control_msgs (ROS 2 action)", "ok", detail)


def check_serial_ports() -> Check:
    try:
        from serial.tools import list_ports
    except ImportError as exc:
        return Check("serial ports", "fail", str(exc), "pip install pyserial")
    usb = {p.device for p in list_ports.comports() if p.vid is not None}  # USB adapters, not legacy ttyS*
    ports = sorted(usb | set(glob.glob("/dev/ttyUSB*") + glob.glob("/dev/ttyACM*")))
    if not ports:
        return Check("serial ports", "warn", "no USB serial adapter found (fine for simulation / the emulated bus)",
                     "plug in the servo bus adapter; `simgate emulate` gives a virtual one")
    no_access = [p for p in ports if not os.access(p, os.R_OK | os.W_OK)]
    if no_access:
        return Check("serial ports", "fail", f"no read/write permission on {', '.join(no_access)}",
                     "sudo usermod -aG dialout $USER  (then log in again)")
    slow = []
    for p in ports:
        lt = Path(f"/sys/bus/usb-serial/devices/{Path(p).name}/latency_timer")
        if lt.exists() and int(lt.read_text().strip() or 0) > 2:
            slow.append(f"{p} ({lt.read_text().strip()} ms)")
    if slow:
        return Check("serial ports", "warn", f"USB latency timer high on {', '.join(slow)}: slow bus cycles",
                     "echo 1 | sudo tee /sys/bus/usb-serial/devices/ttyUSB0/latency_timer")
    return Check("serial ports", "ok", ", ".join(ports))


def check_storage(url: str | None = None) -> Check:
    url = url or os.environ.get("SIMGATE_STORAGE")
    if not url:
        try:
            with tempfile.NamedTemporaryFile(dir=Path.cwd(), prefix=".simgate-doctor-"):
                pass
        except OSError as exc:
            return Check("storage", "fail", f"cannot write here ({exc}); studies keep SQLite files under ./runs",
                         "run from a writable directory or pass --storage postgresql://...")
        return Check("storage", "ok", "embedded SQLite under ./runs (set SIMGATE_STORAGE or --storage to check "
                                      "a PostgreSQL server for several machines)")
    if url.startswith("sqlite"):
        return Check("storage", "ok", url)
    try:
        import psycopg
    except ImportError:
        return Check("storage", "fail", "psycopg is not installed", "pip install 'psycopg[binary]'")
    try:
        conn_url = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conn_url, connect_timeout=3) as conn:
            ver = conn.execute("select version()").fetchone()[0].split(",")[0]
    except Exception as exc:  # noqa: BLE001 - reported
        return Check("storage", "fail", f"{url.split('@')[-1]}: {str(exc).strip().splitlines()[0]}",
                     "start PostgreSQL / check host, port, user and password in the URL")
    return Check("storage", "ok", f"{url.split('@')[-1]}: {ver}")


def check_video() -> Check:
    try:
        import imageio_ffmpeg

        return Check("video (ffmpeg)", "ok", imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # noqa: BLE001
        return Check("video (ffmpeg)", "warn", str(exc), "pip install imageio-ffmpeg (videos of rollouts)")


def check_ray() -> Check:
    try:
        import ray
    except ImportError:
        return Check("ray (optional)", "warn", "not installed: studies run on local workers only",
                     "pip install ray (to spread trials over a cluster)")
    return Check("ray (optional)", "ok", ray.__version__)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


CHECKS: list[Callable[[], Check]] = [check_python, check_torch, check_pybullet, check_ros2, check_control_msgs,
                                     check_serial_ports,
                                     check_storage, check_video, check_ray]


def run_checks(storage: str | None = None) -> list[Check]:
    out = []
    for fn in CHECKS:
        try:
            out.append(fn(storage) if fn is check_storage else fn())
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            out.append(Check(fn.__name__.removeprefix("check_"), "fail", f"{type(exc).__name__}: {exc}"))
    return out
