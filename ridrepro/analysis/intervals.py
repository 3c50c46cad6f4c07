"""The new PID intervals (ridrepro.pid.intervals) of a committed grid's records, written beside them: one line per
(epoch, teacher) of <run>/pid.jsonl in <run>/pid_intervals.jsonl, from the logged histogram and the stored features."""

from pathlib import Path

import numpy as np

from ridrepro.analysis.sensitivity import stored_labels
from ridrepro.files import append_jsonl, read_jsonl
from ridrepro.pid.features import discretize
from ridrepro.pid.intervals import STORED, record_intervals


def recompute_run(run_folder, K=20, B=200, method="basic", ci=0.95, population="chao", out_name="pid_intervals.jsonl",
                  log=print):
    """Write pid_intervals.jsonl beside a run's pid.jsonl (never modified): one line per (epoch, teacher)
    whose stored features exist; lines already in the file are kept (resumable). Returns lines written."""
    folder = Path(run_folder)
    out = folder / out_name
    done = {(r["epoch"], r["teacher"]) for r in read_jsonl(out)}
    records = read_jsonl(folder / "pid.jsonl")
    labels = stored_labels(folder)
    teacher_codes, written = {}, 0
    for r in records:
        key = (r["epoch"], r["teacher"])
        t_path, s_path = folder / "pca50" / f"{r['teacher']}.npy", folder / "pca50" / f"s-e{r['epoch']:03d}.npy"
        if key in done or not (t_path.exists() and s_path.exists()):
            continue
        st = {**STORED, "n_clusters": r["settings"]["n_clusters"], "kmeans_n_init": r["settings"]["kmeans_n_init"]}
        k = r["settings"]["pca_components"]
        if r["teacher"] not in teacher_codes:  # the teacher's features are the same at every epoch
            x = np.load(t_path)[:, :k].astype(np.float32)
            teacher_codes[r["teacher"]] = [discretize(x, st, seed, "teacher features") for seed in range(K)]
        x = np.load(s_path)[:, :k].astype(np.float32)
        student = [discretize(x, st, seed, "student features") for seed in range(K)]
        line = record_intervals(r, teacher_codes[r["teacher"]], student, labels, B, method, ci, population=population)
        append_jsonl(out, line)
        written += 1
        log(f"{folder.name} epoch {r['epoch']} {r['teacher']}: written")
    return written


def load_intervals(root, name="pid_intervals.jsonl"):
    """One row per (run, epoch, teacher, atom) of every <root>/<run>/pid_intervals.jsonl."""
    rows = []
    for path in sorted(Path(root).glob(f"*/{name}")):
        for r in read_jsonl(path):
            for a, v in r["atoms"].items():
                old = v.get("old") or [np.nan, np.nan]
                rows.append({"run": path.parent.name, "epoch": r["epoch"], "teacher": r["teacher"], "atom": a,
                             **{k: x for k, x in v.items() if k not in ("seed_values", "old")},
                             "old_lo": old[0], "old_hi": old[1]})
    return rows


def inside_counts(rows):
    """Per atom: records, and how many have their point inside the old, the new bootstrap and the combined
    interval (and the seed-averaged value inside the combined one)."""
    import pandas as pd

    d = pd.DataFrame(rows)
    d["in_old"] = (d.old_lo <= d.point) & (d.point <= d.old_hi)
    d["in_boot"] = (d.boot_lo <= d.point) & (d.point <= d.boot_hi)
    d["in_combined"] = (d.lo <= d.point) & (d.point <= d.hi)
    d["seed_mean_in_combined"] = (d.lo <= d.seed_mean) & (d.seed_mean <= d.hi)
    g = d.groupby("atom", sort=False)
    return pd.concat([g.size().rename("records"), g[["in_old", "in_boot", "in_combined",
                                                      "seed_mean_in_combined"]].sum()], axis=1)
