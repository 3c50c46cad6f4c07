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


def clearly(a, b):
    """+1 when a is clearly above b, -1 clearly below, 0 neither: the chapters' rule, the difference of the
    means over seeds against the sum of the two standard deviations over seeds (ddof 1; 0 for one seed)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    spread = sum(x.std(ddof=1) if len(x) > 1 else 0.0 for x in (a, b))
    d = a.mean() - b.mean()
    return int(np.sign(d)) if abs(d) > spread else 0


def atom_claims(table):
    """The atom claims of the cpu-4k rules (book/cifar_atoms.ipynb) under each setting of a sensitivity_table:
    one row per (claim, setting) with verdict 'holds', 'fails' or 'not run' (a cell it needs is absent)."""
    rows = []
    for setting, d in table.groupby("setting", sort=False):
        last = d[d.epoch == d.groupby("run").epoch.transform("max")]
        first = d[d.epoch == d.groupby("run").epoch.transform("min")]
        tt_last, ut_last = last[last.pid_teacher == "tt"], last[last.pid_teacher == "ut"]

        def values(frame, cell, atom):
            return frame[frame.cell == cell][atom].to_numpy()

        def compare(claim, a, b, sign):
            verdict = "not run" if min(len(a), len(b)) == 0 else "holds" if clearly(a, b) == sign else "fails"
            rows.append({"claim": claim, "setting": setting, "verdict": verdict})

        compare("RID-tt: Uni(Y:T\\S) falls", values(tt_last, "RID-tt", "uni_t"),
                values(first[first.pid_teacher == "tt"], "RID-tt", "uni_t"), -1)
        compare("RID-tt: Red rises", values(tt_last, "RID-tt", "red"),
                values(first[first.pid_teacher == "tt"], "RID-tt", "red"), 1)
        for other in ("BAS", "VID-tt"):
            compare(f"RID-tt ends with less Uni(Y:T\\S) than {other}", values(tt_last, "RID-tt", "uni_t"),
                    values(tt_last, other, "uni_t"), -1)
        compare("RID-tt ends with more Red than BAS", values(tt_last, "RID-tt", "red"),
                values(tt_last, "BAS", "red"), 1)
        for cell in ("BAS", "VID-ut", "RID-ut", "TED-ut"):
            d_ut = ut_last[ut_last.cell == cell]
            for atom, name in (("red", "Red"), ("uni_t", "Uni(Y:T\\S)")):
                if d_ut.empty or f"{atom}_q95" not in d_ut:
                    rows.append({"claim": f"{cell} vs ut: {name} present", "setting": setting, "verdict": "not run"})
                    continue
                present = int((d_ut[atom] > d_ut[f"{atom}_q95"]).sum())
                rows.append({"claim": f"{cell} vs ut: {name} present", "setting": setting,
                             "verdict": f"{present}/{len(d_ut)} seeds"})
    return pd.DataFrame(rows)


SINGLE = ("paper-code", "PCA 10", "KMeans 20", "n_init 10")  # the one-change settings, shown one column each


def verdict_grid(claims):
    """atom_claims under each setting as the sensitivity figure shows it: one row per claim, columns the
    one-change settings and "KMeans seeds" (paper-code's seed 0 and the "seed k" settings together). Each
    entry is (text, score): a verdict with score 1 (holds) or 0 (fails), "not run yet" with score NaN,
    a present-count "k/n seeds" with score k/n, and for the seeds column "holds in k/m" (score k/m) or,
    for present-counts, "<commonest count> in j/m" with the mean score."""
    is_seed = claims.setting.str.startswith("seed ") | (claims.setting == "paper-code")
    out = {}
    for claim, d in claims.groupby("claim", sort=False):
        row = {}
        for setting in SINGLE:
            v = d[d.setting == setting].verdict
            row[setting] = _entry(v.iloc[0]) if len(v) else ("not run yet", np.nan)
        seeds = d[is_seed.loc[d.index]].verdict
        if (seeds == "not run").any() or seeds.empty:
            row["KMeans seeds"] = ("not run yet", np.nan)
        elif seeds.isin(["holds", "fails"]).all():
            row["KMeans seeds"] = (f"holds in {(seeds == 'holds').sum()}/{len(seeds)}", (seeds == "holds").mean())
        else:
            common = seeds.value_counts()
            row["KMeans seeds"] = (f"{common.index[0]} in {common.iloc[0]}/{len(seeds)}",
                                   float(np.mean([_entry(v)[1] for v in seeds])))
        out[claim] = row
    return pd.DataFrame.from_dict(out, orient="index")


def _entry(verdict):
    if verdict == "not run":
        return "not run yet", np.nan
    if verdict in ("holds", "fails"):
        return verdict, float(verdict == "holds")
    k, n = verdict.split()[0].split("/")
    return verdict, int(k) / int(n)


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
