"""Sentences worded from the numbers: hand-made comparison rows against the fixed rules."""

from __future__ import annotations

import pytest

from benchmark.reports.wording import change, conclusion, sentence


def row(diff: float, lo: float, hi: float, p_holm: float, metric: str = "SCD", seeds: int = 6, **more) -> dict:
    return {"model": "pmgi", "test": "tno", "arm": "damgl", "base": "magnitude", "metric": metric, "diff": diff,
            "t_lo": lo, "t_hi": hi, "p_holm": p_holm, "seeds": seeds, "tested": seeds >= 6, **more}


LABELS = {"damgl": "DAMGL", "tno": "TNO", "pmgi": "PMGI", "sign=false": "sign=false"}


@pytest.mark.parametrize(
    "r,kind,text",
    [
        (row(0.08, 0.06, 0.10, 0.001), "improvement", "DAMGL is higher than magnitude in SCD on TNO (PMGI) (an improvement)"),
        (row(0.08, 0.06, 0.10, 0.001, metric="MSE"), "worsening", "DAMGL is higher than magnitude in MSE"),  # lower is better
        (row(-0.02, -0.03, -0.01, 0.0499), "worsening", "(a worsening): -0.02 [-0.03, -0.01], Holm p 0.0499"),
        (row(-0.02, -0.03, -0.01, 0.05), "none", "differences larger than 0.03 are unlikely (95% interval)"),
        (row(0.05, -0.04, 0.12, 0.2, seeds=4), "untested", "not tested with 4 seeds; +0.05 [-0.04, +0.12]."),
        (row(0.05, float("nan"), float("nan"), 1.0, seeds=1), "untested", "not tested with 1 seed; +0.05, one seed: no interval."),
    ],
)  # fmt: skip
def test_a_conclusion_needs_holm_below_005(r: dict, kind: str, text: str) -> None:
    assert conclusion(r) == kind
    assert text in sentence(r, LABELS)


def test_study_wide_holm_is_said_with_the_finding() -> None:
    assert "study-wide Holm p 0.06 (not below 0.05 study-wide)" in sentence(row(0.1, 0.07, 0.14, 0.011, p_holm_study=0.06), LABELS)


@pytest.mark.parametrize(
    "lo,hi,word",
    [
        (-0.042, 0.086, "is reduced: +0.022 [-0.042, +0.086] allows at most 75% of it"),  # 0.086 / 0.1144
        (0.09, 0.14, "is not shown to change"),  # the interval contains the full gain
        (-0.05, -0.001, "is removed"),  # allows none of the gain
        (-0.05, 0.0, "is removed"),
    ],
)
def test_reduced_removed_or_unchanged_by_the_interval(lo: float, hi: float, word: str) -> None:
    default = row(0.1144, 0.08, 0.15, 0.01)
    ablated = row(0.022, lo, hi, 1.0) | {"arm": "sign=false"}
    assert word in change(ablated, default, LABELS)
    assert "DAMGL's difference from magnitude in SCD on TNO (PMGI) (+0.1144)" in change(ablated, default, LABELS)
