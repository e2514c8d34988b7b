"""The twin's physics, batched in torch: the joint motor model and the planar push contact.

Motor (per 2 ms substep): Bullet's position control, a velocity target ``gain * (target - q) / dt``
per joint reached by effort-limited impulses through the arm's coupled inertia; ``q += v dt``.

Push contact (in the table plane): the box is a square of half size ``h`` with position, yaw,
linear and angular velocity; the closed fingers are disks along the tool's y axis. A disk
touches the box when the tool is lower than the box top plus the fingertip height; contacts
are velocity impulses (no pull, Coulomb finger friction), then table friction decelerates the
box (uniform pressure) and it moves. What it cannot represent (a finger landing on the box's
top edge tilts it in PyBullet) the tip rule forbids: such a contact freezes the box.
"""

from __future__ import annotations

import torch

# torque of uniform-pressure Coulomb friction on a square of side s: mu m g * 0.3826 s; inertia m s^2 / 6
_SQUARE_FRICTION_ARM = 0.3826
GRAVITY_M_S2 = 9.81
MAX_RECOVERY_M_S = 0.3


class MotorStep:
    """The arm's position motors over one control step, as Bullet solves them.

    Bullet's position control is a velocity constraint per joint: target speed
    ``gain * (target - q) / dt`` reached by an impulse no larger than the joint's effort x dt,
    solved by projected Gauss-Seidel sweeps over the joints with the arm's coupled inertia
    (``M``, from ``ArmDynamics``), after gravity (and joint damping) act. ``M`` and ``G`` are
    taken once per control step (they change little in 40 ms); ``sweeps`` is fitted per robot.
    ``mass_scale`` (N,) scales masses and inertias together (the randomization's link mass).
    Works joint-major, (dof, N): a joint's row is contiguous (3x faster sweeps on a CPU)."""

    def __init__(self, mass_matrix, gravity, effort, dt_s: float, sweeps: int, mass_scale=None, damping=None):
        m_inv = torch.linalg.inv_ex(mass_matrix)[0]  # no error check: no host sync in a CUDA graph
        self.cols = cols = m_inv.permute(2, 1, 0).contiguous()  # cols[i][j, n] = M^-1[n, j, i]
        g = gravity.T
        self.accel_g = sum(cols[i] * g[i] for i in range(len(effort)))  # M^-1 G (dof, N); a mass scale cancels
        if mass_scale is not None:
            self.cols = cols = cols / mass_scale
        self.diag_inv = 1.0 / torch.diagonal(cols, dim1=0, dim2=1).T  # (dof, N)
        self.dt_s, self.sweeps = dt_s, sweeps
        self.limit = [float(e) * dt_s for e in effort]
        self.damping = damping  # joint damping N m s/rad, (dof, 1) per joint or (1, N) per env, or None

    def run(self, q, v, target, gain: float, n_sub: int, active_n=None):
        """``n_sub`` 2-ms substeps from joints ``q``, speeds ``v`` toward ``target`` (N, dof);
        ``active_n`` (N,): substeps each env runs (a jittered control period). Returns q, v at the
        end and the joints after every substep (list of (N, dof))."""
        q, v, target = q.T.contiguous(), v.T.contiguous(), target.T.contiguous()
        qs = []
        for k in range(n_sub):
            q_new, v_new = self._substep(q, v, target, gain)
            if active_n is not None:
                a = (k < active_n)[None, :]
                q_new, v_new = torch.where(a, q_new, q), torch.where(a, v_new, v)
            q, v = q_new, v_new
            qs.append(q.T)
        return q.T, v.T, qs

    def _substep(self, q, v, target, gain: float):
        """Joint-major (dof, N). Sweeps track the residual ``v_des - v`` (one op less per joint)."""
        dt = self.dt_s
        v_des = gain * (target - q) / dt
        res = v_des - v + dt * self.accel_g  # residual of the velocity before the motors act
        if self.damping is not None:  # joint damping torque -d v: M^-1 (d v), joint-major
            dv = self.damping * v
            res = res + dt * sum(self.cols[i] * dv[i] for i in range(len(self.limit)))
        lam = [None] * len(self.limit)
        for _ in range(self.sweeps):
            for i, lim in enumerate(self.limit):
                if lam[i] is None:
                    lam[i] = (res[i] * self.diag_inv[i]).clamp(-lim, lim)
                    res = torch.addcmul(res, self.cols[i], lam[i], value=-1.0)
                else:
                    new = torch.addcmul(lam[i], res[i], self.diag_inv[i]).clamp(-lim, lim)
                    res = torch.addcmul(res, self.cols[i], new - lam[i], value=-1.0)
                    lam[i] = new
        v_new = v_des - res
        return q + v_new * dt, v_new


def _rot(c, s, x):
    """Rotate 2-vectors x (..., 2) by angle with cos c, sin s (broadcast over the last axis)."""
    return torch.stack([c * x[..., 0] - s * x[..., 1], s * x[..., 0] + c * x[..., 1]], -1)


def _cross2(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def pusher_contact(box, disks_xy, disk_v, radius_m: float, touching, finger_mu, bias: float, dt_s: float):
    """Impulse of the deepest of the pusher disks (kinematic) on each box, in place; returns the
    penetration of every disk (N, D) (m; 0 where not touching).

    ``box``: dict of tensors xy (N, 2), yaw (N,), v (N, 2), w (N,), h (N,); ``disks_xy`` (N, D, 2);
    ``disk_v`` (N, 2); ``touching`` (N,) bool: the tool is low enough to meet the box's side.
    One contact per substep (the deepest): with 20 substeps per control step the contacts of
    several disks are resolved in turn, as a sequential-impulse solver would."""
    c, s = torch.cos(box["yaw"])[:, None], torch.sin(box["yaw"])[:, None]
    h = box["h"][:, None, None]
    local = _rot(c, -s, disks_xy - box["xy"][:, None])
    clamped = torch.maximum(torch.minimum(local, h), -h)
    diff = local - clamped
    dist = torch.sqrt((diff * diff).sum(-1))
    outside = dist > 1e-9
    depth = h - local.abs()  # centre inside the box: leave by the nearest face
    along_x = depth[..., 0] <= depth[..., 1]
    sgn = torch.where(local >= 0, 1.0, -1.0).to(local.dtype)
    n_in = torch.stack([torch.where(along_x, sgn[..., 0], 0.0), torch.where(along_x, 0.0, sgn[..., 1])], -1)
    pen = torch.where(outside, radius_m - dist, radius_m + torch.where(along_x, depth[..., 0], depth[..., 1]))
    pen = torch.where(touching[:, None], pen, torch.zeros_like(pen))
    pick = (pen == pen.amax(1, keepdim=True)).to(pen.dtype)
    pick = pick / pick.sum(1, keepdim=True)  # the deepest disk (ties share)

    def sel(x):
        return (x * pick[..., None]).sum(1) if x.dim() == 3 else (x * pick).sum(1)

    pen_k, out_k = sel(pen), sel(outside.to(pen.dtype)) > 0.5
    n_local = torch.where(out_k[:, None], sel(diff / torch.clamp(dist, min=1e-9)[..., None]), sel(n_in))
    point = torch.where(out_k[:, None], sel(clamped), sel(torch.where(n_in != 0, n_in * h, local)))
    c, s = c[:, 0], s[:, 0]
    u = -_rot(c, s, n_local)  # push direction, into the box
    r = _rot(c, s, point)
    inertia = (2.0 * box["h"]) ** 2 / 6.0  # per unit mass
    perp_r = torch.stack([-r[:, 1], r[:, 0]], -1)
    v_c = box["v"] + box["w"][:, None] * perp_r
    # penetration recovery, capped: a disk that lands inside the box must not fling it
    want = (disk_v * u).sum(-1) + torch.clamp(bias * pen_k / dt_s, min=0.0, max=MAX_RECOVERY_M_S)
    rxu = _cross2(r, u)
    j = torch.clamp(want - (v_c * u).sum(-1), min=0.0) / (1.0 + rxu * rxu / inertia)
    j = torch.where(pen_k > 0, j, 0.0)
    t = torch.stack([-u[:, 1], u[:, 0]], -1)
    v_c = v_c + j[:, None] * u + (rxu * j / inertia)[:, None] * perp_r
    rxt = _cross2(r, t)
    jt = ((disk_v - v_c) * t).sum(-1) / (1.0 + rxt * rxt / inertia)
    lim = finger_mu * j
    jt = torch.maximum(torch.minimum(jt, lim), -lim)
    v = box["v"] + j[:, None] * u + jt[:, None] * t
    # a kinematic pusher cannot throw the box faster than it moves itself (plus the capped recovery);
    # a box it does not touch keeps its speed
    cap = torch.linalg.vector_norm(disk_v, dim=-1) + MAX_RECOVERY_M_S
    speed = torch.linalg.vector_norm(v, dim=-1)
    capped = v * torch.clamp(cap / torch.clamp(speed, min=1e-9), max=1.0)[:, None]
    box["v"] = torch.where((pen_k > 0)[:, None], capped, v)
    box["w"] = box["w"] + (rxu * j + rxt * jt) / inertia
    return pen


def table_friction(box, mu, dt_s: float, active=None) -> None:
    """Coulomb friction of the table on the sliding/spinning box, then integration (in place)."""
    v, w, h = box["v"], box["w"], box["h"]
    speed = torch.sqrt((v * v).sum(-1))
    dec = mu * GRAVITY_M_S2 * dt_s
    scale = torch.clamp(speed - dec, min=0.0) / torch.clamp(speed, min=1e-12)
    v = v * scale[:, None]
    w_dec = mu * GRAVITY_M_S2 * _SQUARE_FRICTION_ARM * 6.0 / (2.0 * h) * dt_s
    w = torch.sign(w) * torch.clamp(w.abs() - w_dec, min=0.0)
    if active is not None:
        v = torch.where(active[:, None], v, box["v"])
        w = torch.where(active, w, box["w"])
    box["v"], box["w"] = v, w
    m = 1.0 if active is None else active.to(v.dtype)
    box["xy"] = box["xy"] + v * dt_s * (m if active is None else m[:, None])
    box["yaw"] = box["yaw"] + w * dt_s * m
