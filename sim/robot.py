"""A robot from a :class:`RobotSpec`, loaded into a :class:`World`.

Control: position motors on every arm and gripper joint. Targets are clipped to the joint
limits and rate-limited to ``velocity * control_period`` (servo-like), and the number of
clipped commands / limit hits is counted for the evaluation harness's safety counters.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pybullet as p

from simgate.errors import RobotLoadError
from simgate.sim._quiet import quiet_c_output
from simgate.sim.control_rules import IK_DAMPING, ORIENTATION_WEIGHT_M_PER_RAD, ik_step, limit_command
from simgate.sim.robot_spec import RobotSpec, check_tool_orientation
from simgate.sim.urdf_tools import link_tree, prepare_urdf
from simgate.sim.world import World


def _quat_rotate(q_xyzw, v) -> np.ndarray:
    """Rotate the 3-vector ``v`` by the unit quaternion ``q_xyzw`` (plain floats: ~20x faster
    than numpy for one small vector)."""
    x, y, z, w = q_xyzw
    vx, vy, vz = float(v[0]), float(v[1]), float(v[2])
    # t = 2 * cross(q.xyz, v); v' = v + w * t + cross(q.xyz, t)
    tx, ty, tz = 2.0 * (y * vz - z * vy), 2.0 * (z * vx - x * vz), 2.0 * (x * vy - y * vx)
    return np.array(
        [vx + w * tx + (y * tz - z * ty), vy + w * ty + (z * tx - x * tz), vz + w * tz + (x * ty - y * tx)]
    )


class Robot:
    """Position-controlled arm (+ optional gripper) in a PyBullet world."""

    def __init__(self, world: World, spec: RobotSpec, freeze_gripper: bool = False) -> None:
        """Load ``spec`` into ``world``. ``freeze_gripper`` makes the gripper rigid (blocked)."""
        self.world, self.spec = world, spec
        cid = world.cid
        urdf = spec.urdf_path()
        frozen = {j.name for j in spec.gripper.joints} if (spec.gripper and freeze_gripper) else set()
        try:
            path, text = prepare_urdf(urdf, frozen)
            tree = link_tree(text, frozen)
        except (OSError, ET.ParseError, AttributeError) as exc:
            raise RobotLoadError(f"robot {spec.name!r}: URDF {urdf} is not readable URDF ({exc})") from exc
        try:
            with quiet_c_output():
                self.body = p.loadURDF(str(path), spec.base_position, useFixedBase=True,
                                       flags=p.URDF_USE_INERTIA_FROM_FILE | p.URDF_MERGE_FIXED_LINKS,
                                       physicsClientId=cid)
        except p.error as exc:
            raise RobotLoadError(f"robot {spec.name!r}: URDF {urdf} did not load in PyBullet ({exc})") from exc
        joint_index: dict[str, int] = {}
        link_index: dict[str, int] = {tree.root: -1}
        movable: list[int] = []
        for j in range(p.getNumJoints(self.body, physicsClientId=cid)):
            info = p.getJointInfo(self.body, j, physicsClientId=cid)
            joint_index[info[1].decode()] = j
            link_index[info[12].decode()] = j
            if info[2] != p.JOINT_FIXED:
                movable.append(j)
        wanted = [j.name for j in spec.arm_joints] + ([j.name for j in spec.gripper.joints] if spec.gripper and not frozen else [])
        missing = [n for n in wanted if n not in joint_index]
        if missing:
            raise RobotLoadError(f"robot {spec.name!r}: joints {missing} not in URDF {urdf}")
        if spec.ee_link not in tree.survivor:
            raise RobotLoadError(f"robot {spec.name!r}: ee_link {spec.ee_link!r} not in URDF {urdf}")

        def index_of(link_name: str) -> int:
            return link_index[tree.survivor[link_name]]

        self.link_index = link_index
        if spec.collision_links is not None:
            unknown = [n for n in spec.collision_links if n not in tree.survivor]
            if unknown:
                raise RobotLoadError(f"robot {spec.name!r}: collision_links {unknown} not in URDF {urdf}")
            keep = {index_of(n) for n in spec.collision_links}
            for link in [-1, *link_index.values()]:
                if link not in keep:
                    p.setCollisionFilterGroupMask(self.body, link, 0, 0, physicsClientId=cid)
        self.ee = index_of(spec.ee_link)
        rel_pos, rel_orn = tree.in_survivor[spec.ee_link]
        # tool centre point in the surviving link's frame
        tcp_pos, tcp_orn = p.multiplyTransforms(rel_pos, rel_orn, spec.ee_offset, (0, 0, 0, 1))
        self._tcp_pos, self._tcp_orn = np.array(tcp_pos), tcp_orn
        self._has_offset = bool(np.any(np.abs(self._tcp_pos) > 1e-12))
        self._down = spec.ee_down_orientation
        if self._down is not None:
            inv = p.invertTransform((0, 0, 0), tcp_orn)[1]
            self._link_down = p.multiplyTransforms((0, 0, 0), self._down, (0, 0, 0), inv)[1]
            self._down_offset = _quat_rotate(self._link_down, self._tcp_pos)
        self.arm_ids = [joint_index[j.name] for j in spec.arm_joints]
        self.grip_ids = [joint_index[j.name] for j in spec.gripper.joints] if spec.gripper and not frozen else []
        self.motor_ids = self.arm_ids + self.grip_ids
        joints = list(spec.arm_joints) + (list(spec.gripper.joints) if self.grip_ids else [])
        self.lower = np.array([j.lower for j in joints])
        self.upper = np.array([j.upper for j in joints])
        self.vel_limit = np.array([j.velocity for j in joints])
        self.forces = [j.effort for j in joints]
        self.home = np.array([j.home for j in joints])
        self.dof = spec.dof
        # IK returns one value per movable joint, in joint-index order
        self._ik_cols = [movable.index(j) for j in self.arm_ids]
        self._movable = movable
        # orientation rows of the IK are weighted (m per rad): near the edge of the workspace
        # the tool may tilt a little rather than the tip stopping short of its target
        self.orientation_weight = ORIENTATION_WEIGHT_M_PER_RAD
        self._zeros = [0.0] * len(movable)
        self._motor_cols = [movable.index(j) for j in self.motor_ids]
        self._tick = -1
        self._tcp_list = self._tcp_pos.tolist()
        self._cols_prefix = self._ik_cols == list(range(len(self._ik_cols)))
        self.step_limit = self.vel_limit * spec.control_period_s
        if spec.gripper:
            g = spec.gripper
            self._g_open, self._g_closed = g.open, g.closed
            self._g_mults = np.array(g.mults)
            for link in {index_of(n) for n in g.finger_links if n in tree.survivor}:
                p.changeDynamics(self.body, link, lateralFriction=1.0, spinningFriction=0.001,
                                 physicsClientId=cid)
        self.target = self.home.copy()
        self.clipped_commands = 0
        self.limit_hits = 0
        self._check_home_tool_orientation()

    def _check_home_tool_orientation(self) -> None:
        """The spec's downward tool orientation is the tool's at the home pose (check_tool_orientation)."""
        if self.spec.ee_down_orientation is None:
            return
        cid = self.world.cid
        saved = [s[0] for s in p.getJointStates(self.body, self.motor_ids, physicsClientId=cid)]
        for j, q in zip(self.motor_ids, self.home, strict=True):
            p.resetJointState(self.body, j, float(q), 0.0, physicsClientId=cid)
        self.world.tick += 1
        orn = self.ee_state()[1]
        for j, q in zip(self.motor_ids, saved, strict=True):
            p.resetJointState(self.body, j, q, 0.0, physicsClientId=cid)
        self.world.tick += 1
        check_tool_orientation(self.spec, orn)

    # ---- state -----------------------------------------------------------------------------
    def reset(self, q: np.ndarray | None = None) -> None:
        q = self.home if q is None else q
        cid = self.world.cid
        for j, qi in zip(self.motor_ids, q, strict=True):
            p.resetJointState(self.body, j, float(qi), 0.0, physicsClientId=cid)
        self.world.tick += 1
        self.target = np.array(q, dtype=float)
        self._send(self.target)
        self.clipped_commands = 0
        self.limit_hits = 0

    def _sense(self) -> None:
        """Read every movable joint and the tool link once per physics state (cached by tick)."""
        if self._tick == self.world.tick:
            return
        cid = self.world.cid
        self._states = p.getJointStates(self.body, self._movable, physicsClientId=cid)
        self._ls = p.getLinkState(self.body, self.ee, computeLinkVelocity=1, computeForwardKinematics=1,
                                  physicsClientId=cid)
        self._tick = self.world.tick

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, velocities, applied efforts of arm + gripper joints, shape (n,) each."""
        self._sense()
        s = [self._states[c] for c in self._motor_cols]
        return (np.array([x[0] for x in s]), np.array([x[1] for x in s]), np.array([x[3] for x in s]))

    def joint_positions(self) -> list[float]:
        """Positions of arm + gripper joints (rad or m) as a plain list (cheap; cached per step)."""
        self._sense()
        st = self._states
        return [st[c][0] for c in self._motor_cols]

    def ee_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tool centre point position (3,), orientation xyzw (4,), linear velocity (3,), world frame."""
        self._sense()
        ls = self._ls
        pos, orn, vel = np.array(ls[4]), ls[5], np.array(ls[6])
        if self._has_offset:
            r = _quat_rotate(orn, self._tcp_pos)
            pos = pos + r
            wx, wy, wz = ls[7]
            vel = vel + np.array([wy * r[2] - wz * r[1], wz * r[0] - wx * r[2], wx * r[1] - wy * r[0]])
            orn = p.multiplyTransforms((0, 0, 0), orn, (0, 0, 0), self._tcp_orn)[1]
        return pos, np.array(orn), vel

    def gripper_opening(self, q: np.ndarray) -> float:
        """Gripper opening in [0, 1] (0 closed) from the joint positions ``q`` (arm + gripper)."""
        if not self.grip_ids:
            return 0.0
        frac = (float(q[self.dof]) - self._g_closed) / (self._g_open - self._g_closed)
        return min(1.0, max(0.0, frac))

    # ---- commands --------------------------------------------------------------------------
    def ik(self, tcp_target_m: np.ndarray, damping: float = IK_DAMPING) -> np.ndarray:
        """Arm joint positions (dof,) that move the tool centre point to ``tcp_target_m`` (m).

        One damped-least-squares step on the tool-point Jacobian (position, plus orientation
        towards the spec's downward tool when it has one), from the current joint state.
        Targets are at most a few cm away per control step, where one linearized step is
        accurate to a fraction of a mm and the loop closes again at the next step. (PyBullet's
        iterative IK converges slowly near stretched poses: 20 iterations reach about half of a
        5 cm step there.)
        """
        cid, body = self.world.cid, self.body
        self._sense()
        q_all = [s[0] for s in self._states]
        ls = self._ls
        link_orn = ls[5]
        lin, ang = p.calculateJacobian(body, self.ee, self._tcp_list, q_all, self._zeros,
                                       self._zeros, physicsClientId=cid)
        cols = self._ik_cols
        lin, ang = np.array(lin), np.array(ang)
        if self._cols_prefix:
            lin, ang = lin[:, : len(cols)], ang[:, : len(cols)]
        else:
            lin, ang = lin[:, cols], ang[:, cols]
        r = _quat_rotate(link_orn, self._tcp_pos)
        tool = np.asarray(ls[4]) + r
        q_arm = np.array([q_all[c] for c in cols])
        # the rotation error of the link towards its "down" pose equals the tool's towards the spec's
        down = None if self._down is None else np.asarray(self._link_down)
        return ik_step(q_arm, tool, np.asarray(link_orn), lin, ang, np.asarray(tcp_target_m, dtype=float), down,
                       self.orientation_weight, damping)

    def command(self, arm_q: np.ndarray, grip_opening: float | None = None) -> np.ndarray:
        """Send arm joint targets (dof,) and a gripper opening in [0, 1]. Returns the full target sent."""
        target = self.target.copy()
        target[: self.dof] = arm_q
        if self.grip_ids and grip_opening is not None:
            # targets stay 2.5 % inside the joint range: a motor parked on a joint limit keeps
            # a limit constraint active in the solver every substep (~8 % of the step time)
            frac = 0.025 + 0.95 * min(1.0, max(0.0, float(grip_opening)))
            g = self._g_closed + frac * (self._g_open - self._g_closed)
            target[self.dof :] = g * self._g_mults
        # velocity limit: the arm's step scaled as a whole, then position limits (sim/control_rules.py)
        sent, clipped, hit = limit_command(target, self.target, self.step_limit, self.lower, self.upper, self.dof)
        self.clipped_commands += int(clipped)
        self.limit_hits += int(hit)
        self.target = sent
        self._send(sent)
        return sent

    def _send(self, q: np.ndarray) -> None:
        p.setJointMotorControlArray(self.body, self.motor_ids, p.POSITION_CONTROL, targetPositions=q.tolist(),
                                    forces=self.forces, physicsClientId=self.world.cid)

    def in_self_collision(self, margin_m: float = 0.0) -> bool:
        """True when two links at least 3 apart in the chain penetrate each other (closest
        distance < -margin). Costs a few dozen PyBullet queries: for evaluation, not training."""
        cid, body = self.world.cid, self.body
        if not hasattr(self, "_self_pairs"):
            links = self.link_ids()
            self._self_pairs = [(a, b) for i, a in enumerate(links) for b in links[i + 3 :]]
        for a, b in self._self_pairs:
            pts = p.getClosestPoints(body, body, 0.0, linkIndexA=a, linkIndexB=b, physicsClientId=cid)
            if any(pt[8] < -margin_m for pt in pts):
                return True
        return False

    def link_ids(self) -> list[int]:
        return [-1, *range(p.getNumJoints(self.body, physicsClientId=self.world.cid))]

    def randomize_dynamics(self, dr: dict[str, float]) -> None:
        """Apply sampled randomization (``link_mass_scale``, ``joint_damping`` N*m*s/rad) to the
        links, relative to the masses and inertias the robot was loaded with.

        Bullet recomputes a link's inertia from its collision shape when only its mass is
        changed, which would alter the arm's dynamics even at scale 1; the URDF inertia is
        scaled with the mass instead (a uniform density change)."""
        cid = self.world.cid
        if not hasattr(self, "_nominal_dynamics"):  # link -> (mass kg, inertia diagonal kg*m^2, damping)
            self._nominal_dynamics = {}
            for link in self.link_ids():
                info = p.getDynamicsInfo(self.body, link, physicsClientId=cid)
                damp = p.getJointInfo(self.body, link, physicsClientId=cid)[6] if link >= 0 else None
                self._nominal_dynamics[link] = (info[0], tuple(info[2]), damp)
        mass_scale, damping = dr.get("link_mass_scale", 1.0), dr.get("joint_damping")
        for link, (m0, inertia0, damping0) in self._nominal_dynamics.items():
            kw: dict = {}
            if m0 > 0:
                kw["mass"] = m0 * mass_scale
                kw["localInertiaDiagonal"] = [x * mass_scale for x in inertia0]
            if link >= 0:
                kw["jointDamping"] = damping if damping is not None else damping0
            if kw:
                p.changeDynamics(self.body, link, physicsClientId=cid, **kw)

    def tool_radius_m(self, height_m: float = 0.04, reach_m: float = 0.3) -> float:
        """Horizontal extent (m) of the tool around the tool centre point, over ``height_m`` above
        it, at the home pose: what a scripted push keeps between the tool's axis and the object.

        Measured from the robot's collision geometry with horizontal rays aimed at the tool axis
        (12 directions x 5 heights), so it fits any URDF: Panda's closed fingers, a bare flange."""
        cid, body = self.world.cid, self.body
        saved = [s[0] for s in p.getJointStates(body, self.motor_ids, physicsClientId=cid)]
        for j, q in zip(self.motor_ids, self.home, strict=True):
            p.resetJointState(body, j, float(q), 0.0, physicsClientId=cid)
        self.world.tick += 1
        tcp = self.ee_state()[0]
        starts, ends = [], []
        for z in np.linspace(0.0, height_m, 5):
            for a in np.linspace(0.0, 2 * np.pi, 12, endpoint=False):
                c = tcp + np.array([0.0, 0.0, z])
                starts.append((c + reach_m * np.array([np.cos(a), np.sin(a), 0.0])).tolist())
                ends.append(c.tolist())
        hits = p.rayTestBatch(starts, ends, physicsClientId=cid)
        for j, q in zip(self.motor_ids, saved, strict=True):
            p.resetJointState(body, j, q, 0.0, physicsClientId=cid)
        self.world.tick += 1
        tool = {self.ee, *self.grip_ids}  # a link's index is its joint's
        return max((reach_m * (1.0 - h[2]) for h in hits if h[0] == body and h[1] in tool), default=0.0)
