"""The estimator-sensitivity study reads stored PCA features: they must reproduce the logged atoms, and its
claim verdicts must follow the chapters' rule."""

from pathlib import Path

import numpy as np
import pytest

from ridrepro.sensitivity import (atom_claims, clearly, estimator_settings, logged_atoms, pid_of_stored,
                                  sensitivity_table, stored_labels, stored_runs)

RUN = Path(__file__).resolve().parents[1] / "results" / "cpu-4k" / "rid-ut-s0"


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


def test_clearly_is_the_chapters_rule():
    assert clearly([1.0, 1.1, 0.9], [0.0, 0.1, -0.1]) == 1  # difference 1 > 0.1 + 0.1
    assert clearly([0.0, 0.1, -0.1], [1.0, 1.1, 0.9]) == -1
    assert clearly([0.2, 0.4, 0.0], [0.0, 0.1, -0.1]) == 0  # difference 0.2 < 0.2 + 0.1
    assert clearly([0.5], [0.4]) == 1  # one seed each: no spread


def test_settings_vary_one_thing_at_a_time():
    settings = dict(estimator_settings(clustering_seeds=3))
    assert list(settings) == ["paper-code", "PCA 10", "KMeans 20", "n_init 10", "seed 1", "seed 2"]
    base = settings["paper-code"]
    for name, st in settings.items():
        assert sum(st[k] != base[k] for k in base) == (name != "paper-code")


def test_table_and_claims_on_committed_runs():
    table = sensitivity_table(RUN.parents[1], "cpu-4k", stored_labels(RUN), settings=estimator_settings(2),
                              null=20)
    assert set(table.run) >= {"rid-ut-s0", "ted-ut-s0"}
    assert set(table.setting) == {"paper-code", "PCA 10", "KMeans 20", "n_init 10", "seed 1"}
    last = table[table.epoch == 40]
    assert last["red_q95"].notna().all() and table[table.epoch == 1]["red"].notna().all()
    claims = atom_claims(table)
    rid = claims[(claims.claim == "RID-ut vs ut: Red present") & (claims.setting == "paper-code")]
    n_rid = len(last[(last.cell == "RID-ut") & (last.setting == "paper-code")])
    assert rid.verdict.iloc[0].endswith(f"/{n_rid} seeds")
    if "RID-tt" not in set(table.cell):
        assert (claims[claims.claim.str.startswith("RID-tt")].verdict == "not run").all()


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
