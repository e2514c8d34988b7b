"""The arm's rigid-body dynamics from the spec's URDF, batched in torch: joint-space mass
matrix M(q) and gravity torques G(q) (composite inertia of each arm link, Jacobians to each
link's centre of mass).

Each arm joint moves one rigid body: its child link plus every link hanging from it by a
joint that is not an arm joint (fixed joints, a blocked gripper at 0), merged like PyBullet's
``URDF_MERGE_FIXED_LINKS`` (masses summed, centre of mass averaged, inertias moved by the
parallel axis theorem). Coriolis and centrifugal terms are left out: at the arm's speeds they
change PyBullet's one-step tool position by ~0.01 mm (measured with PyBullet's own terms).
Units: kg, m, kg m^2, N m; gravity 9.81 m/s^2 along -z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from simgate.errors import RobotLoadError
from simgate.sim.robot_spec import RobotSpec
from simgate.sim.twin.kinematics import Kinematics, read_chain, urdf_root

GRAVITY_M_S2 = 9.81


def _rpy_matrix(r: float, p: float, y: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _origin(el) -> tuple[np.ndarray, np.ndarray]:
    """(rotation 3x3, translation 3) of an URDF ``<origin>`` (identity when absent)."""
    o = el.find("origin") if el is not None else None
    xyz = [float(v) for v in (o.get("xyz", "0 0 0") if o is not None else "0 0 0").split()]
    rpy = [float(v) for v in (o.get("rpy", "0 0 0") if o is not None else "0 0 0").split()]
    return _rpy_matrix(*rpy), np.array(xyz)


@dataclass(frozen=True)
class RigidBody:
    mass_kg: float
    com_m: np.ndarray  # (3,) in the arm link's frame
    inertia_kg_m2: np.ndarray  # (3, 3) about the centre of mass, in the arm link's frame


def _link_inertial(link) -> RigidBody:
    inertial = link.find("inertial") if link is not None else None
    if inertial is None or inertial.find("mass") is None:
        return RigidBody(0.0, np.zeros(3), np.zeros((3, 3)))
    rot, xyz = _origin(inertial)
    mass = float(inertial.find("mass").get("value"))
    i = inertial.find("inertia")
    g = (lambda k: float(i.get(k, "0"))) if i is not None else (lambda k: 0.0)
    tensor = np.array([[g("ixx"), g("ixy"), g("ixz")], [g("ixy"), g("iyy"), g("iyz")], [g("ixz"), g("iyz"), g("izz")]])
    return RigidBody(mass, xyz, rot @ tensor @ rot.T)


def _merge(parts: list[tuple[RigidBody, np.ndarray, np.ndarray]]) -> RigidBody:
    """Bodies given with (rotation, translation) into one frame -> one body in that frame."""
    mass = sum(b.mass_kg for b, _, _ in parts)
    if mass <= 0:
        return RigidBody(0.0, np.zeros(3), np.zeros((3, 3)))
    coms = [(b, rot @ b.com_m + t, rot) for b, rot, t in parts]
    com = sum(b.mass_kg * c for b, c, _ in coms) / mass
    inertia = np.zeros((3, 3))
    for b, c, rot in coms:
        d = c - com
        inertia += rot @ b.inertia_kg_m2 @ rot.T + b.mass_kg * (d @ d * np.eye(3) - np.outer(d, d))
    return RigidBody(mass, com, inertia)


def arm_bodies(spec: RobotSpec) -> list[RigidBody]:
    """One rigid body per arm joint (in ``spec.arm_joints`` order), in that joint's child frame."""
    root = urdf_root(spec)
    links = {lk.get("name"): lk for lk in root.findall("link")}
    children: dict[str, list] = {}
    for j in root.findall("joint"):
        children.setdefault(j.find("parent").get("link"), []).append(j)
    joints = {j.get("name"): j for j in root.findall("joint")}
    arm = {j.name for j in spec.arm_joints}
    bodies = []
    for aj in spec.arm_joints:
        if aj.name not in joints:
            raise RobotLoadError(f"robot {spec.name!r}: arm joint {aj.name!r} not in the URDF")
        start = joints[aj.name].find("child").get("link")
        parts, stack = [], [(start, np.eye(3), np.zeros(3))]
        while stack:  # every link rigidly attached to this joint's child (non-arm joints held at 0)
            name, rot, t = stack.pop()
            parts.append((_link_inertial(links.get(name)), rot, t))
            for j in children.get(name, []):
                if j.get("name") in arm:
                    continue
                r_j, t_j = _origin(j)
                stack.append((j.find("child").get("link"), rot @ r_j, rot @ t_j + t))
        bodies.append(_merge(parts))
    return bodies


def joint_damping(spec: RobotSpec) -> list[float]:
    """The URDF's ``<dynamics damping>`` of each arm joint, N m s/rad (PyBullet applies it)."""
    root = urdf_root(spec)
    joints = {j.get("name"): j for j in root.findall("joint")}
    out = []
    for aj in spec.arm_joints:
        dyn = joints[aj.name].find("dynamics") if aj.name in joints else None
        out.append(float(dyn.get("damping", "0")) if dyn is not None else 0.0)
    return out


def _cross(a, b):
    """Cross product of vectors given as 3 component tensors."""
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _rotate(cols, v):
    """Rotate vectors by rotation matrices, both as component tensors (``cols``: 3 columns of 3)."""
    return [cols[0][i] * v[0] + cols[1][i] * v[1] + cols[2][i] * v[2] for i in range(3)]


def _reverse_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.flip(dim).cumsum(dim).flip(dim)


class ArmDynamics:
    """M(q) and G(q) from the joint frames of ``Kinematics.forward(..., frames=True)``, by composite
    bodies: for each joint t, everything beyond it moves as one body when only t moves, so
    ``M[s, t] = w_s . L_t(about o_s)`` for s <= t, from the composite's mass, first and second
    moments about the world origin (reverse cumulative sums over the chain)."""

    def __init__(self, spec: RobotSpec, kin: Kinematics, device="cpu", dtype=torch.float32,
                 bodies: list[RigidBody] | None = None) -> None:
        """``kin``: the arm's ``Kinematics`` (its frames feed ``mass_and_gravity``); ``bodies``: one
        per arm joint (the twin parameters' bodies measured in PyBullet), else from the URDF."""
        bodies = bodies or arm_bodies(spec)
        chain_rank = kin.chain_rank
        order = sorted(range(len(bodies)), key=lambda i: chain_rank[i])  # chain order -> arm index
        if order != list(range(len(bodies))):
            raise RobotLoadError(f"robot {spec.name!r}: the twin's dynamics needs arm_joints listed base to tip")
        if not all(j.kind == "revolute" for j in read_chain(spec) if j.arm_index >= 0):
            raise RobotLoadError(f"robot {spec.name!r}: the twin's dynamics covers revolute arm joints only")
        t = dict(device=device, dtype=dtype)
        self.mass = torch.tensor([b.mass_kg for b in bodies], **t)  # (K,)
        # the frames are the child frames times joint_align: body vectors are turned by its transpose
        to_frame = [a.T for a in kin.joint_align]
        self.com = torch.tensor(np.array([r @ b.com_m for r, b in zip(to_frame, bodies, strict=True)]),
                                **t).T[..., None].unbind(0)  # 3 x (K, 1)
        # principal moments (K, 3) and axes (3 x (K, 3), link frame): the world inertia is then a sum
        # of three outer products, cheaper than R I R^T on small batched matrices
        moments, axes = zip(*(np.linalg.eigh(b.inertia_kg_m2) for b in bodies), strict=True)
        self.moments = torch.tensor(np.array(moments), **t).T[..., None].unbind(0)  # 3 x (K, 1)
        self.principal = [torch.tensor(np.array([r @ a[:, i] for r, a in zip(to_frame, axes, strict=True)]),
                                       **t).T[..., None].unbind(0)
                          for i in range(3)]  # 3 axes x 3 components x (K, 1)
        self.composite_mass = _reverse_cumsum(self.mass, 0)[:, None]
        self.beyond = torch.triu(torch.ones(len(bodies), len(bodies), **t))  # beyond @ x: sums over k >= t

    def mass_and_gravity(self, frames):
        """``frames`` (12, dof, N): each arm joint's frame from ``Kinematics.forward(..., frames=True)``.
        Returns M (N, dof, dof) and G (N, dof)."""
        lower, gravity = self.mass_and_gravity_rows(frames)
        k = len(self.mass)
        mm = torch.stack([lower[max(i, j)][min(i, j)] for i in range(k) for j in range(k)]).view(k, k, -1)
        return mm.permute(2, 0, 1).contiguous(), gravity.T.contiguous()

    def mass_and_gravity_rows(self, frames):
        """M and G with the batch last: ``lower`` (dof, dof, N), of which only ``lower[i][j]`` with
        i >= j is M[i, j] (the rest is not set up: M is symmetric), and G (dof, N). Computed on
        (K, N) component tensors: 3x3 and batched-matmul kernels on (N, K, ...) tensors cost 3-5x
        more on a CPU."""
        rows = frames.unbind(0)
        o, cols = rows[0:3], (rows[3:6], rows[6:9], rows[9:12])
        w = cols[2]  # the joint axes
        m = self.mass[:, None]
        c = [a + b for a, b in zip(o, _rotate(cols, self.com), strict=True)]  # centres of mass
        # second moment of each link about the world origin, 6 components (xx yy zz xy xz yz):
        # sum_a I_a u_a u_a^T + m (|c|^2 E - c c^T); then summed over the links beyond each joint
        sq = c[0] * c[0] + c[1] * c[1] + c[2] * c[2]
        sec = [m * (sq - c[0] * c[0]), m * (sq - c[1] * c[1]), m * (sq - c[2] * c[2]),
               -m * c[0] * c[1], -m * c[0] * c[2], -m * c[1] * c[2]]
        for axis, lam in zip(self.principal, self.moments, strict=True):
            u = _rotate(cols, axis)
            for j, (x, y) in enumerate(((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))):
                sec[j] = sec[j] + lam * u[x] * u[y]
        beyond = (self.beyond @ torch.stack(sec + [m * c[0], m * c[1], m * c[2]])).unbind(0)  # sums over k >= t
        jc, pc = beyond[:6], beyond[6:]
        mc = self.composite_mass
        arm = [pc[i] - mc * o[i] for i in range(3)]  # first moment about each joint's origin
        # unit speed of joint t: momentum of the composite beyond it, linear (w x arm) and angular
        # about the world origin (J w - p_c x (w x o)); force on joint s: w_s . l_t - (w_s x o_s) . p_t
        lin = _cross(w, arm)
        wxo = _cross(w, o)
        jw = (jc[0] * w[0] + jc[3] * w[1] + jc[4] * w[2], jc[3] * w[0] + jc[1] * w[1] + jc[5] * w[2],
              jc[4] * w[0] + jc[5] * w[1] + jc[2] * w[2])
        pxw = _cross(pc, wxo)
        lhs = [*w, *wxo]
        rhs = [jw[i] - pxw[i] for i in range(3)] + [-x for x in lin]
        full = lhs[0][:, None] * rhs[0][None, :]  # (S, T, N): M[s, t] for s <= t
        for a_s, b_t in zip(lhs[1:], rhs[1:], strict=True):
            full.addcmul_(a_s[:, None], b_t[None, :])
        # gravity: the torque holding everything beyond joint s against g (z up)
        gravity = GRAVITY_M_S2 * (w[0] * arm[1] - w[1] * arm[0])
        return full.transpose(0, 1), gravity
