"""Do the paper's atom claims depend on the PID estimator's settings? Atoms recomputed, without re-training, under
other PCA sizes, cluster counts, KMeans seeds and restarts, from the PCA features a run stores at its PID epochs
(Protocol.store_pca: <run>/pca50/s-e<epoch>.npy for the student, <run>/pca50/<teacher label>.npy for each PID
teacher; rows are the test images in order). Why the stored features suffice: book/cifar_sensitivity.ipynb.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from ridrepro.analysis.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from ridrepro.analysis.results import grid_runs
from ridrepro.layout import cell_name
from ridrepro.pid import pid_from_clusters
from ridrepro.pid.features import discretize

BASE = {"pca_components": 5, "n_clusters": 10, "kmeans_n_init": 1, "seed": 0}  # the paper-code estimator


def estimator_settings(clustering_seeds=20):
    """(name, settings) pairs: the paper-code estimator, one change at a time (PCA 10, KMeans 20, 10 KMeans
    restarts), and the paper-code estimator under `clustering_seeds` KMeans seeds in all (seed 0 included)."""
    out = [("paper-code", BASE), ("PCA 10", {**BASE, "pca_components": 10}),
           ("KMeans 20", {**BASE, "n_clusters": 20}), ("n_init 10", {**BASE, "kmeans_n_init": 10})]
    return out + [(f"seed {s}", {**BASE, "seed": s}) for s in range(1, clustering_seeds)]


def pid_of_stored(teacher, student, labels, pca_components=5, n_clusters=10, kmeans_n_init=1, seed=0, null=0,
                  unit="nats"):
    """BROJA PID of (teacher cluster, student cluster; label) from stored PCA features (N, K >= pca_components):
    the first pca_components columns, KMeans(n_clusters, n_init, random_state=seed) on each side."""
    teacher, student = np.asarray(teacher), np.asarray(student)
    for name, x in (("teacher", teacher), ("student", student)):
        if x.ndim != 2 or x.shape[0] != len(labels):
            raise ValueError(f"{name} features must have shape ({len(labels)}, K), got {x.shape}")
        if not 1 <= pca_components <= x.shape[1]:
            raise ValueError(f"{name} features have {x.shape[1]} stored components; cannot take {pca_components}")
    # The rows were normalised before the stored PCA; clustering reads the projections as they are.
    settings = {"normalize_rows": False, "pca_components": None, "n_clusters": n_clusters,
                "kmeans_n_init": kmeans_n_init}
    t = discretize(teacher[:, :pca_components].astype(np.float32), settings, seed, "teacher features")
    s = discretize(student[:, :pca_components].astype(np.float32), settings, seed, "student features")
    return pid_from_clusters(t, s, np.asarray(labels), n_clusters, unit, null=null, seed=seed)


def stored_labels(run_folder, num_classes=10):
    """The labels of the test images a run's stored features are rows of. ridrepro.data orders the test set
    class-major, so with the whole test set they follow from its size; a run on a test subset is refused
    rather than guessed."""
    cfg = json.loads((Path(run_folder) / "config.json").read_text())
    prov, n_test = cfg["data_provenance"], cfg["identity"]["data_sizes"][1]
    if not str(prov.get("order", "")).startswith("class-major") or prov.get("subset", {}).get("test_per_class"):
        raise ValueError(f"{run_folder}: its test set is not the whole class-major test set ({prov.get('order')}, "
                         f"subset {prov.get('subset')}); load its labels with ridrepro.data instead")
    if n_test % num_classes:
        raise ValueError(f"{run_folder}: {n_test} test images do not split into {num_classes} equal classes")
    return np.repeat(np.arange(num_classes), n_test // num_classes)


def stored_runs(root, protocol, k=50):
    """One row per finished run with stored features: run, cell, method, teacher, seed, the PID teachers it
    stores and its student epochs. A finished run without them is an error, so that no cell drops out unseen;
    a run still training is left out (its features stop at the epoch it has reached)."""
    rows, missing = [], []
    for folder, method, teacher, seed in grid_runs(root, protocol, finished_only=True):
        if method == "teacher":
            continue
        folder_k = folder / f"pca{k}"
        epochs = sorted(int(p.stem[3:]) for p in folder_k.glob("s-e*.npy"))
        if not epochs:
            missing.append(folder.name)
            continue
        labels = sorted(p.stem for p in folder_k.glob("*.npy") if not p.stem.startswith("s-e"))
        rows.append({"run": folder.name, "path": str(folder), "cell": cell_name(method, teacher), "method": method,
                     "teacher": teacher, "seed": seed, "pid_teachers": labels, "epochs": epochs})
    if missing:
        raise FileNotFoundError(f"runs of {protocol!r} without stored pca{k} features: {', '.join(missing)}")
    return pd.DataFrame(rows)


def _picked(epochs, wanted):
    return sorted({epochs[0] if e == "first" else epochs[-1] if e == "last" else e for e in wanted})


def features_digest(folder, label, epochs):
    """A short hash of the stored features one (run, PID teacher) pair's rows are computed from, so that a
    cached table can tell whether a run's features changed since its rows were written."""
    h = hashlib.sha256()
    for name in [label] + [f"s-e{e:03d}" for e in epochs]:
        h.update((Path(folder) / f"{name}.npy").read_bytes())
    return h.hexdigest()[:12]


def sensitivity_table(root, protocol, labels=None, settings=None, epochs=("first", "last"), null=100, k=50,
                      runs=None):
    """Atoms of every stored run at its first and last stored epoch under every estimator setting: one row per
    (run, PID teacher, epoch, setting). A run is measured against its own teacher; BAS against each one.
    With null > 0, the last epoch's records carry the shuffled-label null's 95th percentile of each atom
    (<atom>_q95); present means above it. labels: the test labels, or None to read each run's own
    (stored_labels); runs: the names of the runs to measure, or None for all finished runs."""
    settings = estimator_settings() if settings is None else settings
    rows, stored = [], stored_runs(root, protocol, k)
    unknown = set(runs or ()) - set(stored.get("run", ()))
    if unknown:
        raise ValueError(f"not finished runs of {protocol!r} with stored features: {', '.join(sorted(unknown))}")
    for run in stored.itertuples():
        if runs is not None and run.run not in runs:
            continue
        folder = Path(run.path) / f"pca{k}"
        y = stored_labels(run.path) if labels is None else labels
        picked = _picked(run.epochs, epochs)
        for label in run.pid_teachers:
            if run.method != "bas" and label != run.teacher:
                continue
            t = np.load(folder / f"{label}.npy")
            digest = features_digest(folder, label, picked)
            for epoch in picked:
                s = np.load(folder / f"s-e{epoch:03d}.npy")
                shuffles = null if epoch == run.epochs[-1] else 0
                for name, st in settings:
                    r = pid_of_stored(t, s, y, null=shuffles, **st)
                    row = {"run": run.run, "cell": run.cell, "method": run.method, "teacher": run.teacher,
                           "seed": run.seed, "pid_teacher": label, "epoch": epoch, "setting": name,
                           "red": r.red, "uni_t": r.uni_t, "uni_s": r.uni_s, "syn": r.syn, "i_yt": r.i_yt,
                           "i_ys": r.i_ys, "null": shuffles, "features": digest}
                    for atom, q in r.extras.get("null", {}).items():
                        if isinstance(q, dict) and "q95" in q:
                            row[f"{atom}_q95"] = q["q95"]
                    rows.append(row)
    return pd.DataFrame(rows)


def update_table(root, protocol, out, clustering_seeds=20, null=100, k=50, fresh=False, log=print):
    """Write the sensitivity table of every finished run to the CSV `out` and return it. Rows already in
    `out` are kept for a run whose stored features, settings and null size are unchanged (a full table is slow,
    and runs finish one by one); every other finished run is recomputed. fresh: recompute all."""
    settings = estimator_settings(clustering_seeds)
    names = {name for name, _ in settings}
    old = pd.read_csv(out) if Path(out).exists() and not fresh else pd.DataFrame()
    todo, kept = [], []
    for run in stored_runs(root, protocol, k).itertuples():
        rows = old[old.run == run.run] if len(old) else old
        folder = Path(run.path) / f"pca{k}"
        digests = {features_digest(folder, label, _picked(run.epochs, ("first", "last")))
                   for label in run.pid_teachers if run.method == "bas" or label == run.teacher}
        same = (len(rows) and set(rows.features) == digests and set(rows.setting) == names
                and rows.null.max() == null)
        (kept if same else todo).append(run.run)
    log(f"{protocol}: {len(kept)} runs kept from {out}, {len(todo)} to compute: {', '.join(todo) or 'none'}")
    new = sensitivity_table(root, protocol, settings=settings, null=null, k=k, runs=set(todo)) if todo else None
    parts = [old[old.run.isin(kept)]] if kept else []
    table = pd.concat(parts + ([new] if new is not None else []), ignore_index=True)
    order = {name: i for i, (name, _) in enumerate(settings)}
    table = table.sort_values(["run", "pid_teacher", "epoch", "setting"],
                              key=lambda c: c.map(order) if c.name == "setting" else c).reset_index(drop=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.6g")
    return table


def atom_claims(table, rules):
    """The atom claims of `rules` (claims.ATOM_RULES) judged by claims.judge under each setting of a
    sensitivity_table, on each run's last epoch: one row per (claim, setting) with the claim's key and text,
    difference, spread, seeds, verdict and reason. The table has no intervals, so the point stands for both
    ends of an interval ("≈ 0": the atom itself within the tolerance)."""
    from ridrepro.analysis.claims import atom_table, judge

    rows = []
    for setting, d in table.groupby("setting", sort=False):
        runs = atom_table(d[d.epoch == d.groupby("run").epoch.transform("max")], intervals="none")
        for claim in rules.claims:
            rows.append({"setting": setting, **judge(claim, runs, rules)})
    return pd.DataFrame(rows)


SINGLE = ("paper-code", "PCA 10", "KMeans 20", "n_init 10")  # the one-change settings, shown one column each
SCORE = {REPRODUCED: 1.0, NOT_REPRODUCED: 0.0}


def verdict_grid(claims):
    """atom_claims under each setting as the sensitivity figure shows it: one row per claim text, columns the
    one-change settings and "KMeans seeds" (paper-code's seed 0 and the "seed k" settings together). Each
    entry is (text, score): the verdict with score 1 (reproduced), 0 (not reproduced) or NaN (inconclusive;
    "not run yet" when a cell has no run), and for the seeds column "reproduced in k/m" (score k/m over the
    seeds with a verdict)."""
    is_seed = claims.setting.str.startswith("seed ") | (claims.setting == "paper-code")
    out = {}
    for claim, d in claims.groupby("claim", sort=False):
        row = {}
        for setting in SINGLE:
            v = d[d.setting == setting]
            row[setting] = _entry(v.iloc[0]) if len(v) else ("not run yet", np.nan)
        seeds = d[is_seed.loc[d.index]]
        judged = seeds[seeds.verdict.isin(list(SCORE))]
        if seeds.empty or (seeds.seeds == 0).any():
            row["KMeans seeds"] = ("not run yet", np.nan)
        elif judged.empty:
            row["KMeans seeds"] = (INCONCLUSIVE, np.nan)
        else:
            k = int((judged.verdict == REPRODUCED).sum())
            row["KMeans seeds"] = (f"{REPRODUCED} in {k}/{len(seeds)}", k / len(judged))
        out[claim] = row
    return pd.DataFrame.from_dict(out, orient="index")


def _entry(row):
    if row.seeds == 0:
        return "not run yet", np.nan
    return row.verdict, SCORE.get(row.verdict, np.nan)


def clustering_spread(table, atoms=("red", "uni_t")):
    """Per (run, PID teacher, epoch) and atom: its value under paper-code, and the standard deviation and
    range (max - min) over the KMeans seeds (paper-code and every "seed k" setting): how much the clustering
    alone moves one run's atom."""
    seeds = table[(table.setting == "paper-code") | table.setting.str.startswith("seed ")]
    rows = []
    for (run, label, epoch), d in seeds.groupby(["run", "pid_teacher", "epoch"], sort=True):
        base = d[d.setting == "paper-code"]
        for atom in atoms:
            v = d[atom].to_numpy(float)
            rows.append({"run": run, "cell": d.cell.iloc[0], "pid_teacher": label, "epoch": epoch, "atom": atom,
                         "paper_code": base[atom].iloc[0] if len(base) else np.nan, "seeds": len(v),
                         "seed_sd": v.std(ddof=1) if len(v) > 1 else np.nan, "seed_range": np.ptp(v)})
    return pd.DataFrame(rows)


def against_bootstrap(spread, pid, ci=0.95):
    """clustering_spread beside the logged bootstrap interval of the same record (load_pid's <atom>_lo and
    _hi, which hold the clustering fixed): boot_width = hi - lo, boot_sd = the standard deviation a normal
    distribution with that central interval would have, and ratio = seed_sd / boot_sd (above 1: the
    clustering moves the atom more than resampling the test images does)."""
    z = 2 * norm.ppf(0.5 + ci / 2)
    rows = []
    keyed = pid.set_index(["run", "pid_teacher", "epoch"])
    for r in spread.itertuples():
        key = (r.run, r.pid_teacher, r.epoch)
        if key not in keyed.index:
            raise KeyError(f"no logged PID record of {r.run} against {r.pid_teacher} at epoch {r.epoch}")
        rec = keyed.loc[key]
        width = float(rec[f"{r.atom}_hi"] - rec[f"{r.atom}_lo"])
        rows.append({**r._asdict(), "logged": float(rec[r.atom]), "boot_width": width, "boot_sd": width / z,
                     "ratio": r.seed_sd / (width / z) if width > 0 else np.nan})
    return pd.DataFrame(rows).drop(columns="Index")


def missing_cells(table, cells):
    """The cells of `cells` with no run in the table (BAS counts once, whichever teacher it is measured
    against)."""
    have = set(table.cell) if len(table) else set()
    return [c for c in cells if c not in have]
