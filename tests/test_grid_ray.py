"""grid --backend ray on a real local Ray cluster: the local backend's numbers, killed cells retried and resumed,
failures reported, finished grids left alone."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import untimed

import ridrepro
from ridrepro.cli import main

ray = pytest.importorskip("ray")

REPO = Path(ridrepro.__file__).parents[1]
# BAS needs both teachers, so even this reduced grid waits on dependencies; all cells at one thread.
GRID = ["grid", "--protocol", "smoke", "--synthetic", "--seeds", "0", "1", "--methods", "bas", "--threads", "1"]
RUNS = {"teacher-tt": "teacher-tt-s0", "teacher-ut": "teacher-ut-s0", "bas-s0": "bas-s0", "bas-s1": "bas-s1"}
def env():
    # Read at each call: the fixture's ray.init sets RAY_AUTH_MODE=token, which a driver joining with --address
    # must have too.
    return dict(os.environ, CI="1", OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

pytestmark = pytest.mark.grid  # subprocess grids: left out of make test-fast


def ridrepro_cmd(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ridrepro", *map(str, args)], capture_output=True, text=True,
                          env=env(), timeout=timeout)


def metrics(folder):
    if not (folder / "metrics.jsonl").exists():  # an untrained teacher has no epochs
        return None
    return untimed.records(folder / "metrics.jsonl")


def snapshot(root):
    return {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cluster():
    """One real Ray cluster for the module (2 CPUs); the grid commands join it with --address."""
    with pytest.MonkeyPatch.context() as mp:
        for k in ("PYTHONPATH", "OMP_NUM_THREADS", "CI"):  # the cluster's workers inherit these
            mp.setenv(k, env()[k])
        auth = os.environ.get("RAY_AUTH_MODE")  # ray.init sets it (token authentication); restored below
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning",
                 object_store_memory=100 * 2 ** 20)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()
            if auth is None:
                os.environ.pop("RAY_AUTH_MODE", None)


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    runs = tmp_path_factory.mktemp("local") / "runs"
    out = ridrepro_cmd(*GRID, "--jobs", "2", "--runs", runs)
    assert out.returncode == 0, out.stdout + out.stderr
    return runs / "smoke"


@pytest.fixture(scope="module")
def ray_grid(tmp_path_factory, cluster):
    runs = tmp_path_factory.mktemp("ray") / "runs"
    out = ridrepro_cmd(*GRID, "--backend", "ray", "--address", cluster, "--runs", runs)
    print(out.stdout)
    return runs / "smoke", out


@pytest.mark.grid
def test_ray_grid_equals_the_local_backend(local_grid, ray_grid):
    base, out = ray_grid
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 runs, 0 finished, 4 to run" in out.stdout and "4 finished, 0 failed, 0 skipped" in out.stdout
    for name, folder in RUNS.items():
        assert metrics(base / folder) == metrics(local_grid / folder), name
        done = next(line for line in out.stdout.splitlines() if line.startswith(f"done {name}:"))
        key = "test_acc" if name.startswith("teacher") else "final_acc"
        acc = json.loads((base / folder / "finished.json").read_text())[key]
        assert f"accuracy {acc:.4f}" in done and f"on {socket.gethostname()}" in done
        assert f"# ridrepro grid --backend ray: {name} on" in (base / "logs" / f"{name}.log").read_text()
    # The teachers finish before the students that need them start.
    order = [line.split()[1].rstrip(":") for line in out.stdout.splitlines() if line.startswith("done ")]
    assert set(order[:2]) == {"teacher-tt", "teacher-ut"}
    assert not list(base.parent.glob(".ridrepro-ray-*"))  # the driver's marker is cleaned up


@pytest.mark.grid
def test_a_finished_grid_is_left_alone(ray_grid, cluster):
    base, first = ray_grid
    assert first.returncode == 0, first.stdout + first.stderr
    before = snapshot(base.parent)
    out = ridrepro_cmd(*GRID, "--backend", "ray", "--address", cluster, "--runs", base.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 runs, 4 finished, 0 to run" in out.stdout
    assert not [line for line in out.stdout.splitlines() if line.startswith(("done", "FAILED", "skip"))]
    assert snapshot(base.parent) == before


@pytest.mark.grid
def test_a_killed_cell_is_retried_and_resumes(tmp_path, local_grid):
    # No --address: the command starts (and stops) its own local cluster.
    base = tmp_path / "runs" / "smoke"
    for name in ("teacher-tt-s0", "teacher-ut-s0"):  # finished teachers: only bas-s0 runs
        shutil.copytree(local_grid / name, base / name)
    proc = subprocess.Popen([sys.executable, "-m", "ridrepro", *GRID[:5], "0", "--methods", "bas", "--threads", "1",
                             "--backend", "ray", "--runs", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env())
    folder, killed = base / "bas-s0", None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and killed is None:
        # An epoch is done and checkpointed (checkpoint.pt is written after its metrics line): the retry resumes.
        if (folder / "checkpoint.pt").exists() and (folder / "metrics.jsonl").read_text().count("\n") >= 1:
            killed = int((folder / "lock").read_text())
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    out = proc.communicate(timeout=300)[0]
    assert killed is not None, "the cell ended before it could be killed:\n" + out
    assert proc.returncode == 0, out
    assert "3 runs, 2 finished, 1 to run" in out and "done bas-s0" in out
    log = (base / "logs" / "bas-s0.log").read_text()
    assert log.count("# ridrepro grid --backend ray: bas-s0 on") == 2  # the killed attempt and its retry
    assert "bas-s0: resuming after epoch" in log
    assert metrics(folder) == metrics(local_grid / "bas-s0")
    a, b = torch.load(folder / "student.pt"), torch.load(local_grid / "bas-s0" / "student.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (folder / "lock").exists()


@pytest.mark.grid
def test_a_failed_cell_is_reported_and_its_students_skipped(tmp_path, cluster):
    # A folder holding a different run is bad input: reported with node and log tail, not retried.
    bad = tmp_path / "runs" / "smoke" / "teacher-tt-s0"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text(json.dumps({"identity": {"protocol": "other"}}))
    out = ridrepro_cmd(*GRID[:5], "0", "--methods", "bas", "--threads", "1", "--backend", "ray",
                       "--address", cluster, "--runs", tmp_path / "runs")
    assert out.returncode == 1, out.stdout + out.stderr
    failed = out.stdout.split("FAILED teacher-tt on ", 1)[1]
    assert failed.startswith(socket.gethostname()) and "holds a different run" in failed
    assert "skip bas-s0: needs teacher-tt, which did not finish" in out.stdout
    assert "done teacher-ut" in out.stdout and "1 finished, 1 failed, 1 skipped" in out.stdout
    log = (tmp_path / "runs" / "smoke" / "logs" / "teacher-tt.log").read_text()
    assert log.count("# ridrepro grid --backend ray: teacher-tt on") == 1


def test_a_cell_that_cannot_see_the_marker_says_which_path_and_node(tmp_path):
    from ridrepro.train.grid_ray import run_cell, sees_marker
    marker = tmp_path / "nowhere" / ".ridrepro-ray-x"
    r = run_cell("bas-s0", [], str(tmp_path), str(tmp_path / "log"), str(marker), 1)
    assert r["status"] == "failed" and str(marker) in r["reason"] and "shares" in r["reason"]
    assert r["node"].startswith(socket.gethostname())
    assert sees_marker(marker) == (r["node"], False)


def test_bad_input_is_a_clear_error(capsys, tmp_path):
    base = [*GRID, "--runs", str(tmp_path)]
    cases = [(["--backend", "ray", "--jobs", "2"], "--jobs is for --backend local"),
             (["--backend", "ray", "--gpus-per-cell", "-1"], "--gpus-per-cell: invalid value -1: GPUs per cell must be >= 0"),
             (["--backend", "ray", "--gpus-per-cell", "1.5"], "whole GPUs"),
             (["--backend", "ray", "--device", "cuda"], "--device cuda with --gpus-per-cell 0"),
             (["--gpus-per-cell", "1"], "--gpus-per-cell: only with --backend ray")]
    for extra, message in cases:
        try:
            code = main([*base, *extra])
        except SystemExit as refused:  # at parse time, by argparse
            code = refused.code
        assert code == 2, extra
        assert message in capsys.readouterr().err, extra
    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = ridrepro_cmd(*base, "--backend", "ray", "--address", f"127.0.0.1:{port}", timeout=120)
    assert out.returncode == 2 and f"cannot reach a Ray cluster at 127.0.0.1:{port}" in out.stderr, out.stderr
    assert not list(tmp_path.glob(".ridrepro-ray-*"))
