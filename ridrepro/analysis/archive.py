"""The book's downloadable archive: every CSV and every run's logs, without weights, checkpoints or features."""

import os
import zipfile
from pathlib import Path

# Text results only: configs, per-epoch metrics, PID records and intervals, summaries, CSVs and training logs.
SUFFIXES = (".csv", ".json", ".jsonl", ".log")
SKIP_DIRS = ("pca50",)  # stored PCA features: large, and rebuilt from the weights (ridrepro sensitivity)


def archive_members(runs, data=None):
    """(path on disk, name in the archive) of every file the archive holds: the text results under `runs`
    (results/<protocol>/...) and the book's CSVs in `data`, in name order."""
    runs = Path(runs)
    files = sorted(Path(folder, name) for folder, dirs, names in os.walk(runs, followlinks=True)  # a linked grid too
                   for name in names)
    members = [(p, Path("results", p.relative_to(runs)).as_posix()) for p in files
               if p.suffix in SUFFIXES and not set(SKIP_DIRS) & set(p.relative_to(runs).parts)]
    if data is not None:
        members += [(p, Path("book", "data", p.name).as_posix()) for p in sorted(Path(data).glob("*.csv"))]
    return members


def write_archive(runs, out, data=None, prefix="ridrepro-results"):
    """Write the archive to `out` (a .zip) and return its members' count. Reads only: a run still training
    is archived as its files stand now."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    members = archive_members(runs, data)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path, name in members:
            z.write(path, f"{prefix}/{name}")
    return len(members)
