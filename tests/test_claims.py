"""The one comparison rule and the three-valued verdicts, on hand-made per-seed values."""

import math

import pandas as pd
import pytest

from ridrepro.analysis.claims import (
    CPU_4K_RULES,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PAPER_CODE_4K_RULES,
    REPRODUCED,
    Claim,
    Rules,
    compare,
    judge,
    rules_for,
    verdicts,
)


def test_compare_by_hand():
    d, spread, holds = compare([0.6, 0.7], [0.4, 0.5], "above")
    assert d == pytest.approx(0.2) and spread == pytest.approx(2 * math.sqrt(0.005)) and holds  # 0.2 > 0.141
    assert not compare([0.6, 0.7], [0.5, 0.6], "above")[2]  # 0.1 < 0.141
    assert compare([0.3], [0.5], "below")[2] and math.isnan(compare([0.3], [0.5], "below")[1])
    assert compare([0.505, 0.505], [0.5, 0.5], "par")[2]  # within the 0.01 tolerance
    assert not compare([0.53, 0.53], [0.5, 0.5], "par")[2] and compare([0.515, 0.515], [0.5, 0.5], "close")[2]
    assert compare([0.62], [0.7], "at_least", factor=0.85)[2]  # 0.62 >= 0.595
    assert not compare([0.58], [0.7], "at_least", factor=0.85)[2]
    with pytest.raises(ValueError, match="unknown rule"):
        compare([1], [1], "beyond")


def runs(cells):
    """A run table: cell -> list of (accuracy, change) per seed."""
    return pd.DataFrame([{"cell": c, "seed": i, "accuracy": a, "change": ch, "filter_positive_end": math.nan}
                         for c, values in cells.items() for i, (a, ch) in enumerate(values)])


RULES = Rules(protocol="p", seeds=3, tail_epochs=30, max_change_run=0.02)
CLAIM = Claim("x", "A clearly above B", "A", "above", "B")


def test_reproduced_and_not_reproduced_need_every_seed_levelled_off():
    steady = [(0.70, 0.0), (0.71, 0.001), (0.72, -0.002)]
    low = [(0.50, 0.0), (0.51, 0.0), (0.49, 0.001)]
    assert judge(CLAIM, runs({"A": steady, "B": low}), RULES)["verdict"] == REPRODUCED
    assert judge(CLAIM, runs({"A": low, "B": steady}), RULES)["verdict"] == NOT_REPRODUCED


def test_too_few_seeds_or_not_levelled_off_is_inconclusive():
    steady = [(0.70, 0.0), (0.71, 0.001), (0.72, -0.002)]
    low = [(0.50, 0.0), (0.51, 0.0), (0.49, 0.001)]
    out = judge(CLAIM, runs({"A": steady[:2], "B": low}), RULES)
    assert out["verdict"] == INCONCLUSIVE and "A has 2 of 3 seeds" in out["reason"] and "so far: reproduced" in out["reason"]
    drifting = [(0.70, 0.0), (0.71, 0.03), (0.72, 0.0)]  # one seed still moves 0.03 > 0.02
    out = judge(CLAIM, runs({"A": drifting, "B": low}), RULES)
    assert out["verdict"] == INCONCLUSIVE and "A has not levelled off (a seed moves 0.030)" in out["reason"]
    out = judge(CLAIM, runs({"B": low}), RULES)
    assert out["verdict"] == INCONCLUSIVE and out["seeds"] == 0 and "A has 0 of 3 seeds" in out["reason"]


def test_a_named_confound_makes_a_claim_inconclusive():
    rules = Rules(protocol="p", seeds=1, tail_epochs=10, confounds={"A": "a schedule confound"})
    out = judge(CLAIM, runs({"A": [(0.9, 0.0)], "B": [(0.1, 0.0)]}), rules)
    assert out["verdict"] == INCONCLUSIVE and "A: a schedule confound" in out["reason"]


def test_all_below_reads_a_per_run_metric():
    claim = Claim("dead", "filter dead", "A", "all_below", threshold=0.001, metric="filter_positive_end",
                  levelled=False)
    table = runs({"A": [(0.5, 0.5)] * 3})
    table["filter_positive_end"] = [0.0, 0.0005, 0.0]
    assert judge(claim, table, RULES)["verdict"] == REPRODUCED
    table["filter_positive_end"] = [0.0, 0.002, 0.0]
    assert judge(claim, table, RULES)["verdict"] == NOT_REPRODUCED


def test_cpu_4k_verdicts_from_the_committed_grid():
    table = verdicts("results", CPU_4K_RULES).set_index("key")
    assert table.loc["vidut-below-bas", "verdict"] == REPRODUCED and table.loc["vidtt-above-bas", "verdict"] == REPRODUCED
    for key in ("ridut-above-vidut", "ridtt-above-bas", "ridtt-par-vidtt", "tedtt-close-bas", "tedut-close-bas"):
        assert table.loc[key, "verdict"] == INCONCLUSIVE and "schedule confound" in table.loc[key, "reason"]
    assert "RID-tt has not levelled off" in table.loc["ridtt-above-bas", "reason"]


def test_rules_exist_for_the_grids():
    assert rules_for("paper-code-4k") is PAPER_CODE_4K_RULES
    with pytest.raises(ValueError, match="no claims are stated"):
        rules_for("smoke")
