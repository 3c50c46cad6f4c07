"""The estimator-sensitivity study reads stored PCA features: they must reproduce the logged atoms, and its
claim verdicts must follow the chapters' rule."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ridrepro.analysis.claims import CPU_4K_ATOM_RULES, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from ridrepro.analysis.sensitivity import (
    against_bootstrap,
    atom_claims,
    clustering_spread,
    estimator_settings,
    missing_cells,
    pid_of_stored,
    sensitivity_table,
    stored_labels,
    stored_runs,
    update_table,
    verdict_grid,
)

RUN = Path(__file__).resolve().parents[1] / "results" / "cpu-4k" / "rid-ut-s0"


def logged_atoms(run_folder, epoch, teacher):
    """The atoms a run logged in pid.jsonl at `epoch` against `teacher` (to check the stored features)."""
    for line in (Path(run_folder) / "pid.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["epoch"] == epoch and r["teacher"] == teacher:
            return r
    raise KeyError(f"{run_folder}: no PID record at epoch {epoch} against {teacher}")


def test_stored_features_reproduce_the_logged_atoms():
    y = stored_labels(RUN)
    t = np.load(RUN / "pca50" / "ut.npy")
    for epoch in (1, 40):
        logged = logged_atoms(RUN, epoch, "ut")
        r = pid_of_stored(t, np.load(RUN / "pca50" / f"s-e{epoch:03d}.npy"), y)
        for atom in ("red", "uni_t", "uni_s", "syn"):
            assert abs(getattr(r, atom) - logged[atom]) < 2e-3, (epoch, atom, getattr(r, atom), logged[atom])


def test_wrong_labels_do_not_reproduce_them():
    # The check above can fail: a shuffled label vector destroys the class-major pairing.
    y = np.random.default_rng(0).permutation(stored_labels(RUN))
    r = pid_of_stored(np.load(RUN / "pca50" / "ut.npy"), np.load(RUN / "pca50" / "s-e040.npy"), y)
    assert abs(r.red - logged_atoms(RUN, 40, "ut")["red"]) > 0.02


def test_pid_of_stored_on_a_constructed_case():
    # Teacher clusters = the label, student features noise: all of I(Y;T) = H(Y) is unique to the teacher.
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 200)
    centres = rng.normal(size=(4, 6)) * 20
    t = centres[y] + rng.normal(size=(800, 6)) * 0.01
    s = rng.normal(size=(800, 6))
    r = pid_of_stored(t, s, y, pca_components=3, n_clusters=4, unit="bits")
    assert r.i_yt == pytest.approx(2.0, abs=1e-9)
    assert r.uni_t > 1.9 and r.red < 0.05
    with pytest.raises(ValueError, match="cannot take 7"):
        pid_of_stored(t, s, y, pca_components=7, n_clusters=4)
    with pytest.raises(ValueError, match="shape"):
        pid_of_stored(t[:10], s, y)


def test_settings_vary_one_thing_at_a_time():
    settings = dict(estimator_settings(clustering_seeds=3))
    assert list(settings) == ["paper-code", "PCA 10", "KMeans 20", "n_init 10", "seed 1", "seed 2"]
    base = settings["paper-code"]
    for name, st in settings.items():
        assert sum(st[k] != base[k] for k in base) == (name != "paper-code")


@pytest.mark.grid  # recomputes committed runs' atoms: minutes
def test_table_and_claims_on_committed_runs():
    # two runs, so that the test's cost does not grow with the grid; the RID-tt claims then have no cell
    table = sensitivity_table(RUN.parents[1], "cpu-4k", stored_labels(RUN), settings=estimator_settings(2),
                              null=20, runs={"rid-ut-s0", "ted-ut-s0"})
    assert set(table.run) == {"rid-ut-s0", "ted-ut-s0"}
    assert set(table.setting) == {"paper-code", "PCA 10", "KMeans 20", "n_init 10", "seed 1"}
    last = table[table.epoch == 40]
    assert last["red_q95"].notna().all() and table[table.epoch == 1]["red"].notna().all()
    claims = atom_claims(table, CPU_4K_ATOM_RULES)
    rid = claims[(claims.key == "ridut-red-near-zero-ut") & (claims.setting == "paper-code")]
    assert rid.seeds.iloc[0] == 1 and rid.verdict.iloc[0] == INCONCLUSIVE  # one of 3 seeds
    assert (claims[claims.claim.str.startswith("RID-tt")].seeds == 0).all()
    with pytest.raises(ValueError, match="rid-ut-s9"):
        sensitivity_table(RUN.parents[1], "cpu-4k", runs={"rid-ut-s9"})


def test_a_run_without_stored_features_is_named(tmp_path):
    run = tmp_path / "cpu-4k" / "bas-s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "finished.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="bas-s0"):
        sensitivity_table(tmp_path, "cpu-4k", np.zeros(10))


def test_a_run_still_training_is_left_out(tmp_path):
    # Its features stop at the epoch it has reached, so its "last" epoch is not the protocol's.
    root = tmp_path / "cpu-4k"
    root.mkdir()
    (root / "rid-ut-s0").symlink_to(RUN)
    partial = root / "rid-ut-s1"
    (partial / "pca50").mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    for name in ("ut.npy", "s-e001.npy"):
        (partial / "pca50" / name).write_bytes((RUN / "pca50" / name).read_bytes())
    assert stored_runs(tmp_path, "cpu-4k").run.tolist() == ["rid-ut-s0"]


def _claims(rows):
    return pd.DataFrame([{"claim": c, "setting": s, "verdict": v, "seeds": 0 if v == "none" else 3}
                         for c, s, v in rows])


def test_verdict_grid_summarises_the_seeds():
    R, N, I = REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE
    rows = [("A", "paper-code", R), ("A", "PCA 10", N), ("A", "KMeans 20", R), ("A", "n_init 10", I),
            ("A", "seed 1", N), ("A", "seed 2", R)]
    rows += [("B", s, I) for s in ("paper-code", "PCA 10", "KMeans 20", "n_init 10", "seed 1", "seed 2")]
    rows += [("C", s, "none") for s in ("paper-code", "PCA 10", "KMeans 20", "n_init 10", "seed 1", "seed 2")]
    g = verdict_grid(_claims(rows))
    assert g.loc["A", "paper-code"] == (R, 1.0) and g.loc["A", "PCA 10"] == (N, 0.0)
    assert g.loc["A", "n_init 10"][0] == I and np.isnan(g.loc["A", "n_init 10"][1])
    assert g.loc["A", "KMeans seeds"] == (f"{R} in 2/3", pytest.approx(2 / 3))
    assert g.loc["B", "KMeans seeds"][0] == I
    assert g.loc["C", "KMeans seeds"][0] == "not run yet" and np.isnan(g.loc["C", "n_init 10"][1])


def _table(values):
    rows = [{"run": "rid-ut-s0", "cell": "RID-ut", "pid_teacher": "ut", "epoch": 40, "setting": s, "red": v,
             "uni_t": 2 * v} for s, v in values.items()]
    return pd.DataFrame(rows)


def test_clustering_spread_and_the_bootstrap():
    table = _table({"paper-code": 0.10, "PCA 10": 5.0, "seed 1": 0.12, "seed 2": 0.14})
    sp = clustering_spread(table).set_index("atom")
    # PCA 10 is no KMeans seed: the three seeds are 0.10, 0.12, 0.14 (sd 0.02, range 0.04)
    assert sp.loc["red", "seeds"] == 3 and sp.loc["red", "paper_code"] == 0.10
    assert sp.loc["red", "seed_sd"] == pytest.approx(0.02) and sp.loc["red", "seed_range"] == pytest.approx(0.04)
    assert sp.loc["uni_t", "seed_sd"] == pytest.approx(0.04)
    # a 95 % bootstrap interval 3.92 * 0.01 wide is a bootstrap sd of 0.01: the clustering moves Red 2x more
    pid = pd.DataFrame([{"run": "rid-ut-s0", "pid_teacher": "ut", "epoch": 40, "red": 0.1, "uni_t": 0.2,
                         "red_lo": 0.1 - 0.0196, "red_hi": 0.1 + 0.0196, "uni_t_lo": 0.2, "uni_t_hi": 0.2}])
    b = against_bootstrap(clustering_spread(table), pid).set_index("atom")
    assert b.loc["red", "boot_sd"] == pytest.approx(0.01, rel=1e-3)
    assert b.loc["red", "ratio"] == pytest.approx(2.0, rel=1e-3)
    assert np.isnan(b.loc["uni_t", "ratio"])  # a zero-width interval gives no ratio
    with pytest.raises(KeyError, match="epoch 40"):
        against_bootstrap(clustering_spread(table), pid.assign(epoch=1))


def test_missing_cells():
    assert missing_cells(_table({"paper-code": 0.1}), ["BAS", "RID-ut", "VID-ut"]) == ["BAS", "VID-ut"]


@pytest.mark.grid  # recomputes committed runs' atoms: minutes
def test_update_table_keeps_unchanged_runs_only(tmp_path):
    # a copy of a committed run whose files are links, so that one can be swapped for other features
    root = tmp_path / "cpu-4k"
    run = root / "rid-ut-s0"
    (run / "pca50").mkdir(parents=True)
    for f in ("config.json", "finished.json"):
        (run / f).symlink_to(RUN / f)
    for f in (RUN / "pca50").iterdir():
        (run / "pca50" / f.name).symlink_to(f)
    out = tmp_path / "sensitivity.csv"
    logs = []
    first = update_table(tmp_path, "cpu-4k", out, clustering_seeds=1, null=3, log=logs.append)
    assert len(first) == 2 * 4 and "1 to compute" in logs[-1]
    again = update_table(tmp_path, "cpu-4k", out, clustering_seeds=1, null=3, log=logs.append)
    assert "1 runs kept" in logs[-1] and np.allclose(again.red, first.red)
    (run / "pca50" / "s-e040.npy").unlink()
    (run / "pca50" / "s-e040.npy").symlink_to(RUN / "pca50" / "s-e036.npy")
    changed = update_table(tmp_path, "cpu-4k", out, clustering_seeds=1, null=3, log=logs.append)
    assert "1 to compute" in logs[-1] and not np.allclose(changed.red, first.red)
    update_table(tmp_path, "cpu-4k", out, clustering_seeds=1, null=4, log=logs.append)
    assert "1 to compute" in logs[-1]  # another null size is another table
