"""Committed grid results as tables, for the CIFAR-10 chapters and for readers' own analyses.

A grid lives in <root>/<protocol>/<run>/ with metrics.jsonl and pid.jsonl (see ridrepro.train.runs). These
functions only read; they never train. Run names: teacher-<tt|ut>-s<seed>, bas-s<seed>,
<method>-<tt|ut>-s<seed>.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ridrepro.files import read_jsonl
from ridrepro.layout import CELLS, PAPER_CELLS, accuracy_of, cell_name, parse_cell, parse_run
from ridrepro.pid import pid_from_clusters
from ridrepro.pid.broja import ATOMS
from ridrepro.protocols import get_protocol

# The paper's CIFAR-10 accuracies at epoch 300 under the authors' code (reference/protocols.md section 6):
# the authors' single-run log, and the 3-run figure read off the plot (+-0.005). None: not in that source.
_PAPER = [("teacher", "tt", 0.838, 0.84), ("rid", "tt", 0.811, 0.80), ("vid", "tt", 0.810, 0.806),
          ("ted", "tt", None, 0.75), ("bas", None, 0.723, 0.732), ("ted", "ut", None, 0.72),
          ("rid", "ut", 0.658, 0.65), ("vid", "ut", 0.398, 0.36)]
PAPER_ACCURACY = pd.DataFrame([(cell_name(m, t), log, fig) for m, t, log, fig in _PAPER],
                              columns=["cell", "paper log", "paper figure"])


def grid_runs(root, protocol, finished_only=False):
    """(folder, method, teacher, seed) of each run of a protocol's grid under root, in name order; with
    finished_only, only the runs that wrote finished.json (a cell still training is left out)."""
    base = Path(root) / protocol
    if not base.is_dir():
        hint = " (the committed grids are under results/)" if Path("results", protocol).is_dir() else ""
        raise FileNotFoundError(f"no results for protocol {protocol!r} under {Path(root).resolve()}{hint}")
    for folder in sorted(base.iterdir()):
        run = parse_run(folder.name)
        if run and (folder / "config.json").exists() and (not finished_only or (folder / "finished.json").exists()):
            yield folder, run.method, run.teacher, run.seed


def load_metrics(root, protocol):
    """One row per (run, epoch): method, teacher, seed, epoch, phase, test/train accuracy, lr per group. The
    test accuracy is NaN at epochs the protocol does not evaluate (Protocol.eval_every)."""
    rows = []
    for folder, method, teacher, seed in grid_runs(root, protocol):
        finished = (folder / "finished.json").exists()
        for r in read_jsonl(folder / "metrics.jsonl"):
            rows.append({"run": folder.name, "cell": cell_name(method, teacher), "method": method,
                         "teacher": teacher, "seed": seed, "finished": finished, "epoch": r["epoch"], "phase": r["phase"],
                         "test_acc": r.get("test_acc", np.nan), "train_acc": r["train_acc"],
                         **{f"lr_{k}": v for k, v in r["lr"].items()}})
    if not rows:
        raise FileNotFoundError(f"no metrics.jsonl records for protocol {protocol!r} under {root}")
    return pd.DataFrame(rows)


def load_pid(root, protocol):
    """One row per logged PID record: the run's method/teacher/seed, whether the run has finished, the PID
    teacher, epoch, the atoms, their bootstrap interval (<atom>_lo, <atom>_hi) and their shuffled-label null's
    95th percentile and p-value (<atom>_q95, <atom>_p) when logged (NaN otherwise), and the joint counts."""
    rows = []
    atoms = [a for a in ATOMS if a != "gap"]
    for folder, method, teacher, seed in grid_runs(root, protocol):
        finished = (folder / "finished.json").exists()
        for r in read_jsonl(folder / "pid.jsonl"):
            row = {"run": folder.name, "cell": cell_name(method, teacher), "method": method, "teacher": teacher, "seed": seed,
                   "finished": finished, "pid_teacher": r["teacher"], "epoch": r["epoch"], "unit": r["unit"],
                   "gap": r["gap"], **{a: r[a] for a in atoms}, "counts": r.get("counts")}
            for a in atoms:
                lo, hi = r.get("bootstrap", {}).get(a, (np.nan, np.nan))
                row[a + "_lo"], row[a + "_hi"] = lo, hi
                null = r.get("null", {}).get(a, {})
                row[a + "_q95"], row[a + "_p"] = null.get("q95", np.nan), null.get("p_value", np.nan)
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no pid.jsonl records for protocol {protocol!r} under {root}")
    return pd.DataFrame(rows)


def tail_change(epochs, accs, fraction=0.2):
    """The change of test accuracy over the last `fraction` of a run's epochs (equivalently of its optimiser
    steps: every epoch has the same number), from the least-squares line through the evaluated epochs in that
    stretch; NaN with fewer than two. Near 0: the curve has levelled off."""
    epochs, accs = np.asarray(epochs, float), np.asarray(accs, float)
    span = fraction * epochs.max()
    keep = epochs >= epochs.max() - span
    if keep.sum() < 2:
        return np.nan
    return float(np.polyfit(epochs[keep], accs[keep], 1)[0] * span)


def run_core_hours(folder, records):
    """A run's cost in core-hours: the CPU time of its epochs (training, evaluation, PID) plus that outside
    them in its last session (finished.json's other_cpu_seconds: a student's teacher cache, a teacher's final
    evaluation). A record made before CPU time was logged counts its wall seconds times the thread count
    instead, which overstates the cost when the run shared its cores with other work."""
    finished = folder / "finished.json"
    info = json.loads(finished.read_text()) if finished.exists() else {}
    threads = json.loads((folder / "config.json").read_text()).get("environment", {}).get("threads", 1)
    cost = lambda r, cpu, wall: r[cpu] if cpu in r else r.get(wall, 0.0) * threads  # noqa: E731
    return (sum(cost(r, "cpu_seconds", "seconds") for r in records)
            + cost(info, "other_cpu_seconds", "other_seconds")) / 3600


def kernel_paths(folder):
    """The CPU kernel paths a run trained on, from its config.json: "AVX2", or "AVX2, AVX512 after epoch 115"
    where it was resumed on another (resumed_in; "later" for a record that predates after_epoch)."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    paths = [cfg.get("environment", {}).get("cpu_capability", "unknown")]
    paths += [f"{r['cpu_capability']} after epoch {r['after_epoch']}" if "after_epoch" in r
              else f"{r['cpu_capability']} later" for r in cfg.get("resumed_in", []) if "cpu_capability" in r["changed"]]
    return ", ".join(paths)


def cost_to_finish(root, needed):
    """Per cell of `needed` ({(protocol, cell): seeds}, claims.cells_needed): its runs started and finished,
    the core-hours spent, and an estimate of those still to go: every epoch its first `seeds` seeds still
    lack, at its method's measured core-hours per epoch (over all runs of that method in the needed
    protocols; NaN while the method has none)."""
    runs = pd.DataFrame([{"protocol": protocol, "cell": cell_name(method, teacher), "method": method, "seed": seed,
                          "epochs": len(records), "hours": run_core_hours(folder, records),
                          "finished": (folder / "finished.json").exists()}
                         for protocol in dict.fromkeys(p for p, _ in needed) if (Path(root) / protocol).is_dir()
                         for folder, method, teacher, seed in grid_runs(root, protocol)
                         for records in [read_jsonl(folder / "metrics.jsonl")]],
                        columns=["protocol", "cell", "method", "seed", "epochs", "hours", "finished"])
    per_epoch = runs.groupby("method").hours.sum() / runs.groupby("method").epochs.sum().clip(lower=1)
    rows = []
    for (protocol, cell), seeds in needed.items():
        mine = runs[(runs.protocol == protocol) & (runs.cell == cell)]
        counted = mine.sort_values("seed").head(seeds)  # the seeds a verdict reads; extra seeds cost extra
        method, _ = parse_cell(cell)
        epochs = get_protocol(protocol).epochs_of(method)
        missing_epochs = seeds * epochs - counted.epochs.clip(upper=epochs).sum()
        rows.append({"protocol": protocol, "cell": cell, "seeds": seeds, "started": len(mine),
                     "finished": int(mine.finished.sum()), "spent": mine.hours.sum(),
                     "to_go": missing_epochs * per_epoch.get(method, np.nan) if missing_epochs else 0.0})
    return pd.DataFrame(rows)


def run_accuracy(root, protocol, tail=10):
    """One row per run that has finished an epoch (in name order): cell, seed, finished, and its final, best
    and tail test accuracy (the mean over the evaluated epochs among the last `tail`), how much its
    accuracy still changes over the last 20% of the steps (tail_change), and its cost in core-hours
    (run_core_hours). An untrained teacher logs no epochs: its final accuracy is teacher.json's, and the
    others are NaN."""
    runs = []
    for folder, method, teacher, seed in grid_runs(root, protocol):
        records = read_jsonl(folder / "metrics.jsonl")
        accs = [r["test_acc"] for r in records if "test_acc" in r]
        row = {"run": folder.name, "cell": cell_name(method, teacher), "seed": seed,
               "finished": (folder / "finished.json").exists(),
               "final": np.nan, "best": np.nan, "tail_acc": np.nan, "change": np.nan,
               "core_hours": run_core_hours(folder, records)}
        if accs:
            acc = accuracy_of(records, tail)
            row.update(final=acc["final"], best=acc["best"], tail_acc=np.nan if acc["tail"] is None else acc["tail"],
                       change=tail_change([r["epoch"] for r in records if "test_acc" in r], accs))
        elif (folder / "teacher.json").exists():
            row["final"] = json.loads((folder / "teacher.json").read_text())["test_acc"]
        else:
            continue  # created but no epoch finished yet
        runs.append(row)
    if not runs:
        raise FileNotFoundError(f"no run of protocol {protocol!r} under {root} has finished an epoch")
    return pd.DataFrame(runs)


def accuracy_summary(root, protocol, tail=10):
    """One row per grid cell (in CELLS order): seeds, finished runs, and the mean and standard deviation
    over seeds (NaN for one seed: there is no spread to estimate) of each run's final, best and tail test
    accuracy (the mean over the evaluated epochs among the last `tail`), and of its tail_change (run_accuracy).
    core_hours is the cell's cost summed over its runs."""
    df = run_accuracy(root, protocol, tail)
    out = df.groupby("cell").agg(seeds=("seed", "size"), finished=("finished", "sum"), core_hours=("core_hours", "sum"),
                                 **{f"{k}{suffix}": (k, agg) for k in ("final", "best", "tail_acc", "change")
                                    for suffix, agg in (("", "mean"), ("_std", "std"))})
    order = {c: i for i, c in enumerate(CELLS)}
    return out.reset_index().sort_values("cell", key=lambda c: c.map(order)).reset_index(drop=True)


def grid_status(root, protocol):
    """One row per student cell of CELLS: the seeds of its finished runs and of its runs still training (a
    folder without finished.json), as sorted lists."""
    done, training = {}, {}
    for folder, method, teacher, seed in grid_runs(root, protocol):
        if method != "teacher":
            into = done if (folder / "finished.json").exists() else training
            into.setdefault(cell_name(method, teacher), []).append(seed)
    return pd.DataFrame([{"cell": c, "finished": sorted(done.get(c, [])), "training": sorted(training.get(c, []))}
                         for c in CELLS if not c.startswith("teacher")])


def describe_status(status, seeds):
    """The grid's state in plain words, from grid_status: finished runs out of `seeds` per cell for the paper's
    cells and for CIFD, and each cell short of `seeds` finished runs."""
    lines = []
    for label, cells in (("paper", [c for c in PAPER_CELLS if not c.startswith("teacher")]),
                         ("CIFD (this project's addition)", [c for c in CELLS if c.startswith("CIFD")])):
        s = status[status.cell.isin(cells)]
        n = sum(min(len(f), seeds) for f in s.finished)
        lines.append(f"{label}: {n} of {seeds * len(cells)} student runs finished")
    short = []
    for cell, done, training in status[["cell", "finished", "training"]].itertuples(index=False):
        if len(done) < seeds:
            state = "not run yet" if not done else f"{len(done)} of {seeds} seeds"
            short.append(f"{cell} {state}" + (f" ({len(training)} training)" if training else ""))
    if short:
        lines.append(f"short of {seeds} seeds: " + ", ".join(short))
    else:
        lines.append(f"every cell has {seeds} seeds")
    return lines


def over_seeds(df, value, by=("cell", "epoch")):
    """Mean, standard deviation (0 for a single seed) and number of seeds of `value` per group."""
    out = df.groupby(list(by))[value].agg(["mean", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def shuffled_null(counts, unit="nats", null=100, seed=0):
    """PID of `counts` and a shuffled-label null, from a logged joint histogram.

    The (teacher cluster, student cluster, label) triples are rebuilt from the counts, so this equals the
    null of ridrepro.pid.pid_from_clusters on the original samples (up to the order of the samples, which
    only changes which permutations are drawn).
    """
    counts = np.asarray(counts)
    if counts.ndim != 3 or (counts < 0).any() or counts.sum() == 0:
        raise ValueError(f"counts must be a non-negative (t, s, y) histogram with samples, got shape {counts.shape}")
    t, s, y = np.repeat(np.indices(counts.shape).reshape(3, -1), counts.ravel(), axis=1)
    return pid_from_clusters(t, s, y, unit=unit, null=null, seed=seed)
