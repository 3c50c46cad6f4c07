"""The claims the book tests on CIFAR-10 grids, as data, and the one rule that judges them.

A verdict is "reproduced", "not reproduced" or "inconclusive", always with its reason. A claim is
inconclusive while a cell it reads has too few finished seeds, has not levelled off, or carries a named
confound. Each protocol's rules were committed before its distilled students ran (git log shows the order).
"""

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    a: str  # the cell the claim is about
    rule: str  # above | below | par | close | at_least | differs | all_below | present | near_zero
    b: str | None = None  # the cell it is compared with
    factor: float = 1.0  # at_least: a >= factor * b
    threshold: float | None = None  # all_below: every run's value < threshold; near_zero: the tolerance
    metric: str = "accuracy"  # the per-run value (METRICS)
    source: str = ""  # where the paper makes it
    seeds: int | None = None  # None: the protocol's
    levelled: bool = True  # whether its cells must have levelled off (a claim about accuracy)


@dataclass(frozen=True)
class Rules:
    """How one protocol's grid is judged."""
    protocol: str
    seeds: int  # finished runs per cell that a verdict needs
    tail_epochs: int  # a run's accuracy: the mean over its evaluated epochs among the last tail_epochs
    window: float = 0.2  # levelled off: the accuracy change over this last fraction of the epochs (tail_change)
    max_change_cell: float = 0.01  # ... of the mean over seeds, at most this
    max_change_run: float | None = None  # ... and of every run, at most this (None: not required)
    tolerance: dict = field(default_factory=lambda: {"par": 0.01, "close": 0.02})
    confounds: dict = field(default_factory=dict)  # cell -> what differs for it; its claims are inconclusive
    variants: dict = field(default_factory=dict)  # another protocol -> the suffix its cells get, e.g. " (torch init)"
    suffix: str = ""  # the suffix the protocol's own cells get (a variant judged against its base's cells)
    claims: tuple = ()
    intervals: str = "combined"  # atom claims: pid_intervals.jsonl's combined interval, or "percentile" (pid.jsonl's)

    @property
    def suffixes(self):
        """protocol -> the suffix its cells get in the claims: the rules' own protocol, then each variant."""
        return {self.protocol: self.suffix, **self.variants}


def compare(a, b, rule, factor=1.0, tolerance=None):
    """One comparison of per-seed values a and b: (difference, spread, holds).

    difference = mean(a) - factor * mean(b); spread = sd(a) + factor * sd(b), the seeds' sample standard
    deviations (NaN with one seed). above / below: the difference exceeds the spread; par / close: it is within
    the spread or within the tolerance; at_least: the difference is >= 0; differs: |difference| > spread."""
    tolerance = tolerance or {"par": 0.01, "close": 0.02}
    a, b = np.asarray(a, float), np.asarray(b, float)
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan  # noqa: E731
    d = float(a.mean() - factor * b.mean())
    spread = sd(a) + factor * sd(b)
    s = 0.0 if math.isnan(spread) else spread
    holds = {"above": d > s, "below": d < -s, "at_least": d >= 0, "differs": abs(d) > s,
             "par": abs(d) <= max(s, tolerance["par"]), "close": abs(d) <= max(s, tolerance["close"])}
    if rule not in holds:
        raise ValueError(f"unknown rule {rule!r}; choose from {', '.join([*holds, 'all_below'])}")
    return d, spread, bool(holds[rule])


def judge(claim, runs, rules):
    """The verdict of one claim on a table of finished runs (run_values): a dict with the claim, the numbers
    and the verdict with its reason."""
    seeds = claim.seeds or rules.seeds
    cells = [c for c in (claim.a, claim.b) if c is not None]
    values = {c: runs[runs.cell == c][claim.metric].dropna().to_numpy() for c in cells}
    out = {"key": claim.key, "claim": claim.text, "source": claim.source, "difference": math.nan,
           "spread": math.nan, "seeds": min(len(v) for v in values.values())}
    if claim.rule == "all_below":
        v = values[claim.a]
        out["difference"] = float(v.max() - claim.threshold) if len(v) else math.nan
        holds = bool(len(v) and (v < claim.threshold).all())
    elif claim.rule in ("present", "near_zero"):
        # per seed, from the atom's interval: present when its lower end clears the null's q95 in every seed;
        # near_zero when its lower end is within the tolerance of 0 in every seed (the atom may be that small)
        d = runs[(runs.cell == claim.a)].dropna(subset=[claim.metric])
        if claim.rule == "present":
            margin = (d[claim.metric + ".lo"] - d[claim.metric + ".q95"]).to_numpy(float)
            out["difference"] = float(margin.min()) if len(margin) else math.nan
            holds = bool(len(margin) and (margin > 0).all())
        else:
            lo = d[claim.metric + ".lo"].to_numpy(float)
            out["difference"] = float(lo.max() - claim.threshold) if len(lo) else math.nan
            holds = bool(len(lo) and (lo <= claim.threshold).all())
    elif min(len(v) for v in values.values()):
        out["difference"], out["spread"], holds = compare(values[claim.a], values[claim.b], claim.rule,
                                                          claim.factor, rules.tolerance)
    reasons = []
    short = [f"{c} has {len(values[c])} of {seeds} seeds" for c in cells if len(values[c]) < seeds]
    reasons += short
    if claim.levelled:
        reasons += [f"{c} has not levelled off ({why})" for c in cells
                    for why in [levelled_off(runs[runs.cell == c], rules)] if why]
    reasons += [f"{c}: {rules.confounds[c]}" for c in cells if c in rules.confounds]
    if out["seeds"] == 0:
        out.update(verdict=INCONCLUSIVE, reason="; ".join(reasons))
        return out
    so_far = REPRODUCED if holds else NOT_REPRODUCED
    if reasons:
        out.update(verdict=INCONCLUSIVE, reason="; ".join(reasons) + f" (so far: {so_far})")
    else:
        out.update(verdict=so_far, reason=f"{seeds} seeds, levelled off" if claim.levelled else f"{seeds} seeds")
    return out


def levelled_off(cell_runs, rules):
    """'' when a cell's runs have levelled off by the rules, else why not."""
    if not len(cell_runs):
        return ""
    why = []
    mean_change = float(np.mean(cell_runs.change))
    if not abs(mean_change) <= rules.max_change_cell:
        why.append(f"the seeds' mean moves {mean_change:+.3f} over the last {rules.window:.0%} of epochs")
    if rules.max_change_run is not None:
        worst = cell_runs.change.abs().max()
        if not worst <= rules.max_change_run:
            why.append(f"a seed moves {worst:.3f}")
    return ", ".join(why)


def verdicts(root, rules):
    """Every claim of a protocol's rules judged on the finished runs under root, as a DataFrame."""
    import pandas as pd

    runs = run_values(root, rules)
    return pd.DataFrame([judge(c, runs, rules) for c in rules.claims])


def cells_needed(rules):
    """{(protocol, cell): finished seeds the rules need} for every cell a claim reads; a variant's cells under
    their own protocol, named without the variant's suffix (("paper-code-4k-torch-init", "RID-ut"))."""
    protocol_of = {s: p for p, s in rules.suffixes.items()}
    needed = {}
    for claim in rules.claims:
        for cell in filter(None, (claim.a, claim.b)):
            suffix = max((s for s in protocol_of if cell.endswith(s)), key=len)
            key = (protocol_of[suffix], cell[: len(cell) - len(suffix)])
            needed[key] = max(needed.get(key, 0), claim.seeds or rules.seeds)
    return needed


def never_levelled(runs, rules):
    """{cell: why} for each cell that a claim reads on levelled-off runs, that has every finished seed the rules
    need and still has not levelled off: no further run of its protocol can settle those claims (runs:
    run_values)."""
    suffix = rules.suffixes
    out = {}
    for (protocol, cell), seeds in cells_needed(rules).items():
        name = cell + suffix[protocol]
        mine = runs[runs.cell == name]
        why = levelled_off(mine, rules)
        if why and len(mine) >= seeds and any(c.levelled and name in (c.a, c.b) for c in rules.claims):
            out[name] = why
    return out


def verdict_table(v, *extra):
    """Verdicts (verdicts, atom_verdicts) as the book prints them: claim, signed difference, spread, verdict and
    why, with any of `extra` ("seeds"; "source", headed "in the paper") inserted where they belong; "-" where a
    cell has no value."""
    import pandas as pd

    unknown = set(extra) - {"seeds", "source"}
    if unknown:
        raise ValueError(f"verdict_table: unknown extra column(s) {sorted(unknown)}; use 'seeds' or 'source'")

    def num(spec):
        return lambda x: "-" if x != x else format(x, spec)

    cols = {"claim": v.claim, "difference": v.difference.map(num("+.3f")), "spread": v.spread.map(num(".3f"))}
    cols |= {"seeds": v.seeds} if "seeds" in extra else {}
    cols |= {"verdict": v.verdict, "why": v.reason}
    cols |= {"in the paper": v.source} if "source" in extra else {}
    return pd.DataFrame(cols)


# ----------------------------------------------------------------------------- per-run values

def run_values(root, rules):
    """One row per finished student run of the rules' protocol and its variants: cell, seed, accuracy (the
    mean over the evaluated epochs among the last rules.tail_epochs), change (tail_change over rules.window)
    and every other metric of METRICS."""
    import pandas as pd

    from ridrepro.analysis.results import grid_runs, tail_change
    from ridrepro.files import read_jsonl
    from ridrepro.layout import accuracy_of, cell_name

    rows = []
    for protocol, suffix in rules.suffixes.items():
        if not (Path(root) / protocol).is_dir():
            continue
        for folder, method, teacher, seed in grid_runs(root, protocol, finished_only=True):
            if method == "teacher":
                continue
            records = read_jsonl(folder / "metrics.jsonl")
            evaluated = [(r["epoch"], r["test_acc"]) for r in records if "test_acc" in r]
            row = {"run": folder.name, "protocol": protocol, "cell": cell_name(method, teacher) + suffix,
                   "seed": seed, "accuracy": accuracy_of(records, rules.tail_epochs)["tail"],
                   "change": tail_change(*zip(*evaluated), fraction=rules.window)}
            row.update({name: f(records) for name, f in METRICS.items()})
            rows.append(row)
    return pd.DataFrame(rows, columns=["run", "protocol", "cell", "seed", "accuracy", "change", *METRICS])


ATOMS = ("red", "uni_t", "uni_s", "syn", "i_yt", "i_ys")


def with_intervals(pid, root, protocol):
    """load_pid's records with each atom's combined interval (<atom>_clo, <atom>_chi) and bias-corrected value
    (<atom>_corrected) from <run>/pid_intervals.jsonl (ridrepro.pid.intervals); NaN where a record has none.
    The logged percentile interval (<atom>_lo, _hi: clustering fixed) stays as it is."""
    from ridrepro.files import read_jsonl

    pid = pid.copy()
    new = {}
    for run in pid.run.unique():
        for r in read_jsonl(Path(root) / protocol / run / "pid_intervals.jsonl"):
            new[(run, r["epoch"], r["teacher"])] = r["atoms"]
    for a in ATOMS:
        for col, field_ in (("_clo", "lo"), ("_chi", "hi"), ("_corrected", "corrected")):
            pid[a + col] = [new.get(k, {}).get(a, {}).get(field_, math.nan)
                            for k in zip(pid.run, pid.epoch, pid.pid_teacher)]
    return pid


def atom_table(last, intervals="combined"):
    """One row per run from its last records (one per PID teacher; cell, seed, run, the atoms, <atom>_q95 and
    the interval's columns): <teacher>.<atom> with .lo, .hi and .q95 (e.g. "ut.red.lo"), and i_ys, the
    student's own. intervals: "combined" (<atom>_clo/_chi), "percentile" (<atom>_lo/_hi) or "none" (the
    point stands for both ends: a table with no interval, such as the sensitivity table)."""
    import pandas as pd

    ends = {"combined": ("_clo", "_chi"), "percentile": ("_lo", "_hi"), "none": ("", "")}[intervals]
    rows = {}
    for r in last.itertuples():
        row = rows.setdefault(r.run, {"run": r.run, "cell": r.cell, "seed": r.seed, "change": math.nan})
        for a in ATOMS:
            key = f"{r.pid_teacher}.{a}"
            row[key] = getattr(r, a)
            row[key + ".lo"], row[key + ".hi"] = (getattr(r, a + end, math.nan) for end in ends)
            row[key + ".q95"] = getattr(r, a + "_q95", math.nan)
        row["i_ys"] = row[f"{r.pid_teacher}.i_ys"]  # the student's; the same whichever teacher it is read against
    # every teacher's columns, so that a grid without one (or with no runs) gives its claims 0 seeds, not an error
    columns = ["run", "cell", "seed", "change", "i_ys"] + [f"{t}.{a}{end}" for t in ("tt", "ut") for a in ATOMS
                                                          for end in ("", ".lo", ".hi", ".q95")]
    table = pd.DataFrame(list(rows.values()))
    return table.reindex(columns=[*table.columns, *(c for c in columns if c not in table)])


def atom_values(root, protocol, intervals="combined"):
    """atom_table of the finished runs' last records against their own teacher (BAS: against both)."""
    from ridrepro.analysis.results import load_pid

    pid = load_pid(root, protocol)
    pid = pid[pid.finished & ((pid.teacher == pid.pid_teacher) | (pid.method == "bas"))]
    last = pid[pid.epoch == pid.groupby("run").epoch.transform("max")]
    if intervals == "combined":
        last = with_intervals(last, root, protocol)
        lacking = sorted(set(last.run[last.red_clo.isna()]))
        if lacking:
            raise FileNotFoundError(f"no combined intervals (pid_intervals.jsonl) for {', '.join(lacking)}: "
                                    "run `ridrepro intervals`, or judge with intervals='percentile'")
    return atom_table(last, intervals)


def atom_verdicts(root, protocol, intervals=None):
    """The Figure 4 atom claims of a protocol's atom rules (ATOM_RULES) judged on its finished runs, as a
    DataFrame with verdicts' columns. intervals: None for the rules' own, or "percentile" / "combined"."""
    import pandas as pd

    rules = atom_rules_for(protocol)
    runs = atom_values(root, protocol, intervals or rules.intervals)
    return pd.DataFrame([judge(c, runs, rules) for c in rules.claims])


def filter_positive_end(records):
    """The largest fraction of positive teacher-filter outputs over the layers, in the run's last epoch that
    logged it (NaN for runs without a teacher filter or logged before the instrumentation)."""
    logged = [r["diag"]["filter_positive"] for r in records if "filter_positive" in r.get("diag", {})]
    return max(logged[-1]) if logged else math.nan


METRICS = {"filter_positive_end": filter_positive_end}


# ----------------------------------------------------------------------------- the rules, per protocol

_FIG5 = "Fig. 5 (CIFAR-10 test accuracy at epoch 300)"
FIG5 = {c.key: c for c in (  # the paper's Figure 5 claims, as every grid states them
    Claim("vidut-below-bas", "VID-ut clearly below BAS", "VID-ut", "below", "BAS", source=_FIG5),
    Claim("ridut-above-vidut", "RID-ut clearly above VID-ut", "RID-ut", "above", "VID-ut", source=_FIG5),
    Claim("ridtt-above-bas", "RID-tt clearly above BAS", "RID-tt", "above", "BAS", source=_FIG5),
    Claim("vidtt-above-bas", "VID-tt clearly above BAS", "VID-tt", "above", "BAS", source=_FIG5),
    Claim("ridtt-par-vidtt", "RID-tt on par with VID-tt", "RID-tt", "par", "VID-tt", source=_FIG5),
    Claim("tedtt-close-bas", "TED-tt close to BAS", "TED-tt", "close", "BAS", source=_FIG5),
    Claim("tedut-close-bas", "TED-ut close to BAS", "TED-ut", "close", "BAS", source=_FIG5),
    Claim("ridut-085-bas", "RID-ut reaches at least 0.85 of BAS (mean over seeds)", "RID-ut", "at_least", "BAS",
          factor=0.85, source=_FIG5 + ": RID-ut 0.65, BAS 0.732"),
)}

# cpu-4k: its rules were committed on 2026-12-02 before its distilled students ran (book/cifar_accuracy.ipynb);
# in three-valued form. Its RID and TED students keep 0.05 while BAS, VID and CIFD decay (divergence 2 at an
# unsquared rate), a difference between methods named beside every claim it touches.
_CPU_4K_CONFOUND = ("its student keeps the learning rate 0.05 to the end while BAS's and VID's drop after epochs "
                    "20 and 27 (the authors' RID scheduler is never stepped): a schedule confound")
CPU_4K_RULES = Rules(
    protocol="cpu-4k", seeds=3, tail_epochs=10,
    confounds={c: _CPU_4K_CONFOUND for c in ("RID-tt", "RID-ut", "TED-tt", "TED-ut")},
    claims=tuple(FIG5[k] for k in ("vidut-below-bas", "ridut-above-vidut", "ridtt-above-bas", "vidtt-above-bas",
                                   "ridtt-par-vidtt", "tedtt-close-bas", "tedut-close-bas")))

# paper-code-4k (issue 23): committed before its first distilled student ran. A run's accuracy is the mean over
# its evaluations in the last 10 % of its 300 epochs (epochs 280, 290, 300). Levelled off: over the last 20 %
# (epochs 240-300), the least-squares line of the seeds' mean accuracy changes by at most 0.01 and that of every
# seed by at most 0.02. Verdicts need 3 finished seeds (2 for the torch-init control). No setting of the
# protocol changes after its first distilled student has run.
PAPER_CODE_4K_RULES = Rules(
    protocol="paper-code-4k", seeds=3, tail_epochs=30, max_change_run=0.02,
    variants={"paper-code-4k-torch-init": " (torch init)"},
    claims=(
        *(FIG5[k] for k in ("ridut-above-vidut", "ridut-085-bas", "ridtt-par-vidtt", "ridtt-above-bas",
                            "vidtt-above-bas", "vidut-below-bas", "tedtt-close-bas", "tedut-close-bas")),
        # The mechanism (this project's, not the paper's): under the authors' init the teacher filter dies.
        Claim("ridut-filter-dead", "RID-ut's teacher filter ends dead (positive outputs < 0.1 % in every layer)",
              "RID-ut", "all_below", threshold=0.001, metric="filter_positive_end", levelled=False),
        Claim("ridtt-filter-dead", "RID-tt's teacher filter ends dead (positive outputs < 0.1 % in every layer)",
              "RID-tt", "all_below", threshold=0.001, metric="filter_positive_end", levelled=False),
        # The control: if the dead filter shapes RID's result, a live one changes RID's accuracy.
        Claim("ridut-torch-differs", "RID-ut with PyTorch-initialised filters differs clearly from RID-ut",
              "RID-ut (torch init)", "differs", "RID-ut", seeds=2),
        Claim("ridtt-torch-differs", "RID-tt with PyTorch-initialised filters differs clearly from RID-tt",
              "RID-tt (torch init)", "differs", "RID-tt", seeds=2),
    ))

# cpu-preview: 2 seeds per cell (its rules in book/cifar_accuracy.ipynb predate this module). Its RID and TED students
# keep paper-code's never-stepped 0.0025, as the authors' code does: no confound of this project's making.
CPU_PREVIEW_RULES = replace(CPU_4K_RULES, protocol="cpu-preview", seeds=2, confounds={})


def _decayed(claim, cells=("RID-ut", "RID-tt", "TED-ut", "TED-tt")):
    """A Figure 5 claim read on cpu-4k-decay's RID and TED cells instead of cpu-4k's."""
    name = lambda c: c + " (decayed)" if c in cells else c  # noqa: E731
    text = claim.text
    for c in cells:
        text = text.replace(c, name(c))
    return replace(claim, key=claim.key + "-decayed", text=text, a=name(claim.a), b=claim.b and name(claim.b),
                   source=claim.source + "; post hoc (issue 23, part 5)")


# cpu-4k-decay (issue 23, part 5): POST HOC, chosen after cpu-4k's results and committed before its first run. Its
# RID and TED students decay as cpu-4k's BAS and VID do; they are judged against cpu-4k's committed BAS and VID
# runs by cpu-4k's own rules, now with no confound of schedule. The "differs" claims measure how much of cpu-4k's
# RID and TED accuracy at epoch 40 was the missing decay: a comparison of two committed end points, so levelling
# off is not asked of them.
CPU_4K_DECAY_RULES = replace(
    CPU_4K_RULES, protocol="cpu-4k-decay", suffix=" (decayed)", variants={"cpu-4k": ""}, confounds={},
    claims=(*(_decayed(FIG5[k]) for k in ("ridut-above-vidut", "ridut-085-bas", "ridtt-par-vidtt", "ridtt-above-bas",
                                          "tedtt-close-bas", "tedut-close-bas")),
            *(Claim(f"{c.lower().replace('-', '')}-decay-differs",
                    f"{c} decayed differs clearly from cpu-4k's {c} at epoch 40", f"{c} (decayed)", "differs", c,
                    levelled=False, source="post hoc (issue 23, part 5)")
              for c in ("RID-ut", "RID-tt", "TED-ut", "TED-tt"))))

RULES = {r.protocol: r for r in (CPU_4K_RULES, CPU_PREVIEW_RULES, PAPER_CODE_4K_RULES, CPU_4K_DECAY_RULES)}


def tail_epochs(protocol):
    """The epochs over which a run of `protocol` has its accuracy averaged: those of the rules that judge it (its
    own, or its base's for a variant), else the last 10, as for protocols without stated claims."""
    judged = [r.tail_epochs for r in RULES.values() if protocol in r.suffixes]
    return judged[0] if judged else 10


def rules_for(protocol):
    if protocol not in RULES:
        raise ValueError(f"no claims are stated for protocol {protocol!r}; choose from {', '.join(RULES)}")
    return RULES[protocol]


# ----------------------------------------------------------------------------- Figure 4: the atoms

# A claim reads each run's last record (the end of training; levelling off is a property of accuracy, not asked).
# Red + Uni(Y:T\S) = I(Y;T) for one teacher, so "less Uni" and "more Red" are one claim. "Uni falls from
# epoch 1" is not tested: it holds for any student that learns (BAS's falls too).
_FIG4 = "Fig. 4 and its discussion (Sec. 5, CIFAR-10)"
NEAR_ZERO = 0.05  # nats: "≈ 0" in the paper covers its untrained teacher's Red of about 0.05 (Fig. 4, read off)
_UNI, _RED = "Uni(Y:T\\S)", "Red"


def _near_zero(cell, atom, name):
    key = "bas" if cell == "BAS" else cell.lower().replace("-", "")
    return Claim(f"{key}-{atom.replace('_', '')}-near-zero-ut",
                 f"{cell}: {name} ≈ 0 against the untrained teacher (within {NEAR_ZERO} nats)", cell, "near_zero",
                 metric=f"ut.{atom}", threshold=NEAR_ZERO, levelled=False,
                 source=_FIG4 + ': "Uni(Y:T\\S), Red(Y:T,S) ≈ 0" with the untrained teacher')


FIG4 = {c.key: c for c in (
    Claim("ridtt-uni-below-bas", f"RID-tt ends with clearly less {_UNI} than BAS (so clearly more {_RED})",
          "RID-tt", "below", "BAS", metric="tt.uni_t", levelled=False,
          source=_FIG4 + ": RID 0.05 against BAS's 0.15 at epoch 300, read off"),
    Claim("ridtt-uni-below-vidtt", f"RID-tt ends with clearly less {_UNI} than VID-tt (so clearly more {_RED})",
          "RID-tt", "below", "VID-tt", metric="tt.uni_t", levelled=False,
          source=_FIG4 + ": RID 0.05 against VID's 0.15 at epoch 300, read off"),
    Claim("ut-iyt-near-zero", f"The untrained teacher's I(Y;T) ≈ 0 (within {NEAR_ZERO} nats; read on BAS's records)",
          "BAS", "near_zero", metric="ut.i_yt", threshold=NEAR_ZERO, levelled=False,
          source=_FIG4 + ': "the teacher is not trained (i.e., I(Y;T) = 0)"'),
    *(_near_zero(cell, atom, name) for cell in ("BAS", "VID-ut", "RID-ut")
      for atom, name in (("uni_t", _UNI), ("red", _RED))),
    Claim("ridut-iys-above-vidut", "RID-ut's I(Y;S) ends clearly above VID-ut's", "RID-ut", "above", "VID-ut",
          metric="i_ys", levelled=False, source=_FIG4 + ": RID-ut 0.89, VID-ut 0.13 (third row)"),
    Claim("vidut-iys-below-bas", "VID-ut's I(Y;S) ends clearly below BAS's", "VID-ut", "below", "BAS",
          metric="i_ys", levelled=False, source=_FIG4 + ": VID-ut 0.13, BAS 1.25 (third row)"),
    Claim("ridut-iys-07-bas", "RID-ut's I(Y;S) rises like BAS's: at least 0.7 of it (mean over seeds)", "RID-ut",
          "at_least", "BAS", factor=0.7, metric="i_ys", levelled=False,
          source=_FIG4 + ": RID-ut 0.89 against BAS's 1.25 (ratio 0.71, third row)"),
)}

# cpu-4k: the atom rules stated before its distilled students ran are in book/cifar_atoms.ipynb; these restate them
# (2026-12-07, after the runs) as one claim per fact, with the tolerance and the I(Y;S) claims added. The accuracy
# rules' schedule confound of RID and TED applies to their atoms as well (the same runs).
CPU_4K_ATOM_RULES = replace(CPU_4K_RULES, claims=tuple(FIG4.values()))
# cpu-preview stores no features, so its only intervals are pid.jsonl's percentile ones (clustering fixed).
CPU_PREVIEW_ATOM_RULES = replace(CPU_PREVIEW_RULES, claims=tuple(FIG4.values()), intervals="percentile")
# paper-code-4k: stated on 2026-12-07 with its accuracy rules' seeds and tail, before any of its runs had finished
# (BAS s0 and RID-ut s0 had run about 100 of 300 epochs, their PID records to epoch 100 seen; no other cell had
# started). Judged on the combined intervals, which need pid_intervals.jsonl beside each finished run.
PAPER_CODE_4K_ATOM_RULES = replace(PAPER_CODE_4K_RULES, claims=tuple(FIG4.values()))
ATOM_RULES = {r.protocol: r for r in (CPU_4K_ATOM_RULES, CPU_PREVIEW_ATOM_RULES, PAPER_CODE_4K_ATOM_RULES)}


def atom_rules_for(protocol):
    if protocol not in ATOM_RULES:
        raise ValueError(f"no atom claims are stated for protocol {protocol!r}; choose from {', '.join(ATOM_RULES)}")
    return ATOM_RULES[protocol]


# ----------------------------------------------------------------------------- the rules in words

# When each protocol's accuracy rules were stated (git log shows them committed before the runs they judge).
STATED = {"cpu-4k": "fixed on 2026-12-02, before its distilled students ran",
          "cpu-preview": "fixed before its distilled students ran",
          "paper-code-4k": "committed on 2026-12-06 (1cde0c6), before its first distilled student ran; its atom "
                           "rules on 2026-12-07, before any of its runs had finished",
          "cpu-4k-decay": "post hoc: chosen after cpu-4k's results were seen, committed on 2026-12-07 (0817b9a) "
                          "before its first run"}


def describe_rules(rules, evaluated=()):
    """A protocol's accuracy rules as Markdown, written from the Rules object (so a chapter re-run on another
    protocol states that protocol's rules). evaluated: the epochs the protocol evaluates, to name the tail's."""
    tail = [e for e in evaluated if e > max(evaluated) - rules.tail_epochs] if evaluated else []
    consecutive = len(tail) > 3 and tail == list(range(tail[0], tail[-1] + 1))
    at = (f" (epochs {tail[0]}–{tail[-1]})" if consecutive else f" (epochs {', '.join(map(str, tail))})" if tail
          else "")
    run_rule = (f" and that of every seed by at most {rules.max_change_run}" if rules.max_change_run is not None
                else "")
    lines = [
        f"`{rules.protocol}`'s rules, {STATED.get(rules.protocol, 'stated in ridrepro/analysis/claims.py')}:",
        "",
        f"* **A run's accuracy** is the mean over its evaluated epochs among the last {rules.tail_epochs}{at}; "
        f"a cell's is the mean ± standard deviation of that over its seeds. A verdict needs {rules.seeds} "
        "finished seeds per cell.",
        "* **Clearly above / below**: the difference of the cell means exceeds the sum of their standard "
        "deviations.",
        f"* **On par**: the difference is within that sum, or within {rules.tolerance['par']}. **Close**: within "
        f"that sum, or within {rules.tolerance['close']}.",
        f"* **Levelled off**: over the last {rules.window:.0%} of the epochs, the least-squares line through the "
        f"seeds' mean accuracy changes by at most {rules.max_change_cell}{run_rule}.",
        *(f"* **Confound, {', '.join(c for c, w in rules.confounds.items() if w == why)}**: {why}; the claims "
          "that read these cells are inconclusive." for why in dict.fromkeys(rules.confounds.values())),
        "",
        "The claims: " + "; ".join(c.text for c in rules.claims) + "."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- exact claims (no training)

_EXAMPLES = (("example-1", "Example 1 (uninformative teacher)", ("EX1_S=Y", "EX1_S=U2"), "Sec. 3, Example 1"),
             ("example-2", "Example 2 (extra-complex teacher)", ("EX2_S=U1", "EX2_S=U2"), "Sec. 3, Example 2"),
             ("example-3", "Example 3 (synergy)", ("EX3",), "Sec. 3, Example 3"))
EXACT_TOLERANCE = 1e-6  # bits: the examples' atoms are closed-form; the certified solver reaches ~1e-11
ROUND_OFF = 1e-10  # bits: float64 entropies of the theorems chapter's random tables err by ~1e-12


def exact_verdicts(book_data):
    """The exact claims, as verdicts' columns: the paper's Examples 1-3 recomputed by the BROJA solver against
    their closed forms (ridrepro.pid.gates), and Theorems 3.2 (3) and 4.1 on the theorems chapter's random
    tables (book/data/theorems_*.csv). Reproduced or not reproduced: nothing here depends on seeds."""
    import pandas as pd

    from ridrepro.pid import broja_pid
    from ridrepro.pid.gates import gates

    def row(key, claim, source, holds, reason):
        return {"key": key, "claim": claim, "source": source, "difference": math.nan, "spread": math.nan,
                "seeds": math.nan, "verdict": REPRODUCED if holds else NOT_REPRODUCED, "reason": reason}

    rows, exact = [], gates()
    for key, example, names, source in _EXAMPLES:
        err = max(abs(broja_pid(exact[n][0], unit="bits").atoms()[a] - v)
                  for n in names for a, v in exact[n][1].items())
        rows.append(row(key, f"{example}: the BROJA atoms are the paper's", source, err <= EXACT_TOLERANCE,
                        f"largest error {err:.1e} bits over {len(names)} student(s)"))
    coarse = pd.read_csv(Path(book_data) / "theorems_coarsening.csv")
    worst = int((coarse.slack < -(coarse.certificate_gaps + ROUND_OFF)).sum())
    rows.append(row("theorem-3.2-3", "Theorem 3.2 (3): coarsening the teacher never adds distillable knowledge",
                    "Theorem 3.2", worst == 0, f"{worst} of {len(coarse)} random tables violate it "
                    f"(smallest slack {coarse.slack.min():.1e} bits)"))
    cap = pd.read_csv(Path(book_data) / "theorems_intersection.csv")
    below = int((cap.red < cap.red_cap - ROUND_OFF).sum())
    rows.append(row("theorem-4.1", "Theorem 4.1: the intersection information is a lower bound on Red",
                    "Theorem 4.1", below == 0, f"{below} of {len(cap)} structured tables violate it "
                    f"(smallest Red - Red_cap {(cap.red - cap.red_cap).min():.1e} bits)"))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the related papers' questions

# book/what_else.ipynb's probes (Ojha et al.): +1 where a higher value is closer to the teacher, -1 lower, 0 a
# control; and whether the probe means anything with the untrained teacher, which predicts one class for every image.
PROBES = {"accuracy": (0, True), "agreement": (1, False), "kl": (-1, False), "fool_teacher": (1, False),
          "fool_foreign": (0, True), "invariance_crop_flip": (1, True), "invariance_jitter": (0, True),
          "cam_cos": (1, True), "localisation": (1, True), "cka_1": (1, True), "cka_2": (1, True),
          "cka_3": (1, True)}
COPYING = ("cka_1", "cka_2", "cka_3", "cam_cos")  # closeness to the teacher's representation and maps
_OJHA = "this book's question after Ojha et al. (2023), on the paper's thesis that RID transfers only task information"
_CIFD = "this book's question after CIFD (Saidutta et al., 2024): its rate-distortion modules limit what flows"


def probe_word(per_run, teacher, probe, a, b):
    """Method a's seeds against b's on one probe (per_run: what_else's table, one row per run and teacher), by
    the one rule (compare): 'more' / 'less' closer to the teacher, 'higher' / 'lower' for a control, 'same'
    within the spread, '1 seed' or 'missing' where there is nothing to judge."""
    d = per_run[per_run.teacher == teacher]
    va, vb = d[d.method == a][probe].dropna(), d[d.method == b][probe].dropna()
    if va.empty or vb.empty:
        return "missing"
    if min(len(va), len(vb)) < 2:
        return "1 seed"
    diff, _, differs = compare(va, vb, "differs")
    if not differs:
        return "same"
    sign = PROBES[probe][0]
    return ("higher" if diff > 0 else "lower") if sign == 0 else ("more" if (diff > 0) == (sign > 0) else "less")


def _probes(teacher, inherit=True):
    return [p for p, (sign, ut_ok) in PROBES.items() if (sign != 0 or not inherit) and (teacher == "tt" or ut_ok)]


def inherit_answer(per_run, teacher):
    """Question 1: does RID inherit less of its teacher than VID? (word, probes by outcome): 'yes' when RID is
    clearly below VID on at least one probe of inheritance and clearly above on none, 'no difference' when
    clearly different on none; None when no probe can be judged."""
    words = {p: probe_word(per_run, teacher, p, "RID", "VID") for p in _probes(teacher)}
    by = {w: [p for p, x in words.items() if x == w] for w in ("less", "more", "same")}
    by["open"] = [p for p, x in words.items() if x in ("missing", "1 seed")]
    if not (by["less"] or by["more"] or by["same"]):
        return None, by
    less, more = by["less"], by["more"]
    word = ("yes" if less and not more else "no difference" if not less and not more
            else "no, RID inherits more" if more and not less else "mixed")
    return word, by


def cifd_answer(per_run):
    """Question 3: does CIFD copy an untrained teacher like VID, or filter it like RID? (word, probe lists):
    like VID when CIFD-ut is clearly closer to it than BAS on a copying probe and not clearly below VID-ut there;
    like RID when it is clearly below VID-ut on every copying probe on which VID-ut is clearly above BAS."""
    w = {(a, b): {p: probe_word(per_run, "ut", p, a, b) for p in COPYING}
         for a, b in (("CIFD", "BAS"), ("CIFD", "VID"), ("VID", "BAS"))}
    up_bas = [p for p in COPYING if w["CIFD", "BAS"][p] == "more"]
    below_vid = [p for p in COPYING if w["CIFD", "VID"][p] == "less"]
    vid_copies = [p for p in COPYING if w["VID", "BAS"][p] == "more"]
    lists = {"up_bas": up_bas, "below_vid": below_vid, "vid_copies": vid_copies}
    if not any(w["CIFD", "VID"][p] in ("more", "less", "same") for p in COPYING):
        return None, lists
    like_vid = [p for p in up_bas if w["CIFD", "VID"][p] in ("more", "same")]
    like_rid = bool(vid_copies) and all(p in below_vid for p in vid_copies)
    word = ("like VID: it copies the untrained teacher" if like_vid and not like_rid
            else "like RID: its rate filters the untrained teacher" if like_rid and not like_vid else "neither clearly")
    return word, lists


def question_verdicts(per_run, rules):
    """Questions 1 and 3 of book/what_else.ipynb as claims, in verdicts' columns, judged on its per-run probe
    table (book/data/what_else_probes_<protocol>.csv). A named confound of the rules on a cell a question reads
    makes it inconclusive, as everywhere."""
    import pandas as pd

    rows = []
    for teacher, name in (("tt", "trained"), ("ut", "untrained")):
        word, by = inherit_answer(per_run, teacher)
        cells = [f"RID-{teacher}", f"VID-{teacher}"]
        reason = (f"RID clearly less on {', '.join(by['less']) or 'no probe'}, clearly more on "
                  f"{', '.join(by['more']) or 'no probe'}")
        rows.append(_question(f"q1-{teacher}", f"RID inherits less of the {name} teacher than VID (Ojha et al.'s "
                              "probes: clearly less on one, more on none)", _OJHA, word, word == "yes", reason,
                              cells, rules))
    word, lists = cifd_answer(per_run)
    reason = (f"CIFD-ut clearly below VID-ut on {', '.join(lists['below_vid']) or 'no copying probe'}; VID-ut "
              f"clearly above BAS on {', '.join(lists['vid_copies']) or 'no copying probe'}")
    rows.append(_question("q3", "CIFD filters an untrained teacher like RID (clearly below VID-ut wherever VID-ut "
                          "copies it)", _CIFD, word, word is not None and word.startswith("like RID"), reason,
                          ["CIFD-ut", "VID-ut"], rules))
    return pd.DataFrame(rows)


def _question(key, claim, source, word, holds, reason, cells, rules):
    out = {"key": key, "claim": claim, "source": source, "difference": math.nan, "spread": math.nan,
           "seeds": math.nan}
    confounded = [f"{c}: {rules.confounds[c]}" for c in cells if c in rules.confounds]
    if word is None:
        return {**out, "verdict": INCONCLUSIVE, "reason": "no probe can be judged: a cell has fewer than 2 seeds"}
    so_far = REPRODUCED if holds else NOT_REPRODUCED
    if confounded:
        return {**out, "verdict": INCONCLUSIVE, "reason": f"{word}: {reason}; " + "; ".join(confounded)
                + f" (so far: {so_far})"}
    return {**out, "verdict": so_far, "reason": f"{word}: {reason}"}
