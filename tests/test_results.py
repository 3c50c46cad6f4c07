import json

import numpy as np
import pytest

from ridrepro.pid import broja_pid
from ridrepro.results import (CELLS, PAPER_ACCURACY, PAPER_CELLS, RUN_NAME, load_metrics, load_pid, shuffled_null,
                              teacher_accuracy)


def write_run(root, name, metrics=(), pid=(), teacher_acc=None):
    d = root / "proto" / name
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    (d / "pid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pid))
    if teacher_acc is not None:
        (d / "teacher.json").write_text(json.dumps({"test_acc": teacher_acc}))
    return d


def metric(epoch, acc):
    return {"epoch": epoch, "phase": "train", "lr": {"student": 0.0025}, "test_acc": acc, "train_acc": acc}


def pid_record(epoch, teacher, red):
    r = {a: 0.1 for a in ("uni_t", "uni_s", "syn", "i_yt", "i_ys", "i_yts")}
    return {"epoch": epoch, "teacher": teacher, "unit": "nats", "gap": 1e-12, "red": red, **r,
            "bootstrap": {"red": [red - 0.01, red + 0.02]}}


def test_loaders_parse_run_names_and_records(tmp_path):
    write_run(tmp_path, "bas-s0", [metric(1, 0.2), metric(2, 0.3)], [pid_record(1, "tt", 0.5), pid_record(1, "ut", 0.0)])
    write_run(tmp_path, "vid-ut-s1", [metric(1, 0.1)], [pid_record(1, "ut", 0.05)])
    write_run(tmp_path, "teacher-tt-s0", [metric(1, 0.4)], teacher_acc=0.41)
    (tmp_path / "proto" / "logs").mkdir()  # not a run folder: ignored
    m = load_metrics(tmp_path, "proto")
    assert len(m) == 4 and set(m["run"]) == {"bas-s0", "vid-ut-s1", "teacher-tt-s0"}
    vid = m[m.run == "vid-ut-s1"].iloc[0]
    assert (vid.method, vid.teacher, vid.seed, vid.lr_student) == ("vid", "ut", 1, 0.0025)
    p = load_pid(tmp_path, "proto")
    assert sorted(p[p.method == "bas"].pid_teacher) == ["tt", "ut"]
    row = p[(p.method == "bas") & (p.pid_teacher == "tt")].iloc[0]
    assert (row.red_lo, row.red_hi) == (0.49, 0.52) and np.isnan(row.uni_t_lo)  # no interval logged: NaN
    assert teacher_accuracy(tmp_path, "proto").test_acc.tolist() == [0.41]


def test_loaders_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results for protocol 'proto'"):
        load_metrics(tmp_path, "proto")
    d = write_run(tmp_path, "rid-tt-s0", [metric(1, 0.2)])
    with pytest.raises(FileNotFoundError, match="no pid.jsonl records"):
        load_pid(tmp_path, "proto")
    (d / "metrics.jsonl").write_text('{"epoch": 1\n')
    with pytest.raises(ValueError, match="metrics.jsonl, line 1: not JSON"):
        load_metrics(tmp_path, "proto")


def test_paper_table_covers_the_grid():
    assert len(PAPER_ACCURACY) == 8 and set(PAPER_ACCURACY.cell) == set(PAPER_CELLS) - {"teacher-ut"}
    assert set(CELLS) - set(PAPER_CELLS) == {"CIFD-tt", "CIFD-ut"}
    assert RUN_NAME.fullmatch("cifd-ut-s2")["method"] == "cifd"


def test_shuffled_null_from_counts():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 3000)
    t = (y + (rng.random(3000) < 0.1)) % 4  # T and S both carry Y
    s = (y + (rng.random(3000) < 0.2)) % 4
    counts = np.zeros((4, 4, 4), int)
    np.add.at(counts, (t, s, y), 1)
    r = shuffled_null(counts, null=20)
    assert r.red == pytest.approx(broja_pid(counts / counts.sum(), unit="nats").red, abs=1e-9)
    assert r.extras["null"]["red"]["p_value"] == pytest.approx(1 / 21)  # far above every shuffle
    assert r.extras["null"]["red"]["q95"] < 0.01 < r.red
    indep = rng.multinomial(3000, np.full(64, 1 / 64)).reshape(4, 4, 4)
    assert shuffled_null(indep, null=20).extras["null"]["i_yts"]["p_value"] > 0.05
    with pytest.raises(ValueError, match="non-negative"):
        shuffled_null(-counts)
