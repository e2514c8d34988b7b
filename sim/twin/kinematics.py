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

import torch

from simgate.errors import RobotLoadError
from simgate.sim.robot_spec import RobotSpec


def quat_from_rpy(r: float, p: float, y: float) -> tuple[float, float, float, float]:
    """URDF fixed-axis roll-pitch-yaw -> xyzw (Rz(y) Ry(p) Rx(r))."""
    cr, sr, cp, sp, cy, sy = math.cos(r / 2), math.sin(r / 2), math.cos(p / 2), math.sin(p / 2), math.cos(y / 2), math.sin(y / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v (..., 3) by quaternions q (..., 4)."""
    u, w = q[..., :3], q[..., 3:]
    t = 2.0 * torch.cross(u, v, dim=-1)
    return v + w * t + torch.cross(u, t, dim=-1)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of xyzw quaternions, in vector form: ~10 kernels instead of ~30 for the
    component form (the twin's step is launch-bound on a GPU; FK runs this 15 times)."""
    av, aw = a[..., :3], a[..., 3:]
    bv, bw = b[..., :3], b[..., 3:]
    return torch.cat([aw * bv + bw * av + torch.cross(av, bv, dim=-1), aw * bw - (av * bv).sum(-1, keepdim=True)], -1)


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
    """FK of the tool centre point and its Jacobian for a batch of arm configurations."""

    def __init__(self, spec: RobotSpec, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.dof = spec.dof
        self.device, self.dtype = torch.device(device), dtype
        chain = read_chain(spec)
        # fold runs of constant joints into one transform per moving joint (fewer ops per call)
        self.segments: list[tuple[torch.Tensor, torch.Tensor, ChainJoint | None]] = []
        pos, quat = torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
        for c in chain:
            xyz = torch.tensor(c.xyz, dtype=torch.float64)
            pos = pos + quat_rotate(quat, xyz)
            quat = quat_mul(quat, torch.tensor(c.quat, dtype=torch.float64))
            if c.kind != "fixed":
                self.segments.append((pos, quat, c))
                pos, quat = torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
        tool = pos + quat_rotate(quat, torch.tensor(spec.ee_offset, dtype=torch.float64))
        self._tail = (tool.to(device, dtype), quat.to(device, dtype))
        self._segs = [(p.to(device, dtype), q.to(device, dtype), c) for p, q, c in self.segments]
        self._axes = [torch.tensor(c.axis, dtype=dtype, device=device) for _, _, c in self.segments]
        self.base = torch.tensor(spec.base_position, dtype=dtype, device=device)
        arm_index = [c.arm_index for _, _, c in self.segments]
        self.chain_rank = [arm_index.index(i) for i in range(self.dof)]  # place of arm joint i on the chain
        self._identity = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, device=device)  # built once: graph-safe

    def forward(self, q: torch.Tensor, jacobian: bool = True, frames: bool = False):
        """Tool position (N, 3), orientation xyzw (N, 4) and, with ``jacobian``, the linear and
        angular Jacobians (N, 3, dof) of the tool point for arm joints ``q`` (N, dof). With
        ``frames`` also each arm joint's child frame, in arm-joint order: origins and joint axes
        (N, dof, 3), orientations (N, dof, 4) (what ``ArmDynamics`` needs)."""
        n = q.shape[0]
        pos = self.base.expand(n, 3)
        quat = self._identity.to(q.dtype).expand(n, 4)
        origins, axes, quats = [], [], []
        for (p_off, q_off, c), axis in zip(self._segs, self._axes, strict=True):
            pos = pos + quat_rotate(quat, p_off.expand(n, 3))
            quat = quat_mul(quat, q_off.expand(n, 4))
            a = q[:, c.arm_index : c.arm_index + 1]
            if c.kind == "revolute":
                half = 0.5 * a
                rot = torch.cat([axis * torch.sin(half), torch.cos(half)], -1)
                w_axis = quat_rotate(quat, axis.expand(n, 3))
                quat = quat_mul(quat, rot)
            else:  # prismatic
                w_axis = quat_rotate(quat, axis.expand(n, 3))
                pos = pos + w_axis * a
            origins.append((pos, c))
            axes.append(w_axis)
            quats.append(quat)
        tool = pos + quat_rotate(quat, self._tail[0].expand(n, 3))
        quat = quat_mul(quat, self._tail[1].expand(n, 4))
        if not jacobian:
            return tool, quat
        extra = ()
        if frames:
            order = self.chain_rank  # segment holding arm joint i
            extra = (torch.stack([origins[i][0] for i in order], 1), torch.stack([axes[i] for i in order], 1),
                     torch.stack([quats[i] for i in order], 1))
        jl = torch.zeros(n, 3, self.dof, dtype=q.dtype, device=q.device)
        ja = torch.zeros_like(jl)
        for (o, c), w in zip(origins, axes, strict=True):
            if c.kind == "revolute":
                jl[:, :, c.arm_index] = torch.cross(w, tool - o, dim=-1)
                ja[:, :, c.arm_index] = w
            else:
                jl[:, :, c.arm_index] = w
        return (tool, quat, jl, ja) + extra
