"""Issue 27, faults: damaged files, read-only and full destinations, interrupts and the grid's bookkeeping. Each
fault ends in one line naming the file (or run) and the way out, and leaves on disk only what was there before:
no temporary file, no lock, no rewritten record.

A read-only folder and a full disk are injected through the writer's system calls (os.mkdir, os.replace raising
EROFS or ENOSPC): the tests run as root, for whom chmod does not stop a write, and mounting a small tmpfs needs
privileges a container may not have."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import untimed

from ridrepro.cli import main
from ridrepro.files import UserError, atomic_json, atomic_write_bytes, file_sha256
from ridrepro.protocols import PROTOCOLS, SMOKE

# A two-epoch smoke protocol without PID, for the in-process runs (registered as "smoke" while they run).
QUICK = replace(SMOKE, epochs=2, pid_epochs=())
CELL = ["distil", "--protocol", "smoke", "--synthetic", "--method", "vid", "--teacher", "ut", "--threads", "1"]


def snapshot(root):
    """Every file under root with its bytes: what a fault must leave unchanged."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def debris(root):
    return [p for p in Path(root).rglob("*") if ".tmp-" in p.name or p.name == "lock"]


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A finished vid-ut-s0 run of QUICK, made once by the command line; each test gets a copy."""
    root = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PROTOCOLS, "smoke", QUICK)
        assert main([*CELL, "--runs", str(root)]) == 0
    return root


@pytest.fixture
def runs(finished_runs, tmp_path, monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "smoke", QUICK)
    shutil.copytree(finished_runs, tmp_path / "runs")
    return tmp_path / "runs"


def cell_fails(runs, capsys, *expected, argv=CELL):
    """Run the cell: it must fail with one line holding every expected piece, leaving the folder as it was."""
    before = snapshot(runs)
    assert main([*argv, "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ridrepro {argv[0]}: error: "), err
    assert all(piece in err[0] for piece in expected), err[0]
    assert snapshot(runs) == before and not debris(runs)
    return err[0]


# ----------------------------------------------------------------------------- damaged files

def test_a_truncated_checkpoint_is_named_with_the_way_out(runs, capsys):
    folder = runs / "smoke" / "vid-ut-s0"
    (folder / "finished.json").unlink()
    ckpt = folder / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    cell_fails(runs, capsys, f"{ckpt} is damaged", "delete it to restart this run from scratch")
    ckpt.unlink()  # the way out works: the run restarts and finishes
    assert main([*CELL, "--runs", str(runs)]) == 0 and (folder / "finished.json").exists()


@pytest.mark.parametrize("name,fix", [("config.json", "delete that run folder"),
                                      ("finished.json", "delete it and re-run the same command")])
def test_a_corrupt_run_record_is_named_with_its_line(runs, capsys, name, fix):
    folder = runs / "smoke" / "vid-ut-s0"
    if name == "config.json":
        (folder / "finished.json").unlink()  # an unfinished run reads its config.json
    (folder / name).write_text('{\n  "identity": \n')
    cell_fails(runs, capsys, f"{folder / name} is not valid JSON (line 3)", fix)


def test_a_corrupt_teacher_record_or_weights_are_named(runs, capsys):
    teacher = runs / "smoke" / "teacher-ut-s0"
    shutil.rmtree(runs / "smoke" / "vid-ut-s0")
    good = (teacher / "teacher.json").read_text()
    (teacher / "teacher.json").write_text("{not json")
    cell_fails(runs, capsys, f"{teacher / 'teacher.json'} is not valid JSON (line 1)", "put the committed teacher.json")
    (teacher / "teacher.json").write_text(good)
    weights = teacher / "teacher.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    cell_fails(runs, capsys, f"{weights} has sha256", "put the committed teacher.pt back, or delete it to rebuild")


def test_summary_names_a_corrupt_record_and_a_bad_metrics_line(runs, capsys):
    folder = runs / "smoke" / "vid-ut-s0"
    (folder / "finished.json").write_text("{")
    summary = ["summary", "--protocol", "smoke"]
    cell_fails(runs, capsys, f"{folder / 'finished.json'} is not valid JSON (line 1)", "restore it", argv=summary)
    (folder / "finished.json").write_text("{}")
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    (folder / "metrics.jsonl").write_text("\n".join([lines[0], "{torn", *lines[1:]]) + "\n")
    cell_fails(runs, capsys, f"{folder / 'metrics.jsonl'}, line 2: not JSON", argv=summary)


# ----------------------------------------------------------------------------- destinations

def refuse(err, matching):
    real = {"mkdir": os.mkdir, "replace": os.replace}

    def make(name):
        def fake(*args, **kwargs):
            if matching(args):
                raise OSError(err, os.strerror(err), str(args[0]))
            return real[name](*args, **kwargs)
        return fake
    return make


def test_a_read_only_runs_folder_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "smoke", QUICK)
    runs = tmp_path / "runs"
    runs.mkdir()
    make = refuse(errno.EROFS, lambda args: str(runs) in str(args[0]))
    monkeypatch.setattr(os, "mkdir", make("mkdir"))
    monkeypatch.setattr(os, "replace", make("replace"))
    err = cell_fails(runs, capsys, "cannot write", "the file system is read-only; choose a writable folder (--runs")
    assert str(runs) in err and list(runs.iterdir()) == []


def test_a_full_disk_at_a_checkpoint_is_one_line_and_a_rerun_resumes(runs, capsys, monkeypatch):
    clean = untimed.records(runs / "smoke" / "vid-ut-s0" / "metrics.jsonl")
    shutil.rmtree(runs / "smoke" / "vid-ut-s0")
    make = refuse(errno.ENOSPC, lambda args: str(args[1]).endswith("checkpoint.pt"))
    monkeypatch.setattr(os, "replace", make("replace"))
    assert main([*CELL, "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt: the disk is full; free space and re-run the same command" in err[0], err
    assert not debris(runs)  # neither the .checkpoint.pt.tmp-<pid> file nor the lock
    monkeypatch.undo()  # the disk has room again
    monkeypatch.setitem(PROTOCOLS, "smoke", QUICK)
    assert main([*CELL, "--runs", str(runs)]) == 0
    assert untimed.records(runs / "smoke" / "vid-ut-s0" / "metrics.jsonl") == clean


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) mounts a small tmpfs at tmp_path/disk and returns it; skipped where mounting is not allowed
    (not root, or a container without the capability)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = []

    def mount(options):
        verb = ["-o", f"remount,{options}"] if mounted else ["-t", "tmpfs", "-o", options, "tmpfs"]
        done = subprocess.run(["mount", *verb, str(disk)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                        "the injected EROFS/ENOSPC tests cover the same paths")
        mounted.append(disk)
        return disk
    yield mount
    if mounted:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.grid
def test_a_real_full_disk_and_a_real_read_only_folder(runs, tmpfs, capsys):
    clean = untimed.records(runs / "smoke" / "vid-ut-s0" / "metrics.jsonl")
    disk = tmpfs("size=600k")  # room for the untrained teacher, not for the student's checkpoint
    assert main([*CELL, "--runs", str(disk)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("checkpoint.pt: the disk is full; free space and re-run the same command to resume"), err
    assert not debris(disk)
    tmpfs("size=20m")  # space freed: the same command resumes and finishes as an uninterrupted run would
    assert main([*CELL, "--runs", str(disk)]) == 0
    assert untimed.records(disk / "smoke" / "vid-ut-s0" / "metrics.jsonl") == clean
    tmpfs("ro")
    before = snapshot(disk)
    assert main(["distil", "--protocol", "smoke", "--synthetic", "--method", "bas", "--runs", str(disk)]) == 2
    assert "the file system is read-only; choose a writable folder" in capsys.readouterr().err
    assert snapshot(disk) == before


@pytest.mark.parametrize("fault", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_an_atomic_write_removes_its_temp_file_on_any_failure(tmp_path, monkeypatch, fault):
    target = tmp_path / "out.json"
    atomic_json({"old": 1}, target)

    def fail(fd):
        raise fault
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(UserError if isinstance(fault, OSError) else KeyboardInterrupt):
        atomic_write_bytes(b"new", target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"] and json.loads(target.read_text()) == {"old": 1}


def test_an_unwritable_cache_warns_and_goes_on_uncached(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from ridrepro.data import CIFAR10_CLASSES, load_cifar10
    for split, n in (("train", 2), ("test", 1)):
        for c, name in enumerate(CIFAR10_CLASSES):
            (tmp_path / "src" / split / name).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (c * 20, i, 0)).save(tmp_path / "src" / split / name / f"{i}.png")
    cache = tmp_path / "cache"
    make = refuse(errno.EROFS, lambda args: str(cache) in str(args[-1]))
    monkeypatch.setattr(os, "replace", make("replace"))
    ds = load_cifar10(tmp_path / "src", cache_dir=cache, expected_per_class=None)
    assert len(ds.train_y) == 20 and len(ds.test_y) == 10
    err = capsys.readouterr().err
    assert "warning: ridrepro.data: cannot cache the decoded tensors" in err and "going on uncached" in err
    assert not [p for p in cache.rglob("*") if p.is_file()]  # no temp file left in the cache folder


# ----------------------------------------------------------------------------- the grid's bookkeeping

def test_a_teacher_whose_weights_do_not_match_is_not_finished(runs):
    from ridrepro.train.grid import is_finished
    teacher = runs / "smoke" / "teacher-ut-s0"
    assert (teacher / "finished.json").exists() and is_finished("teacher-ut", teacher)
    (teacher / "teacher.pt").write_bytes(b"other weights")
    assert not is_finished("teacher-ut", teacher)
    assert is_finished("vid-ut-s0", runs / "smoke" / "vid-ut-s0")


def test_a_cell_that_loses_the_lock_race_exits_75_and_the_grid_reports_it(runs, capsys, monkeypatch):
    folder = runs / "smoke" / "vid-ut-s0"
    (folder / "finished.json").unlink()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / "lock").write_text(str(holder.pid))
        assert main([*CELL, "--runs", str(runs)]) == 75
        assert f"{folder} is in use by process {holder.pid}" in capsys.readouterr().err

        # The grid driver: its cells' exit codes decide the report (a fake Popen: no training here).
        import ridrepro.train.grid as grid

        class Cell:
            def __init__(self, cmd, **kwargs):
                self.returncode = 75 if "vid" in cmd and "ut" in cmd else 0

            def poll(self):
                return self.returncode
        monkeypatch.setattr(grid.subprocess, "Popen", Cell)
        monkeypatch.setattr(grid, "is_finished", lambda name, folder: False)
        assert main(["grid", "--protocol", "smoke", "--synthetic", "--methods", "vid", "--seeds", "0",
                     "--runs", str(runs)]) == 1
        out = capsys.readouterr().out
        assert "BUSY vid-ut-s0: in use by another process" in out
        assert "3 finished, 0 failed, 1 in use by another process" in out
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- interrupts

def start(argv, runs):
    return subprocess.Popen([sys.executable, "-m", "ridrepro", *argv, "--runs", str(runs)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def signal_after(proc, marker, sig):
    """Send `sig` once `marker` appears in the output (no terminal: the epoch lines); the whole output."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            proc.send_signal(sig)
            break
    lines += proc.stdout.readlines()
    proc.wait(timeout=120)
    return "".join(lines)


def test_ctrl_c_in_an_epoch_says_where_a_rerun_resumes_and_the_rerun_matches(runs, capsys, monkeypatch):
    from ridrepro.train.engine import Trainer
    clean = untimed.records(runs / "smoke" / "vid-ut-s0" / "metrics.jsonl")
    shutil.rmtree(runs / "smoke" / "vid-ut-s0")
    train_epoch = Trainer.train_epoch

    def interrupted_in_epoch_2(self, *args, **kwargs):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return train_epoch(self, *args, **kwargs)
    monkeypatch.setattr(Trainer, "train_epoch", interrupted_in_epoch_2)
    assert main([*CELL, "--runs", str(runs)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "ridrepro distil: interrupted; re-run the same command to resume from the last checkpoint (vid-ut-s0, epoch 1)")
    assert not debris(runs)
    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    assert main([*CELL, "--runs", str(runs)]) == 0
    assert untimed.records(runs / "smoke" / "vid-ut-s0" / "metrics.jsonl") == clean


@pytest.mark.grid
@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_cell_says_how_to_resume_and_leaves_no_lock(tmp_path, sig, code, word):
    runs = tmp_path / "runs"
    proc = start(CELL, runs)
    out = signal_after(proc, "vid-ut-s0: epoch 1/", sig)
    assert proc.returncode == code, out
    assert (f"ridrepro distil: {word}; re-run the same command to resume from the last checkpoint "
            "(vid-ut-s0, epoch ") in out and "Traceback" not in out
    assert not debris(runs) and (runs / "smoke" / "vid-ut-s0" / "checkpoint.pt").exists()


@pytest.mark.grid
def test_an_interrupted_cell_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path):
    clean, cut = tmp_path / "clean", tmp_path / "cut"
    assert start(CELL, clean).wait(timeout=300) == 0
    proc = start(CELL, cut)
    assert "interrupted" in signal_after(proc, "vid-ut-s0: epoch 2/", signal.SIGINT)
    assert start(CELL, cut).wait(timeout=300) == 0
    for log in ("metrics.jsonl", "pid.jsonl"):
        assert untimed.records(cut / "smoke" / "vid-ut-s0" / log) == untimed.records(clean / "smoke" / "vid-ut-s0" / log)
    assert not debris(cut)


def children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def alive(pid):
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@pytest.mark.grid
def test_sigterm_to_the_grid_driver_stops_its_cells_and_a_rerun_finishes(tmp_path):
    runs = tmp_path / "runs"
    argv = ["grid", "--protocol", "smoke", "--synthetic", "--methods", "vid", "--seeds", "0", "--jobs", "2",
            "--threads", "1"]
    proc = start(argv, runs)
    cells = []
    for line in proc.stdout:  # both teachers start side by side; stop the driver while the trained one trains
        if line.startswith("start teacher-tt"):
            log = runs / "smoke" / "logs" / "teacher-tt.log"
            while "epoch 1/" not in (log.read_text() if log.exists() else ""):
                time.sleep(0.1)
            cells = children(proc.pid)
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(proc.stdout.readlines())
    assert proc.wait(timeout=180) == 143, out
    assert cells and not any(alive(c) for c in cells), out  # no orphan goes on training
    assert "grid smoke: stopping" in out and "ridrepro grid: terminated; re-run the same command to resume" in out
    assert "stopped teacher-tt (exit 143)" in out and not debris(runs)
    again = start(argv, runs)
    rerun = again.stdout.read()
    assert again.wait(timeout=600) == 0, rerun
    assert "in use" not in rerun and "4 finished, 0 failed" in rerun
    assert "teacher-tt-s0: resuming after epoch" in (runs / "smoke" / "logs" / "teacher-tt.log").read_text()
    # the stopped teacher, resumed, is the teacher an uninterrupted run makes
    clean = tmp_path / "clean"
    assert start(["teacher", "--protocol", "smoke", "--synthetic", "--kind", "tt", "--threads", "1"],
                 clean).wait(timeout=300) == 0
    assert file_sha256(clean / "smoke" / "teacher-tt-s0" / "teacher.pt") == \
        file_sha256(runs / "smoke" / "teacher-tt-s0" / "teacher.pt")


# ----------------------------------------------------------------------------- long work and provenance

def test_training_a_teacher_is_announced_before_it_starts_and_logged_per_epoch(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "smoke", QUICK)
    assert main(["teacher", "--protocol", "smoke", "--synthetic", "--kind", "tt", "--threads", "1",
                 "--runs", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("ridrepro: training teacher-tt-s0 of protocol smoke (WRN-10-1, 2 epochs) in ")
    assert "teacher-tt-s0: epoch 1/2, test accuracy" in out and "teacher-tt-s0: epoch 2/2" in out  # no terminal
    assert main(["teacher", "--protocol", "smoke", "--synthetic", "--kind", "tt", "--runs", str(tmp_path)]) == 0
    assert "training" not in capsys.readouterr().err  # a finished teacher: nothing to announce


def test_training_a_teacher_is_announced_with_its_cost_and_the_committed_one():
    from ridrepro.protocols import get_protocol
    from ridrepro.train.runs import COMMITTED, teacher_notice
    line = teacher_notice(get_protocol("cpu-preview"), "tt", 0, "runs")
    assert line.startswith("ridrepro: training teacher-tt-s0 of protocol cpu-preview (WRN-40-2, 40 epochs)")
    if (COMMITTED / "cpu-preview" / "teacher-tt-s0" / "metrics.jsonl").exists():
        assert " h at the " in line and "to use the committed teacher instead" in line and "--runs" in line


def test_probes_refuse_runs_trained_on_other_data(tmp_path):
    from ridrepro.analysis.probe_grid import check_provenance
    folder = tmp_path / "bas-s0"
    folder.mkdir()
    atomic_json({"data_provenance": {"kind": "synthetic", "seed": 0}}, folder / "config.json")
    real = {"kind": "image-archive", "path": "/data/cifar10-jpeg.tar.gz", "sha256": "6c9b930289b4e49b"}
    with pytest.raises(ValueError, match=r"bas-s0 .* was trained on synthetic data \(seed 0\), but the probes would "
                                         r"use /data/cifar10-jpeg.tar.gz \(sha256 6c9b930289b4"):
        check_provenance({"bas-s0": ("bas", folder)}, real)
    atomic_json({"data_provenance": real}, folder / "config.json")
    check_provenance({"bas-s0": ("bas", folder)}, real)  # the same source: accepted
