"""Training needs only what a bare GPU node has: torch, torchvision, numpy, scipy, scikit-learn, matplotlib, pillow.

The grid runs in a subprocess whose sitecustomize makes every other package of requirements.txt unimportable,
as on a node where it was never installed.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

MISSING = ("pandas", "cvxpy", "clarabel", "papermill", "jupyter", "jupyter_core", "seaborn", "tqdm", "nbformat",
           "IPython", "ipykernel", "hypothesis")
BLOCKER = textwrap.dedent(f"""
    import sys

    class Hidden:
        # Wraps a finder so that it finds none of the packages a bare GPU node lacks: importing one then fails
        # and importlib.util.find_spec returns None, exactly as where the package was never installed.
        names = {MISSING!r}

        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                return None
            return self.finder.find_spec(name, path, target)

        def __getattr__(self, attr):
            return getattr(self.finder, attr)

    sys.meta_path[:] = [Hidden(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
""")

pytestmark = pytest.mark.grid  # subprocess grids: left out of make test-fast


@pytest.fixture
def bare_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, CI="1", OMP_NUM_THREADS="1")


def test_the_blocker_blocks(bare_env):
    for name in MISSING[:3]:
        out = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, env=bare_env)
        assert out.returncode == 1 and f"No module named '{name}'" in out.stderr, (name, out.stderr)
    ok = subprocess.run([sys.executable, "-c", "import torch, torchvision, numpy, scipy, sklearn, matplotlib, PIL"],
                        capture_output=True, text=True, env=bare_env)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.grid
def test_a_smoke_grid_runs_without_pandas_cvxpy_papermill_jupyter_seaborn_tqdm(bare_env, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "ridrepro", "grid", "--protocol", "smoke", "--synthetic", "--seeds", "0",
           "--runs", str(runs), "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=bare_env, timeout=900)
    logs = "".join(p.read_text() for p in sorted((runs / "smoke" / "logs").glob("*.log")))
    assert out.returncode == 0, out.stdout + out.stderr + logs
    base = runs / "smoke"
    for kind in ("tt", "ut"):
        assert (base / f"teacher-{kind}-s0" / "teacher.pt").exists()
    for cell in ("bas", "vid-tt", "vid-ut", "rid-tt", "rid-ut", "ted-tt", "ted-ut"):
        folder = base / f"{cell}-s0"
        assert (folder / "finished.json").exists() and (folder / "student.pt").exists(), cell
        pid = [json.loads(line) for line in (folder / "pid.jsonl").read_text().splitlines()]
        teachers = ["tt", "ut"] if cell == "bas" else [cell.split("-")[1]]
        assert [(p["epoch"], p["teacher"]) for p in pid] == [(e, t) for e in (2, 4) for t in teachers], cell
        assert all(p["bootstrap"]["n"] == 100 for p in pid), cell  # the bootstrap ran too


def test_every_command_starts_on_a_bare_node(bare_env):
    """The command line registers each subsystem's commands only when one runs: none imports pandas to start."""
    from ridrepro.cli import COMMANDS

    for argv in [["--help"], ["--version"], *[[name, "--help"] for name in COMMANDS]]:
        out = subprocess.run([sys.executable, "-m", "ridrepro", *argv], capture_output=True, text=True, env=bare_env,
                             timeout=120)
        assert out.returncode == 0, (argv, out.stderr)
    listed = subprocess.run([sys.executable, "-m", "ridrepro", "--help"], capture_output=True, text=True,
                            env=bare_env, timeout=120).stdout
    assert all(name in listed for name in COMMANDS)
