"""Error bars for BROJA atoms estimated from a (teacher cluster, student cluster, label) histogram.

Two sources of error, measured apart and then combined:
- sampling: a bootstrap over the N samples (the clustering held fixed), with the bootstrap estimate of
  the plug-in bias and an interval by `method` and `population`; the defaults, the basic interval from
  Chao et al.'s bootstrap population, are the ones whose coverage held up in
  benchmarks/results/pid_coverage.md (the old interval was "percentile" from the "empirical" population);
- clustering: the atoms over K KMeans/PCA seeds on the same data (`clustering_spread`).
`combine` widens the bootstrap interval by the seed spread, in quadrature on each side. Recomputing a committed
run's records: ridrepro.analysis.intervals.
"""

import numpy as np
from scipy.stats import norm

from .broja import ATOMS, broja_pid_batch
from .features import PRESETS, discretize

NAMES = tuple(a for a in ATOMS if a != "gap")
METHODS = ("basic", "bca", "percentile")
POPULATIONS = ("chao", "empirical")
COMBINE = ("combined interval: lo = c - sqrt((c - boot_lo)^2 + (z sd_seed)^2), hi = c + sqrt((boot_hi - c)^2 "
           "+ (z sd_seed)^2), c = point - bootstrap bias, z = norm.ppf((1 + ci) / 2); never narrower than the "
           "bootstrap interval; clipped at 0")
# Clustering of stored PCA-50 features, as the sensitivity study does: rows were normalised before
# the stored PCA, so KMeans reads the first `pca_components` columns as they are.
STORED = {"normalize_rows": False, "pca_components": None, "n_clusters": 10, "kmeans_n_init": 1,
          "pca_solver": "randomized"}


def joint_counts(t, s, y, n_clusters=None):
    """Integer histogram C[t, s, y] of cluster codes t, s and labels y (labels relabelled 0..k-1)."""
    t, s, y = (np.asarray(v) for v in (t, s, y))
    if not (t.ndim == s.ndim == y.ndim == 1 and len(t) == len(s) == len(y) > 0):
        raise ValueError(f"t, s, y must be 1-d of equal, non-zero length, got {t.shape}, {s.shape}, {y.shape}")
    if not all(np.issubdtype(v.dtype, np.integer) for v in (t, s, y)):
        raise ValueError(f"t, s, y must be integer codes, got {t.dtype}, {s.dtype}, {y.dtype}")
    if min(t.min(), s.min()) < 0:
        raise ValueError("cluster codes must be >= 0")
    _, y = np.unique(y, return_inverse=True)
    nt = n_clusters or int(t.max()) + 1
    ns = n_clusters or int(s.max()) + 1
    if t.max() >= nt or s.max() >= ns:
        raise ValueError(f"cluster codes exceed n_clusters={n_clusters}")
    shape = (nt, ns, int(y.max()) + 1)
    return np.bincount(np.ravel_multi_index((t, s, y), shape), minlength=int(np.prod(shape))).reshape(shape)


def _check_counts(counts):
    counts = np.asarray(counts)
    if counts.ndim != 3 or counts.sum() <= 0:
        raise ValueError(f"counts must be a non-empty 3-d histogram C[t, s, y], got shape {counts.shape}")
    if (counts < 0).any() or not np.allclose(counts, np.rint(counts)):
        raise ValueError("counts must be non-negative integers")
    return np.rint(counts).astype(np.int64)


def _atoms(tables, unit):
    """(len(tables), len(NAMES)) array of atoms."""
    return np.array([[getattr(r, a) for a in NAMES] for r in broja_pid_batch(list(tables), unit=unit)])


def _jackknife(counts, unit):
    """Leave-one-sample-out atoms, one per occupied cell (all samples of a cell give the same table), and
    the cells' counts as weights: N evaluations collapse to at most |T||S||Y| solves."""
    n = counts.sum()
    cells = np.flatnonzero(counts.ravel())
    tables = []
    for c in cells:
        k = counts.ravel().astype(float)
        k[c] -= 1
        tables.append(k.reshape(counts.shape) / (n - 1))
    return _atoms(tables, unit), counts.ravel()[cells].astype(float)


def bootstrap_population(counts, kind="chao"):
    """The table the bootstrap resamples from. "empirical": counts / N (the ordinary bootstrap). "chao":
    the bootstrap population of Chao et al. (2013, Methods Ecol. Evol. 4:1091), simplified: occupied cells
    scaled by the sample coverage C = 1 - f1/N (N-1) f1 / ((N-1) f1 + 2 f2), and the missing mass 1 - C
    spread evenly over f0 = (N-1)/N f1^2 / (2 f2) (Chao1) empty cells, those likeliest under independent
    margins (f1, f2: cells counted once, twice). Why: the plug-in bias of I(Y;T,S), hence of synergy,
    comes mostly from thin cells a sample misses, which the ordinary bootstrap never draws."""
    if kind not in POPULATIONS:
        raise ValueError(f"population must be one of {POPULATIONS}, got {kind!r}")
    counts = _check_counts(counts)
    n, c = counts.sum(), counts.ravel().astype(float)
    f1, f2, empty = int((c == 1).sum()), int((c == 2).sum()), np.flatnonzero(c == 0)
    if kind == "empirical" or f1 == 0 or len(empty) == 0:
        return (c / n).reshape(counts.shape)
    cover = 1 - f1 / n * ((n - 1) * f1 / ((n - 1) * f1 + 2 * f2))
    f0 = (n - 1) / n * (f1 * f1 / (2 * f2) if f2 else f1 * (f1 - 1) / 2)
    f0 = int(min(len(empty), max(1, np.ceil(f0))))
    P = counts / n
    indep = (P.sum((1, 2))[:, None, None] * P.sum((0, 2))[None, :, None] * P.sum((0, 1))[None, None, :]).ravel()
    p = c / n * cover
    p[empty[np.argsort(-indep[empty], kind="stable")[:f0]]] = (1 - cover) / f0
    return (p / p.sum()).reshape(counts.shape)


def interval(point, boot, ci=0.95, method="basic", jack=None, reference=None):
    """(lo, hi) of one statistic from its point value and bootstrap replicates.

    basic: point - (q_hi - reference), point - (q_lo - reference), the reverse percentile interval
    (reference = the statistic of the resampled population, the point itself by default), centred on
    the bias-corrected estimate; percentile: (q_lo, q_hi); bca: Efron's BCa, `jack` = (jackknife values,
    weights)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    boot = np.asarray(boot, float)
    alpha = (1 - ci) / 2
    if method == "percentile":
        return tuple(np.quantile(boot, [alpha, 1 - alpha]))
    if method == "basic":
        q_lo, q_hi = np.quantile(boot, [alpha, 1 - alpha])
        ref = point if reference is None else reference
        return point - (q_hi - ref), point - (q_lo - ref)
    if jack is None:
        raise ValueError("method 'bca' needs the jackknife values")
    values, w = jack
    # Ties count half: degenerate atoms (every replicate equal) then get z0 = 0, not -inf.
    frac = np.mean(boot < point) + 0.5 * np.mean(boot == point)
    z0 = norm.ppf(np.clip(frac, 0.5 / len(boot), 1 - 0.5 / len(boot)))
    d = np.average(values, weights=w) - values
    denom = 6 * np.sum(w * d**2) ** 1.5
    a = np.sum(w * d**3) / denom if denom > 0 else 0.0
    z = norm.ppf([alpha, 1 - alpha])
    return tuple(np.quantile(boot, norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))))


def replicates(counts, unit="nats", B=200, seed=0, population="chao"):
    """(point atoms, reference atoms, (B, atoms) bootstrap atoms) of histogram `counts`, atoms in the order
    of NAMES; reference = the atoms of the bootstrap population (the point for "empirical")."""
    counts = _check_counts(counts)
    if B < 2:
        raise ValueError(f"B must be >= 2, got {B}")
    n = int(counts.sum())
    P = bootstrap_population(counts, population)
    rng = np.random.default_rng(seed)
    # Resampling N samples with replacement = one multinomial draw of the counts: the same distribution,
    # without materialising N indices per replicate.
    boot = rng.multinomial(n, P.ravel(), size=B).reshape((B,) + counts.shape) / n
    point, ref = _atoms([counts / n, P], unit)
    return point, ref, _atoms(boot, unit)


def summarise(point, ref, boot, ci=0.95, method="basic", jack=None):
    """Per atom: the point, the bootstrap bias (mean of replicates minus reference), sd and interval."""
    out = {}
    for i, a in enumerate(NAMES):
        jk = None if jack is None else (jack[0][:, i], jack[1])
        lo, hi = interval(point[i], boot[:, i], ci, method, jk, ref[i])
        # Atoms and informations are >= 0: the interval is intersected with [0, inf).
        out[a] = {"point": float(point[i]), "bias": float(boot[:, i].mean() - ref[i]),
                  "sd": float(boot[:, i].std(ddof=1)), "lo": max(float(lo), 0.0), "hi": max(float(hi), 0.0)}
    return out


def bootstrap_counts(counts, unit="nats", B=200, ci=0.95, seed=0, method="basic", population="chao"):
    """Bootstrap of the atoms of histogram `counts` (clustering fixed): per atom the plug-in point, the
    bootstrap bias, the bootstrap sd and the interval (lo, hi). Defaults: the measured choice."""
    point, ref, boot = replicates(counts, unit, B, seed, population)
    jack = _jackknife(_check_counts(counts), unit) if method == "bca" else None
    out = {"method": method, "population": population, "B": int(B), "ci": ci, "seed": seed,
           "n": int(np.sum(counts)), "unit": unit}
    return {**out, **summarise(point, ref, boot, ci, method, jack)}


def bootstrap_intervals(t, s, y, n_clusters=None, unit="nats", B=200, ci=0.95, seed=0, method="basic",
                        population="chao"):
    """bootstrap_counts of the histogram of samples (t, s, y) (integer cluster codes and labels).

    scipy.stats.bootstrap is not used: it would re-run the BROJA solve N times for BCa's jackknife and
    resample N indices per replicate; on a histogram both collapse (multinomial draws, one solve per cell)."""
    return bootstrap_counts(joint_counts(t, s, y, n_clusters), unit, B, ci, seed, method, population)


def spread_of_codes(codes, labels, n_clusters, unit="nats"):
    """Atoms of K clusterings of the same samples: codes = [(t, s), ...]; per atom values, mean, sd."""
    if len(codes) < 2:
        raise ValueError(f"need at least 2 clusterings for a spread, got {len(codes)}")
    tables = [joint_counts(t, s, labels, n_clusters) for t, s in codes]
    v = _atoms([c / c.sum() for c in tables], unit)
    return {a: {"values": v[:, i].tolist(), "mean": float(v[:, i].mean()), "sd": float(v[:, i].std(ddof=1))}
            for i, a in enumerate(NAMES)}


def seed_codes(teacher_feats, student_feats, seeds=range(10), settings=None):
    """[(teacher codes, student codes) per seed]: ridrepro.pid.features.discretize with `settings` (paper-code
    by default), teacher and student re-clustered with the same seed, as the logged estimator does."""
    settings = {**PRESETS["paper-code"], **(settings or {})}
    return [(discretize(teacher_feats, settings, k, "teacher features"),
             discretize(student_feats, settings, k, "student features")) for k in seeds]


def clustering_spread(teacher_feats, student_feats, labels, seeds=range(10), settings=None):
    """Atoms over KMeans/PCA seeds (see seed_codes): per atom the values, their mean and sd (ddof 1)."""
    settings = {**PRESETS["paper-code"], **(settings or {})}
    seeds = list(seeds)
    codes = seed_codes(teacher_feats, student_feats, seeds, settings)
    out = spread_of_codes(codes, np.asarray(labels), settings["n_clusters"], settings.get("unit", "nats"))
    out["seeds"] = seeds
    return out


def combine(boot, spread, ci=0.95):
    """Per atom (lo, hi) of the combined interval (see COMBINE): it contains the bootstrap interval and
    c +- z sd_seed, so it is at least as wide as either."""
    z = norm.ppf((1 + ci) / 2)
    out = {}
    for a in NAMES:
        b, e = boot[a], z * spread[a]["sd"]
        c = b["point"] - b["bias"]
        lo = min(b["lo"], c - np.hypot(max(c - b["lo"], 0.0), e))
        hi = max(b["hi"], c + np.hypot(max(b["hi"] - c, 0.0), e))
        out[a] = (max(float(lo), 0.0), max(float(hi), 0.0))
    return out


# ----------------------------------------------------------------------------- committed runs

def record_intervals(record, teacher_codes, student_codes, labels, B=200, method="basic", ci=0.95, seed=0,
                     population="chao"):
    """New intervals for one pid.jsonl record: the bootstrap of its logged histogram (so the point is the
    logged one exactly), the spread over the given clusterings (lists of codes, one per seed, seed 0
    first) and the combined interval. Returns the pid_intervals.jsonl line (a dict)."""
    counts = np.asarray(record["counts"])
    if len(teacher_codes) != len(student_codes):
        raise ValueError(f"{len(teacher_codes)} teacher and {len(student_codes)} student clusterings")
    n_clusters = record["settings"]["n_clusters"]
    unit = record["unit"]
    boot = bootstrap_counts(counts, unit, B, ci, seed, method, population)
    spread = spread_of_codes(list(zip(teacher_codes, student_codes)), labels, n_clusters, unit)
    both = combine(boot, spread, ci)
    atoms = {}
    for a in NAMES:
        b, s = boot[a], spread[a]
        atoms[a] = {"point": b["point"], "bias": b["bias"], "corrected": b["point"] - b["bias"],
                    "boot_sd": b["sd"], "boot_lo": b["lo"], "boot_hi": b["hi"],
                    "seed_mean": s["mean"], "seed_sd": s["sd"], "seed_values": s["values"],
                    "lo": both[a][0], "hi": both[a][1],
                    "old": record.get("bootstrap", {}).get(a)}
    return {"epoch": record["epoch"], "teacher": record["teacher"], "layer": record.get("layer"),
            "n": int(counts.sum()), "unit": unit, "ci": ci,
            "bootstrap": {"method": method, "population": population, "B": B, "seed": seed,
                          "source": "logged counts, clustering fixed (pid.jsonl settings)"},
            "old": "pid.jsonl's bootstrap: percentile interval of the empirical bootstrap, clustering fixed",
            "clustering": {"seeds": len(teacher_codes), "features": "stored pca50, first pca_components columns",
                           **{k: record["settings"][k] for k in ("pca_components", "n_clusters", "kmeans_n_init")}},
            "combine": COMBINE, "settings": record["settings"],
            # seed 0 re-clustered from the stored float16 features against the logged point (~1e-3 expected)
            "seed0_vs_logged": max(abs(spread[a]["values"][0] - boot[a]["point"]) for a in NAMES),
            "atoms": atoms}
