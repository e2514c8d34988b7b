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

import math

import torch

from simgate.sim.batch_linalg import cholesky, spd_inverse

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
    Joint damping is implicit, ``(M + dt D)(v' - v) = -dt (G + D v) + impulses`` (``M + dt D`` in place
    of ``M``): explicit damping diverges once ``dt d`` exceeds twice a joint's inertia, as the
    randomization's damping does on small servos.
    Works joint-major, (dof, N): a joint's row is contiguous (3x faster sweeps on a CPU)."""

    def __init__(self, mass_lower, gravity, effort, dt_s: float, sweeps: int, mass_scale=None, damping=None):
        """``mass_lower`` (dof, dof, N) and ``gravity`` (dof, N): ``ArmDynamics.mass_and_gravity_rows``."""
        k = len(effort)
        if mass_scale is not None:
            mass_lower, gravity = mass_lower * mass_scale, gravity * mass_scale
        # implicit damping: (M + dt D)(v' - v) = -dt (G + D v) + impulses, stable at any damping
        diag_add = None if damping is None else [dt_s * damping[i if damping.shape[0] == k else 0] for i in range(k)]
        inv = spd_inverse(*cholesky(mass_lower, k, diag_add))  # batch last; no host read (CUDA graphs)
        self.cols = cols = torch.stack([x for row in inv for x in row]).view(k, k, -1)  # cols[i][j] = M^-1[j, i]
        self.accel_g = sum(cols[i] * gravity[i] for i in range(k))  # M^-1 G (dof, N)
        self.diag_inv = 1.0 / torch.stack([inv[i][i] for i in range(k)])  # (dof, N)
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
        """Joint-major (dof, N). Sweeps track the residual ``v_des - v`` (one op less per joint);
        in-place updates of this substep's own tensors (fewer allocations: ~20 % of its time)."""
        dt = self.dt_s
        v_des = (target - q).mul_(gain / dt)
        res = (v_des - v).add_(self.accel_g, alpha=dt)  # residual of the velocity before the motors act
        if self.damping is not None:  # joint damping torque -d v: M'^-1 (d v), joint-major
            dv = self.damping * v
            res = res + dt * sum(self.cols[i] * dv[i] for i in range(len(self.limit)))
        lam = [None] * len(self.limit)
        for _ in range(self.sweeps):
            for i, lim in enumerate(self.limit):
                if lam[i] is None:
                    lam[i] = (res[i] * self.diag_inv[i]).clamp_(-lim, lim)
                    res.addcmul_(self.cols[i], lam[i], value=-1.0)
                else:
                    new = torch.addcmul(lam[i], res[i], self.diag_inv[i]).clamp_(-lim, lim)
                    res.addcmul_(self.cols[i], lam[i].sub_(new))  # minus the impulse's change
                    lam[i] = new
        v_new = v_des.sub_(res)
        return torch.add(q, v_new, alpha=dt), v_new


def pusher_contact(box, disk_x, disk_y, disk_vx, disk_vy, radius_m: float, touching, finger_mu, bias: float,
                   dt_s: float):
    """Impulse of the deepest of the pusher disks (kinematic) on each box, in place; returns the
    penetration of every disk (D, N) (m; 0 where not touching).

    Components, batch last: ``box`` is a dict of (N,) tensors x, y, yaw, vx, vy, w, h (half size);
    ``disk_x``/``disk_y`` (D, N); ``disk_vx``/``disk_vy`` (N,); ``touching`` (N,) bool: the tool is
    low enough to meet the box's side. One contact per substep (the deepest): with several
    contact substeps per control step the contacts of several disks are resolved in turn, as a
    sequential-impulse solver would."""
    c, s, h = torch.cos(box["yaw"]), torch.sin(box["yaw"]), box["h"]
    rx, ry = disk_x - box["x"], disk_y - box["y"]
    lx, ly = c * rx + s * ry, c * ry - s * rx  # disk centres in the box frame
    cx, cy = torch.maximum(torch.minimum(lx, h), -h), torch.maximum(torch.minimum(ly, h), -h)
    dx, dy = lx - cx, ly - cy
    dist = torch.sqrt(dx * dx + dy * dy)
    outside = dist > 1e-9
    depth_x, depth_y = h - lx.abs(), h - ly.abs()  # centre inside the box: leave by the nearest face
    along_x = depth_x <= depth_y
    nx_in = torch.ones_like(lx).masked_fill_(lx < 0, -1.0).masked_fill_(~along_x, 0.0)  # masked_fill: no scalar tensors
    ny_in = torch.ones_like(ly).masked_fill_(ly < 0, -1.0).masked_fill_(along_x, 0.0)
    pen = torch.where(outside, radius_m - dist, radius_m + torch.where(along_x, depth_x, depth_y))
    pen = pen.masked_fill(~touching, 0.0)
    pick = (pen == pen.amax(0)).to(pen.dtype)
    pick = pick / pick.sum(0)  # the deepest disk (ties share)

    def sel(x):
        return (x * pick).sum(0)

    pen_k, out_k = sel(pen), sel(outside.to(pen.dtype)) > 0.5
    inv = 1.0 / torch.clamp(dist, min=1e-9)
    nlx = torch.where(out_k, sel(dx * inv), sel(nx_in))
    nly = torch.where(out_k, sel(dy * inv), sel(ny_in))
    px = torch.where(out_k, sel(cx), sel(torch.where(nx_in != 0, nx_in * h, lx)))
    py = torch.where(out_k, sel(cy), sel(torch.where(ny_in != 0, ny_in * h, ly)))
    ux, uy = s * nly - c * nlx, -(s * nlx + c * nly)  # push direction, into the box (world)
    arm_x, arm_y = c * px - s * py, s * px + c * py  # contact point from the centre (world)
    inertia = (2.0 * h) ** 2 / 6.0  # per unit mass
    w = box["w"]
    vcx, vcy = box["vx"] - w * arm_y, box["vy"] + w * arm_x  # speed of the contact point
    # penetration recovery, capped: a disk that lands inside the box must not fling it
    want = disk_vx * ux + disk_vy * uy + torch.clamp(bias * pen_k / dt_s, min=0.0, max=MAX_RECOVERY_M_S)
    rxu = arm_x * uy - arm_y * ux
    j = torch.clamp(want - (vcx * ux + vcy * uy), min=0.0) / (1.0 + rxu * rxu / inertia)
    j = j.masked_fill(pen_k <= 0, 0.0)
    tx, ty = -uy, ux
    spin = rxu * j / inertia
    vcx, vcy = vcx + j * ux - spin * arm_y, vcy + j * uy + spin * arm_x
    rxt = arm_x * ty - arm_y * tx
    jt = ((disk_vx - vcx) * tx + (disk_vy - vcy) * ty) / (1.0 + rxt * rxt / inertia)
    lim = finger_mu * j
    jt = torch.maximum(torch.minimum(jt, lim), -lim)
    vx, vy = box["vx"] + j * ux + jt * tx, box["vy"] + j * uy + jt * ty
    # a kinematic pusher cannot throw the box faster than it moves itself (plus the capped recovery);
    # a box it does not touch keeps its speed
    cap = torch.sqrt(disk_vx * disk_vx + disk_vy * disk_vy) + MAX_RECOVERY_M_S
    speed = torch.sqrt(vx * vx + vy * vy)
    scale = torch.clamp(cap / torch.clamp(speed, min=1e-9), max=1.0).masked_fill_(pen_k <= 0, 1.0)
    box["vx"], box["vy"] = vx * scale, vy * scale
    box["w"] = w + (rxu * j + rxt * jt) / inertia
    return pen


def table_friction(box, mu, dt_s: float, active=None) -> None:
    """Coulomb friction of the table on the sliding/spinning box, then integration (in place;
    ``box`` as in ``pusher_contact``)."""
    vx, vy, w, h = box["vx"], box["vy"], box["w"], box["h"]
    speed = torch.sqrt(vx * vx + vy * vy)
    dec = mu * GRAVITY_M_S2 * dt_s
    scale = torch.clamp(speed - dec, min=0.0) / torch.clamp(speed, min=1e-12)
    vx, vy = vx * scale, vy * scale
    w_dec = mu * GRAVITY_M_S2 * _SQUARE_FRICTION_ARM * 6.0 / (2.0 * h) * dt_s
    w = torch.sign(w) * torch.clamp(w.abs() - w_dec, min=0.0)
    step = dt_s
    if active is not None:
        vx, vy = torch.where(active, vx, box["vx"]), torch.where(active, vy, box["vy"])
        w = torch.where(active, w, box["w"])
        step = dt_s * active.to(vx.dtype)
    box["vx"], box["vy"], box["w"] = vx, vy, w
    box["x"], box["y"] = box["x"] + vx * step, box["y"] + vy * step
    box["yaw"] = box["yaw"] + w * step


def envs_in_contact_range(points, box, params, scale: float):
    """Indices of the envs whose box moves or that a finger disk can reach at one of the tool
    ``points`` ((3, N) each): tool below the box's top and within its half diagonal plus the disks'
    reach. The others' boxes are at rest and untouched: a step leaves them exactly as they are."""
    disk_reach_m = (params.pusher_radius_m + max(abs(o) for o in params.pusher_offsets_m)) * scale
    reach = math.sqrt(2.0) * box["h"] + disk_reach_m + 1e-3  # half diagonal + disks + 1 mm margin
    top = 2.0 * box["h"] + params.tool_floor_z_m
    near = (box["vx"] != 0) | (box["vy"] != 0) | (box["w"] != 0)
    for c in points:
        dx, dy = c[0] - box["x"], c[1] - box["y"]
        near = near | ((c[2] < top) & (dx * dx + dy * dy <= reach * reach))
    return near.nonzero().squeeze(1)


def box_substeps(box, ks, e, offsets, params, scale: float, dt_s: float):
    """The contact substeps ``ks`` (each ``dt_s`` long) on the box state ``box`` (components, as in
    ``pusher_contact``) of the envs in ``e``: their tool start ``t0`` and ``points`` (3, N), tool y
    axis ``ydir`` (2, N), frictions ``mu_t``/``mu_f``, ``frozen`` flags and ``active_n`` substeps.
    ``offsets`` (D, 1): the disks along the tool's y axis, m (a device tensor built once: no host
    copy inside a CUDA graph). Returns the box and the frozen flags."""
    contact_z = 2.0 * box["h"] + params.tool_floor_z_m
    prev, frozen, active_n = e["t0"], e["frozen"], e["active_n"]
    for k, cur in zip(ks, e["points"], strict=True):
        vel_x, vel_y = (cur[0] - prev[0]) / dt_s, (cur[1] - prev[1]) / dt_s
        prev = cur
        touching = (cur[2] < contact_z) & ~frozen
        active = None if active_n is None else (k < active_n)
        if active is not None:
            touching = touching & active
        pen = pusher_contact(box, cur[0] + e["ydir"][0] * offsets, cur[1] + e["ydir"][1] * offsets, vel_x, vel_y,
                             params.pusher_radius_m * scale, touching, e["mu_f"], params.contact_bias, dt_s)
        tip = touching & (cur[2] >= params.tip_min_z_m * scale) & (pen.amax(0) > params.tip_penetration_m * scale)
        frozen = frozen | tip
        for key in ("vx", "vy", "w"):
            box[key] = box[key].masked_fill(frozen, 0.0)
        table_friction(box, e["mu_t"], dt_s, active)
    return box, frozen
