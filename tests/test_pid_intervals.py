"""Bootstrap intervals, clustering spread and their combination for PID atoms (ridrepro.pid.intervals)."""

import json

import numpy as np
import pytest

from ridrepro.pid import broja_pid
from ridrepro.pid.gates import gates
from ridrepro.pid.intervals import (NAMES, bootstrap_counts, bootstrap_intervals, bootstrap_population,
                                    clustering_spread, combine, interval, joint_counts, record_intervals)


def sample_counts(P, n, seed):
    return np.random.default_rng(seed).multinomial(n, P.ravel()).reshape(P.shape)


def test_basic_and_percentile_by_hand():
    boot = np.linspace(0, 2, 101)  # quantiles 0.025 and 0.975 are 0.05 and 1.95
    assert interval(0.5, boot, 0.95, "percentile") == pytest.approx((0.05, 1.95))
    assert interval(0.5, boot, 0.95, "basic") == pytest.approx((1.0 - 1.95, 1.0 - 0.05))
    # replicates shifted up by the bias 0.3: the basic interval moves down by it, the percentile one up
    lo, hi = interval(1.0, 1.3 + np.linspace(-0.1, 0.1, 101), 0.95, "basic")
    assert (lo + hi) / 2 == pytest.approx(0.7)


def test_bca_without_skew_or_bias_is_the_percentile_interval():
    boot = np.linspace(-1, 1, 401)
    jack = (np.array([-1.0, 1.0]), np.array([1.0, 1.0]))  # symmetric: acceleration 0
    assert interval(0.0, boot, 0.9, "bca", jack) == pytest.approx(interval(0.0, boot, 0.9, "percentile"))


def test_bias_sign_of_synergy():
    # independent uniform T, S, Y: true synergy 0, the plug-in is above it and resampling adds more
    noise = bootstrap_counts(sample_counts(np.full((4, 4, 4), 1 / 64), 300, 0), B=50, seed=1)
    assert noise["syn"]["bias"] > 0 and noise["syn"]["point"] > 0 and noise["syn"]["lo"] < noise["syn"]["point"]
    # XOR: synergy is at its maximum log 2, so every error pulls the plug-in down
    P = gates()["XOR"][0]
    xor = bootstrap_counts(sample_counts(P, 300, 0), B=50, seed=1)
    assert xor["syn"]["bias"] < 0 and xor["syn"]["point"] <= np.log(2) + 1e-12
    assert xor["syn"]["lo"] <= np.log(2) <= xor["syn"]["hi"]


def test_degenerate_table_gives_exact_zero_interval():
    out = bootstrap_counts(sample_counts(gates()["RDN"][0], 500, 0), B=20)
    for a in ("syn", "uni_t", "uni_s"):
        assert out[a]["lo"] == out[a]["hi"] == 0.0


def test_samples_and_counts_agree():
    rng = np.random.default_rng(0)
    t, s, y = rng.integers(0, 3, 200), rng.integers(0, 3, 200), rng.integers(0, 2, 200)
    c = joint_counts(t, s, y, 3)
    assert c.sum() == 200 and c[t[0], s[0], y[0]] >= 1
    assert bootstrap_intervals(t, s, y, 3, B=10) == bootstrap_counts(c, B=10)
    assert bootstrap_counts(c, B=10)["red"]["point"] == pytest.approx(broja_pid(c / 200, unit="nats").red)


def test_combined_interval_contains_both_parts():
    boot = {a: {"point": 0.5, "bias": 0.1, "sd": 0.02, "lo": 0.35, "hi": 0.45} for a in NAMES}
    for sd in (0.0, 0.01, 0.2):
        spread = {a: {"sd": sd} for a in NAMES}
        lo, hi = combine(boot, spread)["syn"]
        assert lo <= 0.35 and hi >= 0.45
        assert hi - lo >= min(2 * 1.959964 * sd, 0.4 + 1.959964 * sd) - 1e-9
    assert combine(boot, {a: {"sd": 0.0} for a in NAMES})["red"] == pytest.approx((0.35, 0.45))


def test_clustering_spread_over_seeds():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, (2, 300))
    centres = 10 * rng.normal(size=(3, 8))
    feats = [centres[c] + 0.1 * rng.normal(size=(300, 8)) for c in codes]
    y = (codes[0] + codes[1]) % 3
    settings = dict(normalize_rows=False, pca_components=None, n_clusters=3, kmeans_n_init=1)
    out = clustering_spread(*feats, y, seeds=range(3), settings=settings)
    # well separated clusters: every seed recovers the codes, so the spread is 0 and the value exact
    assert out["seeds"] == [0, 1, 2]
    exact = broja_pid(joint_counts(*codes, y, 3) / 300, unit="nats")
    assert out["syn"]["sd"] == pytest.approx(0, abs=1e-9)
    assert out["syn"]["mean"] == pytest.approx(exact.syn, abs=1e-9)


def fake_record(counts, epoch=4, teacher="tt"):
    return {"epoch": epoch, "teacher": teacher, "layer": 2, "unit": "nats", "counts": counts.tolist(),
            "settings": {"n_clusters": 3, "pca_components": 5, "kmeans_n_init": 1},
            "bootstrap": {"syn": [0.1, 0.2]}}


def test_record_round_trips():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    codes = [rng.integers(0, 3, 400) for _ in range(4)]
    rec = fake_record(joint_counts(codes[0], codes[1], y, 3))
    line = record_intervals(rec, [codes[0], codes[2]], [codes[1], codes[3]], y, B=20)
    assert json.loads(json.dumps(line)) == line
    assert (line["epoch"], line["teacher"]) == (4, "tt")
    assert line["seed0_vs_logged"] == pytest.approx(0, abs=1e-9)  # seed 0's codes made the histogram
    syn = line["atoms"]["syn"]
    assert syn["old"] == [0.1, 0.2] and syn["lo"] <= syn["boot_lo"] <= syn["boot_hi"] <= syn["hi"]
    assert syn["point"] == pytest.approx(broja_pid(np.asarray(rec["counts"]) / 400, unit="nats").syn)


def fake_run(tmp_path):
    """A run folder with two PID records whose features are stored and one whose features are not."""
    rng = np.random.default_rng(0)
    n = 100
    (tmp_path / "pca50").mkdir(parents=True)
    cfg = {"data_provenance": {"order": "class-major, original order", "subset": {"test_per_class": None}},
           "identity": {"data_sizes": [40, n]}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    np.save(tmp_path / "pca50" / "tt.npy", rng.normal(size=(n, 50)).astype(np.float16))
    lines = []
    for epoch in (1, 4):
        np.save(tmp_path / "pca50" / f"s-e{epoch:03d}.npy", rng.normal(size=(n, 50)).astype(np.float16))
        lines.append(json.dumps(fake_record(rng.multinomial(n, np.full(27, 1 / 27)).reshape(3, 3, 3), epoch)))
    lines.append(json.dumps(fake_record(np.ones((3, 3, 3), int), 8)))  # no stored features: skipped
    (tmp_path / "pid.jsonl").write_text("\n".join(lines) + "\n")


def test_recompute_run_is_resumable_and_leaves_pid_jsonl(tmp_path):
    from ridrepro.analysis.intervals import recompute_run

    fake_run(tmp_path)
    before = (tmp_path / "pid.jsonl").read_text()
    assert recompute_run(tmp_path, K=3, B=10, log=lambda *_: None) == 2
    assert recompute_run(tmp_path, K=3, B=10, log=lambda *_: None) == 0
    out = [json.loads(x) for x in (tmp_path / "pid_intervals.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in out] == [1, 4] and out[0]["clustering"]["seeds"] == 3
    assert (tmp_path / "pid.jsonl").read_text() == before


def test_intervals_command_writes_each_named_run_and_refuses_an_unknown_one(tmp_path, capsys):
    from ridrepro.cli import main

    argv = ["intervals", "--runs", str(tmp_path), "--protocol", "smoke"]
    assert main(argv) == 2
    assert "no run folder with a pid.jsonl under" in capsys.readouterr().err
    fake_run(tmp_path / "smoke" / "rid-ut-s0")
    assert main(argv + ["--run-folders", "rid-ut-s0", "rid-tt-s0"]) == 2  # before anything is written
    assert "no pid.jsonl in" in capsys.readouterr().err and not list(tmp_path.rglob("pid_intervals.jsonl"))
    assert main(argv + ["--clustering-seeds", "10", "--bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    assert "rid-ut-s0: 2 records written" in out and "in_combined" in out
    assert len((tmp_path / "smoke" / "rid-ut-s0" / "pid_intervals.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("call", [
    lambda: interval(0.0, [0.0, 1.0], 0.95, "student-t"),
    lambda: interval(0.0, [0.0, 1.0], 1.5, "basic"),
    lambda: bootstrap_counts(-np.ones((2, 2, 2))),
    lambda: bootstrap_counts(np.ones((2, 2))),
    lambda: bootstrap_population(np.ones((2, 2, 2)), "smoothed"),
    lambda: joint_counts([0, 1], [0], [0, 1]),
    lambda: joint_counts([0, 5], [0, 1], [0, 1], n_clusters=3),
])
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()


def test_chao_population_by_hand():
    counts = np.array([3, 1, 1, 2, 0, 0, 0, 0]).reshape(2, 2, 2)  # N 7, f1 2, f2 1
    cover = 1 - 2 / 7 * (6 * 2 / (6 * 2 + 2))  # 74/98; Chao1: f0 = 6/7 * 2^2 / 2 -> 2 cells
    p = bootstrap_population(counts).ravel()
    assert p[:4] == pytest.approx(counts.ravel()[:4] / 7 * cover)
    assert sorted(p[4:]) == pytest.approx([0, 0, (1 - cover) / 2, (1 - cover) / 2])
    assert p.sum() == pytest.approx(1)
    # no singletons: nothing is missing, and the population is the empirical table
    full = np.array([3, 2, 2, 5, 0, 0, 0, 4]).reshape(2, 2, 2)
    assert bootstrap_population(full) == pytest.approx(full / 16)
    assert bootstrap_population(counts, "empirical") == pytest.approx(counts / 7)
