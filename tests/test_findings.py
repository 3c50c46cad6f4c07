"""The findings table: every grid claim and exact check, three-valued, linked to its evidence."""

import shutil
import subprocess
import sys
from pathlib import Path

from dataclasses import replace

import pandas as pd
import pytest

from ridrepro.analysis import findings as F
from ridrepro.analysis.claims import (INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, atom_rules_for, exact_verdicts,
                                     rules_for)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    return F.findings(ROOT / "results", ROOT / "book" / "data")


def test_every_grid_claim_and_exact_check_is_a_row(table):
    claims_of = {"accuracy": lambda p: len(rules_for(p).claims), "atoms": lambda p: len(atom_rules_for(p).claims),
                 "questions": lambda p: 3}  # Q1 for each teacher, Q3
    for protocol in {p for p, _, _ in F.GRIDS if (ROOT / "results" / p).is_dir()}:
        expected = sum(claims_of[kind](p) for p, kind, _ in F.GRIDS if p == protocol)
        assert (table.protocol == protocol).sum() == expected
    assert (table.protocol == "exact").sum() == 5
    assert set(table.verdict) <= {REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE}
    assert table.reason.str.len().min() > 0


def test_the_exact_checks_hold_on_the_committed_data(table):
    exact = table[table.protocol == "exact"]
    assert (exact.verdict == REPRODUCED).all(), exact[["claim", "reason"]]


def test_a_violated_theorem_is_not_reproduced(tmp_path):
    for name in ("theorems_coarsening.csv", "theorems_intersection.csv"):
        shutil.copy(ROOT / "book" / "data" / name, tmp_path / name)
    cap = pd.read_csv(tmp_path / "theorems_intersection.csv")
    cap.loc[0, "red_cap"] = cap.loc[0, "red"] + 0.01  # one table where the bound fails
    cap.to_csv(tmp_path / "theorems_intersection.csv", index=False)
    thm = exact_verdicts(tmp_path).set_index("key").loc["theorem-4.1"]
    assert thm.verdict == NOT_REPRODUCED and thm.reason.startswith("1 of ")


def test_markdown_links_every_row_to_its_evidence(table):
    text = F.markdown(table)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| claim")]
    assert len(rows) == len(table)
    assert all("{ref}`" in r or ".ipynb)" in r for r in rows)
    groups = table.groupby(["protocol", "group"]).ngroups
    assert text.count("| claim | verdict | evidence |") == groups  # one table per group of claims
    assert f"Of {len(table)} claims in all:" in text
    assert text.startswith("* **Figs. 5 and 4 and the teacher-filter mechanism")  # the question the book is for, first
    if (table.protocol == "cpu-4k-decay").any():  # a post-hoc group says so in its name, though it shares a chapter
        assert "a post-hoc ablation** (`cpu-4k-decay`" in text


def test_a_grid_still_training_shows_its_cost_so_far(table):
    assert F.cost_text(-1.24) == "1.2 core-h so far" and F.cost_text(3.0) == "3.0 core-h"
    assert (table[table.protocol == "cpu-4k"].core_hours > 0).all()  # cpu-4k has finished


def test_the_command_prints_csv():
    out = subprocess.run([sys.executable, "-m", "ridrepro", "findings", "--runs", "results", "--format", "csv"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == ",".join(F.COLUMNS)


def test_the_rules_in_words_follow_the_rules_object():
    from dataclasses import replace

    from ridrepro.analysis.claims import describe_rules, rules_for

    text = describe_rules(rules_for("cpu-4k"), range(0, 41, 4))
    assert "(epochs 32, 36, 40)" in text and "needs 3 finished seeds" in text
    assert text.count("**Confound, RID-tt, RID-ut, TED-tt, TED-ut**") == 1  # one confound, named once
    other = describe_rules(replace(rules_for("cpu-4k"), protocol="mine", seeds=5, confounds={}), range(1, 81))
    assert "needs 5 finished seeds" in other and "(epochs 71–80)" in other and "Confound" not in other
    assert "`mine`'s rules, stated in ridrepro/analysis/claims.py" in other


def test_the_related_questions_are_judged_by_the_one_rule():
    import numpy as np

    from ridrepro.analysis.claims import CPU_4K_RULES, question_verdicts

    rng = np.random.default_rng(0)
    rows = []
    for method, teacher, level in (("RID", "tt", 0.2), ("VID", "tt", 0.8), ("RID", "ut", 0.5), ("VID", "ut", 0.5),
                                   ("CIFD", "ut", 0.3), ("BAS", "ut", 0.3)):
        for seed in range(3):
            row = {"method": method, "teacher": teacher, "seed": seed}
            row.update({p: level + 0.001 * rng.standard_normal() for p in ("accuracy", "agreement", "kl",
                        "fool_teacher", "fool_foreign", "invariance_crop_flip", "invariance_jitter", "cam_cos",
                        "localisation", "cka_1", "cka_2", "cka_3")})
            row["kl"] = 1 - level  # lower KL is closer to the teacher
            rows.append(row)
    no_confound = question_verdicts(pd.DataFrame(rows), replace(CPU_4K_RULES, confounds={})).set_index("key")
    assert no_confound.loc["q1-tt", "verdict"] == REPRODUCED  # RID far below VID on every inheritance probe
    assert no_confound.loc["q1-ut", "verdict"] == NOT_REPRODUCED  # the same: "no difference"
    # VID-ut sits clearly above BAS on the copying probes and CIFD-ut clearly below VID-ut there: like RID
    assert no_confound.loc["q3", "verdict"] == REPRODUCED and no_confound.loc["q3", "reason"].startswith("like RID")
    confounded = question_verdicts(pd.DataFrame(rows), CPU_4K_RULES).set_index("key")
    assert confounded.loc["q1-tt", "verdict"] == INCONCLUSIVE  # RID-tt's schedule confound
    assert "(so far: reproduced)" in confounded.loc["q1-tt", "reason"]
