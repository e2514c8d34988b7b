"""Building blocks for ROS 2 tests: start simgate's nodes as processes, and a plain rclpy client
(its own context, spinning on a thread) that records /joint_states and sends trajectories."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "launch" / "params"


@contextlib.contextmanager
def driver_process(log_path, params_file="sim_driver.yaml", **overrides):
    """``simgate-ros2-driver`` with a params file from launch/params and ``-p`` overrides."""
    args = [sys.executable, "-m", "simgate.hardware.ros2_driver", "--ros-args", "--params-file", str(PARAMS / params_file)]
    for k, v in overrides.items():
        args += ["-p", f"{k}:={v}"]
    log = open(log_path, "a")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ))
    try:
        line = proc.stdout.readline().strip()
        assert line == "ready", f"driver did not start: {Path(log_path).read_text()[-2000:]}"
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)  # a clean shutdown releases its DDS shared memory
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Probe:
    """A plain rclpy client: /joint_states recorder, trajectory publisher, e-stop service client."""

    def __init__(self, controller="joint_trajectory_controller", driver="simgate_driver") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(f"probe_{os.getpid()}", context=self.ctx)
        self.states: list[tuple[float, float, list[str], list[float]]] = []  # (recv ROS time s, stamp s, names, pos)
        self.estopped: list[bool] = []
        self.lock = threading.Lock()
        self.node.create_subscription(JointState, "/joint_states", self._on_js, 50)
        self.node.create_subscription(Bool, f"/{driver}/estopped", lambda m: self.estopped.append(m.data),
                                      QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.pub = self.node.create_publisher(JointTrajectory, f"/{controller}/joint_trajectory", 10)
        self.estop_client = self.node.create_client(Trigger, f"/{driver}/estop")
        self.reset_client = self.node.create_client(Trigger, f"/{driver}/reset_estop")
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.peak_velocity: dict[str, float] = {}
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):
            while self.ctx.ok():
                self.executor.spin_once(timeout_sec=0.05)

    def _on_js(self, msg) -> None:
        now = self.node.get_clock().now().nanoseconds * 1e-9
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.states.append((now, stamp, list(msg.name), list(msg.position)))
            if len(msg.velocity) == len(msg.name):  # the largest |velocity| seen per joint name (rad/s)
                for n, v in zip(msg.name, msg.velocity, strict=True):
                    self.peak_velocity[n] = max(self.peak_velocity.get(n, 0.0), abs(v))

    def latest(self):
        with self.lock:
            return self.states[-1] if self.states else None

    def positions_since(self, t_s: float) -> list[list[float]]:
        with self.lock:
            return [s[3] for s in self.states if s[0] >= t_s]

    def now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def send(self, names, points, stamp_s: float = 0.0) -> float:
        """Publish a trajectory; ``points`` = [(positions, time_from_start_s, velocities or None)]."""
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        msg = JointTrajectory()
        msg.joint_names = list(names)
        if stamp_s:
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp_s), int((stamp_s % 1) * 1e9)
        for pos, t, vel in points:
            p = JointTrajectoryPoint()
            p.positions = [float(x) for x in pos]
            if vel is not None:
                p.velocities = [float(x) for x in vel]
            p.time_from_start = Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9)))
            msg.points.append(p)
        t0 = self.now_s()
        self.pub.publish(msg)
        return t0

    def call(self, client, timeout_s: float = 5.0):
        from std_srvs.srv import Trigger

        assert client.wait_for_service(timeout_sec=timeout_s), f"service {client.srv_name} not available"
        fut = client.call_async(Trigger.Request())
        t0 = time.monotonic()
        while not fut.done() and time.monotonic() - t0 < timeout_s:
            time.sleep(0.01)
        assert fut.done(), f"service {client.srv_name} did not answer"
        return fut.result()

    def close(self) -> None:
        self.ctx.try_shutdown()
        self.thread.join(timeout=2)
        self.node.destroy_node()


def rate_hz(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


@contextlib.contextmanager
def probe(**kw):
    p = Probe(**kw)
    try:
        yield p
    finally:
        p.close()
