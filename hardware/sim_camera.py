"""The simulated camera, rendered in its own process: PyBullet holds the GIL while it renders
(~0.4 s for 1280x960), so rendering on the physics thread - or any thread of the gateway's
process - would stall the control loop. The render process keeps a copy of the scene (floor,
table, the robot) and poses the robot at the joint positions it is sent before each frame."""

from __future__ import annotations

import multiprocessing as mp
import threading

from simgate.errors import HardwareError


def _render_loop(spec, conn) -> None:
    import pybullet as p

    from simgate.sim.robot import Robot
    from simgate.sim.world import World

    world = World()
    robot = Robot(world, spec)
    ids = list(robot.motor_ids)
    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        q_all, width, height, cam, fmt = msg
        for j, q in zip(ids, q_all, strict=False):
            p.resetJointState(robot.body, j, float(q), physicsClientId=world.cid)
        try:
            rgb, depth = world.render(width, height, *cam, depth=True)
            conn.send(("ok", (rgb, depth) if fmt is None else _encode(rgb, fmt)))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _encode(rgb, fmt: str) -> bytes:
    import io

    import imageio.v2 as imageio

    buf = io.BytesIO()
    imageio.imwrite(buf, rgb, format=fmt)
    return buf.getvalue()


class RenderProcess:
    """A lazily started render process; one frame at a time; stopped with ``close``."""

    def __init__(self, spec, start_timeout_s: float = 60.0) -> None:
        self.spec, self.start_timeout_s = spec, start_timeout_s
        self._proc = self._conn = None
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_render_loop, args=(self.spec, child), daemon=True, name="simgate-camera")
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(self.start_timeout_s) or parent.recv() != "ready":
            self.close()
            raise HardwareError("the camera render process did not start")

    def render(self, q_all, width: int, height: int, cam: tuple, timeout_s: float = 10.0, fmt: str | None = None):
        """(rgb, depth) arrays, or the RGB image encoded as ``fmt`` (png | jpeg) in the render process."""
        with self._lock:
            self._ensure()
            self._conn.send((list(map(float, q_all)), int(width), int(height), cam, fmt))
            if not self._conn.poll(timeout_s):
                self.close()
                raise HardwareError("the camera did not answer in time")
            status, out = self._conn.recv()
        if status != "ok":
            raise HardwareError(f"camera: {out}")
        return out

    def close(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        if proc is not None:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
