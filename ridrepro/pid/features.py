"""From representations to PID (paper Appendix C): flatten -> (L2-normalise rows) -> PCA(k) -> KMeans(c), for the
teacher and the student separately, then the BROJA PID of the histogram P[t, s, y], with explicit seeds and n_init,
a bootstrap and a shuffled-label null (both hold the clustering fixed: book/cifar_sensitivity.ipynb varies it).
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import normalize

from .broja import ATOMS, broja_pid, broja_pid_batch

# Nats, as the paper's figures. The PCA solver is named so that sklearn's heuristics cannot change results.
# KMeans n_init: 1 in paper-code, the authors' scikit-learn default (divergence 12); 10 in paper-text (CHOICE).
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


def project(x, k, seed=0, normalize_rows=True, solver="randomized", name="features"):
    """Rows flattened, L2-normalised (all-zero rows stay zero) and reduced to k PCA components (None: no PCA):
    the estimator's projection, also what runs store of a representation (pca_float16)."""
    x = _as_matrix(x, name)
    if normalize_rows:
        x = normalize(x)
    if k is None:
        return x
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"{name}: PCA to {k} components needs k <= min(N, D) = {min(x.shape)}")
    return PCA(n_components=k, svd_solver=solver, random_state=seed).fit_transform(x)


def pca_float16(x, k, seed=0):
    """A torch tensor's projection to k components in float16: what runs store of a representation for later
    studies of the estimator. Rows are normalised by torch, as for every stored feature file so far (sklearn's
    normalize differs in the 8th digit, which the randomized PCA amplifies)."""
    import torch

    x = torch.nn.functional.normalize(x.reshape(len(x), -1).float(), dim=1).cpu().numpy()
    return project(x, k, seed, normalize_rows=False).astype(np.float16)


def discretize(x, settings, seed=0, name="features"):
    """Cluster label (0..c-1) of every row of x: flatten, L2-normalise rows, PCA, KMeans."""
    x, c = _as_matrix(x, name), settings["n_clusters"]
    if x.shape[0] < c:
        raise ValueError(f"{name}: {x.shape[0]} samples cannot form {c} clusters")
    # without PCA (features reduced already) a settings dict may leave the solver out
    x = project(x, settings["pca_components"], seed, settings["normalize_rows"],
                settings.get("pca_solver", "randomized"), name)
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
