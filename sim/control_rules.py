"""The arm's command rules, one definition for PyBullet (`sim/robot.py`, numpy, one robot) and the
batched twin (`sim/twin/`, torch, N robots): the damped-least-squares IK step, the tool's
rotation error, and the limiting of joint commands (whole-step velocity scaling, then position
limits).

Every function works on numpy arrays or torch tensors (the namespace is taken from the
argument) with any number of leading batch axes; no pybullet, no torch import here.
Quaternions are xyzw. Units: m, rad; ``step_limit`` is rad (or m) per control step.
"""

from __future__ import annotations

import numpy as np

ORIENTATION_WEIGHT_M_PER_RAD = 0.3  # IK orientation rows, weighted: the tip may tilt rather than stop short
IK_DAMPING = 0.02
LIMIT_HIT_MARGIN_RAD = 1e-3  # "at the limit" within 1 mrad
CLIP_TOLERANCE = 1e-6


def _xp(x):
    if isinstance(x, np.ndarray | float | int):
        return np
    import torch

    return torch


def quat_mul(a, b):
    """Hamilton product of xyzw quaternions (..., 4)."""
    xp = _xp(a)
    ax, ay, az, aw = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bx, by, bz, bw = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return xp.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], -1)


def quat_conj(q):
    xp = _xp(q)
    return xp.concatenate([-q[..., :3], q[..., 3:]], -1) if xp is np else xp.cat([-q[..., :3], q[..., 3:]], -1)


def rotation_error(q_des, q_cur, weight: float = ORIENTATION_WEIGHT_M_PER_RAD):
    """World-frame axis * angle (rad) of ``q_des * q_cur^-1`` (shortest way), times ``weight`` (m/rad)."""
    xp = _xp(q_des)
    dq = quat_mul(q_des, quat_conj(q_cur))
    w = xp.clip(dq[..., 3], -1.0, 1.0)
    sign = xp.where(w < 0, -1.0, 1.0)
    vec = dq[..., :3]
    norm = xp.sqrt((vec * vec).sum(-1))
    safe = xp.where(norm > 1e-9, norm, 1.0)
    scale = xp.where(norm > 1e-9, sign * 2.0 * xp.arccos(xp.abs(w)) / safe * weight, 0.0)
    return vec * scale[..., None]


def dls_step(jac, err, damping: float = IK_DAMPING):
    """Joint step ``J^T (J J^T + damping^2 I)^-1 err`` for ``jac`` (..., m, n) and ``err`` (..., m).
    numpy: LAPACK's solve; torch: the same formula batch last (``_dls_step_batch_last``)."""
    xp = _xp(jac)
    if xp is not np:
        *batch, m, n = jac.shape
        flat = jac.reshape(-1, m, n).permute(2, 1, 0)  # (n, m, B): no copy when jac is a view of that layout
        return _dls_step_batch_last(flat, err.reshape(-1, m).T, damping).T.reshape(*batch, n)
    m = jac.shape[-2]
    # products by broadcasting: batched matmul of 6x7 blocks is slower on the CPU for large batches
    jjt = (jac[..., :, None, :] * jac[..., None, :, :]).sum(-1) + (damping**2) * np.eye(m, dtype=jac.dtype)
    sol = np.linalg.solve(jjt, err[..., None])
    return (jac * sol).sum(-2)


def _dls_step_batch_last(jac, err, damping: float):
    """``dls_step`` for torch with the batch last: ``jac`` (n, m, N) (joint-major), ``err`` (m, N) ->
    (n, N). Rows of N contiguous floats and a Cholesky solve written out over them: on a CPU the
    batched LAPACK calls on N tiny matrices and the (N, m, m, n) product cost ~4x more; it works
    on any device and has no host reads (a CUDA graph can capture it)."""
    from simgate.sim.batch_linalg import cholesky, cholesky_solve

    n, m = jac.shape[0], jac.shape[1]
    a = jac[0][:, None] * jac[0][None]  # J J^T, (m, m, N)
    for k in range(1, n):
        a.addcmul_(jac[k][:, None], jac[k][None])
    low, inv_diag = cholesky(a, m, [damping**2] * m)  # J J^T + damping^2 I: positive definite
    x = cholesky_solve(low, inv_diag, err)
    sol = x[0][None] * jac[:, 0]
    for i in range(1, m):
        sol = sol.addcmul_(x[i][None], jac[:, i])
    return sol


def ik_step(q_arm, tool_pos, tool_quat, jac_lin, jac_ang, target_pos, down_quat=None,
            weight: float = ORIENTATION_WEIGHT_M_PER_RAD, damping: float = IK_DAMPING):
    """Arm joint targets after one DLS step from ``q_arm`` (..., dof) towards ``target_pos`` (..., 3);
    with ``down_quat`` (4,) the tool's orientation is pulled towards it on rows weighted by ``weight``."""
    xp = _xp(q_arm)
    cat = np.concatenate if xp is np else xp.cat
    err = target_pos - tool_pos
    jac = jac_lin
    if down_quat is not None:
        err = cat([err, rotation_error(down_quat, tool_quat, weight)], -1)
        if xp is np or jac_lin.dim() != 3:
            jac = cat([jac_lin, jac_ang * weight], -2)
        else:  # stacked joint-major, handed on as an (N, m, dof) view: dls_step works in that layout
            jac = cat([jac_lin.permute(2, 1, 0), jac_ang.permute(2, 1, 0) * weight], 1).permute(2, 1, 0)
    return q_arm + dls_step(jac, err, damping)


def ee_target(tool_pos, action_xyz, max_ee_step_m: float, min_z_m):
    """Tool target of an ``ee`` action in [-1, 1]^3: a displacement of ``max_ee_step_m`` per unit,
    never below ``min_z_m``."""
    xp = _xp(tool_pos)
    target = tool_pos + action_xyz * max_ee_step_m
    z = xp.maximum(target[..., 2], min_z_m) if xp is np else xp.clamp(target[..., 2], min=min_z_m)
    return (np.concatenate if xp is np else xp.cat)([target[..., :2], z[..., None]], -1)


def limit_command(target, previous, step_limit, lower, upper, dof: int):
    """Joint command actually sent, and whether it was clipped / hits a limit.

    The arm's step (first ``dof`` entries) is scaled as a whole so that no joint exceeds
    ``step_limit`` (the tool keeps its direction of motion), then every joint is clipped to
    ``previous +- step_limit`` and to ``[lower, upper]``. Returns ``(sent, clipped, limit_hit)``
    with ``clipped``/``limit_hit`` of the batch shape.
    """
    xp = _xp(target)
    cat = np.concatenate if xp is np else xp.cat
    delta = target[..., :dof] - previous[..., :dof]
    ratio = (xp.abs(delta) / step_limit[..., :dof]).max(-1)
    if xp is not np:
        ratio = ratio.values
    scale = 1.0 / xp.maximum(ratio, xp.ones_like(ratio)) if xp is not np else 1.0 / np.maximum(ratio, 1.0)
    scaled = cat([previous[..., :dof] + delta * scale[..., None], target[..., dof:]], -1)
    lo = xp.maximum(lower, previous - step_limit)
    hi = xp.minimum(upper, previous + step_limit)
    sent = xp.minimum(xp.maximum(scaled, lo), hi)
    moved = (xp.abs(sent[..., :dof] - scaled[..., :dof]) > CLIP_TOLERANCE).any(-1)
    clipped = (ratio > 1.0) | moved
    arm = sent[..., :dof]
    hit = ((arm <= lower[..., :dof] + LIMIT_HIT_MARGIN_RAD) | (arm >= upper[..., :dof] - LIMIT_HIT_MARGIN_RAD)).any(-1)
    return sent, clipped, hit
