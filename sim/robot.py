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
from simgate.sim.robot_spec import RobotSpec
from simgate.sim.urdf_tools import link_tree, prepare_urdf
from simgate.sim.world import World


def _quat_rotate(q_xyzw, v) -> np.ndarray:
    x, y, z, w = q_xyzw
    u = np.array([x, y, z])
    v = np.asarray(v, dtype=float)
    return 2.0 * np.dot(u, v) * u + (w * w - np.dot(u, u)) * v + 2.0 * w * np.cross(u, v)


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
        self.orientation_weight = 0.3
        self._zeros = [0.0] * len(movable)
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

    # ---- state -----------------------------------------------------------------------------
    def reset(self, q: np.ndarray | None = None) -> None:
        q = self.home if q is None else q
        cid = self.world.cid
        for j, qi in zip(self.motor_ids, q, strict=True):
            p.resetJointState(self.body, j, float(qi), 0.0, physicsClientId=cid)
        self.target = np.array(q, dtype=float)
        self._send(self.target)
        self.clipped_commands = 0
        self.limit_hits = 0

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, velocities, applied efforts of arm + gripper joints, shape (n,) each."""
        s = p.getJointStates(self.body, self.motor_ids, physicsClientId=self.world.cid)
        return (np.array([x[0] for x in s]), np.array([x[1] for x in s]), np.array([x[3] for x in s]))

    def ee_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tool centre point position (3,), orientation xyzw (4,), linear velocity (3,)."""
        ls = p.getLinkState(self.body, self.ee, computeLinkVelocity=1, computeForwardKinematics=1,
                            physicsClientId=self.world.cid)
        pos, orn = np.array(ls[4]), ls[5]
        if self._has_offset:
            pos = pos + _quat_rotate(orn, self._tcp_pos)
            orn = p.multiplyTransforms((0, 0, 0), orn, (0, 0, 0), self._tcp_orn)[1]
        return pos, np.array(orn), np.array(ls[6])

    def gripper_opening(self, q: np.ndarray) -> float:
        """Gripper opening in [0, 1] (0 closed) from the joint positions ``q`` (arm + gripper)."""
        if not self.grip_ids:
            return 0.0
        g0 = q[self.dof]
        return float(np.clip((g0 - self._g_closed) / (self._g_open - self._g_closed), 0.0, 1.0))

    # ---- commands --------------------------------------------------------------------------
    def ik(self, tcp_target_m: np.ndarray, damping: float = 0.02) -> np.ndarray:
        """Arm joint positions (dof,) that move the tool centre point to ``tcp_target_m`` (m).

        One damped-least-squares step on the tool-point Jacobian (position, plus orientation
        towards the spec's downward tool when it has one), from the current joint state.
        Targets are at most a few cm away per control step, where one linearized step is
        accurate to a fraction of a mm and the loop closes again at the next step. (PyBullet's
        iterative IK converges slowly near stretched poses: 20 iterations reach about half of a
        5 cm step there.)
        """
        cid, body = self.world.cid, self.body
        states = p.getJointStates(body, self._movable, physicsClientId=cid)
        q_all = [s[0] for s in states]
        ls = p.getLinkState(body, self.ee, computeForwardKinematics=1, physicsClientId=cid)
        link_pos, link_orn = np.array(ls[4]), ls[5]
        lin, ang = p.calculateJacobian(body, self.ee, self._tcp_pos.tolist(), q_all, self._zeros,
                                       self._zeros, physicsClientId=cid)
        cols = self._ik_cols
        tcp = link_pos + _quat_rotate(link_orn, self._tcp_pos)
        err_pos = np.asarray(tcp_target_m, dtype=float) - tcp
        if self._down is not None:
            w_rot = self.orientation_weight
            jac = np.vstack([np.asarray(lin)[:, cols], w_rot * np.asarray(ang)[:, cols]])
            # rotation error: axis * angle of q_des * q_cur^-1
            inv_cur = (-link_orn[0], -link_orn[1], -link_orn[2], link_orn[3])
            dq = p.multiplyTransforms((0, 0, 0), self._link_down, (0, 0, 0), inv_cur)[1]  # world frame
            w = float(np.clip(dq[3], -1.0, 1.0))
            if w < 0:
                dq, w = [-c for c in dq], -w
            angle = 2.0 * np.arccos(w)
            axis = np.array(dq[:3])
            norm = np.linalg.norm(axis)
            err_rot = axis / norm * angle if norm > 1e-9 else np.zeros(3)
            err = np.concatenate([err_pos, w_rot * err_rot])
        else:
            jac = np.asarray(lin)[:, cols]
            err = err_pos
        jjt = jac @ jac.T
        step = jac.T @ np.linalg.solve(jjt + damping**2 * np.eye(len(err)), err)
        q_arm = np.array([q_all[c] for c in cols])
        return q_arm + step

    def command(self, arm_q: np.ndarray, grip_opening: float | None = None) -> np.ndarray:
        """Send arm joint targets (dof,) and a gripper opening in [0, 1]. Returns the full target sent."""
        target = self.target.copy()
        target[: self.dof] = arm_q
        if self.grip_ids and grip_opening is not None:
            g = self._g_closed + float(np.clip(grip_opening, 0.0, 1.0)) * (self._g_open - self._g_closed)
            target[self.dof :] = g * self._g_mults
        # velocity limit: scale the arm's joint step as a whole (keeps the tool's direction of
        # motion; clipping joints one by one would bend the path), then clip to position limits
        d = self.dof
        delta = target[:d] - self.target[:d]
        ratio = float(np.max(np.abs(delta) / self.step_limit[:d]))
        if ratio > 1.0:
            target[:d] = self.target[:d] + delta / ratio
        lo = np.maximum(self.lower, self.target - self.step_limit)
        hi = np.minimum(self.upper, self.target + self.step_limit)
        sent = np.clip(target, lo, hi)
        if ratio > 1.0 or np.any(np.abs(sent[:d] - target[:d]) > 1e-6):
            self.clipped_commands += 1
        if np.any((sent[: self.dof] <= self.lower[: self.dof] + 1e-3) | (sent[: self.dof] >= self.upper[: self.dof] - 1e-3)):
            self.limit_hits += 1
        self.target = sent
        self._send(sent)
        return sent

    def _send(self, q: np.ndarray) -> None:
        p.setJointMotorControlArray(self.body, self.motor_ids, p.POSITION_CONTROL, targetPositions=q.tolist(),
                                    forces=self.forces, physicsClientId=self.world.cid)

    def link_ids(self) -> list[int]:
        return [-1, *range(p.getNumJoints(self.body, physicsClientId=self.world.cid))]
