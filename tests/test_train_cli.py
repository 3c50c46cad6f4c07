"""The training commands: a whole smoke grid end to end, summary statistics, clean errors."""

import json
import os
import statistics
import subprocess
import sys

import pytest

from ridrepro.analysis.results import accuracy_summary, run_core_hours
from ridrepro.cli import main
from ridrepro.files import file_sha256
from ridrepro.layout import CELLS as TABLE_CELLS

CELLS = ["bas", "vid-tt", "vid-ut", "rid-tt", "rid-ut", "ted-tt", "ted-ut", "cifd-tt", "cifd-ut"]


def data_args():
    # CI sets RIDREPRO_DATA (../shared/data): the smoke grid then runs on a real CIFAR-10 subset.
    return ["--data", os.environ["RIDREPRO_DATA"]] if os.environ.get("RIDREPRO_DATA") else ["--synthetic"]


@pytest.mark.grid
def test_smoke_grid_end_to_end(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "ridrepro", "grid", "--protocol", "smoke", "--seeds", "0", "1", "--jobs", "2",
           "--runs", str(runs), *data_args()]
    env = dict(os.environ, CI="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)  # 20 runs since cifd
    assert out.returncode == 0, out.stdout + out.stderr
    assert "20 runs, 0 finished, 20 to run" in out.stdout
    base = runs / "smoke"
    for seed in (0, 1):
        for cell in CELLS:
            folder = base / f"{cell}-s{seed}"
            metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
            assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
            assert all("lr" in m and "test_acc" in m and "images_per_s" in m for m in metrics)
            pid = [json.loads(x) for x in (folder / "pid.jsonl").read_text().splitlines()]
            teachers = ["tt", "ut"] if cell == "bas" else [cell.split("-")[1]]
            assert [(p["epoch"], p["teacher"]) for p in pid] == [(e, t) for e in (2, 4) for t in teachers]
            assert all(p["red"] >= -1e-9 and p["syn"] >= -1e-9 for p in pid)
            config = json.loads((folder / "config.json").read_text())
            assert config["identity"]["protocol"] == "smoke" and config["environment"]["torch"]
            assert (folder / "finished.json").exists()
    for kind in ("tt", "ut"):
        info = json.loads((base / f"teacher-{kind}-s0" / "teacher.json").read_text())
        assert info["sha256"] == file_sha256(base / f"teacher-{kind}-s0" / "teacher.pt") and info["seed"] == 0
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "20 finished, 0 to run" in again.stdout
    table = subprocess.run([sys.executable, "-m", "ridrepro", "summary", "--protocol", "smoke", "--runs", str(runs)],
                           capture_output=True, text=True, timeout=120).stdout
    for cell in TABLE_CELLS:
        assert f"| {cell} |" in table
    assert "| RID-tt | 2 (2) |" in table and "| teacher-ut | 1 (1) |" in table


def write_run(folder, accs, finished=True):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"environment": {"threads": 2}}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": i + 1, "phase": "student", "test_acc": a, "train_acc": a, "lr": {"student": 0.1},
                    "seconds": 90.0}) + "\n"
        for i, a in enumerate(accs)))
    if finished:
        (folder / "finished.json").write_text(json.dumps({"other_seconds": 36.0}))


def test_summary_statistics(tmp_path):
    a = [0.1 * i for i in range(12)]  # final 1.1, best 1.1, last 10 mean 0.65
    b = [0.5] * 12
    write_run(tmp_path / "p" / "rid-tt-s0", a)
    write_run(tmp_path / "p" / "rid-tt-s1", b, finished=False)
    write_run(tmp_path / "p" / "bas-s0", [0.3, 0.4])
    (tmp_path / "p" / "teacher-ut-s0").mkdir()
    (tmp_path / "p" / "teacher-ut-s0" / "config.json").write_text("{}")
    (tmp_path / "p" / "teacher-ut-s0" / "teacher.json").write_text(json.dumps({"test_acc": 0.1}))
    table = accuracy_summary(tmp_path, "p")
    assert table.cell.tolist() == ["teacher-ut", "BAS", "RID-tt"]  # the book's cell order
    r = table.set_index("cell").loc["RID-tt"]
    assert r.seeds == 2 and r.finished == 1
    assert r.final == pytest.approx((1.1 + 0.5) / 2)
    assert r.final_std == pytest.approx(statistics.stdev([1.1, 0.5]))
    assert r.tail_acc == pytest.approx((statistics.fmean(a[-10:]) + 0.5) / 2)
    assert r.best == pytest.approx((1.1 + 0.5) / 2)
    assert r.core_hours == pytest.approx(((12 * 90 + 36) + 12 * 90) * 2 / 3600)  # s1 is unfinished: no set-up
    assert r.change == pytest.approx((0.1 * 2.4 + 0.0) / 2)  # rising 0.1 per epoch over the last 2.4 epochs; flat
    bas, teacher = table.set_index("cell").loc["BAS"], table.set_index("cell").loc["teacher-ut"]
    assert bas.final == 0.4 and bas.final_std != bas.final_std and bas.tail_acc == pytest.approx(0.35)
    assert teacher.final == 0.1 and teacher.best != teacher.best  # NaN: an untrained teacher has no epochs


def test_core_hours_count_cpu_time_where_it_is_logged(tmp_path):
    # A run that waited for its core: 90 wall seconds an epoch, 50 of them on the CPU (2 threads -> up to 180).
    folder = tmp_path / "p" / "bas-s0"
    write_run(folder, [0.3, 0.4])
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    lines[1]["cpu_seconds"] = 50.0  # the first record predates CPU time: wall x threads
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder / "finished.json").write_text(json.dumps({"other_seconds": 36.0, "other_cpu_seconds": 20.0}))
    assert run_core_hours(folder, lines) == pytest.approx((90 * 2 + 50 + 20) / 3600)


def test_summary_formats(capsys, tmp_path):
    write_run(tmp_path / "smoke" / "vid-ut-s0", [0.2, 0.25])
    assert main(["summary", "--protocol", "smoke", "--runs", str(tmp_path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "cell,seeds,finished,final,final_std,best,best_std,tail_acc,tail_acc_std,change,change_std,tail_epochs,core_hours",
        "VID-ut,1,1,0.25,,0.25,,0.225,,,,10,0.12"]  # one run: no std; change: one evaluated epoch in the last 20 %, no line
    assert main(["summary", "--protocol", "smoke", "--runs", str(tmp_path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tail_acc"] == pytest.approx(0.225)
    assert main(["summary", "--protocol", "smoke", "--runs", str(tmp_path)]) == 0
    assert "| VID-ut | 1 (1) | 0.2500 | 0.2500 | 0.2250 | - | 0.12 |" in capsys.readouterr().out  # n = 1: no ±
    write_run(tmp_path / "smoke" / "vid-ut-s1", [0.2, 0.35])
    assert main(["summary", "--protocol", "smoke", "--runs", str(tmp_path)]) == 0
    assert "| VID-ut | 2 (2) | 0.3000 ± 0.0707 |" in capsys.readouterr().out


def test_summary_reads_the_epochs_the_claims_read(capsys, tmp_path):
    # paper-code-4k's claims average a run's accuracy over its last 30 epochs, and its torch-init variant's too;
    # the summary of those grids must print the same number as the book's verdicts, not a last-10 mean.
    accs = [0.1] * 10 + [0.2] * 20 + [0.5] * 10  # last 10: 0.5; last 30: (20 * 0.2 + 10 * 0.5) / 30 = 0.3
    for protocol in ("paper-code-4k", "paper-code-4k-torch-init"):
        write_run(tmp_path / protocol / "rid-ut-s0", accs)
        assert main(["summary", "--protocol", protocol, "--runs", str(tmp_path), "--format", "json"]) == 0
        row = json.loads(capsys.readouterr().out)[0]
        assert (row["tail_epochs"], row["tail_acc"]) == (30, pytest.approx(0.3))
    assert main(["summary", "--protocol", "paper-code-4k", "--runs", str(tmp_path)]) == 0
    assert "| mean of last 30 epochs |" in capsys.readouterr().out


def test_clean_errors(capsys, tmp_path):
    base = ["--protocol", "smoke", "--synthetic", "--runs", str(tmp_path)]
    assert main(["distil", "--method", "bas", "--teacher", "tt", *base]) == 2
    assert "BAS has no teacher; leave --teacher out" in capsys.readouterr().err
    assert main(["distil", "--method", "rid", *base]) == 2
    assert "rid needs a teacher: --teacher tt or ut" in capsys.readouterr().err
    assert main(["summary", "--protocol", "paper-text", "--runs", str(tmp_path)]) == 2
    assert "no results for protocol 'paper-text'" in capsys.readouterr().err


def test_teacher_command_saves_seed_accuracy_and_sha(capsys, tmp_path):
    assert main(["teacher", "--protocol", "smoke", "--kind", "ut", "--seed", "3", "--synthetic",
                 "--runs", str(tmp_path), "--threads", "1"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = tmp_path / "smoke" / "teacher-ut-s3"
    assert info["seed"] == 3 and 0 <= info["test_acc"] <= 1
    assert info["sha256"] == file_sha256(folder / "teacher.pt")


def test_grid_dependencies_are_cells_of_the_grid(tmp_path):
    from ridrepro.protocols import PAPER_TEXT
    from ridrepro.train.grid import grid_tasks
    for methods in (["ted"], ["bas", "ted"]):  # paper-text's TED fine-tunes BAS
        tasks = grid_tasks(PAPER_TEXT, [0], methods, tmp_path)
        names = {name for name, *_ in tasks}
        assert all(d in names for *_, deps in tasks for d in deps), methods  # none waits forever
    assert dict((n, d) for n, _, _, d in tasks)["ted-tt-s0"] == ["teacher-tt", "bas-s0"]
