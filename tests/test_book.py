"""The book builds in strict mode, and every rendered page shows typeset math and loadable figures."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that keep headless Chromium off this machine's closed network (see the README).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"strict book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    html = out / "_build" / "html"
    assert (html / "index.html").exists()
    return html


def pages(html):
    return sorted((html / "book").rglob("*.html"))


def test_every_figure_file_loads(built):
    for page in pages(built):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', page.read_text()):
            if src.startswith("data:"):
                continue
            path = (page.parent / src).resolve()
            assert path.exists(), f"{page.name}: image {src} is missing"
            with Image.open(path) as image:
                image.verify()


def render(page, user_dir):
    proc = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", "--virtual-time-budget=20000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_math_is_typeset_in_a_browser(built, tmp_path):
    checked = 0
    for page in pages(built):
        source = page.read_text()
        n_math = len(re.findall(r'class="math[ "]', source))
        if n_math == 0:
            continue
        dom = render(page, tmp_path / "chromium")
        typeset = dom.count("<mjx-container")
        assert typeset >= n_math, f"{page.name}: {typeset} of {n_math} formulas typeset"
        assert "<mjx-merror" not in dom, f"{page.name}: MathJax reported a TeX error"
        checked += 1
    assert checked, "no rendered page contains math"


@pytest.mark.parametrize("notebook", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_outputs_come_from_a_complete_run(notebook):
    # nbval passes a cell whose stored outputs are empty, so a chapter saved mid-run (papermill writes
    # as it goes) would pass CI with half its results missing. Papermill records each cell's status.
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    assert nb.metadata.get("papermill", {}).get("exception") in (None, False), f"{notebook.name} ended in an error"
    states = {c.metadata.get("papermill", {}).get("status") for c in nb.cells}
    assert states == {"completed"}, f"{notebook.name}: cells not run to completion ({states}); re-run make chapter"


def test_results_archive_is_served(built):
    # book/_ext/results_archive.py zips the runs' logs at build time; the results page links the copy Sphinx serves.
    page = built / "book" / "results_and_cost.html"
    links = re.findall(r'href="([^"]*ridrepro-results\.zip)"', page.read_text())
    assert links, "the results and cost page has no link to the archive"
    with zipfile.ZipFile((page.parent / links[0]).resolve()) as z:
        names = z.namelist()
    assert any(n.endswith("/config.json") for n in names) and not any(n.endswith(".pt") for n in names)
