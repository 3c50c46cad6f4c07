"""Run folders: a killed run resumes to a bit-identical result; finished runs are kept; mismatches are errors."""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import killable
import pytest
import torch
import untimed

from ridrepro.data import synthetic_cifar
from ridrepro.protocols import SMOKE
from ridrepro.train.runs import Options, distil
from ridrepro.train.store import RunDir, environment

EPOCHS = 8
SCRIPT = textwrap.dedent(f"""
    import sys, torch
    from dataclasses import replace
    from ridrepro.protocols import SMOKE
    from ridrepro.train.runs import Options, distil
    from ridrepro.data import synthetic_cifar
    torch.set_num_threads(1)
    distil(replace(SMOKE, epochs={EPOCHS}, pid_epochs=()), synthetic_cifar(), "rid", 0, "ut",
           opts=Options(sys.argv[1], log=lambda *a: None))
""")


def run_script(root, kill_after=None, env=None):
    killable.run_script(SCRIPT, root, root / "smoke" / "rid-ut-s0" / "metrics.jsonl", kill_after, env)


def metrics(root):
    return untimed.records(root / "smoke" / "rid-ut-s0" / "metrics.jsonl")


@pytest.mark.grid
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
    from ridrepro.files import file_sha256
    from ridrepro.protocols import PAPER_TEXT
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
    from ridrepro.layout import teacher_dir
    from ridrepro.train.runs import ensure_teacher
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


def other_kernel_path():
    """A CPU kernel path other than the one torch picks here, or None where torch already runs the baseline."""
    native = torch.backends.cpu.get_cpu_capability()
    return None if native == "DEFAULT" else native


@pytest.mark.grid
@pytest.mark.skipif(other_kernel_path() is None, reason="torch runs its baseline kernels here: no second path")
def test_a_run_started_under_one_kernel_path_resumes_under_another(tmp_path):
    # ATEN_CPU_CAPABILITY=default selects torch's baseline kernels, whose floats differ from AVX2/AVX512 ones:
    # the situation of a grid continued on another machine.
    run_script(tmp_path, kill_after=3, env={"ATEN_CPU_CAPABILITY": "default"})
    run_script(tmp_path)  # this machine's own kernels
    folder = tmp_path / "smoke" / "rid-ut-s0"
    assert (folder / "finished.json").exists()
    assert [m["epoch"] for m in metrics(tmp_path)] == list(range(1, EPOCHS + 1))
    config = json.loads((folder / "config.json").read_text())
    assert config["environment"]["cpu_capability"] == "DEFAULT"
    assert config["environment"]["kernel_env"] == {"ATEN_CPU_CAPABILITY": "default"}
    [resumed] = config["resumed_in"]
    assert resumed["cpu_capability"] == other_kernel_path()
    assert {"cpu_capability", "kernel_env"} <= set(resumed["changed"])
    assert 0 < resumed["after_epoch"] < EPOCHS  # where the second kernel path took over


@pytest.mark.grid
@pytest.mark.skipif(other_kernel_path() is None, reason="torch runs its baseline kernels here: no second path")
def test_a_grid_continues_on_another_kernel_path_from_its_committed_teacher(tmp_path):
    grid = [sys.executable, "-m", "ridrepro", "grid", "--protocol", "smoke", "--synthetic", "--seeds", "0",
            "--methods", "bas", "--runs", str(tmp_path), "--threads", "1"]
    first = subprocess.run(grid, capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, ATEN_CPU_CAPABILITY="default", CI="1"))
    assert first.returncode == 0, first.stdout + first.stderr
    teacher = tmp_path / "smoke" / "teacher-tt-s0"
    for leftover in tmp_path.rglob("checkpoint.pt"):  # what a commit of the grid leaves out
        leftover.unlink()
    stamp = (teacher / "teacher.pt").stat().st_mtime_ns
    cell = [sys.executable, "-m", "ridrepro", "distil", "--protocol", "smoke", "--synthetic", "--method", "vid",
            "--teacher", "tt", "--runs", str(tmp_path), "--threads", "1", "--quiet"]
    out = subprocess.run(cell, capture_output=True, text=True, timeout=600, env=dict(os.environ, CI="1"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rebuilding" not in out.stdout + out.stderr  # the committed weights were used, after their sha256 check
    assert (teacher / "teacher.pt").stat().st_mtime_ns == stamp
    config = json.loads((tmp_path / "smoke" / "vid-tt-s0" / "config.json").read_text())
    assert config["identity"]["teacher_sha256"]["tt"] == json.loads((teacher / "teacher.json").read_text())["sha256"]
    assert config["environment"]["cpu_capability"] == other_kernel_path()
    assert (tmp_path / "smoke" / "vid-tt-s0" / "finished.json").exists()


def test_a_failed_rebuild_names_the_kernel_path_and_the_fix(finished):
    protocol, opts, folder = finished
    from ridrepro.layout import teacher_dir
    from ridrepro.train.runs import ensure_teacher
    ut = teacher_dir(opts.root, "smoke", "ut", 0)
    info = json.loads((ut / "teacher.json").read_text())
    (ut / "teacher.json").write_text(json.dumps({**info, "sha256": "0" * 64}))
    config = json.loads((ut / "config.json").read_text())
    # as if made on another machine: the kernel path this CPU does not run
    original = "AVX512" if torch.backends.cpu.get_cpu_capability() == "AVX2" else "AVX2"
    config["environment"].update(cpu_capability=original, kernel_env={})
    (ut / "config.json").write_text(json.dumps(config))
    (ut / "teacher.pt").unlink()
    with pytest.raises(ValueError) as err:
        ensure_teacher(protocol, synthetic_cifar(20, 10), "ut", 0, opts)
    message = str(err.value)
    assert "differs from the original in cpu_capability" in message
    assert f"ATEN_CPU_CAPABILITY={original.lower()}" in message and "--threads 1" in message
    assert "committed" in message and str(ut / "teacher.pt") in message


def test_another_device_type_or_bf16_setting_needs_the_flag(tmp_path):
    cpu = environment("cpu")
    cuda = {**cpu, "device": "cuda:0", "device_name": "NVIDIA H200"}
    folder = tmp_path / "run"
    RunDir(folder, {"a": 1}, cpu).open().close()
    before = (folder / "config.json").read_text()
    for env, was, now in ((cuda, "device cpu", "device cuda:0"), ({**cpu, "bf16": True}, "bf16 False", "bf16 True")):
        with pytest.raises(ValueError) as err:
            RunDir(folder, {"a": 1}, env).open()
        message = str(err.value)
        assert str(folder) in message and f"started with {was} and would resume with {now}" in message
        assert "--allow-environment-change" in message
        assert (folder / "config.json").read_text() == before and not (folder / "lock").exists()
    RunDir(folder, {"a": 1}, {**cuda, "bf16": True}, allow_env_change=True).open().close()
    [resumed] = json.loads((folder / "config.json").read_text())["resumed_in"]
    assert {"device", "device_name", "bf16"} <= set(resumed["changed"])
    assert resumed["device"] == "cuda:0" and resumed["bf16"] is True
    assert resumed["allowed_by"] == "--allow-environment-change"


def test_another_cuda_device_or_thread_count_is_recorded_without_the_flag(tmp_path):
    gpu0 = {**environment("cpu"), "device": "cuda:0", "device_name": "NVIDIA H200", "bf16": True}
    folder = tmp_path / "run"
    RunDir(folder, {"a": 1}, gpu0).open().close()
    RunDir(folder, {"a": 1}, {**gpu0, "device": "cuda:1", "threads": gpu0["threads"] + 1}).open().close()
    [resumed] = json.loads((folder / "config.json").read_text())["resumed_in"]
    assert set(resumed["changed"]) == {"device", "threads"} and "allowed_by" not in resumed
    (folder / "finished.json").write_text("{}")  # a finished run is never trained again: nothing to check
    RunDir(folder, {"a": 1}, environment("cpu")).open().close()
    assert len(json.loads((folder / "config.json").read_text())["resumed_in"]) == 1


def test_a_record_from_before_bf16_was_recorded_counts_as_bf16_off(tmp_path):
    env = environment("cpu")
    RunDir(tmp_path / "run", {"a": 1}, {k: v for k, v in env.items() if k != "bf16"}).open().close()
    RunDir(tmp_path / "run", {"a": 1}, env).open().close()
    assert "resumed_in" not in json.loads((tmp_path / "run" / "config.json").read_text())


def test_an_unfinished_run_from_a_gpu_resumes_on_the_cpu_only_when_allowed(finished):
    protocol, opts, folder = finished
    (folder / "finished.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    assert config["environment"]["bf16"] is False and config["environment"]["device"] == "cpu"
    config["environment"].update(device="cuda:0", device_name="NVIDIA H200")  # as if started on a GPU
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="device cuda:0 and would resume with device cpu.*allow-environment-change"):
        distil(protocol, synthetic_cifar(20, 10), "vid", 0, "ut", opts=opts)
    opts.allow_env_change = True
    assert distil(protocol, synthetic_cifar(20, 10), "vid", 0, "ut", opts=opts)["epochs"] == 2
    [resumed] = json.loads((folder / "config.json").read_text())["resumed_in"]
    assert resumed["device"] == "cpu" and "device" in resumed["changed"]
    assert resumed["allowed_by"] == "--allow-environment-change"


def test_grid_passes_the_flag_and_a_share_of_the_cache_budget_to_its_cells(tmp_path, monkeypatch):
    import ridrepro.train.grid
    from ridrepro.cli import main
    started = []

    class Finished:  # stands in for a cell's process, which ends at once
        returncode = 0

        def __init__(self, cmd, **kwargs):
            started.append(cmd)

        def poll(self):
            return 0

    monkeypatch.setattr(ridrepro.train.grid.subprocess, "Popen", Finished)
    assert main(["grid", "--protocol", "smoke", "--synthetic", "--seeds", "0", "--methods", "vid", "--jobs", "2",
                 "--runs", str(tmp_path), "--allow-environment-change"]) == 0
    assert len(started) == 4  # two teachers, vid-ut, vid-tt
    for cmd in started:
        assert "--allow-environment-change" in cmd and cmd[cmd.index("--cache-share") + 1] == "0.25"
