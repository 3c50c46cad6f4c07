"""Command line for reading grids: `ridrepro summary | probes | rdm-curves | sensitivity | intervals`. Modules that need
pandas are imported inside the commands: the command line must start on bare GPU nodes without it."""

import json
import time
from pathlib import Path

import torch

from ridrepro.argtypes import NON_NEGATIVE, POSITIVE, THREADS, float_at_least, int_at_least, seeds_option
from ridrepro.files import read_json
from ridrepro.layout import DEFAULT_RUNS, METHODS, TEACHER_KINDS
from ridrepro.protocols import PROTOCOLS

OUT_HELP = "output path without suffix (OUT.json, OUT.csv)"
RUNS_HELP = f"root folder of run folders (default: ./{DEFAULT_RUNS}; the committed grids are under results/)"


def _grid(sub, name, help, protocols=PROTOCOLS, out=None):
    """A command that reads one grid: --protocol, --runs and, with `out`, --out."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--protocol", required=True, choices=list(protocols), help="the grid to read")
    p.add_argument("--runs", default=DEFAULT_RUNS, help=RUNS_HELP)
    if out:
        p.add_argument("--out", required=True, help=out)
    return p


def add_commands(sub):
    p = _grid(sub, "summary", "accuracy table of a grid: final and best test accuracy and its mean over the last "
                              "epochs the book's claims read (the protocol's rules', else 10), mean and std over "
                              "seeds, levelling off, core-hours")
    p.add_argument("--format", choices=["markdown", "csv", "json"], default="markdown", help="output format")
    p.set_defaults(func=cmd_summary)

    from ridrepro.analysis.probe_grid import TRANSFORMS as PROBED_TRANSFORMS
    from ridrepro.analysis.probes import BIM_EPS
    from ridrepro.analysis.probes import TRANSFORMS as PROBE_TRANSFORMS
    p = _grid(sub, "probes", "Ojha et al.'s probes (agreement, KL, BIM transfer, invariance, Grad-CAM, CKA) on a "
                             "grid's finished runs; writes OUT.json and OUT.csv", out=OUT_HELP)
    p.add_argument("--data", help="CIFAR-10 location (default: $RIDREPRO_DATA)")
    p.add_argument("--images", type=POSITIVE, default=1000, help="class-balanced test images, >= 1 (default 1000)")
    seeds_option(p, "--seeds", default=[0, 1, 2], help="student seeds, each 0 <= seed < 2**31 (default 0 1 2)")
    p.add_argument("--methods", nargs="+", choices=[m for m in METHODS if m != "bas"],
                   help="distillation methods to probe (default: all of the protocol's)")
    p.add_argument("--teachers", nargs="+", default=list(TEACHER_KINDS), choices=TEACHER_KINDS, help="teachers")
    p.add_argument("--transforms", nargs="+", default=list(PROBED_TRANSFORMS), choices=sorted(PROBE_TRANSFORMS),
                   help="input transformations for the invariance probes")
    p.add_argument("--eps", type=float_at_least(0, "BIM eps"), default=BIM_EPS * 255,
                   help="BIM eps in pixel levels of 255, >= 0 (default 4)")
    p.add_argument("--threads", type=THREADS, default=1, help="torch CPU threads, >= 1 (default 1)")
    p.set_defaults(func=cmd_probes)

    p = _grid(sub, "rdm-curves", "CIFD's RDM rate-distortion curve (distortion, accuracy, PID of (e_T, e_k; Y) "
                                 "against rate) for a grid's teachers (a protocol with CIFD); writes OUT.json, OUT.csv",
              [k for k, v in PROTOCOLS.items() if "cifd" in v.methods], OUT_HELP)
    p.add_argument("--data", help="CIFAR-10 location (default: $RIDREPRO_DATA)")
    p.add_argument("--teachers", nargs="+", default=list(TEACHER_KINDS), choices=TEACHER_KINDS, help="teachers")
    p.add_argument("--rates", type=float_at_least(0, "a rate", strict=True), nargs="+",
                   help="channel rates in nats, each > 0 (default 0.25 1 2 4 8 16 64)")
    p.add_argument("--threads", type=THREADS, default=1, help="torch CPU threads, >= 1 (default 1)")
    p.set_defaults(func=cmd_rdm_curves)

    p = _grid(sub, "sensitivity", "atoms of a grid's finished runs under other PID estimator settings (PCA, KMeans, "
                                  "seeds), from their stored PCA features; writes a CSV",
              out="the CSV to write; rows of unchanged runs in it are kept")
    p.add_argument("--clustering-seeds", type=POSITIVE, default=20,
                   help="KMeans seeds in all, seed 0 included, >= 1 (default 20)")
    p.add_argument("--null", type=NON_NEGATIVE, default=100,
                   help="shuffled-label tables per last-epoch record, >= 0 (default 100)")
    p.add_argument("--fresh", action="store_true", help="recompute every run, ignoring the rows in --out")
    p.set_defaults(func=cmd_sensitivity)

    p = _grid(sub, "intervals", "combined PID intervals (clustering seeds and bootstrap) of a grid's records, from "
                                "their stored features, into <run>/pid_intervals.jsonl; resumable")
    p.add_argument("--run-folders", nargs="+", metavar="FOLDER",
                   help="run folders under RUNS/PROTOCOL (default: every one with a pid.jsonl)")
    p.add_argument("--clustering-seeds", type=int_at_least(10, "the number of clustering seeds"), default=20,
                   help="KMeans seeds, seed 0 first, >= 10 (default 20)")
    p.add_argument("--bootstrap", type=int_at_least(100, "the number of bootstrap resamples"), default=200,
                   help="bootstrap resamples of the test images, >= 100 (default 200)")
    p.add_argument("--report", action="store_true",
                   help="write nothing; print per atom how many records have their point inside the logged, the "
                        "bootstrap and the combined interval")
    p.set_defaults(func=cmd_intervals)


def check_records(runs, protocol):
    """Read every run's JSON record of a grid once, so that a damaged one is named with the way out before the
    tables are built."""
    for path in sorted(Path(runs, protocol).glob("*/*.json")):
        read_json(path, "restore it from git (committed grids), or delete the run folder and re-run the run")


def cmd_summary(args):
    from ridrepro.analysis.claims import tail_epochs
    from ridrepro.analysis.results import accuracy_summary

    check_records(args.runs, args.protocol)
    tail = tail_epochs(args.protocol)  # the book's claims read a run's accuracy over these last epochs
    table = accuracy_summary(args.runs, args.protocol, tail).assign(tail_epochs=tail)
    cols = [f"{c}{suffix}" for c in ("final", "best", "tail_acc", "change") for suffix in ("", "_std")]
    if args.format == "json":
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        print(json.dumps(records, indent=2, default=int))
    elif args.format == "csv":
        print(table[["cell", "seeds", "finished", *cols, "tail_epochs", "core_hours"]].to_csv(index=False), end="")
    else:
        # m != m: NaN. A value from one run has no spread (s is NaN), so it prints alone.
        fmt = lambda m, s: "-" if m != m else f"{m:.4f}" if s != s else f"{m:.4f} ± {s:.4f}"  # noqa: E731
        print(f"| cell | seeds (finished) | final | best | mean of last {tail} epochs | change over last 20 % "
              "| core-hours |\n|---|---|---|---|---|---|---|")
        for r in table.itertuples():
            print(f"| {r.cell} | {r.seeds} ({r.finished}) | " + " | ".join(
                fmt(getattr(r, c), getattr(r, c + "_std")) for c in ("final", "best", "tail_acc", "change"))
                + f" | {r.core_hours:.2f} |")
        print(f"| all | {table.seeds.sum()} ({table.finished.sum()}) | | | | | {table.core_hours.sum():.2f} |")
    return 0


def cmd_probes(args):
    from ridrepro.analysis.probe_grid import probe_grid, write

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = probe_grid(args.runs, args.protocol, data=args.data, n_images=args.images, seeds=args.seeds,
                        methods=args.methods, teachers=args.teachers, transforms=args.transforms, eps=args.eps / 255)
    return _write(result, args.out, write, start)


def cmd_rdm_curves(args):
    from ridrepro.analysis.probe_grid import write
    from ridrepro.analysis.rdm_curves import RD_COLUMNS, RD_RATES, rate_distortion_curves

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = rate_distortion_curves(args.runs, args.protocol, args.teachers, args.rates or RD_RATES, data=args.data)
    return _write(result, args.out, lambda r, out: write(r, out, RD_COLUMNS), start)


def _write(result, out, write, start):
    result["seconds"]["total"] = time.perf_counter() - start
    js, csv = write(result, out)
    print(f"{len(result['rows'])} rows, {len(result['missing'])} missing; {js}, {csv} "
          f"({result['seconds']['total']:.0f} s)")
    return 0


def cmd_sensitivity(args):
    from ridrepro.analysis.sensitivity import update_table

    table = update_table(args.runs, args.protocol, args.out, args.clustering_seeds, args.null, fresh=args.fresh)
    print(f"{args.out}: {len(table)} rows from {table.run.nunique()} runs")
    return 0


def cmd_intervals(args):
    from ridrepro.analysis.intervals import inside_counts, load_intervals, recompute_run

    root = Path(args.runs, args.protocol)
    with_pid = sorted(p.parent.name for p in root.glob("*/pid.jsonl"))
    if not with_pid:
        raise FileNotFoundError(f"no run folder with a pid.jsonl under {root}: pass --runs and --protocol of a grid "
                                "that has PID records")
    unknown = sorted(set(args.run_folders or ()) - set(with_pid))
    if unknown:
        raise FileNotFoundError(f"no pid.jsonl in {', '.join(str(root / u) for u in unknown)}: choose from "
                                f"{', '.join(with_pid)}")
    if not args.report:
        t0 = time.perf_counter()
        for name in args.run_folders or with_pid:
            n = recompute_run(root / name, K=args.clustering_seeds, B=args.bootstrap, log=lambda *_: None)
            print(f"{root / name}: {n} records written ({time.perf_counter() - t0:.0f} s so far)")
    rows = load_intervals(root)
    print(inside_counts(rows).to_string() if rows else f"no pid_intervals.jsonl under {root} yet")
    return 0
