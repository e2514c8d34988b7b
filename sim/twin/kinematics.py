"""Batched forward kinematics and tool-point Jacobian straight from the spec's URDF.

The chain from the URDF root to ``ee_link`` is read once; arm joints move, every other joint
(fixed, or a gripper joint of a task that keeps the gripper blocked at 0) is a constant
transform. Pose in the world = spec ``base_position`` (identity orientation) times the chain.
Quaternions xyzw; lengths m; angles rad.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import torch

from simgate.errors import RobotLoadError
from simgate.sim.robot_spec import RobotSpec


def quat_from_rpy(r: float, p: float, y: float) -> tuple[float, float, float, float]:
    """URDF fixed-axis roll-pitch-yaw -> xyzw (Rz(y) Ry(p) Rx(r))."""
    cr, sr, cp, sp, cy, sy = math.cos(r / 2), math.sin(r / 2), math.cos(p / 2), math.sin(p / 2), math.cos(y / 2), math.sin(y / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)


@dataclass(frozen=True)
class ChainJoint:
    name: str
    kind: str  # "revolute" | "prismatic" | "fixed"
    xyz: tuple[float, float, float]
    quat: tuple[float, float, float, float]
    axis: tuple[float, float, float]
    arm_index: int  # column in the arm's joint vector, -1 when constant


def urdf_root(spec: RobotSpec) -> ET.Element:
    """The spec's URDF, parsed (an unreadable file names the robot)."""
    try:
        return ET.parse(spec.urdf_path()).getroot()
    except (OSError, ET.ParseError) as exc:
        raise RobotLoadError(f"robot {spec.name!r}: URDF not readable ({exc})") from exc


def read_chain(spec: RobotSpec) -> list[ChainJoint]:
    """Joints from the URDF root to ``spec.ee_link``, root first."""
    root = urdf_root(spec)
    parent_joint = {j.find("child").get("link"): j for j in root.findall("joint")}
    arm = {j.name: i for i, j in enumerate(spec.arm_joints)}
    chain, link = [], spec.ee_link
    while link in parent_joint:
        j = parent_joint[link]
        o, a = j.find("origin"), j.find("axis")
        xyz = tuple(float(v) for v in (o.get("xyz", "0 0 0") if o is not None else "0 0 0").split())
        rpy = tuple(float(v) for v in (o.get("rpy", "0 0 0") if o is not None else "0 0 0").split())
        axis = tuple(float(v) for v in (a.get("xyz", "1 0 0") if a is not None else "1 0 0").split())
        n = math.sqrt(sum(x * x for x in axis)) or 1.0
        name = j.get("name")
        kind = j.get("type") if name in arm else "fixed"
        kind = "revolute" if kind == "continuous" else kind
        chain.append(ChainJoint(name, kind, xyz, quat_from_rpy(*rpy), tuple(x / n for x in axis), arm.get(name, -1)))
        link = j.find("parent").get("link")
    chain.reverse()
    missing = set(arm) - {c.name for c in chain}
    if missing:
        raise RobotLoadError(f"robot {spec.name!r}: arm joints {sorted(missing)} not on the chain to {spec.ee_link!r}")
    return chain


class Kinematics:
    """FK of the tool centre point and its Jacobian for a batch of arm configurations.

    Rotation matrices, batch last: a frame is its origin (3, N) and three columns (3, N) each,
    so an op touches 3 x N contiguous floats (on a CPU, small (N, 3) tensors and ``torch.cross``
    cost several times more). Constant joints are folded into one transform per moving joint,
    and each moving joint's frame is turned so that its axis is z (``joint_align``): the joint's
    rotation is then four multiply-adds, and constant products with 0 and +-1 are skipped."""

    def __init__(self, spec: RobotSpec, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.dof = spec.dof
        self.device, self.dtype = torch.device(device), dtype
        chain = read_chain(spec)
        # per moving joint: (origin offset, rotation) in the previous joint's aligned frame
        self._segs: list[tuple[np.ndarray, np.ndarray, ChainJoint]] = []
        align_chain: list[np.ndarray] = []
        pos, rot = np.array(spec.base_position, dtype=np.float64), np.eye(3)
        for c in chain:
            pos = pos + rot @ np.array(c.xyz)
            rot = rot @ _quat_matrix(c.quat)
            if c.kind != "fixed":
                align = _align_z(np.array(c.axis))
                self._segs.append((pos, rot @ align, c))
                align_chain.append(align)
                pos, rot = np.zeros(3), align.T
        self._tail = (pos + rot @ np.array(spec.ee_offset, dtype=np.float64), rot)
        arm_index = [c.arm_index for _, _, c in self._segs]
        self.chain_rank = [arm_index.index(i) for i in range(self.dof)]  # place of arm joint i on the chain
        # A with axis = A e_z, per arm joint: the frames this FK reports are the child frames times A
        self.joint_align = [align_chain[r] for r in self.chain_rank]
        self._revolute = [c.kind == "revolute" for _, _, c in self._segs]
        t = dict(device=self.device, dtype=dtype)
        self._consts = [(torch.tensor(p, **t)[:, None], [torch.tensor(r[:, j], **t)[:, None] for j in range(3)])
                        for p, r, _ in self._segs]
        self._prismatic_mask = None if all(self._revolute) else \
            torch.tensor([float(r) for r in self._revolute], **t)[:, None, None]

    def forward(self, q: torch.Tensor, jacobian: bool = True, frames: bool = False):
        """Tool position (N, 3), orientation xyzw (N, 4) and, with ``jacobian`` (or ``frames``), the
        linear and angular Jacobians (N, 3, dof) of the tool point for arm joints ``q`` (N, dof). With
        ``frames`` also each arm joint's frame, in arm-joint order, as one (12, dof, N) tensor:
        origin xyz, then the columns x, y, z of its rotation (z = the joint's world axis); the
        rotation is the child link's times ``joint_align[i]`` (what ``ArmDynamics`` needs)."""
        q_jm = q.T  # (dof, N)
        origins, cols_all = [], []
        pos, cols = None, None
        for (p_off, r_off, c), revolute, (p_t, r_t) in zip(self._segs, self._revolute, self._consts, strict=True):
            if cols is None:  # first moving joint: everything before it is constant
                pos, pre = p_t, r_t
            else:
                pos = _combine(cols, p_off, pos)
                pre = [_combine(cols, r_off[:, j]) for j in range(3)]
            a = q_jm[c.arm_index : c.arm_index + 1]  # (1, N)
            if revolute:
                ca, sa = torch.cos(a), torch.sin(a)
                cols = [torch.addcmul(pre[0] * ca, pre[1], sa), torch.addcmul(pre[1] * ca, pre[0], sa, value=-1.0),
                        pre[2].expand(3, a.shape[1])]
                pos = pos.expand(3, a.shape[1])
            else:  # prismatic: along its axis, z of the aligned frame
                cols = [x.expand(3, a.shape[1]) for x in pre]
                pos = pos + pre[2] * a
            origins.append(pos)
            cols_all.append(cols)
        tail_p, tail_r = self._tail
        tool = _combine(cols, tail_p, pos)
        tool_rot = [_combine(cols, tail_r[:, j]) for j in range(3)]
        quat = _matrix_quat(tool_rot)
        if not jacobian and not frames:
            return tool.T.contiguous(), quat
        order = self.chain_rank
        o = torch.stack([origins[i] for i in order])  # (dof, 3, N)
        w = torch.stack([cols_all[i][2] for i in order])
        d = tool[None] - o
        jl = torch.stack([w[:, 1] * d[:, 2] - w[:, 2] * d[:, 1], w[:, 2] * d[:, 0] - w[:, 0] * d[:, 2],
                          w[:, 0] * d[:, 1] - w[:, 1] * d[:, 0]], 1)  # w x (tool - o)
        ja = w
        if self._prismatic_mask is not None:
            m = self._prismatic_mask[order]
            jl, ja = m * jl + (1 - m) * w, w * m
        # (N, 3, dof) views of joint-major (dof, 3, N) storage: ``.permute(2, 1, 0)`` gives it back
        out = (tool.T.contiguous(), quat, jl.permute(2, 1, 0), ja.permute(2, 1, 0))
        if frames:  # one stack of the 12 x dof rows, component-major
            rows = [origins[i][c] for c in range(3) for i in order]
            rows += [cols_all[i][j][c] for j in range(3) for c in range(3) for i in order]
            out = out + (torch.stack(rows).view(12, self.dof, -1),)
        return out


def _combine(cols, coef, start=None):
    """``start + sum_k coef[k] * cols[k]`` for constant floats ``coef``, skipping 0 and folding +-1."""
    out = start
    for col, c in zip(cols, coef, strict=True):
        if abs(c) < 1e-12:
            continue
        if out is None:
            out = col if abs(c - 1) < 1e-12 else (-col if abs(c + 1) < 1e-12 else col * float(c))
        elif abs(c - 1) < 1e-12:
            out = out + col
        elif abs(c + 1) < 1e-12:
            out = out - col
        else:
            out = torch.add(out, col, alpha=float(c))
    return out if out is not None else torch.zeros_like(cols[0])


def _matrix_quat(cols) -> torch.Tensor:
    """xyzw (N, 4) of rotation matrices given by columns (3 x (3, N)): Shepperd's method, the
    largest of w, x, y, z taken from the diagonal (accurate everywhere, no branches)."""
    (r00, r10, r20), (r01, r11, r21), (r02, r12, r22) = cols[0], cols[1], cols[2]
    t = torch.stack([1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22, 1 + r00 + r11 + r22])  # 4x^2 ...
    a, b, c = r21 - r12, r02 - r20, r10 - r01
    d, e, f = r01 + r10, r02 + r20, r12 + r21
    cand = torch.stack([torch.stack([t[0], d, e, a]), torch.stack([d, t[1], f, b]),
                        torch.stack([e, f, t[2], c]), torch.stack([a, b, c, t[3]])])  # (case, xyzw, N)
    best, pick = t[0], cand[0]  # the case with the largest diagonal term (where-chain: argmax over 4 rows is slow)
    for k in (1, 2, 3):
        take = t[k] > best
        best, pick = torch.where(take, t[k], best), torch.where(take, cand[k], pick)
    scale = 0.5 / torch.sqrt(torch.clamp(best, min=1e-30))
    return (pick * scale).T.contiguous()


def _quat_matrix(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _align_z(axis: np.ndarray) -> np.ndarray:
    """A rotation A with A e_z = ``axis`` (unit): the identity for z, a half turn about x for -z."""
    z = np.array([0.0, 0.0, 1.0])
    cos = float(axis @ z)
    if cos > 1 - 1e-12:
        return np.eye(3)
    if cos < -1 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    v = np.cross(z, axis)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + cos)
