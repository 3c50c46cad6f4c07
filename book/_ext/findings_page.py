"""Sphinx extension: writes the intro's findings table from the committed runs each time the book is built."""

from pathlib import Path

OUT = Path("book", "_generated", "findings.md")


def write_findings(app):
    from ridrepro.analysis.findings import findings, markdown

    root = Path(app.srcdir)
    table = findings(root / "results", root / "book" / "data")
    (root / OUT).parent.mkdir(exist_ok=True)
    (root / OUT).write_text(markdown(table))


def setup(app):
    app.connect("builder-inited", write_findings)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
