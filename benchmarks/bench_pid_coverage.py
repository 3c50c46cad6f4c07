"""Benchmark (not a test): do the PID atoms' 95 % bootstrap intervals cover the true atoms?

    OMP_NUM_THREADS=1 python benchmarks/bench_pid_coverage.py [--reps 200] [--B 200] [--only XOR,MIX10] [--bca]

For each distribution of known PID: draw N samples (one multinomial histogram), form the old percentile
interval and the new ones from bootstraps of that draw, and count whether each contains the exact atom;
repeat `reps` times. Writes benchmarks/results/pid_coverage.{md,csv}.
Distributions: the gates and the paper's Examples 1-3 (ridrepro.pid.gates), two Theorem 3.1 toy teachers
from book/toy_teachers.ipynb (ridrepro/toy.py's neural toy has no exact joint table), MIX10 (a 10x10x10
table with all four atoms non-zero, built below), CIFAR-like (a committed cpu-4k histogram taken as the
truth) and CIFAR-tail (the same with a thin tail, as sparse as the real tables' draws).
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import binom  # noqa: E402

from ridrepro.pid import broja_pid  # noqa: E402
from ridrepro.pid.gates import gates, joint_from_samples  # noqa: E402
from ridrepro.pid.intervals import NAMES, _check_counts, _jackknife, interval, replicates  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CIFAR_LIKE = ("results/cpu-4k/rid-tt-s1/pid.jsonl", 40, "tt")  # a trained student: 420 occupied cells
TOL = 1e-9  # nats: the solver's certified gap is ~1e-11; exact zeros must count as covered


def theorem31(student, a=0.2, b=0.5, noise=0.1):
    """book/toy_teachers.ipynb's nuisance teacher: T = (Z, G), Z ~ Ber(a), G ~ Ber(b), Y = Z xor N."""
    out = []
    for z, g, n in itertools.product((0, 1), repeat=3):
        p = (a if z else 1 - a) * (b if g else 1 - b) * (noise if n else 1 - noise)
        out.append(((2 * z + g, student(z, g), z ^ n), p))
    return joint_from_samples(out)


def mix10(flip=0.2, keep=0.5, eps=0.05):
    """10x10x10 table, Y = 5a + b (a a bit, b in 0..4, uniform). T = 2b + u, u ~ Ber(flip): T knows b;
    S = 5 (a xor u) + v, v = b with probability keep else uniform: S knows b partly (redundancy with T)
    and a through the flipped a xor u (unique to S), and (T, S) give a exactly (synergy). eps of the mass
    is spread uniformly, so all 1,000 cells are occupied, most of them thinly, as in the CIFAR tables."""
    P = np.zeros((10, 10, 10))
    for a, b, u, v in itertools.product(range(2), range(5), range(2), range(5)):
        P[2 * b + u, 5 * (a ^ u) + v, 5 * a + b] += 0.1 * (flip if u else 1 - flip) * (
            (keep if v == b else 0) + (1 - keep) / 5)
    return (1 - eps) * P + eps / P.size


def cifar_like():
    path, epoch, teacher = CIFAR_LIKE
    for line in (ROOT / path).read_text().splitlines():
        r = json.loads(line)
        if r["epoch"] == epoch and r["teacher"] == teacher:
            c = np.asarray(r["counts"], float)
            return c / c.sum()
    raise KeyError(f"no record epoch {epoch} teacher {teacher} in {path}")


def distributions():
    """name -> (P, exact atoms in nats). Gate atoms are checked against gates()'s closed forms."""
    out = {}
    for name, (P, bits) in gates().items():
        r = broja_pid(P, unit="nats")
        for a, v in bits.items():
            assert abs(getattr(r, a) - v * math.log(2)) < 1e-7, (name, a)
        out[name] = P
    out["THM31_S=Z"] = theorem31(lambda z, g: z)
    out["THM31_S=G"] = theorem31(lambda z, g: g)
    out["MIX10"] = mix10()
    out["CIFAR-like"] = cifar_like()
    out["CIFAR-tail"] = 0.98 * out["CIFAR-like"] + 0.02 * np.random.default_rng(5).dirichlet(
        np.full(1000, 0.5)).reshape(10, 10, 10)
    return {k: (P, {a: getattr(r, a) for a in NAMES}) for k, P in out.items()
            for r in [broja_pid(P, unit="nats")]}


ARMS = {  # label -> (interval method, bootstrap population)
    "old": ("percentile", "empirical"),
    "basic-empirical": ("basic", "empirical"),
    "new": ("basic", "chao"),
}


def study(P, truth, n, reps, B, B_old, bca, seed):
    """Per draw and atom: the point, the bias estimates and whether each arm's interval covers the truth.
    The old and basic-empirical arms share B_old replicates of the empirical bootstrap (the logged B)."""
    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(reps):
        counts = _check_counts(rng.multinomial(n, P.ravel()).reshape(P.shape))
        point, ref_e, boot_e = replicates(counts, "nats", B_old, int(rng.integers(2**31)), "empirical")
        _, ref_c, boot_c = replicates(counts, "nats", B, int(rng.integers(2**31)), "chao")
        jack = _jackknife(counts, "nats") if bca else None
        for i, a in enumerate(NAMES):
            row = {"rep": rep, "atom": a, "truth": truth[a], "point": point[i],
                   "bias_empirical": boot_e[:, i].mean() - ref_e[i], "bias_chao": boot_c[:, i].mean() - ref_c[i]}
            arms = {"old": interval(point[i], boot_e[:, i], 0.95, "percentile"),
                    "basic-empirical": interval(point[i], boot_e[:, i], 0.95, "basic", reference=ref_e[i]),
                    "new": interval(point[i], boot_c[:, i], 0.95, "basic", reference=ref_c[i])}
            if bca:
                arms["bca"] = interval(point[i], boot_e[:, i], 0.95, "bca", (jack[0][:, i], jack[1]))
            for m, (lo, hi) in arms.items():
                lo, hi = max(lo, 0.0), max(hi, 0.0)
                row[f"cover_{m}"] = lo - TOL <= truth[a] <= hi + TOL
                row[f"width_{m}"] = hi - lo
            rows.append(row)
    return pd.DataFrame(rows)


def summary(df, arms):
    g = df.groupby("atom", sort=False)
    truth = g.truth.first()
    out = pd.DataFrame({"truth": truth, "plugin_bias": g.point.mean() - truth, "sd": g.point.std(ddof=1),
                        "bias_est_empirical": g.bias_empirical.mean(), "bias_est_chao": g.bias_chao.mean()})
    for m in arms:
        out[f"cover_{m}"] = g[f"cover_{m}"].mean()
        out[f"width_{m}"] = g[f"width_{m}"].mean()
    return out


def markdown(table, arms, header):
    lines = header + ["", "| distribution | atom | truth | plug-in bias | bias est. (empirical) | bias est. (Chao) | "
                      + " | ".join(f"cover {m}" for m in arms) + " | width new |",
                      "|---|---|---:|---:|---:|---:|" + "---:|" * (len(arms) + 1)]
    for (d, a), r in table.iterrows():
        cells = [f"**{r[f'cover_{m}']:.3f}**" if r[f"cover_{m}"] < 0.90 else f"{r[f'cover_{m}']:.3f}" for m in arms]
        lines.append(f"| {d} | {a} | {r.truth:.4f} | {r.plugin_bias:+.4f} | {r.bias_est_empirical:+.4f} | "
                     f"{r.bias_est_chao:+.4f} | " + " | ".join(cells) + f" | {r.width_new:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--B", type=int, default=200, help="replicates of the new interval's bootstrap")
    ap.add_argument("--B-old", type=int, default=100, help="replicates of the old one (pid.jsonl's B)")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--bca", action="store_true", help="add a BCa arm (empirical bootstrap; a jackknife per draw)")
    ap.add_argument("--only", default="", help="comma list of distributions (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/pid_coverage"), help="path stem of .md, .csv")
    args = ap.parse_args(argv)
    arms = list(ARMS) + (["bca"] if args.bca else [])
    dists = distributions()
    names = args.only.split(",") if args.only else list(dists)
    parts, times = [], {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for k, name in enumerate(names):
        P, truth = dists[name]
        t0, c0 = time.perf_counter(), time.process_time()
        df = study(P, truth, args.n, args.reps, args.B, args.B_old, args.bca, args.seed + k)
        times[name] = (time.process_time() - c0, time.perf_counter() - t0)
        s = summary(df, arms)
        s.insert(0, "distribution", name)
        parts.append(s.reset_index())
        print(f"{name}: cpu {times[name][0]:.0f}s wall {times[name][1]:.0f}s  " + "  ".join(
            f"{a} " + "/".join(f"{s.loc[a, f'cover_{m}']:.2f}" for m in arms) for a in NAMES), flush=True)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    table = pd.concat(parts).set_index(["distribution", "atom"])
    header = [
        "# Coverage of the PID atoms' 95 % bootstrap intervals",
        "",
        f"Generated by `benchmarks/bench_pid_coverage.py`: N = {args.n} samples per draw, {args.reps} draws per "
        "distribution, nats, ci = 0.95. Arms, all from the same draw: **old** = percentile interval of the "
        f"empirical bootstrap, B = {args.B_old} (what pid.jsonl logs); **basic-empirical** = reverse-percentile "
        "(basic) interval from the same replicates; **new** = basic interval from Chao et al.'s bootstrap "
        f"population (`ridrepro.pid.intervals.bootstrap_population`), B = {args.B}"
        + ("; **bca** = BCa from the old arm's replicates and a per-cell jackknife" if args.bca else "")
        + ". Intervals are clipped at 0; an exact atom counts as covered within "
        f"{TOL:g} nats. Coverage below 0.90 in bold (with {args.reps} draws, a true coverage of 0.95 reads below "
        f"0.92 with probability {binom.cdf(math.ceil(0.92 * args.reps) - 1, args.reps, 0.95):.1%}, below 0.90 with "
        f"{binom.cdf(math.ceil(0.90 * args.reps) - 1, args.reps, 0.95):.2%}). plug-in bias = mean point - truth; "
        "bias est. = mean over draws of the bootstrap's "
        "estimate of it (mean replicate - statistic of the resampled population).",
        "",
        f"Cost: {cpu / 60:.1f} min of CPU time on one core (OMP_NUM_THREADS=1; {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs, so {wall / 60:.1f} min wall). Per distribution (CPU s): "
        + ", ".join(f"{k} {v[0]:.0f}" for k, v in times.items()) + ".",
        "",
        "Distributions: the gates and the paper's Examples 1-3 of `ridrepro.pid.gates`; THM31_S=Z/G = the toy "
        "chapter's Theorem 3.1 teacher T = (Z, G), Z ~ Ber(0.2), G ~ Ber(0.5), Y = Z xor N, N ~ Ber(0.1), student "
        "S = Z or G; MIX10 = `mix10()`, a 10x10x10 table with all four atoms non-zero and a thin uniform tail; "
        "CIFAR-like = the cpu-4k histogram of rid-tt-s1, epoch 40, teacher tt, taken as the truth (no mass "
        "outside its 420 occupied cells); CIFAR-tail = CIFAR-like with 2 % of the mass moved to a Dirichlet(0.5) "
        "tail over all 1,000 cells (its draws have ~130 singleton cells, the median of the cpu-4k tables is 126).",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(f"{args.out}.csv", float_format="%.6g")
    Path(f"{args.out}.md").write_text(markdown(table, arms, header))
    print(f"wrote {args.out}.md and .csv ({cpu / 60:.1f} min CPU, {wall / 60:.1f} min wall)")


if __name__ == "__main__":
    main()
