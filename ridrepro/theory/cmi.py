"""Conditional mutual information I(X; Y | Z) with a discrete Y and continuous X, Z, by nearest neighbours.

Used to measure the paper's Section 4 assumption I(eps; Y | f_s(S)) = 0 on the neural toy, where the
residual eps = f_t(T) - f_s(S) and the student's filtered representation f_s(S) are real vectors and the
label Y is a class.

Estimator (`knn_cmi`). The Frenzel-Pompe / Kraskov-Stoegbauer-Grassberger construction with the discrete
variable treated as an exact match (Ross 2014's device for discrete-continuous mutual information): for
each sample i, eps_i is the distance (max norm) to its k-th nearest neighbour in the joint (X, Z) space
among the samples with the same label y_i; then, counting the samples other than i strictly within
eps_i,

    n_xz  in (X, Z) over all labels,   n_yz  in Z among the same label,   n_z  in Z over all labels,

    I(X; Y | Z) = psi(k) - < psi(n_xz + 1) + psi(n_yz + 1) - psi(n_z + 1) >    (nats)

(with k replaced by the label's size minus one where a label has fewer samples). With Z empty it is
Ross's estimator of I(X; Y): psi(N) + psi(k) - < psi(N_y) + psi(m) > up to the same convention. Like
every kNN estimator it is biased at finite N; `local_permutation_null` gives the bias under conditional
independence on the data at hand, which is how the book reports it.

Null (`local_permutation_null`). Y is permuted within cells of Z (KMeans cells of about `cell_size`
samples). Within a cell this makes Y independent of (X, Z), so the permuted data satisfy
I(X; Y | Z) = 0 exactly while keeping the marginal of (X, Z) and the dependence of Y on Z's cell; the
estimates on permuted copies are the estimator's distribution under the hypothesis.

Inputs are standardised per column first (the conditional mutual information does not change under an
invertible map of X given Z, nor of Z, so this only puts the coordinates on one scale for the max norm).
"""

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma


def _as_2d(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (n,) or (n, d), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values")
    return a


def _standardise(a):
    sd = a.std(0)
    return (a - a.mean(0)) / np.where(sd > 0, sd, 1.0)


def _jitter(a, rng, scale=1e-10):
    # ties (repeated points) make kNN counts ambiguous; a tiny jitter, far below the data's scale, breaks them
    return a + scale * rng.standard_normal(a.shape)


def _count_within(tree, points, radii):
    """For each point, the number of tree points strictly within its radius (max norm), itself excluded."""
    # query_ball_point with r slightly below radius gives "strictly within"; the point itself is counted once
    r = np.nextafter(radii, 0)
    return np.asarray(tree.query_ball_point(points, r, p=np.inf, return_length=True)) - 1


def knn_cmi(x, y, z=None, k=5, seed=0):
    """I(X; Y | Z) in nats for continuous X (n, dx), discrete Y (n,) and continuous Z (n, dz) or None.

    With z None it estimates I(X; Y). Samples whose label occurs once carry no neighbour and are left out.
    """
    x = _as_2d(x, "x")
    y = np.asarray(y)
    n = len(x)
    if y.shape != (n,):
        raise ValueError(f"y must be (n,) = ({n},), got {y.shape}")
    rng = np.random.default_rng(seed)
    x = _jitter(_standardise(x), rng)
    if z is None:
        z = np.zeros((n, 0))
    else:
        z = _jitter(_standardise(_as_2d(z, "z")), rng)
        if len(z) != n:
            raise ValueError(f"z has {len(z)} rows, x has {n}")
    xz = np.hstack([x, z])
    labels, counts = np.unique(y, return_counts=True)
    eps = np.full(n, np.nan)
    kk = np.zeros(n)
    n_yz = np.zeros(n)
    for label, count in zip(labels, counts):
        idx = np.flatnonzero(y == label)
        if count < 2:
            continue
        kl = min(k, count - 1)
        d, _ = cKDTree(xz[idx]).query(xz[idx], k=kl + 1, p=np.inf)
        eps[idx] = d[:, -1]
        kk[idx] = kl
        if z.shape[1]:
            n_yz[idx] = _count_within(cKDTree(z[idx]), z[idx], eps[idx])
        else:
            n_yz[idx] = count - 1
    keep = np.isfinite(eps)
    eps, kk, n_yz = eps[keep], kk[keep], n_yz[keep]
    n_xz = _count_within(cKDTree(xz), xz[keep], eps)
    if z.shape[1]:
        n_z = _count_within(cKDTree(z), z[keep], eps)
    else:
        n_z = np.full(len(eps), n - 1)
    return float(np.mean(digamma(kk) - digamma(n_xz + 1) - digamma(n_yz + 1) + digamma(n_z + 1)))


def local_permutation(y, z, cell_size=100, seed=0):
    """Y permuted within KMeans cells of Z of about `cell_size` samples (Y independent of everything else
    within a cell, the cell's label counts kept)."""
    from sklearn.cluster import KMeans

    y = np.asarray(y)
    z = _standardise(_as_2d(z, "z"))
    rng = np.random.default_rng(seed)
    cells = max(1, len(y) // cell_size)
    cell = KMeans(cells, n_init=1, random_state=seed).fit_predict(z) if cells > 1 else np.zeros(len(y), int)
    out = y.copy()
    for c in np.unique(cell):
        idx = np.flatnonzero(cell == c)
        out[idx] = y[rng.permutation(idx)]
    return out


def local_permutation_null(x, y, z, n_perm=20, k=5, cell_size=100, seed=0):
    """knn_cmi on `n_perm` copies of the data with Y permuted within cells of Z: the estimator's values
    where I(X; Y | Z) = 0 holds exactly."""
    return np.array([knn_cmi(x, local_permutation(y, z, cell_size, seed + 1 + i), z, k=k, seed=seed)
                     for i in range(n_perm)])


def plugin_cmi(a, b, c):
    """Plug-in I(A; B | C) in nats of three integer codes (the histogram's conditional mutual information)."""
    a, b, c = (np.asarray(v, dtype=np.int64) for v in (a, b, c))
    P = np.zeros((a.max() + 1, b.max() + 1, c.max() + 1))
    np.add.at(P, (a, b, c), 1.0)
    P /= P.sum()
    pc = P.sum((0, 1))
    pac = P.sum(1)
    pbc = P.sum(0)
    nz = P > 0
    num = P * pc[None, None, :]
    den = pac[:, None, :] * pbc[None, :, :]
    return float(np.sum(P[nz] * np.log(num[nz] / den[nz])))
