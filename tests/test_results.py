import json

import numpy as np
import pytest

from ridrepro.analysis.results import (
    PAPER_ACCURACY,
    accuracy_summary,
    cost_to_finish,
    describe_status,
    kernel_paths,
    grid_status,
    load_metrics,
    load_pid,
    run_accuracy,
    shuffled_null,
)
from ridrepro.layout import CELLS, PAPER_CELLS, parse_run
from ridrepro.pid import broja_pid


def write_run(root, name, metrics=(), pid=(), teacher_acc=None, finished=False):
    d = root / "proto" / name
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    if finished:
        (d / "finished.json").write_text("{}")
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
    assert np.isnan(row.red_q95) and not row.finished  # no null logged, no finished.json
    assert run_accuracy(tmp_path, "proto").set_index("run").loc["teacher-tt-s0", "final"] == 0.4  # its last epoch


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
    assert parse_run("cifd-ut-s2").method == "cifd"


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


def test_logged_null_is_read_per_atom(tmp_path):
    rec = {**pid_record(4, "tt", 0.5), "null": {"red": {"mean": 0.01, "q95": 0.02, "p_value": 1 / 101}}}
    write_run(tmp_path, "rid-tt-s0", [metric(4, 0.3)], [rec], finished=True)
    row = load_pid(tmp_path, "proto").iloc[0]
    assert (row.red_q95, row.red_p, row.finished) == (0.02, 1 / 101, True) and np.isnan(row.syn_q95)


def test_run_accuracy_and_status_of_a_partial_grid(tmp_path):
    # every 4th epoch evaluated, as cpu-4k: the mean of the last 10 epochs is that of epochs 4 and 8
    unevaluated = lambda e: {k: v for k, v in metric(e, 0).items() if k != "test_acc"}  # noqa: E731
    write_run(tmp_path, "bas-s0", [metric(e, 0.1 * e) if e % 4 == 0 else unevaluated(e) for e in range(1, 9)],
              finished=True)
    write_run(tmp_path, "bas-s1", [metric(4, 0.4), metric(8, 0.6)], finished=True)
    write_run(tmp_path, "vid-tt-s0", [metric(4, 0.2)])  # still training
    write_run(tmp_path, "rid-ut-s0")  # created, no epoch yet: not a row of run_accuracy
    write_run(tmp_path, "teacher-ut-s0", teacher_acc=0.1, finished=True)
    runs = run_accuracy(tmp_path, "proto").set_index("run")
    assert list(runs.index) == ["bas-s0", "bas-s1", "teacher-ut-s0", "vid-tt-s0"]
    assert runs.loc["bas-s0", "tail_acc"] == pytest.approx(0.6) and runs.loc["bas-s0", "final"] == pytest.approx(0.8)
    assert runs.loc["teacher-ut-s0", "final"] == 0.1 and np.isnan(runs.loc["teacher-ut-s0", "tail_acc"])
    summary = accuracy_summary(tmp_path, "proto").set_index("cell")
    assert summary.loc["BAS", "tail_acc"] == pytest.approx(0.55) and np.isnan(summary.loc["VID-tt", "tail_acc_std"])
    status = grid_status(tmp_path, "proto").set_index("cell")
    assert status.loc["BAS", "finished"] == [0, 1] and status.loc["VID-tt", "training"] == [0]
    assert status.loc["RID-ut", "training"] == [0] and "teacher-ut" not in status.index
    lines = describe_status(status.reset_index(), seeds=2)
    assert lines[0] == "paper: 2 of 14 student runs finished"
    assert lines[1] == "CIFD (this project's addition): 0 of 4 student runs finished"
    assert "BAS" not in lines[2] and "VID-tt not run yet (1 training)" in lines[2]




def test_cost_to_finish_prices_missing_epochs_at_each_methods_measured_rate(tmp_path):
    def run(name, epochs, cpu_seconds, finished=False):
        d = tmp_path / "smoke" / name
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
        (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e + 1, "cpu_seconds": cpu_seconds}) + "\n"
                                                 for e in range(epochs)))
        if finished:
            (d / "finished.json").write_text("{}")

    run("bas-s0", 4, 900, finished=True)  # smoke: 4 epochs; BAS costs 0.25 core-hours an epoch
    run("rid-ut-s0", 1, 1800)  # RID 0.5 an epoch, 3 epochs to go
    run("rid-ut-s5", 4, 1800, finished=True)  # a seed beyond those needed costs, but does not count
    t = cost_to_finish(tmp_path, {("smoke", "BAS"): 2, ("smoke", "RID-ut"): 1, ("smoke", "TED-tt"): 1}).set_index("cell")
    assert t.loc["BAS", "to_go"] == pytest.approx(4 * 0.25) and t.loc["BAS", "spent"] == pytest.approx(1.0)
    assert t.loc["RID-ut", "to_go"] == pytest.approx(3 * 0.5)
    assert (t.loc["RID-ut", "started"], t.loc["RID-ut", "finished"]) == (2, 1)
    assert np.isnan(t.loc["TED-tt", "to_go"])  # no TED run measured yet


def test_kernel_paths_name_where_a_run_changed_path(tmp_path):
    env = {"cpu_capability": "AVX2", "threads": 1}
    (tmp_path / "config.json").write_text(json.dumps({"environment": env}))
    assert kernel_paths(tmp_path) == "AVX2"
    later = [{**env, "threads": 2, "changed": ["threads"], "after_epoch": 3},
             {**env, "cpu_capability": "AVX512", "changed": ["cpu_capability"], "after_epoch": 115},
             {**env, "cpu_capability": "DEFAULT", "changed": ["cpu_capability"]}]  # written before after_epoch
    (tmp_path / "config.json").write_text(json.dumps({"environment": env, "resumed_in": later}))
    assert kernel_paths(tmp_path) == "AVX2, AVX512 after epoch 115, DEFAULT later"
