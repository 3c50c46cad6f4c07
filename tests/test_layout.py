"""The run vocabulary: every folder name the package makes parses back to the run it names, and the readers
find every such run (a teacher seed other than 0 included)."""

import json
from pathlib import Path

import pytest

from ridrepro.analysis.results import grid_runs
from ridrepro.layout import (CELLS, METHODS, TEACHER_KINDS, Run, accuracy_of, parse_cell, parse_run, student_dir,
                             teacher_dir)


def every_run(seeds=(0, 1, 12), teacher_seeds=(0, 3)):
    yield from (Run("teacher", s, k) for k in TEACHER_KINDS for s in seeds)
    yield from (Run("bas", s) for s in seeds)
    yield from (Run(m, s, k, t) for m in METHODS if m != "bas" for k in TEACHER_KINDS for s in seeds
                for t in teacher_seeds)


def test_every_name_round_trips():
    runs = list(every_run())
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    for run in runs:
        assert parse_run(run.name) == run
        assert run.cell in CELLS
        assert parse_cell(run.cell) == (run.method, run.teacher)
    assert Run("rid", 0, "tt", 3).name == "rid-tt3-s0" and Run("rid", 0, "tt", 3).cell == "RID-tt"


def test_folders_are_named_by_the_one_formatter(tmp_path):
    assert teacher_dir(tmp_path, "p", "ut", 2).name == "teacher-ut-s2"
    assert student_dir(tmp_path, "p", "vid", 1, "tt", 3) == tmp_path / "p" / "vid-tt3-s1"
    assert student_dir(tmp_path, "p", "bas", 4).name == "bas-s4"


@pytest.mark.parametrize("name", ["logs", "bas-tt-s0", "rid-s0", "rid-xx-s0", "rid-tt0-s0", "teacher-tt3-s0",
                                  "foo-tt-s0", "rid-tt-s", "pca50"])
def test_names_that_are_no_run(name):
    assert parse_run(name) is None


def test_bad_runs_are_refused():
    with pytest.raises(ValueError, match="BAS has no teacher"):
        Run("bas", 0, "tt")
    with pytest.raises(ValueError, match="teacher must be one of"):
        Run("vid", 0, "xx")
    with pytest.raises(ValueError, match="vid needs a teacher"):
        Run("vid", 0)


def test_readers_find_a_run_of_another_teacher_seed(tmp_path):
    for run in (Run("bas", 0), Run("rid", 0, "tt", 3)):
        folder = run.folder(tmp_path, "p")
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({}))
    assert [(f.name, m, t, s) for f, m, t, s in grid_runs(tmp_path, "p")] == [
        ("bas-s0", "bas", None, 0), ("rid-tt3-s0", "rid", "tt", 0)]


def test_accuracy_of_records():
    records = [{"epoch": e, **({"test_acc": e / 100} if e % 4 == 0 else {})} for e in range(1, 21)]
    acc = accuracy_of(records)
    assert acc["final"] == 0.2 and acc["best"] == 0.2
    assert acc["tail"] == pytest.approx((0.12 + 0.16 + 0.2) / 3)  # the evaluated epochs among the last ten
    assert accuracy_of([{"epoch": 1}]) == {"final": None, "best": None, "tail": None}


def test_figure_data_goes_to_the_book_only_for_the_committed_grids(tmp_path, monkeypatch):
    from ridrepro.layout import figure_data_dir

    book = tmp_path / "book"
    book.mkdir()
    (tmp_path / "results").mkdir()
    monkeypatch.chdir(book)
    assert figure_data_dir("../results") == Path("data")
    mine = figure_data_dir(tmp_path / "mine")
    assert mine == tmp_path / "mine" / "book-data" and mine.is_dir()  # never into book/data
