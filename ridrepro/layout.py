"""The run vocabulary: method and teacher kinds, run names (one parser, one formatter), grid cells, folders.

A grid lives in <root>/<protocol>/<run>/. Run names: teacher-<tt|ut>-s<seed>, bas-s<seed> and
<method>-<tt|ut>[<teacher seed>]-s<seed>; a teacher seed other than 0 follows the teacher kind (rid-tt3-s0
distils teacher-tt-s3).
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METHODS = ("bas", "vid", "rid", "ted", "cifd")  # each protocol offers some of them (Protocol.methods)
TEACHER_KINDS = ("tt", "ut")  # trained, untrained
DEFAULT_RUNS = "runs"  # the --runs folder of every command

_NAME = re.compile(r"(?P<method>teacher|[a-z]+)(-(?P<teacher>tt|ut)(?P<tseed>[1-9]\d*)?)?-s(?P<seed>\d+)")

# The paper's grid, then the cells this project adds (CIFD, seed 002: no number of the paper's to compare).
CELLS = ["teacher-tt", "teacher-ut", "BAS", "VID-tt", "RID-tt", "TED-tt", "VID-ut", "RID-ut", "TED-ut",
         "CIFD-tt", "CIFD-ut"]
PAPER_CELLS = CELLS[:9]


@dataclass(frozen=True)
class Run:
    method: str  # teacher, or one of METHODS
    seed: int
    teacher: str | None = None  # tt | ut; None for BAS
    teacher_seed: int = 0

    def __post_init__(self):
        if self.method not in ("teacher", *METHODS):
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.method == "bas" and self.teacher is not None:
            raise ValueError("BAS has no teacher; leave --teacher out")
        if self.method != "bas" and self.teacher is None:
            raise ValueError(f"{self.method} needs a teacher: --teacher tt or ut")
        if self.teacher is not None and self.teacher not in TEACHER_KINDS:
            raise ValueError(f"teacher must be one of {TEACHER_KINDS}, got {self.teacher!r}")
        if self.method == "teacher" and self.teacher_seed:
            raise ValueError("a teacher run's seed is its seed; it has no teacher seed")

    @property
    def name(self):
        if self.method == "bas":
            return f"bas-s{self.seed}"
        if self.method == "teacher":
            return f"teacher-{self.teacher}-s{self.seed}"
        return f"{self.method}-{teacher_label(self.teacher, self.teacher_seed)}-s{self.seed}"

    @property
    def cell(self):
        """The grid cell: BAS, VID-tt, RID-ut, teacher-tt, ... (tt: trained teacher, ut: untrained)."""
        return cell_name(self.method, self.teacher)

    def folder(self, root, protocol):
        return Path(root) / protocol / self.name


def parse_run(name):
    """The Run a folder name denotes, or None when it names no run."""
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    try:
        return Run(m["method"], int(m["seed"]), m["teacher"], int(m["tseed"] or 0))
    except ValueError:
        return None


def teacher_label(kind, teacher_seed=0):
    if kind not in TEACHER_KINDS:
        raise ValueError(f"teacher must be one of {TEACHER_KINDS}, got {kind!r}")
    return kind if teacher_seed == 0 else f"{kind}{teacher_seed}"


def cell_name(method, teacher):
    if method == "teacher":
        return f"teacher-{teacher}"
    return method.upper() if teacher is None else f"{method.upper()}-{teacher}"


def parse_cell(cell):
    """(method, teacher) of a cell name, the inverse of cell_name: "RID-ut" -> ("rid", "ut"), "BAS" -> ("bas", None)."""
    method, _, teacher = cell.partition("-")
    return method.lower(), teacher or None


def teacher_dir(root, protocol, kind, seed):
    return Run("teacher", seed, kind).folder(root, protocol)


def student_dir(root, protocol, method, seed, teacher=None, teacher_seed=0):
    return Run(method, seed, teacher, teacher_seed).folder(root, protocol)


def accuracy_of(records, tail=10):
    """A run's test accuracy from its metrics.jsonl records (one per epoch): final, best, and tail, the mean over
    the evaluated epochs among the last `tail` records (None where nothing was evaluated)."""
    accs = [r["test_acc"] for r in records if "test_acc" in r]
    last = [r["test_acc"] for r in records[-tail:] if "test_acc" in r]
    return {"final": accs[-1] if accs else None, "best": max(accs, default=None),
            "tail": float(np.mean(last)) if last else None}


def figure_data_dir(runs, committed="../results"):
    """Where a chapter writes the CSV of what its figures show: book/data/ (served with the book) when it shows
    the committed grids, else <runs>/book-data/, so that a chapter re-run on one's own runs never overwrites
    the book's files. Chapters run from book/, where `committed` is the committed results folder."""
    if Path(runs).resolve() == Path(committed).resolve():
        return Path("data")
    out = Path(runs) / "book-data"
    out.mkdir(parents=True, exist_ok=True)
    return out
