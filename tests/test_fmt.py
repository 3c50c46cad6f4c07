"""The book's p-value format."""

import math

from ridrepro.fmt import fmt_p


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


def test_mean_sd_over_seeds():
    from ridrepro.fmt import mean_sd

    assert mean_sd([0.4, 0.42, 0.41]) == "0.410 ± 0.010"  # sample sd (ddof 1)
    assert mean_sd([0.4]) == "0.400"  # one seed: no spread to show
    assert mean_sd([float("nan")]) == mean_sd([]) == "-"


def test_markdown_table_escapes_pipes():
    import pandas as pd

    from ridrepro.fmt import markdown_table

    text = markdown_table(pd.DataFrame({"claim": ["KL(T||S) falls"], "n": [3]}))
    assert text.splitlines() == ["| claim | n |", "|---|---|", "| KL(T\\|\\|S) falls | 3 |"]


def test_markdown_table_formats_only_the_float_cells_with_floatfmt():
    import pandas as pd

    from ridrepro.fmt import markdown_table

    df = pd.DataFrame({"rate": [0.0025000000000000005, 0.05], "epochs": [300, 40], "images": ["4,000", "all"]})
    assert markdown_table(df).splitlines()[2] == "| 0.0025000000000000005 | 300 | 4,000 |"
    assert markdown_table(df, floatfmt=".4g").splitlines()[2:] == ["| 0.0025 | 300 | 4,000 |", "| 0.05 | 40 | all |"]
