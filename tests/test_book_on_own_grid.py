"""The CIFAR-10 chapters re-run with papermill on a grid trained here (`smoke`: every method, one seed, four
epochs), as a reader re-runs them on their own runs: each must finish, say what it cannot show and why, and
write nothing into the book's own files."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

pytestmark = pytest.mark.grid

# chapter -> what it must say on a grid with no stated rules, probes, stored features or paper-code-4k runs
SAYS = {
    "cifar_accuracy.ipynb": ["No claims are stated for `smoke`", "`smoke`**, 1 seeds per cell"],
    "rid_at_paper_rates.ipynb": ["No claims are stated for `smoke`", "No `cpu-4k` grid under"],
    "what_else.ipynb": ["Not shown for `smoke`", "ridrepro probes --methods vid rid ted cifd --protocol smoke"],
    "cifar_atoms.ipynb": ["no atom claims are stated for protocol 'smoke'", "no cpu-4k grid under"],
    "cifar_sensitivity.ipynb": ["Not shown for `smoke`", "No combined intervals (`pid_intervals.jsonl`)"],
}


@pytest.fixture(scope="module")
def own_grid(tmp_path_factory):
    runs = tmp_path_factory.mktemp("own") / "runs"
    data = ["--data", os.environ["RIDREPRO_DATA"]] if os.environ.get("RIDREPRO_DATA") else ["--synthetic"]
    out = subprocess.run([sys.executable, "-m", "ridrepro", "grid", "--protocol", "smoke", "--seeds", "0",
                          "--jobs", "2", "--runs", str(runs), *data], capture_output=True, text=True,
                         env=dict(os.environ, CI="1"), timeout=1200)
    assert out.returncode == 0, out.stdout + out.stderr
    return runs


def outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return "\n".join(str(o.get("text", "")) + "".join(str(v) for v in o.get("data", {}).values())
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("chapter", sorted(SAYS))
def test_a_chapter_runs_on_ones_own_grid(own_grid, chapter, tmp_path):
    import papermill

    papermill.execute_notebook(str(BOOK / chapter), str(tmp_path / chapter), cwd=str(BOOK), progress_bar=False,
                               parameters={"runs": str(own_grid), "protocol": "smoke"}, kernel_name="python3")
    text = outputs(tmp_path / chapter)
    for phrase in SAYS[chapter]:
        assert phrase in text, f"{chapter} does not say {phrase!r}"
    # a chapter names its figure CSVs by protocol; other chapters may be writing book/data meanwhile (nbval)
    assert not list((BOOK / "data").glob("*smoke*")), "a re-run on one's own grid wrote into book/data"
