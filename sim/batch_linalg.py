"""Small dense linear algebra with the batch last, for the twin's IK step and motor solve.

A matrix is indexed ``a[i][j]`` -> a row of N contiguous values (a (m, m, N) tensor, or lists of
them): every op then touches N floats at once. On a CPU this is several times faster than the
batched LAPACK calls on N tiny matrices (and their (N, m, m) layout copies); it works on any
device and never reads a value back to the host (a CUDA graph can capture it). Only tensor
methods are used: no torch import here.
"""

from __future__ import annotations


def _minus_product(s, a, b):
    """``s - a * b`` in one kernel."""
    return s.addcmul(a, b, value=-1.0)


def cholesky(a, m: int, diag_add=None):
    """Lower factor of the symmetric positive definite ``a`` (plus ``diag_add[i]`` on the diagonal,
    if given): ``(low, inv_diag)`` with ``low[i][j]`` (i > j) and ``inv_diag[i] = 1 / L[i][i]``."""
    low = [[None] * m for _ in range(m)]
    inv_diag = [None] * m
    for j in range(m):
        s = a[j][j] if diag_add is None else a[j][j] + diag_add[j]
        for k in range(j):
            s = _minus_product(s, low[j][k], low[j][k])
        inv_diag[j] = s.rsqrt()
        for i in range(j + 1, m):
            s = a[i][j]
            for k in range(j):
                s = _minus_product(s, low[i][k], low[j][k])
            low[i][j] = s * inv_diag[j]
    return low, inv_diag


def cholesky_solve(low, inv_diag, b) -> list:
    """Rows of x with ``L L^T x = b`` (``b[i]``: rows of N)."""
    m = len(inv_diag)
    y = []
    for i in range(m):  # L y = b
        s = b[i]
        for k in range(i):
            s = _minus_product(s, low[i][k], y[k])
        y.append(s * inv_diag[i])
    x = [None] * m
    for i in reversed(range(m)):  # L^T x = y
        s = y[i]
        for k in range(i + 1, m):
            s = _minus_product(s, low[k][i], x[k])
        x[i] = s * inv_diag[i]
    return x


def spd_inverse(low, inv_diag) -> list[list]:
    """``(L L^T)^-1`` as ``inv[i][j]`` rows (symmetric: both halves name the same tensors)."""
    m = len(inv_diag)
    w = [[None] * m for _ in range(m)]  # W = L^-1, lower triangular
    for i in range(m):
        w[i][i] = inv_diag[i]
        for j in range(i):
            s = low[i][j] * w[j][j]
            for k in range(j + 1, i):
                s = s.addcmul(low[i][k], w[k][j])
            w[i][j] = -s * inv_diag[i]
    inv = [[None] * m for _ in range(m)]
    for i in range(m):  # (L^-T L^-1)[i][j] = sum over k >= max(i, j) of W[k][i] W[k][j]
        for j in range(i, m):
            s = w[j][i] * w[j][j]
            for k in range(j + 1, m):
                s = s.addcmul(w[k][i], w[k][j])
            inv[i][j] = inv[j][i] = s
    return inv
