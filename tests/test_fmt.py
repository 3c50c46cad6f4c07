"""The book's p-value format."""

import math

from ridrepro.analysis.fmt import fmt_p


def test_two_significant_digits():
    assert fmt_p(0.26) == "p = 0.26"
    assert fmt_p(0.5) == "p = 0.50"
    assert fmt_p(1 / 101) == "p = 0.0099"
    assert fmt_p(0.012345, name="") == "0.012"


def test_the_permutation_floor_is_marked():
    assert fmt_p(1 / 10000, floor=1 / 10000) == "p ≤ 0.0001"
    assert fmt_p(1 / 101, floor=1 / 101, name="") == "≤ 0.0099"
    assert fmt_p(0.02, floor=1 / 101) == "p = 0.020"


def test_missing():
    assert fmt_p(math.nan) == "-" and fmt_p(None) == "-"
