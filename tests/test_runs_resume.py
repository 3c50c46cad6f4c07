"""Run folders: a killed run resumes to a bit-identical result; finished runs are kept; mismatches are errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest
import torch

from ridrepro.protocols import SMOKE
from ridrepro.runs import Options, RunDir, distil
from ridrepro.train_cli import synthetic_cifar

EPOCHS = 8
SCRIPT = textwrap.dedent(f"""
    import sys, torch
    from dataclasses import replace
    from ridrepro.protocols import SMOKE
    from ridrepro.runs import Options, distil
    from ridrepro.train_cli import synthetic_cifar
    torch.set_num_threads(1)
    distil(replace(SMOKE, epochs={EPOCHS}, pid_epochs=()), synthetic_cifar(), "rid", 0, "ut",
           opts=Options(sys.argv[1], log=lambda *a: None))
""")
TIMING = ("seconds", "train_seconds", "images_per_s")


def run_script(root, kill_after=None):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root)], env=dict(os.environ, OMP_NUM_THREADS="1"))
    if kill_after is None:
        assert proc.wait(timeout=300) == 0
        return
    metrics = root / "smoke" / "rid-ut-s0" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"


def metrics(root):
    lines = (root / "smoke" / "rid-ut-s0" / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_killed_run_resumes_bit_identically(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run_script(clean)
    run_script(killed, kill_after=3)
    folder = killed / "smoke" / "rid-ut-s0"
    assert not (folder / "finished.json").exists()
    assert len(metrics(killed)) < EPOCHS
    run_script(killed)  # resume
    assert metrics(killed) == metrics(clean)
    assert len(metrics(clean)) == EPOCHS
    a = torch.load(clean / "smoke" / "rid-ut-s0" / "student.pt")
    b = torch.load(folder / "student.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ca = torch.load(clean / "smoke" / "rid-ut-s0" / "checkpoint.pt", weights_only=False)
    cb = torch.load(folder / "checkpoint.pt", weights_only=False)
    for k, v in ca["trainer"]["distiller"].items():  # filters, heads, sigma too
        assert torch.equal(v, cb["trainer"]["distiller"][k]), k
    assert ca["phase"] == cb["phase"] == "student" and ca["cycle"] == 3
    assert set(ca["trainer"]["opts"]) == {"filter", "student"}
    assert torch.equal(ca["trainer"]["rng"]["gen"], cb["trainer"]["rng"]["gen"])


@pytest.fixture
def finished(tmp_path):
    protocol = replace(SMOKE, epochs=2, pid_epochs=())
    opts = Options(tmp_path, log=lambda *a: None)
    distil(protocol, synthetic_cifar(20, 10), "vid", 0, "ut", opts=opts)
    return protocol, opts, tmp_path / "smoke" / "vid-ut-s0"


def test_finished_run_is_not_recomputed(finished):
    protocol, opts, folder = finished
    stamp = (folder / "checkpoint.pt").stat().st_mtime_ns
    summary = distil(protocol, synthetic_cifar(20, 10), "vid", 0, "ut", opts=opts)
    assert (folder / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert summary == json.loads((folder / "finished.json").read_text()) and summary["epochs"] == 2


def test_config_mismatch_is_an_error_not_an_overwrite(finished):
    protocol, opts, folder = finished
    (folder / "finished.json").unlink()  # even an unfinished folder is protected
    before = (folder / "config.json").read_text()
    with pytest.raises(ValueError, match="different run.*epochs"):
        distil(replace(protocol, epochs=3), synthetic_cifar(20, 10), "vid", 0, "ut", opts=opts)
    with pytest.raises(ValueError, match="different run.*data_sha256"):
        distil(protocol, synthetic_cifar(20, 10, seed=1), "vid", 0, "ut", opts=opts)
    assert (folder / "config.json").read_text() == before


def test_a_live_lock_is_refused_and_a_stale_one_cleared(tmp_path):
    env = {"threads": 1}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "lock").write_text(str(os.getpid()))
    with pytest.raises(ValueError, match="in use by process"):
        RunDir(tmp_path / "run", {"a": 1}, env).open()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run" / "lock").write_text(str(dead.pid))
    run = RunDir(tmp_path / "run", {"a": 1}, env).open()
    assert (tmp_path / "run" / "lock").read_text() == str(os.getpid())
    run.close()
    assert not (tmp_path / "run" / "lock").exists()


def test_paper_text_ted_fine_tunes_the_bas_student_of_the_same_seed(tmp_path):
    from ridrepro.protocols import PAPER_TEXT
    from ridrepro.runs import file_sha256
    ted = replace(PAPER_TEXT.methods["ted"], ted_stage1_epochs=1)
    tiny = replace(PAPER_TEXT, name="tiny-text", teacher_arch=(10, 1, "post"), student_arch=(10, 1, "post"),
                   epochs=2, teacher=replace(PAPER_TEXT.teacher, epochs=1), methods={**PAPER_TEXT.methods, "ted": ted},
                   batch_size=64, eval_batch_size=100, train_per_class=10, test_per_class=5, pid_epochs=())
    opts = Options(tmp_path, log=lambda *a: None)
    distil(tiny, synthetic_cifar(20, 10), "ted", 1, "tt", opts=opts)
    base = tmp_path / "tiny-text"
    assert (base / "bas-s1" / "finished.json").exists()  # the BAS run was made first
    identity = json.loads((base / "ted-tt-s1" / "config.json").read_text())["identity"]
    assert identity["init_from"] == {"run": "bas-s1", "sha256": file_sha256(base / "bas-s1" / "student.pt")}
    phases = [json.loads(x)["phase"] for x in (base / "ted-tt-s1" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["stage1", "stage2"]
    losses = [json.loads(x)["loss"] for x in (base / "ted-tt-s1" / "metrics.jsonl").read_text().splitlines()]
    assert set(losses[0]) == {"t_filter_ce", "s_filter_ce"} and set(losses[1]) == {"ce", "ted"}


def test_missing_teacher_weights_are_rebuilt_and_checked(finished):
    # Committed results have teacher.json but no teacher.pt: resuming rebuilds the weights deterministically.
    protocol, opts, folder = finished
    from ridrepro.runs import ensure_teacher, teacher_dir
    ensure_teacher(protocol, synthetic_cifar(20, 10), "tt", 0, opts)  # trained for 2 epochs
    for kind in ("ut", "tt"):
        path = teacher_dir(opts.root, "smoke", kind, 0)
        sha = json.loads((path / "teacher.json").read_text())["sha256"]
        (path / "teacher.pt").unlink()
        _, info = ensure_teacher(protocol, synthetic_cifar(20, 10), kind, 0, opts)
        assert info["sha256"] == sha and (path / "teacher.pt").exists()
    ut = teacher_dir(opts.root, "smoke", "ut", 0)
    assert not any(p.name.startswith(".rebuild") for p in (opts.root / "smoke").iterdir())
    info = json.loads((ut / "teacher.json").read_text())
    (ut / "teacher.json").write_text(json.dumps({**info, "sha256": "0" * 64}))
    (ut / "teacher.pt").unlink()
    with pytest.raises(ValueError, match="rebuilt teacher teacher-ut-s0 has sha256.*teacher.json says 000000000000"):
        ensure_teacher(protocol, synthetic_cifar(20, 10), "ut", 0, opts)
