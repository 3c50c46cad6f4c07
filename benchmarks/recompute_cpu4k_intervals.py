"""Write the new PID intervals of every committed cpu-4k record whose stored features exist, into
results/cpu-4k/<run>/pid_intervals.jsonl beside pid.jsonl (never modified), one line per (epoch, teacher).
Resumable: lines already written are kept. Then print, per atom, how many records have their point inside
the old, the new bootstrap and the combined interval.

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/recompute_cpu4k_intervals.py [--K 20] [--B 200] [--runs a,b]
    python benchmarks/recompute_cpu4k_intervals.py --report      # counts only
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from ridrepro.analysis.intervals import inside_counts, load_intervals, recompute_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(ROOT / "results/cpu-4k"))
    ap.add_argument("--K", type=int, default=20, help="clustering seeds (seed 0 first)")
    ap.add_argument("--B", type=int, default=200, help="bootstrap replicates")
    ap.add_argument("--runs", default="", help="comma list of run folders (default: all with pid.jsonl)")
    ap.add_argument("--report", action="store_true", help="only print the counts of what is written")
    args = ap.parse_args(argv)
    if args.K < 10 or args.B < 100:
        ap.error(f"need K >= 10 and B >= 100, got {args.K} and {args.B}")
    folders = sorted(p.parent for p in Path(args.root).glob("*/pid.jsonl"))
    if args.runs:
        folders = [f for f in folders if f.name in args.runs.split(",")]
    if not args.report:
        t0, c0 = time.perf_counter(), time.process_time()
        for f in folders:
            n = recompute_run(f, K=args.K, B=args.B, log=lambda *_: None)
            print(f"{f.name}: {n} records written; {time.process_time() - c0:.0f}s CPU, "
                  f"{time.perf_counter() - t0:.0f}s wall so far", flush=True)
    print(inside_counts(load_intervals(args.root)).to_string())


if __name__ == "__main__":
    main()
