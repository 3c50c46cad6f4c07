"""Sphinx extension: zips every CSV and every run's logs (ridrepro.analysis.archive) at each build, for the
results and cost page's download link. The archive is built, never committed."""

from pathlib import Path

OUT = Path("book", "_generated", "ridrepro-results.zip")


def write(app):
    from ridrepro.analysis.archive import write_archive

    root = Path(app.srcdir)
    write_archive(root / "results", root / OUT, data=root / "book" / "data")


def setup(app):
    app.connect("builder-inited", write)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
