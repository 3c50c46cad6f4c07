"""Benchmark (not a test): the certified interior-point BROJA solver against the cvxpy/Clarabel
reference in the same process, one thread, and the features path at the paper's scale.

    python benchmarks/bench_pid.py [--reps 5] [--quick]

Prints, per size: median time of each solver, their ratio, the largest |atom difference| (bits),
and the largest certified gap. Dense Dirichlet(1) tables, as in /work/shared/reference/pid.md. Then a
bootstrap-like batch, the certificate on 1,600 near-deterministic tables (--peaked), and the
features path.
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: one thread, as in the reference table

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from ridrepro.pid import broja_pid, broja_pid_batch, representation_pid  # noqa: E402

ATOMS = ("red", "uni_t", "uni_s", "syn")


def timed(f, *args, **kw):
    t = time.perf_counter()
    out = f(*args, **kw)
    return time.perf_counter() - t, out


def bench_solvers(sizes, reps, cvx_reps, seed=0):
    rng = np.random.default_rng(seed)
    print(f"{'size':>10} | {'ip median':>10} | {'cvxpy median':>12} | {'ratio':>6} | {'max |diff| bits':>15} | {'max gap bits':>12}")
    print("-" * 82)
    rows = []
    for shape in sizes:
        tables = [rng.dirichlet(np.ones(int(np.prod(shape)))).reshape(shape) for _ in range(reps)]
        broja_pid(tables[0])  # warm-up (imports, caches)
        ip = [timed(broja_pid, P) for P in tables]
        cvx = [timed(broja_pid, P, solver="cvxpy") for P in tables[:cvx_reps]]
        t_ip = statistics.median(t for t, _ in ip)
        t_cvx = statistics.median(t for t, _ in cvx)
        diff = max(abs(getattr(a, k) - getattr(b, k)) for (_, a), (_, b) in zip(ip, cvx) for k in ATOMS)
        gap = max(r.gap for _, r in ip)
        name = "x".join(map(str, shape))
        print(f"{name:>10} | {t_ip * 1e3:8.1f}ms | {t_cvx * 1e3:10.0f}ms | {t_cvx / t_ip:5.0f}x | {diff:15.1e} | {gap:12.1e}")
        rows.append((name, t_ip, t_cvx, diff, gap))
    return rows


def bench_batch(reps=200, seed=1):
    rng = np.random.default_rng(seed)
    base = rng.dirichlet(np.ones(1000)).reshape(10, 10, 10)
    tables = [rng.multinomial(10000, base.ravel()).reshape(10, 10, 10) / 10000 for _ in range(reps)]
    t_batch, _ = timed(broja_pid_batch, tables)
    t_single, _ = timed(lambda: [broja_pid(P) for P in tables[:50]])
    print(f"\nbootstrap-like batch of {reps} 10x10x10 tables: {t_batch / reps * 1e3:.1f} ms per table "
          f"(single calls: {t_single / 50 * 1e3:.1f} ms per table)")


def peaked_tables(n, seed):
    """Near-deterministic tables: Dirichlet(0.005-0.1) weights (entries far below 1e-100) on random
    shapes up to 11x11x7, a quarter of them replaced by multinomial counts of 100-10,000 samples."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = tuple(int(v) for v in rng.integers(2, [12, 12, 8]))
        P = rng.dirichlet(np.full(int(np.prod(shape)), [0.005, 0.01, 0.02, 0.05, 0.1][i % 5])).reshape(shape)
        if i % 4 == 0:
            k = [100, 1000, 10000][i % 3]
            P = rng.multinomial(k, P.ravel()).reshape(shape) / k
        out.append(P)
    return out


def bench_peaked(n=1600, seed=31):
    """Robustness rather than speed: how close the certificate gets on hard tables."""
    tables = peaked_tables(n // 2, seed) + peaked_tables(n - n // 2, seed + 100)
    t, rs = timed(lambda: [broja_pid(P, unit="nats") for P in tables])
    gaps, its = np.array([r.gap for r in rs]), np.array([r.iterations for r in rs])
    print(f"\n{n} peaked tables: certified gap > 1e-11 nats in {(gaps > 1e-11).sum()}, > 1e-9 nats in "
          f"{(gaps > 1e-9).sum()}, largest {gaps.max():.1e} nats; iterations mean {its.mean():.1f}, "
          f"max {its.max()}; {t / n * 1e3:.1f} ms per table")


def bench_features(seed=2):
    rng = np.random.default_rng(seed)
    n = 10000
    y = rng.integers(0, 10, n)
    t = rng.normal(size=(10, 8192)).astype(np.float32)[y] * 0.3 + rng.normal(size=(n, 8192)).astype(np.float32)
    s = rng.normal(size=(10, 4096)).astype(np.float32)[y] * 0.2 + rng.normal(size=(n, 4096)).astype(np.float32)
    for preset in ("paper-code", "paper-text"):
        dt, r = timed(representation_pid, t, s, y, preset=preset)
        print(f"features {n}x8192 + {n}x4096, preset {preset}: {dt:.2f} s (red {r.red:.4f} nats, gap {r.gap:.1e})")
    dt, r = timed(representation_pid, t, s, y, bootstrap=200, null=100)
    print(f"  same with bootstrap=200 and null=100: {dt:.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="tables per size for the default solver")
    ap.add_argument("--cvx-reps", type=int, default=3, help="tables per size also solved by cvxpy")
    ap.add_argument("--quick", action="store_true", help="skip 50x50x10 and the features path")
    ap.add_argument("--peaked", type=int, default=1600, help="near-deterministic tables for the robustness line (0: skip)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Solution may be inaccurate")  # reported as max |diff|
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}, numpy {np.__version__}, one thread")
    sizes = [(2, 2, 2), (5, 5, 5), (10, 10, 10), (20, 20, 10)] + ([] if args.quick else [(50, 50, 10)])
    bench_solvers(sizes, args.reps, min(args.cvx_reps, args.reps))
    bench_batch()
    if args.peaked:
        bench_peaked(args.peaked)
    if not args.quick:
        os.environ.pop("OMP_NUM_THREADS")  # the features path is timed as a user runs it
        bench_features()


if __name__ == "__main__":
    main()
