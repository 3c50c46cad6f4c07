"""`ridrepro pid table|features`: printed atoms, JSON, and one-line errors."""

import json

import numpy as np
import pytest

from ridrepro.cli import main
from ridrepro.pid.gates import gates


def test_table_prints_the_atoms(tmp_path, capsys):
    path = tmp_path / "and.npy"
    np.save(path, gates()["AND"][0])
    assert main(["pid", "table", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Red(Y:T,S)   0.311278124 bits" in out and "gap" in out


def test_table_json_counts_and_units(tmp_path, capsys):
    path = tmp_path / "counts.npy"
    np.save(path, gates()["SUM"][0] * 8)
    assert main(["pid", "table", str(path)]) == 2
    assert "--normalize" in capsys.readouterr().err
    assert main(["pid", "table", str(path), "--normalize", "--unit", "nats", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["unit"] == "nats" and d["red"] == pytest.approx(0.5 * np.log(2), abs=1e-9)


def test_features_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    files = []
    for name, dim in [("t", 12), ("s", 8)]:
        x = rng.normal(size=(3, dim))[y] * 3 + rng.normal(size=(300, dim))
        files.append(tmp_path / f"{name}.npy")
        np.save(files[-1], x)
    np.save(tmp_path / "y.npy", y)
    args = ["pid", "features", *map(str, files), str(tmp_path / "y.npy"), "--clusters", "3", "--pca", "2"]
    assert main(args + ["--bootstrap", "20", "--null", "10"]) == 0
    out = capsys.readouterr().out
    assert "nats" in out and "CI [" in out and "null mean" in out
    assert main(args + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["pca_components"] == 2


def test_missing_and_unreadable_files_give_one_line_errors(tmp_path, capsys):
    assert main(["pid", "table", str(tmp_path / "nope.npy")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    bad.write_text("not numpy")
    assert main(["pid", "table", str(bad)]) == 2
    assert "not a plain numpy" in capsys.readouterr().err
