"""Representations -> clusters -> PID: repeatability, planted structure, error bars, bad input."""

import math

import numpy as np
import pytest

from ridrepro.pid import PRESETS, pid_from_clusters, representation_pid


def planted(n=600, dim_t=40, dim_s=24, seed=0, informative_student=True):
    """Teacher features reveal the label; the student's do too, or are pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    t = rng.normal(size=(4, dim_t))[y] * 4 + rng.normal(size=(n, dim_t))
    s = rng.normal(size=(n, dim_s))
    if informative_student:
        s += rng.normal(size=(4, dim_s))[y] * 4
    return t.astype(np.float32), s.astype(np.float32), y


def test_presets_match_the_paper():
    assert PRESETS["paper-code"]["pca_components"] == 5 and PRESETS["paper-text"]["pca_components"] == 10
    for p in PRESETS.values():
        assert p["n_clusters"] == 10 and p["unit"] == "nats" and p["normalize_rows"]


def test_same_seed_same_result_and_settings_are_recorded():
    t, s, y = planted()
    a = representation_pid(t, s, y, seed=3, n_clusters=4)
    b = representation_pid(t, s, y, seed=3, n_clusters=4)
    assert a.to_dict() == b.to_dict()
    d = a.to_dict()
    assert d["settings"]["preset"] == "paper-code" and d["settings"]["seed"] == 3 and d["unit"] == "nats"
    assert d["settings"]["n_clusters"] == 4 and d["joint_shape"] == [4, 4, 4]


def test_planted_structure_is_recovered():
    t, s, y = planted()
    hy = -sum(p * math.log(p) for p in np.bincount(y) / len(y))
    r = representation_pid(t, s, y, n_clusters=4)  # clusters = labels: all of I(Y;T) is redundant
    assert r.red == pytest.approx(hy, abs=0.02) and r.uni_t < 0.02 and r.syn < 0.02
    t, s, y = planted(informative_student=False)
    r = representation_pid(t, s, y, n_clusters=4)  # the student knows nothing: Uni(Y:T\S) carries it
    assert r.uni_t > 0.9 * hy and r.red < 0.05


def test_bootstrap_and_shuffled_null():
    t, s, y = planted(informative_student=False)
    r = representation_pid(t, s, y, n_clusters=4, bootstrap=40, null=30)
    lo, hi = r.extras["bootstrap"]["uni_t"]
    # percentile intervals of a biased plug-in estimate need not cover it, but they sit next to it
    assert 0 < hi - lo < 0.2 and lo - 0.05 < r.uni_t < hi + 0.05
    null = r.extras["null"]
    assert null["n"] == 30 and null["uni_t"]["q95"] < 0.1 < r.uni_t
    assert null["uni_t"]["p_value"] == pytest.approx(1 / 31)  # no shuffle reaches the real value


def test_torch_inputs_and_any_feature_shape():
    torch = pytest.importorskip("torch")
    t, s, y = planted()
    a = representation_pid(t, s, y, n_clusters=4)
    b = representation_pid(torch.from_numpy(t).reshape(len(y), 5, 8), torch.from_numpy(s).reshape(len(y), 2, 3, 4),
                           torch.from_numpy(y), n_clusters=4)
    assert a.to_dict() == b.to_dict()


def test_pid_from_clusters_histogram():
    t = np.array([0, 0, 1, 1])
    r = pid_from_clusters(t, t, t, unit="bits")  # T = S = Y, one bit
    assert r.red == pytest.approx(1.0, abs=1e-9) and r.extras["joint_shape"] == [2, 2, 2]


@pytest.mark.parametrize("kwargs, message", [
    (dict(preset="paper"), "unknown preset"),
    (dict(pca_dims=3), "unknown settings"),
    (dict(pca_components=100), "PCA to 100 components"),
    (dict(n_clusters=1000), "cannot form 1000 clusters"),
    (dict(ci=1.5), "ci must be"),
])
def test_bad_settings_are_rejected(kwargs, message):
    t, s, y = planted(n=200)
    with pytest.raises(ValueError, match=message):
        representation_pid(t, s, y, **kwargs)


def test_bad_features_and_labels_are_rejected():
    t, s, y = planted(n=200)
    bad = t.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        representation_pid(bad, s, y)
    with pytest.raises(ValueError, match="equally many"):
        representation_pid(t, s, y[:-1])
    with pytest.raises(ValueError, match="integers"):
        representation_pid(t, s, y + 0.5)
    with pytest.raises(ValueError, match="shape"):
        representation_pid(t[:, 0], s, y)
