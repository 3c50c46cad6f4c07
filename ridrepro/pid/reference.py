"""Independent reference: the BROJA program written for cvxpy and solved by Clarabel.

Vectorised (one variable vector over the support, sparse marginal maps), unlike the scalar-by-scalar
model of the estimator the paper used. cvxpy is imported here only, lazily, so the default solver
never needs it. Only entries with P(t,y) > 0 and P(s,y) > 0 become variables: the others are 0 in
every Q of Delta_P, and leaving them in is what makes generic solvers slow or inaccurate.
"""

import numpy as np
import scipy.sparse as sp

from .measures import _h, validate_joint
from .result import result_from_bounds


def broja_pid_cvxpy(P, unit="bits", normalize=False):
    """BROJA PID of P[t, s, y] with cvxpy + Clarabel. gap is NaN: Clarabel's own tolerances
    (about 1e-8) are the only accuracy statement, which is why the default solver exists."""
    import cvxpy as cp

    P = validate_joint(P, ndim=3, normalize=normalize)
    nt, ns, ny = P.shape
    Pty, Psy = P.sum(1), P.sum(0)
    t, s, y = np.nonzero((Pty[:, None, :] > 0) & (Psy[None, :, :] > 0))
    n = len(t)
    ones = np.ones(n)
    # Marginal maps restricted to rows that can be nonzero, and the (t, s) block-sum map.
    A_ty = sp.csr_matrix((ones, (t * ny + y, np.arange(n))), shape=(nt * ny, n))
    A_sy = sp.csr_matrix((ones, (s * ny + y, np.arange(n))), shape=(ns * ny, n))
    rows_t, rows_s = np.flatnonzero(Pty.ravel() > 0), np.flatnonzero(Psy.ravel() > 0)
    blocks, block_of = np.unique(t * ns + s, return_inverse=True)
    S = sp.csr_matrix((ones, (block_of, np.arange(n))), shape=(len(blocks), n))
    q = cp.Variable(n, nonneg=True)
    # sum_k rel_entr(q_k, Q(t,s)_k) = sum Q log Q(y|t,s) = -H_Q(Y|T,S): convex, exponential-cone.
    objective = cp.Minimize(cp.sum(cp.rel_entr(q, S.T @ (S @ q))))
    constraints = [A_ty[rows_t] @ q == Pty.ravel()[rows_t], A_sy[rows_s] @ q == Psy.ravel()[rows_s]]
    problem = cp.Problem(objective, constraints)
    # Tighter than Clarabel's 1e-8 defaults, so that the reference is a meaningful check at 1e-7 bits.
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, max_iter=500)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"Clarabel did not solve the BROJA program: status {problem.status}")
    Q = np.zeros_like(P)
    Q[t, s, y] = np.maximum(q.value, 0.0)
    j = _h(P, (2,)) + float(problem.value)
    res = result_from_bounds(P, j, j, Q, unit, "cvxpy", int(problem.solver_stats.num_iters or 0))
    res.gap = float("nan")
    return res
