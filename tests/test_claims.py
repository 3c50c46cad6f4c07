"""The one comparison rule and the three-valued verdicts, on hand-made per-seed values."""

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from ridrepro.analysis.claims import (
    CPU_4K_ATOM_RULES,
    CPU_4K_RULES,
    FIG4,
    FIG5,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PAPER_CODE_4K_RULES,
    REPRODUCED,
    Claim,
    Rules,
    atom_table,
    atom_verdicts,
    cells_needed,
    compare,
    judge,
    never_levelled,
    rules_for,
    run_values,
    verdict_table,
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


def test_verdict_table_is_the_books_one_format():
    v = pd.DataFrame({"claim": ["a", "b"], "difference": [0.01234, math.nan], "spread": [0.5, math.nan],
                      "seeds": [3, 0], "verdict": [REPRODUCED, INCONCLUSIVE], "reason": ["x", "y"],
                      "source": ["Fig. 5", "Fig. 4"]})
    t = verdict_table(v)
    assert list(t.columns) == ["claim", "difference", "spread", "verdict", "why"]
    assert t.iloc[0].tolist() == ["a", "+0.012", "0.500", REPRODUCED, "x"]
    assert t.iloc[1].tolist() == ["b", "-", "-", INCONCLUSIVE, "y"]
    assert list(verdict_table(v, "seeds", "source").columns) == [
        "claim", "difference", "spread", "seeds", "verdict", "why", "in the paper"]
    with pytest.raises(ValueError, match="unknown extra column"):
        verdict_table(v, "sead")


def test_cells_needed_puts_variant_cells_under_their_own_protocol():
    need = cells_needed(PAPER_CODE_4K_RULES)
    assert need[("paper-code-4k-torch-init", "RID-ut")] == 2 and need[("paper-code-4k", "RID-ut")] == 3
    assert {c for p, c in need if p == "paper-code-4k"} == {"BAS", "VID-ut", "VID-tt", "RID-ut", "RID-tt", "TED-ut",
                                                             "TED-tt"}
    decay = cells_needed(rules_for("cpu-4k-decay"))
    assert decay[("cpu-4k-decay", "RID-tt")] == 3 and ("cpu-4k", "RID-tt") in decay and ("cpu-4k", "BAS") in decay


def test_never_levelled_names_only_cells_with_all_their_seeds_still_moving():
    drifting = [(0.70, 0.0), (0.71, 0.03), (0.72, 0.0)]
    low = [(0.50, 0.0), (0.51, 0.0), (0.49, 0.001)]
    rules = Rules(protocol="p", seeds=3, tail_epochs=30, max_change_run=0.02, claims=(CLAIM,))
    assert never_levelled(runs({"A": drifting, "B": low}), rules) == {"A": "a seed moves 0.030"}
    assert never_levelled(runs({"A": drifting[:2], "B": low}), rules) == {}  # a seed to come may settle it
    assert never_levelled(runs({"A": low, "B": low}), rules) == {}
    unlevelled = Claim("y", "A dead", "A", "all_below", threshold=0.1, metric="filter_positive_end", levelled=False)
    assert never_levelled(runs({"A": drifting}), replace(rules, claims=(unlevelled,))) == {}


def test_rules_exist_for_the_grids():
    assert rules_for("paper-code-4k") is PAPER_CODE_4K_RULES
    with pytest.raises(ValueError, match="no claims are stated"):
        rules_for("smoke")


# ----------------------------------------------------------------------------- the atom claims (Figure 4)

ATOM_RULES = Rules(protocol="p", seeds=3, tail_epochs=10)


def atoms(cells):
    """A run table from last records: cell -> per seed a dict of atoms against teacher "ut" (value, lo, q95)."""
    rows = []
    for cell, seeds in cells.items():
        for i, v in enumerate(seeds):
            rows.append({"run": f"{cell}-s{i}", "cell": cell, "seed": i, "pid_teacher": "ut",
                         **{a: v.get(a, (0.0,))[0] for a in ("red", "uni_t", "uni_s", "syn", "i_yt", "i_ys")},
                         **{a + "_lo": v[a][1] for a in v}, **{a + "_hi": v[a][0] for a in v},
                         **{a + "_q95": v[a][2] for a in v}})
    return atom_table(pd.DataFrame(rows), intervals="percentile")


def test_near_zero_reads_each_seeds_lower_end():
    claim = Claim("z", "Red ≈ 0", "A", "near_zero", metric="ut.red", threshold=0.05, levelled=False)
    # lower ends 0.03, 0.049, 0.02: every seed may be within 0.05 of 0 -> reproduced, difference 0.049 - 0.05
    table = atoms({"A": [{"red": (0.06, 0.03, 0.002)}, {"red": (0.07, 0.049, 0.002)}, {"red": (0.04, 0.02, 0.002)}]})
    out = judge(claim, table, ATOM_RULES)
    assert out["verdict"] == REPRODUCED and out["difference"] == pytest.approx(-0.001) and out["seeds"] == 3
    # one seed's lower end 0.06 > 0.05 -> not reproduced
    table = atoms({"A": [{"red": (0.06, 0.03, 0.002)}, {"red": (0.08, 0.06, 0.002)}, {"red": (0.04, 0.02, 0.002)}]})
    out = judge(claim, table, ATOM_RULES)
    assert out["verdict"] == NOT_REPRODUCED and out["difference"] == pytest.approx(0.01)
    # two seeds of three: inconclusive by the seeds rule, with the outcome so far
    out = judge(claim, atoms({"A": [{"red": (0.06, 0.03, 0.002)}] * 2}), ATOM_RULES)
    assert out["verdict"] == INCONCLUSIVE and out["reason"] == "A has 2 of 3 seeds (so far: reproduced)"


def test_present_is_the_lower_end_above_the_nulls_q95():
    claim = Claim("p", "Uni present", "A", "present", metric="ut.uni_t", levelled=False)
    table = atoms({"A": [{"uni_t": (0.03, 0.010, 0.004)}, {"uni_t": (0.02, 0.006, 0.004)}, {"uni_t": (0.02, 0.005, 0.004)}]})
    out = judge(claim, table, ATOM_RULES)
    assert out["verdict"] == REPRODUCED and out["difference"] == pytest.approx(0.001)
    table = atoms({"A": [{"uni_t": (0.03, 0.010, 0.004)}, {"uni_t": (0.02, 0.003, 0.004)}, {"uni_t": (0.02, 0.005, 0.004)}]})
    out = judge(claim, table, ATOM_RULES)  # the point 0.02 is above q95, but the interval reaches below it
    assert out["verdict"] == NOT_REPRODUCED and out["difference"] == pytest.approx(-0.001)


def test_clearly_on_an_atom_and_one_seed_is_inconclusive():
    claim = Claim("c", "A's I(Y;S) clearly above B's", "A", "above", "B", metric="i_ys", levelled=False)
    a = [{"i_ys": (v, v, 0.0)} for v in (0.30, 0.32, 0.34)]  # mean 0.32, sd 0.02
    b = [{"i_ys": (v, v, 0.0)} for v in (0.10, 0.12, 0.14)]  # mean 0.12, sd 0.02
    out = judge(claim, atoms({"A": a, "B": b}), ATOM_RULES)
    assert out["verdict"] == REPRODUCED
    assert out["difference"] == pytest.approx(0.20) and out["spread"] == pytest.approx(0.04)
    out = judge(claim, atoms({"A": b, "B": a}), ATOM_RULES)
    assert out["verdict"] == NOT_REPRODUCED and out["difference"] == pytest.approx(-0.20)
    out = judge(claim, atoms({"A": a[:1], "B": b}), ATOM_RULES)
    assert out["verdict"] == INCONCLUSIVE and math.isnan(out["spread"]) and "A has 1 of 3 seeds" in out["reason"]


def test_fig4_claims_are_one_per_fact_with_their_source():
    assert len({(c.a, c.b, c.metric) for c in FIG4.values()}) == len(FIG4)  # Red + Uni = I(Y;T): no Red twin
    assert all(c.source.startswith("Fig. 4") and not c.levelled for c in FIG4.values())
    assert not any("falls" in c.text for c in FIG4.values())
    assert {"ridut-iys-above-vidut", "ridut-iys-07-bas"} <= set(FIG4) and set(FIG4).isdisjoint(FIG5)


def test_cpu_4k_atom_verdicts_from_the_committed_grid():
    new = atom_verdicts("results", "cpu-4k").set_index("key")
    assert list(new.reset_index().columns) == list(verdicts("results", CPU_4K_RULES).columns)
    assert (new.seeds == 3).all() and len(new) == len(CPU_4K_ATOM_RULES.claims)
    assert new.loc["vidut-iys-below-bas", "verdict"] == REPRODUCED
    assert new.loc["ut-iyt-near-zero", "verdict"] == NOT_REPRODUCED
    assert new.loc["bas-red-near-zero-ut", "verdict"] == NOT_REPRODUCED
    assert new.loc["ridut-iys-07-bas", "verdict"] == INCONCLUSIVE
    assert new.loc["ridut-iys-07-bas", "reason"].endswith("(so far: not reproduced)")
    # the combined interval is wider than the percentile one: RID-ut's Uni may be within the tolerance of 0
    old = atom_verdicts("results", "cpu-4k", intervals="percentile").set_index("key")
    assert old.loc["ridut-unit-near-zero-ut", "reason"].endswith("(so far: not reproduced)")
    assert new.loc["ridut-unit-near-zero-ut", "reason"].endswith("(so far: reproduced)")


def test_the_atoms_chapter_prints_the_engines_verdicts():
    # book/cifar_atoms.ipynb's stored claims table is what atom_verdicts computes from the committed runs
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "book" / "cifar_atoms.ipynb").read_text())
    table = next("".join(o["data"]["text/markdown"]) for c in nb["cells"] if c.get("id") == "c15"
                 for o in c.get("outputs", []) if "text/markdown" in o.get("data", {}))
    printed = {row.split(" | ")[0].lstrip("| "): row.split(" | ")[4] for row in table.splitlines()[2:]}
    computed = atom_verdicts("results", "cpu-4k")
    assert printed == dict(zip(computed.claim, computed.verdict))


def test_a_grid_without_one_teacher_leaves_its_claims_without_seeds():
    table = atoms({"RID-ut": [{"red": (0.06, 0.03, 0.002)}]})  # no run measured against the trained teacher
    out = judge(FIG4["ridtt-uni-below-bas"], table, ATOM_RULES)
    assert out["seeds"] == 0 and out["verdict"] == INCONCLUSIVE and "RID-tt has 0 of 3 seeds" in out["reason"]


def test_the_post_hoc_decay_ablation_reads_its_own_cells_against_cpu_4ks(tmp_path):
    # cpu-4k's committed RID-ut runs stand in for cpu-4k-decay's: the same accuracies, so "differs" fails, and
    # the decayed cells carry no schedule confound while cpu-4k's own rules still name it
    (tmp_path / "cpu-4k").symlink_to(Path("results/cpu-4k").resolve())
    (tmp_path / "cpu-4k-decay").mkdir()
    for s in range(3):
        (tmp_path / "cpu-4k-decay" / f"rid-ut-s{s}").symlink_to(Path(f"results/cpu-4k/rid-ut-s{s}").resolve())
    rules = rules_for("cpu-4k-decay")
    runs_ = run_values(tmp_path, rules)
    assert set(runs_[runs_.protocol == "cpu-4k-decay"].cell) == {"RID-ut (decayed)"}
    assert {"BAS", "VID-ut", "RID-ut"} <= set(runs_[runs_.protocol == "cpu-4k"].cell)
    table = verdicts(tmp_path, rules).set_index("key")
    differs = table.loc["ridut-decay-differs"]
    assert differs["verdict"] == NOT_REPRODUCED and differs["difference"] == pytest.approx(0.0)
    assert "confound" not in table.loc["ridut-above-vidut-decayed", "reason"]
    assert table.loc["ridtt-above-bas-decayed", "reason"] == "RID-tt (decayed) has 0 of 3 seeds"
