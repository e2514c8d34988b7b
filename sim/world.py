"""A PyBullet world: one physics client with a floor and a table, stepped in fixed substeps.

Physics (same as panda-gym, so the benchmark compares like with like): time step 2 ms, gravity
-9.81 m/s^2, Bullet's default solver settings unless ``solver_iterations`` is given; a control
step of ``substeps`` physics steps (20 -> 25 Hz control).

All pybullet calls pass ``physicsClientId`` directly (no ``BulletClient`` proxy objects), which
is where a large share of panda-gym's Python overhead goes.
"""

from __future__ import annotations

import pybullet as p

TABLE_HALF_EXTENTS_M = (0.55, 0.35, 0.2)
TABLE_CENTER_X_M = -0.3


class RealTimePacer:
    """Sleeps so that successive ``wait()`` calls are ``period_s`` apart on the wall clock; when it
    falls behind it restarts from now instead of bursting to catch up."""

    def __init__(self, period_s: float) -> None:
        import time

        self._time = time
        self.period_s = period_s
        self.next_t = time.monotonic()

    def wait(self) -> None:
        self.next_t += self.period_s
        delay = self.next_t - self._time.monotonic()
        if delay > 0:
            self._time.sleep(delay)
        else:
            self.next_t = self._time.monotonic()


class World:
    """Owns one DIRECT physics client; table top is at z = 0."""

    def __init__(
        self,
        time_step_s: float = 0.002,
        substeps: int = 20,
        solver_iterations: int | None = None,
        table_center_x_m: float = TABLE_CENTER_X_M,
    ) -> None:
        self.time_step_s = time_step_s
        self.substeps = substeps
        self.cid = p.connect(p.DIRECT)
        cid = self.cid
        p.setTimeStep(time_step_s, physicsClientId=cid)
        p.setGravity(0, 0, -9.81, physicsClientId=cid)
        if solver_iterations is not None:
            p.setPhysicsEngineParameter(numSolverIterations=solver_iterations, physicsClientId=cid)
        self.table_id = self.add_box(
            TABLE_HALF_EXTENTS_M,
            (table_center_x_m, 0.0, -TABLE_HALF_EXTENTS_M[2]),
            mass_kg=0.0,
            rgba=(0.95, 0.95, 0.95, 1.0),
        )
        self.floor_id = self.add_box((3.0, 3.0, 0.01), (0.0, 0.0, -0.41), 0.0, (0.2, 0.2, 0.2, 1.0))
        self._step = p.stepSimulation
        self.tick = 0  # bumped whenever the physics state changes (caches key on it)
        self.snapshot: int | None = None

    # ---- bodies ----------------------------------------------------------------------------
    def add_box(self, half_extents_m, position_m, mass_kg, rgba, collide: bool = True) -> int:
        cid = self.cid
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half_extents_m, physicsClientId=cid) if collide else -1
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half_extents_m, rgbaColor=rgba, physicsClientId=cid)
        return p.createMultiBody(mass_kg, col, vis, position_m, physicsClientId=cid)

    def add_marker(self, radius_m: float, position_m, rgba) -> int:
        """A visual-only sphere (no collision shape: it costs the solver nothing)."""
        vis = p.createVisualShape(p.GEOM_SPHERE, radius=radius_m, rgbaColor=rgba, physicsClientId=self.cid)
        return p.createMultiBody(0.0, -1, vis, position_m, physicsClientId=self.cid)

    def remove(self, body_id: int) -> None:
        p.removeBody(body_id, physicsClientId=self.cid)
        self.snapshot = None  # a saved state needs the same bodies

    # ---- determinism -----------------------------------------------------------------------
    def save(self) -> None:
        """Snapshot positions, velocities and Bullet's contact/warm-start caches."""
        self.snapshot = p.saveState(physicsClientId=self.cid)

    def restore(self) -> None:
        """Return to the snapshot, so an episode does not depend on the ones before it
        (Bullet warm-starts contacts from cached impulses). Takes one if there is none."""
        if self.snapshot is None:
            self.save()
        else:
            p.restoreState(self.snapshot, physicsClientId=self.cid)
        self.tick += 1

    # ---- stepping --------------------------------------------------------------------------
    def step(self, substeps: int | None = None) -> None:
        """Advance ``substeps`` physics steps (default: one control period)."""
        step, cid = self._step, self.cid
        self.tick += 1
        for _ in range(self.substeps if substeps is None else substeps):
            step(physicsClientId=cid)

    def render(self, width: int = 480, height: int = 360, target=(-0.1, 0.0, 0.05), distance_m=1.2,
               yaw_deg=45.0, pitch_deg=-30.0, depth: bool = False):
        """Offscreen RGB (H, W, 3) uint8 image (and depth (H, W) in m when ``depth``)."""
        import numpy as np

        view = p.computeViewMatrixFromYawPitchRoll(target, distance_m, yaw_deg, pitch_deg, 0, 2,
                                                   physicsClientId=self.cid)
        near, far = 0.01, 5.0
        proj = p.computeProjectionMatrixFOV(60, width / height, near, far, physicsClientId=self.cid)
        _, _, rgba, depth_buf, _ = p.getCameraImage(width, height, view, proj,
                                                    renderer=p.ER_TINY_RENDERER, physicsClientId=self.cid)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
        if not depth:
            return rgb
        zb = np.asarray(depth_buf, dtype=np.float32).reshape(height, width)
        depth_m = far * near / (far - (far - near) * zb)
        return rgb, depth_m

    def close(self) -> None:
        if self.cid is not None and self.cid >= 0:
            try:
                p.disconnect(physicsClientId=self.cid)
            except p.error:
                pass
            self.cid = -1
