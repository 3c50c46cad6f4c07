"""Issue 27, chapters: `papermill --help-notebook` lists every parameter of every chapter with its type and a help
line, and a chapter run elsewhere writes no CSV into the source tree."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_parameter_has_a_type_and_a_help_line(chapter):
    parameters = papermill.inspect_notebook(str(chapter))
    cell = next((c for c in json.loads(chapter.read_text())["cells"]
                 if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        assert not parameters
        return
    assigned = [line.split("=")[0].split(":")[0].strip() for line in "".join(cell["source"]).splitlines()
                if "=" in line and not line.lstrip().startswith("#")]
    assert list(parameters) == assigned, "a parameter papermill does not see (one line, two names?)"
    for name, p in parameters.items():
        assert p["inferred_type_name"] != "None", f"{chapter.name}: {name} has no type"
        assert p["help"].strip(), f"{chapter.name}: {name} has no help line"


@pytest.mark.grid
def test_pid_primer_run_elsewhere_writes_nothing_into_the_book(tmp_path):
    before = {p: p.stat().st_mtime_ns for p in (BOOK / "data").iterdir()}
    out = tmp_path / "nats.ipynb"
    subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(BOOK),
                    str(BOOK / "pid_primer.ipynb"), str(out), "-p", "unit", "nats"], check=True, capture_output=True)
    assert {p: p.stat().st_mtime_ns for p in (BOOK / "data").iterdir()} == before
    subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(BOOK),
                    str(BOOK / "pid_primer.ipynb"), str(out), "-p", "unit", "nats", "-p", "csv_dir", str(tmp_path)],
                   check=True, capture_output=True)
    assert (tmp_path / "pid_primer_gates_nats.csv").exists()
    assert {p: p.stat().st_mtime_ns for p in (BOOK / "data").iterdir()} == before
