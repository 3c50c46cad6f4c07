"""From representations to PID: flatten -> (L2-normalise rows) -> PCA(k) -> KMeans(c), for the teacher
and the student separately; the joint histogram of (teacher cluster, student cluster, label) is P[t, s, y].

This is the estimator of paper Appendix C (Liang et al. 2024), made repeatable (explicit seeds and
n_init) and given error bars: a bootstrap over samples and a shuffled-label null, both solved with the
batch solver. Both keep the clustering fixed, so they measure the sampling noise of the histogram,
not the variability of PCA/KMeans themselves (rerun with other seeds for that).
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import normalize

from .broja import ATOMS, broja_pid, broja_pid_batch

# The paper's figures are in nats. sklearn's PCA picks the randomized solver itself for these shapes
# (min(N, D) > 500, k < 0.8 min(N, D)); we name it so results do not change with sklearn's heuristics.
# KMeans: the authors call KMeans(n_clusters) with scikit-learn's defaults, whose n_init is 'auto' (one
# k-means++ run) since 1.4, January 2024; their runs date from December 2024, so paper-code takes n_init = 1
# (protocols.md divergence 12). paper-text's CHOICE is 10 restarts, the steadier clustering.
PRESETS = {
    "paper-code": dict(normalize_rows=True, pca_components=5, n_clusters=10, unit="nats",
                       kmeans_n_init=1, pca_solver="randomized"),
    "paper-text": dict(normalize_rows=True, pca_components=10, n_clusters=10, unit="nats",
                       kmeans_n_init=10, pca_solver="randomized"),
}
OPTIONS = dict(bootstrap=0, null=0, ci=0.95)


def _as_matrix(x, name):
    if hasattr(x, "detach"):  # torch tensor, on any device
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0 or x[0].size == 0:
        raise ValueError(f"{name} must have shape (N, ...) with N > 0 and features, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.reshape(x.shape[0], -1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has {int((~np.isfinite(x)).sum())} non-finite values")
    # float32 halves the memory and time of the PCA on 10,000 x 8,192 features; fine for clustering
    return x.astype(np.float32, copy=False) if x.dtype != np.float64 else x


def discretize(x, settings, seed=0, name="features"):
    """Cluster label (0..c-1) of every row of x: flatten, L2-normalise rows, PCA, KMeans."""
    x = _as_matrix(x, name)
    k, c = settings["pca_components"], settings["n_clusters"]
    if x.shape[0] < c:
        raise ValueError(f"{name}: {x.shape[0]} samples cannot form {c} clusters")
    if k is not None:
        if not 1 <= k <= min(x.shape):
            raise ValueError(f"{name}: PCA to {k} components needs k <= min(N, D) = {min(x.shape)}")
        if settings["normalize_rows"]:
            x = normalize(x)  # all-zero rows stay zero
        x = PCA(n_components=k, svd_solver=settings["pca_solver"], random_state=seed).fit_transform(x)
    elif settings["normalize_rows"]:
        x = normalize(x)
    km = KMeans(n_clusters=c, n_init=settings["kmeans_n_init"], random_state=seed)
    return km.fit_predict(x)


def _histograms(t, s, y, shape, rows):
    """P[t, s, y] for each row-index set in `rows` (R, N): one bincount for all of them."""
    nt, ns, ny = shape
    code = (t * ns + s) * ny + y
    cells = nt * ns * ny
    flat = (code[rows] + cells * np.arange(len(rows))[:, None]).ravel()
    counts = np.bincount(flat, minlength=cells * len(rows)).reshape(len(rows), nt, ns, ny)
    return counts / rows.shape[1]


def pid_from_clusters(t, s, labels, n_clusters=None, unit="nats", bootstrap=0, null=0, ci=0.95, seed=0):
    """PID of the histogram of integer codes (t, s, y); bootstrap CIs and a shuffled-label null."""
    t, s = np.asarray(t), np.asarray(s)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not len(labels) == len(t) == len(s):
        raise ValueError(f"need equally many samples, got teacher {len(t)}, student {len(s)}, labels {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    _, y = np.unique(labels, return_inverse=True)
    nt = n_clusters or int(t.max()) + 1
    ns = n_clusters or int(s.max()) + 1
    shape = (nt, ns, int(y.max()) + 1)
    n = len(y)
    P = _histograms(t, s, y, shape, np.arange(n)[None])[0]
    result = broja_pid(P, unit=unit)
    result.extras["joint_shape"] = list(shape)
    # The integer histogram itself: with it a reader can redo the PID, or any other measure, from a log.
    result.extras["counts"] = np.rint(P * n).astype(int).tolist()
    rng = np.random.default_rng(seed)
    names = [a for a in ATOMS if a != "gap"]
    if bootstrap:
        rows = rng.integers(0, n, size=(bootstrap, n))
        boot = broja_pid_batch(list(_histograms(t, s, y, shape, rows)), unit=unit)
        lo, hi = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
        result.extras["bootstrap"] = {
            "n": bootstrap, "ci": ci,
            **{a: [float(v) for v in np.percentile([getattr(r, a) for r in boot], [lo, hi])] for a in names},
        }
    if null:
        perms = np.stack([rng.permutation(n) for _ in range(null)])
        # Shuffling y against fixed (t, s) keeps every marginal and destroys any dependence on Y.
        shuffled = [_histograms(t, s, y[p], shape, np.arange(n)[None])[0] for p in perms]
        res0 = broja_pid_batch(shuffled, unit=unit)
        result.extras["null"] = {"n": null}
        for a in names:
            v = np.array([getattr(r, a) for r in res0])
            obs = getattr(result, a)
            result.extras["null"][a] = {
                "mean": float(v.mean()), "q95": float(np.percentile(v, 95)),
                "p_value": float((1 + (v >= obs).sum()) / (1 + null)),
            }
    return result


def representation_pid(teacher_feats, student_feats, labels, preset="paper-code", seed=0, **overrides):
    """BROJA PID of (teacher, student, label) from representations (numpy or torch, shape (N, ...)).

    overrides: any preset setting (normalize_rows, pca_components, n_clusters, unit, kmeans_n_init,
    pca_solver) and bootstrap=B, null=R, ci=0.95. Results repeat exactly for a given seed.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - set(PRESETS[preset]) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; allowed: {sorted(set(PRESETS[preset]) | set(OPTIONS))}")
    settings = {**PRESETS[preset], **OPTIONS, **overrides}
    t = discretize(teacher_feats, settings, seed, "teacher features")
    s = discretize(student_feats, settings, seed, "student features")
    labels = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    result = pid_from_clusters(t, s, labels, settings["n_clusters"], settings["unit"],
                               settings["bootstrap"], settings["null"], settings["ci"], seed)
    result.settings = {"preset": preset, "seed": seed, "n": int(len(t)), **settings}
    return result
