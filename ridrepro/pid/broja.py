"""BROJA partial information decomposition: a certified primal-dual interior-point solver.

All four atoms follow from J* = min_{Q in Delta_P} I_Q(Y; T, S) (see the book's PID solver page, book/pid_solver.md):
    uni_t = J* - I(Y;S),  uni_s = J* - I(Y;T),  red = I(Y;T) + I(Y;S) - J*,  syn = I(Y;T,S) - J*.
Write J* = H(Y) + f*, f* = min_Q sum Q log Q(y|t,s). Its convex dual (pid.md) is
    max  sum lam(t,y) P(t,y) + sum mu(s,y) P(s,y)   s.t.  g_ts = logsumexp_y (lam(t,y) + mu(s,y)) <= 0,
with one smooth constraint per (t, s) block and multipliers m_ts = Q(t,s); the primal is recovered
as Q(t,s,y) = m_ts softmax_y(lam(t,y) + mu(s,y)). Only y with P(t,y) > 0 and P(s,y) > 0 enter a block
(every other Q(t,s,y) is forced to 0), so zero probabilities are removed exactly, never approximated.

Method: a primal-dual interior-point method on that dual (slacks s_ts = -g_ts, multipliers m_ts),
with Mehrotra's predictor-corrector centring. Why hand-written rather than a conic solver: the Newton
system is small ((|T|+|S|)|Y| unknowns, 200 at 10x10x10), assembled in closed form from the softmax
blocks, and block structured, so an iteration is a few dozen vectorised numpy calls and one Cholesky
factorisation of a (|S||Y|)^2 Schur complement (_newton_factor), and 10-15 iterations reach 1e-11.
Robustness (details at _solve_batch): the dual iterate stays strictly feasible and steps are accepted
by backtracking on the log-barrier merit; the block masses m are separate variables, so they stay
accurate when the slacks reach round-off; the corrector corrects for the constraints' curvature, and
centring stays gentle until full steps show that Newton's model holds.

Certificate. Any (lam, mu) becomes dual feasible after subtracting max_ts g_ts from lam, so
L = H(Y) + dual value is a rigorous lower bound on J*. The iterate's Q is I-projected onto the exact
marginal constraints (multiplicative scaling, so Q >= 0 and forced zeros stay zero), so
U = H(Y) + f(Q) is a rigorous upper bound (as is I(Y;T,S) itself, from Q = P). The atoms use a J in
[L, U], hence every atom is within gap = U - L of its exact value (up to float rounding, ~1e-15).
"""

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs

from .measures import _h, validate_joint
from .result import ATOMS, PIDResult, _measures, result_from_bounds  # noqa: F401 (ATOMS, PIDResult: public here too)

# Step and centring rules, tuned on ~1,100 random tables (Dirichlet(1) up to 10x10x10; Dirichlet(0.1)
# and 60 % sparse as in the tests; Dirichlet(0.01-0.3) and multinomial counts from them, up to 8x8x6),
# then checked on 1,600 fresh Dirichlet(0.005-0.1) tables up to 11x11x7 (book/pid_solver.md).
SIGMA_MIN = 0.2  # complementarity falls at most 5x after a step that stopped short ...
SIGMA_FAST = 1e-3  # ... and after n full steps in a row at most 1/max(SIGMA_MIN^(n+1), SIGMA_FAST)
KAPPA = 1e-4  # ... and not below KAPPA x the marginal residual
ALPHA_SHORT = 0.2  # a step shorter than this is followed by a pure centring step
START_SLACK = 0.1  # smallest slack -g of the starting point
BOUNDARY_CUT = 0.95  # first trial of a step cut by the fraction to the boundary, as a share of it
MBAND = 1e10  # m stays within [1/MBAND, MBAND] x its central-path value target / s
DAMPING = 1e-2  # Levenberg-Marquardt damping, in units of the centring target
def _newton_factor(q, p, c, free_t, free_s, damping):
    """Factors of the Newton matrix H = sum over (t,s) blocks k of A_k^T (diag(q_k) + c_k p_k p_k^T) A_k,
    with A_k mapping x = (lam, mu) to lam(t, .) + mu(s, .), plus `damping` (B,) on the diagonal.

    H is never formed. Its lam part A is block diagonal (lam(t, .) meets only lam(t, .)), and so is
    its mu part D, so eliminating lam one (ny x ny) block at a time leaves a single dense Cholesky,
    of the Schur complement S = D - C^T A^-1 C on the mu variables: (ns ny)^3 / 3 flops instead of
    ((nt + ns) ny)^3 / 3 and no work on zero blocks (the caller puts the larger alphabet on t).
    Pinned variables (free_* == 0) get identity rows: off the support their rows are already zero
    (p = 0 there), and the gauge-pinned mu(s, y) are cut out of C and D. If round-off late in the
    path makes a factorisation fail, each diagonal entry of H is raised by a small multiple of
    itself: each step is only a search direction, the certificate is computed apart. (A ridge
    relative to the largest diagonal entry, a near-active block's barrier term of ~1e11 there,
    swamps the curvature of the marginals and stalls them: a peaked 8x3x6 table ended at 1.4e-9.)
    Returns (Linv, W, [factor of S per member]), with A = L L^T per t, Linv = L^-1, W = Linv C."""
    B, nt, ns, ny = q.shape
    iy = np.arange(ny)
    # C[t, y, s, y'] = the (t, s) block, laid out so that C reshapes to the lam-mu part of H.
    C = (c[..., None] * p).transpose(0, 1, 3, 2)[..., None] * p[:, :, None, :, :]
    C[:, :, iy, :, iy] += q.transpose(3, 0, 1, 2)
    A = C.sum(3)
    A[..., iy, iy] += 1.0 - free_t
    D = C.sum(1).transpose(0, 2, 1, 3) * (free_s[..., :, None] * free_s[..., None, :])
    D[..., iy, iy] += 1.0 - free_s
    C = C.reshape(B, nt, ny, ns * ny)
    C *= free_s.reshape(B, 1, 1, ns * ny)
    for ridge in [0.0] + [10.0**k for k in range(-14, -4)]:
        try:
            if ridge:
                A, D = A.copy(), D.copy()
                A[..., iy, iy] *= 1.0 + ridge
                D[..., iy, iy] *= 1.0 + ridge
            return _eliminate(A, C, D, damping)
        except np.linalg.LinAlgError:
            pass
    raise np.linalg.LinAlgError("Newton matrix is not positive definite")


def _eliminate(A, C, D, d):
    """Block elimination of [[A, C], [C^T, D]] + diag(d) for _newton_factor (A, D: diagonal blocks)."""
    B, nt, ny, _ = A.shape
    ns = D.shape[1]
    iy = np.arange(ny)
    A = A.copy()
    A[..., iy, iy] += d[:, None, None]
    # Explicit inverses of the small triangular factors, so that applying them to all of C (and
    # later to right-hand sides) is one batched matrix product, not nt solver calls.
    linv = np.linalg.inv(np.linalg.cholesky(A))
    W = np.matmul(linv, C).reshape(B, nt * ny, ns * ny)
    S = np.matmul(W.transpose(0, 2, 1), W)
    np.negative(S, out=S)
    S.reshape(B, ns, ny, ns, ny)[:, np.arange(ns), :, np.arange(ns), :] += D.transpose(1, 0, 2, 3)
    S.reshape(B, -1)[:, :: ns * ny + 1] += d[:, None]
    return linv, W, [_potrf(S_i) for S_i in S]


def _potrf(a):
    """Lower Cholesky factor via LAPACK directly (numpy's wrapper costs more than a 100x100 dpotrf);
    the upper triangle keeps a's values, which dpotrs never reads."""
    c, info = dpotrf(a, lower=1, clean=0)
    if info != 0:
        raise np.linalg.LinAlgError("not positive definite")
    return c


def _newton_solve(F, b):
    """Solve H x = b for each member, with the factors from _newton_factor:
    [[A, C], [C^T, D]] x = b: y = L^-1 b_1, S x_2 = b_2 - W^T y, x_1 = L^-T (y - W x_2)."""
    linv, W, factors = F
    B, nt, ny, _ = linv.shape
    n1 = nt * ny
    out = np.empty_like(b)
    y = np.matmul(linv, b[:, :n1].reshape(B, nt, ny, 1)).reshape(B, n1)
    for i, c in enumerate(factors):
        out[i, n1:] = dpotrs(c, b[i, n1:] - W[i].T @ y[i], lower=1)[0]
    r = (y - np.matmul(W, out[:, n1:, None])[..., 0]).reshape(B, nt, ny, 1)
    out[:, :n1] = np.matmul(linv.transpose(0, 1, 3, 2), r).reshape(B, n1)
    return out


def _project(Q, Pty, Psy, steps=30):
    """Scale Q[t,s,y] -> Q exp(a(t,y) + b(s,y)) so that its marginals match exactly.

    This is the I-projection of Q onto the marginal constraints, solved per y by damped Newton on
    the convex dual F(a, b) = sum A exp(a + b) - r.a - c.b. Multiplicative scaling keeps zeros zero
    and Q >= 0. Returns (Q, per-member max abs marginal residual).
    """
    B, nt, ns, ny = Q.shape
    A = Q.transpose(0, 3, 1, 2).reshape(B * ny, nt, ns)
    r = Pty.transpose(0, 2, 1).reshape(B * ny, nt)
    c = Psy.transpose(0, 2, 1).reshape(B * ny, ns)
    free = np.concatenate([r > 0, c > 0], 1)
    free[np.arange(B * ny), nt + c.argmax(1)] = False  # gauge: a + k, b - k changes nothing
    f = free.astype(float)
    n = nt + ns

    def resid(A):
        return np.concatenate([A.sum(2) - r, A.sum(1) - c], 1) * f

    res = resid(A)
    best, stalled = np.inf, 0
    for _ in range(steps):
        err = np.abs(res).max(1).max()
        if err < 1e-17:
            break
        # Marginals near 0.1 cannot be matched closer than their rounding (~1e-17): there the steps
        # only make the residual dither, so stop once it has not improved for 3 steps (the
        # certificate accepts a residual below 1e-14).
        stalled = stalled + 1 if err >= best else 0
        best = min(best, err)
        if stalled >= 3 and best < 1e-15:
            break
        H = np.zeros((B * ny, n, n))
        H[:, :nt, nt:] = A
        H[:, nt:, :nt] = A.transpose(0, 2, 1)
        H[:, np.arange(nt), np.arange(nt)] = A.sum(2)
        H[:, nt + np.arange(ns), nt + np.arange(ns)] = A.sum(1)
        H *= f[:, :, None]
        H *= f[:, None, :]
        H[:, np.arange(n), np.arange(n)] += 1.0 - f
        try:
            d = np.linalg.solve(H, -res[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a y whose (t, s) support splits; the certificate will say so
            break
        # Backtrack on F itself (Newton's direction is a descent direction for F, not for the
        # residual norm); expm1 keeps the change of F accurate when it is tiny.
        d *= np.minimum(1.0, 20.0 / np.maximum(np.abs(d).max(1), 1e-300))[:, None]
        d *= f
        e = d[:, :nt, None] + d[:, None, nt:]
        lin = (r * d[:, :nt]).sum(1) + (c * d[:, nt:]).sum(1)
        slope = (res * d).sum(1)
        step = np.ones(B * ny)
        for _ in range(30):
            dF = (A * np.expm1(step[:, None, None] * e)).sum((1, 2)) - step * lin
            ok = dF <= 1e-4 * step * slope + 1e-17
            if ok.all():
                break
            step = np.where(ok, step, 0.5 * step)
        A = np.where(ok[:, None, None], A * np.exp(step[:, None, None] * e), A)
        res = resid(A)
    Q = np.ascontiguousarray(A.reshape(B, ny, nt, ns).transpose(0, 2, 3, 1))
    err = np.maximum(np.abs(Q.sum(2) - Pty).max((1, 2)), np.abs(Q.sum(1) - Psy).max((1, 2)))
    return Q, err


def _neg_cond_entropy(Q):
    """f(Q) = sum Q log Q(y|t,s) in nats, per batch member (0 log 0 = 0)."""
    qts = Q.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(Q > 0, Q * np.log(Q / np.where(qts > 0, qts, 1.0)), 0.0)
    return terms.sum((1, 2, 3))


def _bounds(bt, x, q):
    """Rigorous (lower, upper, Q) for J* = H(Y) + min f(Q) from any iterate (nats).

    lower: x shifted by max_k g_k is dual feasible, and weak duality bounds f* from below.
    upper: q projected onto the marginal constraints is primal feasible; P itself always is.
    """
    g, _ = bt.softmax(x)
    dual = (x * bt.b).sum(1) - np.where(bt.blk, g, -np.inf).max((1, 2))
    # Entries the marginals need may have underflowed to 0 in q; a 1e-13 share of the strictly
    # positive feasible coupling Q0 restores full support (costing at most 1e-13 log|Y| in f).
    q0 = bt.Pty[:, :, None, :] * bt.Psy[:, None, :, :] / np.where(bt.Py > 0, bt.Py, 1.0)[:, None, None, :]
    Q, err = _project((1.0 - 1e-13) * q + 1e-13 * q0, bt.Pty, bt.Psy)
    fq = _neg_cond_entropy(Q)
    fp = _neg_cond_entropy(bt.P)
    # A Q that could not be matched to the marginals is discarded for P.
    use_q = (fq < fp) & (err < 1e-14)
    upper = np.where(use_q, fq, fp)
    Q = np.where(use_q[:, None, None, None], Q, bt.P)
    return dual + bt.hy, upper + bt.hy, Q


class _Batch:
    """Fixed data of a padded batch P (B, nt, ns, ny): supports, pinned variables, H(Y), and the
    maps between x = (lam, mu) (shape (B, n), n = (nt + ns) ny) and the (t, s) blocks."""

    def __init__(self, P):
        self.P = P
        B, nt, ns, ny = P.shape
        self.shape = P.shape
        self.Pty, self.Psy, self.Py = P.sum(2), P.sum(1), P.sum((1, 2))
        self.mt, self.ms = self.Pty > 0, self.Psy > 0
        self.M = self.mt[:, :, None, :] & self.ms[:, None, :, :]
        self.blk = self.M.any(-1)
        self.dense = bool(self.M.all())  # no zeros anywhere: masking can be skipped
        self.blkf = self.blk.astype(float)
        self.K = np.maximum(self.blk.sum((1, 2)), 1)
        ms_free = self.ms.copy()
        bb, yy = np.meshgrid(np.arange(B), np.arange(ny), indexing="ij")
        ms_free[bb, self.Psy.argmax(1), yy] = False
        self.free_t, self.free_s = self.mt.astype(float), ms_free.astype(float)
        self.free = np.concatenate([self.free_t.reshape(B, -1), self.free_s.reshape(B, -1)], 1)
        self.b = np.concatenate([self.Pty.reshape(B, -1), self.Psy.reshape(B, -1)], 1)
        self.hy = np.array([_h(P[i], (2,)) for i in range(B)])

    def split(self, x):
        B, nt, ns, ny = self.shape
        return x[:, : nt * ny].reshape(B, nt, ny), x[:, nt * ny:].reshape(B, ns, ny)

    def softmax(self, x):
        """g_k = logsumexp_y (lam(t,y) + mu(s,y)) over the block's support, and p_k = softmax."""
        lam, mu = self.split(x)
        c = lam[:, :, None, :] + mu[:, None, :, :]
        if self.dense:
            cmax = c.max(-1)
            e = np.exp(c - cmax[..., None])
            z = e.sum(-1)
        else:
            c = np.where(self.M, c, -np.inf)
            cmax = np.where(self.blk, c.max(-1), 0.0)
            e = np.exp(c - cmax[..., None])
            z = np.where(self.blk, e.sum(-1), 1.0)
        return cmax + np.log(z), e / z[..., None]

    def residual(self, q):
        """Marginals of q[t, s, y] minus those of P, stacked like x; pinned entries zeroed."""
        B = q.shape[0]
        r = np.concatenate([(q.sum(2) - self.Pty).reshape(B, -1), (q.sum(1) - self.Psy).reshape(B, -1)], 1)
        return r * self.free

    def jt(self, w, p):
        """J^T w = sum over blocks of w_k p_k, scattered to (lam, mu)."""
        wp = w[..., None] * p
        B = w.shape[0]
        return np.concatenate([wp.sum(2).reshape(B, -1), wp.sum(1).reshape(B, -1)], 1)

    def j(self, dx, p):
        """J dx: the first-order change of every g_k."""
        dlam, dmu = self.split(dx)
        return (p * (dlam[:, :, None, :] + dmu[:, None, :, :])).sum(-1)


def _max_step(v, dv, tau):
    """Largest step in [0, 1] keeping v + a dv >= (1 - tau) v (fraction to the boundary)."""
    neg = dv < 0
    with np.errstate(over="ignore"):  # v / -dv beyond the float range is an infinite step: fine
        ratio = np.divide(v, -dv, out=np.full_like(v, np.inf), where=neg).min((1, 2))
    return np.minimum(1.0, tau * ratio)


def _solve_batch(P, tol=1e-11, max_iter=100):
    """Certified BROJA solve for a padded batch P (B, nt, ns, ny).

    Returns (lower, upper, Q, iters): rigorous bounds on J* = min I_Q(Y;T,S) in nats and a
    feasible Q achieving `upper`.

    Primal-dual interior point on the dual with Mehrotra's centring. The dual iterate x stays
    strictly feasible (s = -g(x) > 0); the block masses m are variables of their own, fixed by the
    marginal equations (linear in m), so they stay accurate when s reaches round-off. Steps are
    accepted by backtracking on the log-barrier merit phi(x) = -b.x - nu sum log s, for which the
    primal-dual step (without corrector) is a descent direction; phi is convex and coercive up to
    the gauge because the primal has the strictly positive feasible point Q0. Invariants on empty
    blocks (padding, zeros): s = 1, m = 0, p = 0.
    """
    if P.shape[2] > P.shape[1]:  # J* is symmetric in T, S; _newton_factor wants the larger one on t
        lower, upper, Q, iters = _solve_batch(P.transpose(0, 2, 1, 3), tol, max_iter)
        return lower, upper, np.ascontiguousarray(Q.transpose(0, 2, 1, 3)), iters
    bt = _Batch(P)
    B = P.shape[0]
    blk = bt.blk
    # Start where softmax reproduces the conditionally independent coupling
    # Q0 = P(t,y) P(s,y) / P(y), shifted so that every slack is >= START_SLACK; m = Q0's block
    # masses. (A slack of 1, as first written, starts complementarity ~10x higher: 2 more iterations.)
    lpy = np.log(np.where(bt.Py > 0, bt.Py, 1.0))
    lam = np.where(bt.mt, np.log(np.where(bt.mt, bt.Pty, 1.0)) - 0.5 * lpy[:, None, :], 0.0)
    mu = np.where(bt.ms, np.log(np.where(bt.ms, bt.Psy, 1.0)) - 0.5 * lpy[:, None, :], 0.0)
    x = np.concatenate([lam.reshape(B, -1), mu.reshape(B, -1)], 1)
    g, p = bt.softmax(x)
    gmax = np.where(blk, g, -np.inf).max((1, 2))
    x[:, : lam[0].size] -= (gmax + START_SLACK)[:, None] * bt.mt.reshape(B, -1)
    s = np.where(blk, gmax[:, None, None] + START_SLACK - g, 1.0)
    m = np.where(blk, np.exp(g), 0.0)

    def merit(x, s, nu, b):
        return -(x * b).sum(1) - nu * np.log(s).sum((1, 2))  # log s = 0 on empty blocks

    work = np.arange(B)  # the members still iterating, as indices into P
    lower, upper = np.full(B, -np.inf), np.full(B, np.inf)
    Q = P.copy()
    iters = np.zeros(B, int)
    target_prev = np.ones(B)
    stale = np.zeros(B, int)
    n_full = np.zeros(B)  # consecutive full steps (alpha = 1 for x and m)
    alpha = np.ones(B)
    for it in range(max_iter):
        q = m[..., None] * p
        r_d = bt.residual(q)
        ms_ = m * s
        nu = ms_.sum((1, 2)) / bt.K
        res = np.abs(r_d).max(1)
        # Certify once the barrier gap K nu is near tol; keep each member's best bracket, and stop a
        # member when it is within tol or has stopped improving (slacks at round-off).
        check = (bt.K * nu < 10 * tol) | (it >= 25) & (it % 4 == 0) | (it == max_iter - 1)
        if check.any():
            ic = np.flatnonzero(check)
            idx = work[ic]
            lo, up, Qc = _bounds(_Batch(P[idx]) if len(ic) < len(work) else bt, x[ic], q[ic])
            better = up - lo < upper[idx] - lower[idx]
            stale[idx] = np.where(up - lo < 0.5 * (upper[idx] - lower[idx]), 0, stale[idx] + 1)
            lower[idx] = np.where(better, lo, lower[idx])
            upper[idx] = np.where(better, up, upper[idx])
            Q[idx] = np.where(better[:, None, None, None], Qc, Q[idx])
            iters[idx] = np.where(better, it, iters[idx])
            done = np.zeros(len(work), bool)
            done[ic] = (upper[idx] - lower[idx] <= tol) | (stale[idx] >= 6)
            if done.all():
                break
            if done.any():  # finished members leave the batch: the rest iterate without them
                keep = ~done
                work = work[keep]
                x, s, m, p, q, r_d, ms_, nu, res, target_prev, n_full, alpha = (
                    v[keep] for v in (x, s, m, p, q, r_d, ms_, nu, res, target_prev, n_full, alpha))
                bt = _Batch(P[work])
        blk, K = bt.blk, bt.K
        # Levenberg-Marquardt damping that vanishes along the path: a coordinate lam(t,y) with tiny
        # P(t,y) has curvature ~P(t,y) but feels the centring pull ~target p / s of nearly empty
        # blocks, and an undamped step throws it where p underflows and its gradient vanishes.
        F = _newton_factor(q, p, m / s - m, bt.free_t, bt.free_s, DAMPING * target_prev + 1e-15)

        def direction(r_c):
            dx = _newton_solve(F, (bt.jt(r_c / s, p) - r_d) * bt.free)
            ds = -bt.j(dx, p)
            return dx, ds, (-r_c - m * ds) / s

        # Mehrotra: the affine step predicts how far complementarity can fall this iteration.
        dx_a, ds_a, dm_a = direction(ms_)
        a_s, a_m = _max_step(s, ds_a, 1.0), _max_step(m, dm_a, 1.0)
        nu_aff = ((s + a_s[:, None, None] * ds_a) * (m + a_m[:, None, None] * dm_a)).sum((1, 2)) / K
        sigma = np.clip(nu_aff / np.maximum(nu, 1e-300), 0.0, 1.0) ** 3
        # Complementarity may not outrun the marginal residual (the step divides by s, so with s
        # far below the residual it could no longer be resolved), nor fall fast before full steps
        # show the iterate is where Newton's model holds: on peaked tables an aggressive target
        # leaves a few blocks with slacks far below the rest, and the steps then stall.
        # After a short step the next one only re-centres (target = nu): a short step means a block
        # whose slack is far below nu m blocks every direction that also pushes the residual down.
        floor = np.where(alpha < ALPHA_SHORT, 1.0, np.maximum(SIGMA_MIN ** (1 + n_full), SIGMA_FAST))
        target = np.maximum(np.maximum(sigma, floor) * nu, KAPPA * res)
        tb = target[:, None, None] * bt.blkf
        target_prev = target
        # Second-order correction: g is convex, so along a direction the slack -g of a block falls
        # below its linearisation by half the variance under p of the block's direction; the
        # corrector asks for the slack the affine step reaches to second order (ds = -J dx - curv),
        # which steers blocks where g bends strongly away from the boundary.
        dlam, dmu = bt.split(dx_a)
        e = dlam[:, :, None, :] + dmu[:, None, :, :]
        curv = 0.5 * np.maximum((p * e * e).sum(-1) - ds_a * ds_a, 0.0)
        dx, ds, dm = direction(ms_ + ds_a * dm_a - tb - m * curv)
        slope = -(dx * bt.b).sum(1) - (tb / s * ds).sum((1, 2))  # d merit / d alpha at 0: J dx only
        ds = ds - curv
        bad = slope >= 0
        if bad.any():  # the corrector term can spoil descent; the plain centred step cannot
            dx2, ds2, dm2 = direction(ms_ - tb)
            dx = np.where(bad[:, None], dx2, dx)
            ds, dm = np.where(bad[:, None, None], ds2, ds), np.where(bad[:, None, None], dm2, dm)
            slope = -(dx * bt.b).sum(1) - (tb / s * ds).sum((1, 2))
        tau = np.clip(1.0 - nu, 0.99, 1.0 - 1e-8)
        alpha = _max_step(s, ds, tau)
        # A step cut by the fraction to the boundary (alpha < 1) practically never passes its first
        # trial: g is convex, so the blocking slack ends at or below the (1 - tau) s that its
        # linearisation reaches (equal only where g is linear along dx). So the first trial is
        # BOUNDARY_CUT of it; with the second-order correction that usually passes.
        alpha = np.where(alpha < 1.0, BOUNDARY_CUT * alpha, alpha)
        phi0 = merit(x, s, target, bt.b)
        s_floor = (1.0 - tau)[:, None, None] * s
        descent, phi_tol = np.minimum(slope, 0.0), 1e-15 * (np.abs(phi0) + K * target)
        todo = np.ones(len(work), bool)
        for _ in range(40):
            x_t = x + alpha[:, None] * dx
            g_t, p_t = bt.softmax(x_t)
            s_t = np.where(blk, -g_t, 1.0)
            ok = np.all(s_t >= s_floor, (1, 2))
            with np.errstate(invalid="ignore"):
                phi = merit(x_t, np.where(ok[:, None, None], s_t, 1.0), target, bt.b)
            ok &= phi <= phi0 + 1e-4 * alpha * descent + phi_tol
            todo &= ~ok
            if not todo.any():
                break
            alpha = np.where(todo, 0.5 * alpha, alpha)
        if todo.any():  # members whose line search failed keep x
            x = np.where(todo[:, None], x, x_t)
            s = np.where(todo[:, None, None], s, s_t)
            p = np.where(todo[:, None, None, None], p, p_t)
        else:
            x, s, p = x_t, s_t, p_t
        a_m = _max_step(m, dm, tau)
        n_full = np.where((alpha == 1.0) & (a_m == 1.0), n_full + 1, 0)
        m = m + a_m[:, None, None] * dm
        # Keep each m within a wide band around its central-path value target / s.
        m = np.clip(m, tb / (MBAND * s), MBAND * tb / s)
    return lower, upper, Q, iters


# ----------------------------------------------------------------------------------------------
# Public API


def _compress(P):
    """Drop outcomes of T, S, Y with zero probability; returns the smaller table and the kept indices."""
    keep = [np.flatnonzero(P.sum(axis=tuple(a for a in range(3) if a != ax)) > 0) for ax in range(3)]
    return P[np.ix_(*keep)], keep


def broja_pid_batch(tables, unit="bits", normalize=False, tol=1e-11, max_iter=100):
    """BROJA PID of many distributions at once (a list of P[t, s, y], shapes may differ).

    The members share one interior-point loop on a zero-padded batch, so the per-iteration Python
    overhead is paid once; padding adds only pinned variables and empty blocks.
    """
    Ps = [validate_joint(t, ndim=3, normalize=normalize, name=f"P[{i}]") for i, t in enumerate(tables)]
    if not Ps:
        return []
    results = [None] * len(Ps)
    comp = [_compress(P) for P in Ps]
    todo = []
    for i, (Pc, keep) in enumerate(comp):
        if min(Pc.shape) == 1:  # Delta_P = {P} (|T| or |S| = 1), or every Q is optimal (|Y| = 1)
            hy, *_ = _measures(Pc)
            v = hy + _neg_cond_entropy(Pc[None])[0]
            results[i] = result_from_bounds(Ps[i], v, v, Ps[i].copy(), unit, "ip")
        else:
            todo.append(i)
    if todo:
        shape = tuple(max(comp[i][0].shape[a] for i in todo) for a in range(3))
        batch = np.zeros((len(todo),) + shape)
        for j, i in enumerate(todo):
            Pc = comp[i][0]
            batch[j, : Pc.shape[0], : Pc.shape[1], : Pc.shape[2]] = Pc
        lower, upper, Q, iters = _solve_batch(batch, tol=tol, max_iter=max_iter)
        for j, i in enumerate(todo):
            Pc, keep = comp[i]
            q = np.zeros_like(Ps[i])
            q[np.ix_(*keep)] = Q[j, : Pc.shape[0], : Pc.shape[1], : Pc.shape[2]]
            results[i] = result_from_bounds(Ps[i], lower[j], upper[j], q, unit, "ip", int(iters[j]))
    return results


def broja_pid(P, unit="bits", normalize=False, solver="ip", tol=1e-11, max_iter=100):
    """BROJA PID of one distribution P[t, s, y] (numpy array; bits by default).

    solver="ip" (default) is the certified interior-point solver above; solver="cvxpy" is the
    independent cvxpy/Clarabel reference (needs cvxpy installed).
    """
    if solver == "cvxpy":
        from .reference import broja_pid_cvxpy

        return broja_pid_cvxpy(P, unit=unit, normalize=normalize)
    if solver != "ip":
        raise ValueError(f"solver must be 'ip' or 'cvxpy', got {solver!r}")
    P = validate_joint(P, ndim=3, normalize=normalize)
    return broja_pid_batch([P], unit=unit, tol=tol, max_iter=max_iter)[0]
