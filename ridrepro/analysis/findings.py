"""The book's findings at a glance: every claim it tests, its verdict, the evidence and what the evidence cost.

Built from the committed runs and the chapters' data files each time it is read (the intro page calls it
when the book is built; `ridrepro findings` prints it), so it can never disagree with the chapters.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from ridrepro.analysis.claims import (INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, atom_verdicts, exact_verdicts,
                                     question_verdicts, rules_for, verdicts)

COLUMNS = ["claim", "source", "verdict", "reason", "protocol", "core_hours", "group", "chapter", "label", "evidence"]


@dataclass(frozen=True)
class Evidence:
    """Where the book shows a group of claims: a chapter and a figure or section label in it."""
    chapter: str  # the notebook or page under book/, without suffix
    label: str  # a MyST target in it (a figure's name or a section label)
    text: str  # what the link says
    group: str  # how the summary names the group of claims it belongs to


PAPER_RATES = "Figs. 5 and 4 and the teacher-filter mechanism at the authors' learning rates"
EXAMPLES, THEOREMS = "Examples 1-3, exact", "Theorems 3.2 (3) and 4.1, on random tables"


# The grids' claims the table shows, first those that settle RID's question: (protocol, kind, where shown).
GRIDS = (("paper-code-4k", "accuracy",
          Evidence("rid_at_paper_rates", "paper-rates-verdicts", "verdicts at the authors' rates", PAPER_RATES)),
         ("paper-code-4k", "atoms",
          Evidence("rid_at_paper_rates", "fig-paper-rates-atoms", "atoms at the authors' rates", PAPER_RATES)),
         ("cpu-4k", "accuracy",
          Evidence("cifar_accuracy", "fig-cifar-accuracy", "Fig. 5 on cpu-4k", "Fig. 5, accuracy")),
         ("cpu-4k-decay", "accuracy",
          Evidence("cifar_accuracy", "cpu-4k-decay-verdicts", "cpu-4k with RID and TED decayed",
                   "Fig. 5 with RID's and TED's students decayed, a post-hoc ablation")),
         ("cpu-4k", "atoms",
          Evidence("cifar_atoms", "fig-cifar-atoms", "Fig. 4 on cpu-4k", "Fig. 4, information atoms")),
         ("cpu-4k", "questions", Evidence("what_else", "fig-what-else-probes", "probes on cpu-4k",
                                          "the related papers' questions (Ojha et al.'s probes, CIFD)")))
# kind -> its verdicts on a runs root, for a protocol, with the chapters' data folder
KINDS = {"accuracy": lambda root, p, data: verdicts(root, rules_for(p)),
         "atoms": lambda root, p, data: atom_verdicts(root, p),
         "questions": lambda root, p, data: _questions(p, data)}


def _questions(protocol, book_data):
    """The related papers' questions, on the per-run probe table that book/what_else.ipynb writes from the
    committed probes."""
    import pandas as pd

    return question_verdicts(pd.read_csv(Path(book_data) / f"what_else_probes_{protocol}.csv"), rules_for(protocol))


def protocol_cost(root, protocol):
    """(core-hours of every run folder of a protocol under root, finished or not; whether all have finished)."""
    from ridrepro.analysis.results import grid_runs, run_core_hours
    from ridrepro.files import read_jsonl

    hours, done = 0.0, True
    for folder, *_ in grid_runs(root, protocol):
        hours += run_core_hours(folder, read_jsonl(folder / "metrics.jsonl"))
        done &= (folder / "finished.json").exists()
    return hours, done


def grid_findings(root, protocol, kind, evidence, cost, book_data="book/data"):
    """The rows of one grid's claims of one kind (KINDS), with the grid's cost (protocol_cost)."""
    hours, done = cost
    v = KINDS[kind](root, protocol, book_data)
    return [{"claim": r.claim, "source": r.source or "this book (mechanism)", "verdict": r.verdict,
             "reason": r.reason, "protocol": protocol, "core_hours": hours if done else -hours,
             "group": evidence.group, "chapter": evidence.chapter, "label": evidence.label,
             "evidence": evidence.text} for r in v.itertuples()]


# Where the book shows each exact claim (claims.exact_verdicts): chapter, label, link text.
EXACT_EVIDENCE = {"example-1": Evidence("toy_teachers", "", "toy teachers", EXAMPLES),
                  "example-2": Evidence("toy_teachers", "", "toy teachers", EXAMPLES),
                  "example-3": Evidence("toy_teachers", "", "toy teachers", EXAMPLES),
                  "theorem-3.2-3": Evidence("theorems", "fig-thm32-slack", "Theorem 3.2 (3) figure", THEOREMS),
                  "theorem-4.1": Evidence("theorems", "fig-thm41-bound", "Theorem 4.1 figure", THEOREMS)}


def theory_findings(book_data):
    """The rows of the exact claims (claims.exact_verdicts): they need no training."""
    return [{"claim": r.claim, "source": r.source, "verdict": r.verdict, "reason": r.reason, "protocol": "exact",
             "core_hours": math.nan, "group": EXACT_EVIDENCE[r.key].group, "chapter": EXACT_EVIDENCE[r.key].chapter,
             "label": EXACT_EVIDENCE[r.key].label, "evidence": EXACT_EVIDENCE[r.key].text}
            for r in exact_verdicts(book_data).itertuples()]


def findings(root="results", book_data="book/data"):
    """Every claim the book tests, as a DataFrame (COLUMNS): the grids' claims in GRIDS order, then the exact
    ones. core_hours is the protocol's cost so far, negative while any of its runs is still training."""
    import pandas as pd

    # each grid's run folders are read once for its cost, however many kinds of claims it has
    costs = {p: protocol_cost(root, p) for p in dict.fromkeys(p for p, _, _ in GRIDS) if (Path(root) / p).is_dir()}
    rows = [row for protocol, kind, ev in GRIDS if protocol in costs
            for row in grid_findings(root, protocol, kind, ev, costs[protocol], book_data)]
    rows += theory_findings(book_data)
    return pd.DataFrame(rows, columns=COLUMNS)


def cost_text(hours):
    if hours != hours:
        return "none (exact)"
    return f"{abs(hours):.1f} core-h" + (" so far" if hours < 0 else "")


def markdown(table):
    """The findings as MyST Markdown: the summary, then one table per group of claims (protocol and group),
    whose evidence column links into the book."""
    parts = ["\n".join(summary(table))]
    for (protocol, group), t in table.groupby(["protocol", "group"], sort=False):
        lines = [f"**{group}** (`{protocol}`, {cost_text(t.core_hours.iloc[0])})", "",
                 "| claim | verdict | evidence |", "|---|---|---|"]
        for r in t.itertuples():
            target = f"{{ref}}`{r.evidence} <{r.label}>`" if r.label else f"[{r.evidence}]({r.chapter}.ipynb)"
            lines.append(f"| {r.claim} ({r.source}) | **{r.verdict}**: {r.reason} | {target} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def summary(table):
    """One line per group of claims (protocol and group), then the total: how many of each verdict."""
    def counted(t):
        counts = t.verdict.value_counts()
        return ", ".join(f"{counts[v]} {v}" for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE) if v in counts)

    lines = [f"* **{group}** (`{protocol}`): {counted(t)}."
             for (protocol, group), t in table.groupby(["protocol", "group"], sort=False)]
    return [*lines, "", f"Of {len(table)} claims in all: {counted(table)}."]


def add_commands(sub):
    from ridrepro.layout import DEFAULT_RUNS

    p = sub.add_parser("findings", help="every claim the book tests, with its verdict, evidence and cost")
    p.add_argument("--runs", default=DEFAULT_RUNS,
                   help=f"root folder of run folders (default: ./{DEFAULT_RUNS}; the committed grids are under "
                        "results/)")
    p.add_argument("--book-data", default="book/data", help="the chapters' data files (default: book/data)")
    p.add_argument("--format", choices=["text", "csv", "markdown"], default="text", help="output format")
    p.set_defaults(func=cmd_findings)


def cmd_findings(args):
    if not Path(args.book_data, "theorems_coarsening.csv").exists():
        raise FileNotFoundError(f"{args.book_data} has no theorems_coarsening.csv: run from the repository root "
                                "or pass --book-data <repository>/book/data")
    table = findings(args.runs, args.book_data)
    if args.format == "csv":
        print(table.to_csv(index=False), end="")
    elif args.format == "markdown":
        print(markdown(table), end="")
    else:
        import textwrap

        for r in table.itertuples():
            print(f"{r.verdict.upper():15s} {r.claim} [{r.protocol}, {cost_text(r.core_hours)}]")
            print(textwrap.fill(f"{r.reason} ({r.source}; book/{r.chapter} {r.label})".strip(), 100,
                                initial_indent=" " * 16, subsequent_indent=" " * 16))
    return 0
