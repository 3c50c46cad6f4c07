"""Do the paper's atom claims depend on the PID estimator's settings? Atoms recomputed, without re-training,
from the PCA features a run stores at its PID epochs (Protocol.store_pca: <run>/pca50/s-e<epoch>.npy for the
student, <run>/pca50/<teacher label>.npy for each PID teacher; rows are the test images in order).

Why the stored features suffice: the features path (ridrepro.pid.features.discretize) L2-normalises the
rows and projects them on their first k principal axes before KMeans. Principal components are nested, so
the first k columns of the stored 50 are the PCA-k features, up to the randomized solver's approximation
and float16 rounding; the logged atoms are reproduced from them to about 1e-3 nats (tests/test_sensitivity.py
checks this on a committed run). The bootstrap of a PID record holds the clustering fixed; this module varies
the clustering itself: PCA size, cluster count, KMeans seed and restarts.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ridrepro.pid import pid_from_clusters
from ridrepro.pid.features import discretize
from ridrepro.results import cell_name, grid_runs

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


def sensitivity_table(root, protocol, labels, settings=None, epochs=("first", "last"), null=100, k=50):
    """Atoms of every stored run at its first and last stored epoch under every estimator setting: one row per
    (run, PID teacher, epoch, setting). A run is measured against its own teacher; BAS against each one.
    With null > 0, the last epoch's records carry the shuffled-label null's 95th percentile of each atom
    (<atom>_q95); present means above it."""
    settings = estimator_settings() if settings is None else settings
    rows = []
    for run in stored_runs(root, protocol, k).itertuples():
        folder = Path(run.path) / f"pca{k}"
        picked = sorted({run.epochs[0] if e == "first" else run.epochs[-1] if e == "last" else e for e in epochs})
        for label in run.pid_teachers:
            if run.method != "bas" and label != run.teacher:
                continue
            t = np.load(folder / f"{label}.npy")
            for epoch in picked:
                s = np.load(folder / f"s-e{epoch:03d}.npy")
                for name, st in settings:
                    r = pid_of_stored(t, s, labels, null=null if epoch == run.epochs[-1] else 0, **st)
                    row = {"run": run.run, "cell": run.cell, "method": run.method, "teacher": run.teacher,
                           "seed": run.seed, "pid_teacher": label, "epoch": epoch, "setting": name,
                           "red": r.red, "uni_t": r.uni_t, "uni_s": r.uni_s, "syn": r.syn, "i_yt": r.i_yt,
                           "i_ys": r.i_ys}
                    for atom, q in r.extras.get("null", {}).items():
                        if isinstance(q, dict) and "q95" in q:
                            row[f"{atom}_q95"] = q["q95"]
                    rows.append(row)
    return pd.DataFrame(rows)


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


def logged_atoms(run_folder, epoch, teacher):
    """The atoms a run logged in pid.jsonl at `epoch` against `teacher` (to check the stored features)."""
    for line in (Path(run_folder) / "pid.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["epoch"] == epoch and r["teacher"] == teacher:
            return r
    raise KeyError(f"{run_folder}: no PID record at epoch {epoch} against {teacher}")
