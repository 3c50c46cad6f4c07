"""The cpu-4k machinery: one-cycle teacher schedule, a teacher on the whole training split whose identity holds
only teacher settings, sparse evaluation, PCA-50 features at PID epochs, the shuffled-label null, and the
on-disk tap cache."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import untimed

from ridrepro.analysis.results import accuracy_summary, load_metrics
from ridrepro.data import synthetic_cifar
from ridrepro.models import build_model
from ridrepro.protocols import CPU_4K, CPU_4K_DECAY, PAPER_CODE, PAPER_CODE_4K, SMOKE, Schedule
from ridrepro.train.engine import build_distiller, build_optimisers, protocol_schedule, rate_table, schedule_table
from ridrepro.train.runs import Options, distil, ensure_teacher


def tiny(**kw):
    """cpu-4k's settings on smoke-sized networks and data."""
    return replace(CPU_4K, name="tiny", teacher_arch=(10, 1, "post"), student_arch=(10, 1, "post"),
                   teacher=replace(CPU_4K.teacher, epochs=2), epochs=4, methods=SMOKE.methods, batch_size=64,
                   eval_batch_size=100, train_per_class=20, test_per_class=10, pid_epochs=(2, 4), eval_every=2,
                   store_pca=5, **kw)


def test_cpu_4k_is_paper_code_but_for_its_stated_changes():
    for name in ("bas", "vid", "rid", "ted"):
        m, code = CPU_4K.method(name), PAPER_CODE.method(name)
        assert (m.kind, m.lam, m.clip, m.bn_updates) == (code.kind, code.lam, code.clip, code.bn_updates)
        assert {k: v for k, v in m.rid.items() if k != "q"} == {k: v for k, v in code.rid.items() if k != "q"}
    assert CPU_4K.norm == ((0.5,) * 3, (0.5,) * 3) and not CPU_4K.augment
    assert CPU_4K.test_per_class is None and CPU_4K.teacher_data == "all" and CPU_4K.pid_overrides["null"] == 100
    assert len(CPU_4K.pid_epochs) >= 8 and CPU_4K.pid_epochs[-1] == CPU_4K.epochs
    rid = CPU_4K.method("rid").rid
    assert (rid["cycles"], rid["q"] * rid["r"]) == (10, 1)
    ted = CPU_4K.method("ted").rid
    assert (ted["cycles"], ted["q"] * ted["r"]) == (1, 5)


def test_cpu_4k_decay_is_cpu_4k_with_rid_and_ted_on_bas_s_schedule():
    rates = lambda p, m: [r["lr"] for r in protocol_schedule(p, m)]  # noqa: E731
    bas = [r["student"] for r in rates(CPU_4K, "bas")]
    for m in ("rid", "ted"):
        assert [r["student"] for r in rates(CPU_4K_DECAY, m)] == bas  # 0.05, then 0.01 and 0.002 as BAS
        assert set(r["student"] for r in rates(CPU_4K, m)) == {0.05}  # what the ablation removes
        assert rates(CPU_4K_DECAY, m) != rates(CPU_4K, m)
        assert replace(CPU_4K_DECAY.method(m), optim=CPU_4K.method(m).optim) == CPU_4K.method(m)
    assert [r["filter"] for r in rates(CPU_4K_DECAY, "rid")] == [r["filter"] for r in rates(CPU_4K, "rid")]
    same = {f: getattr(CPU_4K, f) for f in CPU_4K.to_dict() if f not in ("name", "methods", "notes")}
    assert {f: getattr(CPU_4K_DECAY, f) for f in same} == same
    assert CPU_4K_DECAY.teacher_home == "cpu-4k" and set(CPU_4K_DECAY.methods) == {"rid", "ted"}


def test_rate_table_names_the_rate_confound_between_cpu_4k_and_paper_code_4k():
    rows = {(r["protocol"], r["method"], r["optimiser"]): r for r in rate_table(CPU_4K) + rate_table(PAPER_CODE_4K)}
    assert len(rows) == 12  # four methods; RID and TED have a filter optimiser beside the student's
    first_last = {k: pytest.approx((r["first epoch"], r["last epoch"])) for k, r in rows.items()}
    assert first_last["cpu-4k", "BAS", "student"] == (0.05, 0.002)
    assert first_last["cpu-4k", "RID", "student"] == (0.05, 0.05)  # never stepped: the confound
    assert first_last["paper-code-4k", "RID", "student"] == (0.0025, 0.0025)  # 0.05 squared, also never stepped
    assert first_last["paper-code-4k", "VID", "student"] == (0.0025, 0.0001)
    assert first_last["paper-code-4k", "TED", "filter"] == (0.05, 0.05)
    assert {r["training images"] for r in rows.values()} == {"4,000"}
    assert {r["epochs"] for r in rows.values() if r["protocol"] == "paper-code-4k"} == {300}


def test_onecycle_warms_up_then_decays_per_step():
    spec = CPU_4K.teacher
    rows = schedule_table(build_distiller(spec, build_model((10, 1, "post"))), spec, 6, steps_per_epoch=391)
    lrs = [r["lr"]["student"] for r in rows]
    assert lrs[0] == pytest.approx(0.01)  # peak / div
    assert max(lrs) < 0.1 and lrs[1] > lrs[2] > lrs[3] > lrs[4] > lrs[5]
    opts, scheds = build_optimisers(build_distiller(spec, build_model((10, 1, "post"))), spec, total_steps=100)
    for _ in range(99):
        opts["student"].step()
        scheds["student"].step()
    assert opts["student"].param_groups[0]["lr"] == pytest.approx(0.1 / 1000)  # peak / final_div at the end
    with pytest.raises(ValueError, match="total number of optimiser steps"):
        build_optimisers(build_distiller(spec, build_model((10, 1, "post"))), spec)
    bad = replace(spec, optim={"student": replace(spec.optim["student"], schedule=Schedule(kind="cosine"))})
    with pytest.raises(ValueError, match="unknown schedule kind 'cosine'"):
        build_optimisers(build_distiller(bad, build_model((10, 1, "post"))), bad, total_steps=10)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny")
    protocol = tiny()
    opts = Options(root, log=lambda *a: None, tap_cache=root / "taps")
    summary = distil(protocol, synthetic_cifar(), "vid", 0, "tt", opts=opts)
    return root, protocol, summary


@pytest.mark.grid
def test_the_teacher_trains_on_the_whole_split_and_its_identity_ignores_student_settings(grid, tmp_path):
    root, protocol, _ = grid
    folder = root / "tiny" / "teacher-tt-s0"
    identity = json.loads((folder / "config.json").read_text())["identity"]
    assert identity["data_sizes"] == [600, 100]  # all 60 per class of the synthetic train split, 10 per class test
    assert "train_per_class" not in identity["settings"] and "pid_epochs" not in identity["settings"]
    # changing the students' settings keeps the finished teacher valid: its run folder opens as the same run
    other = replace(protocol, epochs=6, train_per_class=30, pid_epochs=(6,))
    model, info = ensure_teacher(other, synthetic_cifar(), "tt", 0, Options(root, log=lambda *a: None))
    assert info["sha256"] == json.loads((folder / "teacher.json").read_text())["sha256"]


@pytest.mark.grid
def test_sparse_evaluation_and_the_summary(grid):
    root, protocol, summary = grid
    lines = [json.loads(x) for x in (root / "tiny" / "vid-tt-s0" / "metrics.jsonl").read_text().splitlines()]
    assert ["test_acc" in r for r in lines] == [False, True, False, True]  # eval_every 2 (and PID epochs 2, 4)
    assert summary["final_acc"] == lines[-1]["test_acc"]
    assert summary["last10_acc"] == pytest.approx((lines[1]["test_acc"] + lines[3]["test_acc"]) / 2)
    metrics = load_metrics(root, "tiny")
    assert metrics.query("run == 'vid-tt-s0'")["test_acc"].isna().tolist() == [True, False, True, False]
    table = accuracy_summary(root, "tiny").set_index("cell")
    assert table.loc["VID-tt", "final"] == summary["final_acc"]


@pytest.mark.grid
def test_pid_records_carry_the_null_and_pca_features_are_stored(grid):
    root, protocol, _ = grid
    run = root / "tiny" / "vid-tt-s0"
    records = [json.loads(x) for x in (run / "pid.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [2, 4]
    assert all(r["null"]["n"] == 100 and "syn" in r["null"] for r in records)
    for name in ("s-e002.npy", "s-e004.npy", "tt.npy"):
        z = np.load(run / "pca5" / name)
        assert z.shape == (100, 5) and z.dtype == np.float16
    assert not np.array_equal(np.load(run / "pca5" / "s-e002.npy"), np.load(run / "pca5" / "s-e004.npy"))


@pytest.mark.grid
def test_the_tap_cache_gives_the_same_run_as_computing_the_taps(grid, tmp_path):
    root, protocol, _ = grid
    assert len(list((root / "taps").glob("*.pt"))) == 2  # the training taps and the PID test taps
    # the same cell again, with the cache now full and without it: identical records
    for sub, cache in (("cached", root / "taps"), ("live", None)):
        opts = Options(tmp_path / sub, log=lambda *a: None, tap_cache=cache)
        ensure_teacher(protocol, synthetic_cifar(), "tt", 0, opts)
        distil(protocol, synthetic_cifar(), "vid", 0, "tt", opts=opts)

    def records(base, name):
        return untimed.records(base / "tiny" / "vid-tt-s0" / name)

    for name in ("metrics.jsonl", "pid.jsonl"):
        assert records(tmp_path / "cached", name) == records(tmp_path / "live", name) == records(root, name)
    assert len(list((root / "taps").glob("*.pt"))) == 2  # nothing recomputed
