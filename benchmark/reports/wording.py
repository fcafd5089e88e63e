"""Sentences written from the numbers: each comparison's conclusion by fixed rules, so no write-up words a
result more strongly than its table allows.

The rules (also in ``docs/statistics.md``):

1. A comparison with fewer seeds than a test needs is *not tested*; its interval is given.
2. *Higher* or *lower* (an improvement or a worsening in the metric's direction) only with a Holm-adjusted
   t test p below 0.05 in the comparison's family; the study-wide Holm p says whether it also survives the
   adjustment over every primary test of the study.
3. Otherwise *no detectable difference*, with the interval: differences larger than the interval's
   farther bound are unlikely (95% interval).
4. An ablation against the base arm, where the ablation's default (DAMGL as the recipe sets it) differs
   from the base with Holm p < 0.05: the default's difference is *not shown to change* when the
   ablation's interval contains it, *removed* when the interval allows none of it (its bound on the
   gain's side is at or beyond zero), else *reduced*, with the largest share of it the interval allows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from benchmark.metrics import column_info
from benchmark.reports.significance import ALPHA


def _num(value: float) -> str:
    return f"{value:+.4g}"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def _where(r: Mapping, labels: Mapping[str, str]) -> str:
    return f"{r['metric']} on {labels.get(r['test'], r['test'])} ({labels.get(r['model'], r['model'])})"


def conclusion(r: Mapping) -> str:
    """``improvement``, ``worsening``, ``none`` or ``untested`` for one comparison row."""
    if not r["tested"]:
        return "untested"
    if not r["p_holm"] < ALPHA:
        return "none"
    return "improvement" if (r["diff"] > 0) == column_info(r["metric"]).higher_is_better else "worsening"


def sentence(r: Mapping, labels: Mapping[str, str]) -> str:
    """The sentence of one primary comparison (rules 1-3)."""
    arm, base = labels.get(r["arm"], r["arm"]), labels.get(r["base"], r["base"])
    interval = f"{_num(r['diff'])} [{_num(r['t_lo'])}, {_num(r['t_hi'])}]"
    kind = conclusion(r)
    if kind == "untested":
        seeds = int(r["seeds"])
        told = interval if seeds > 1 else f"{_num(r['diff'])}, one seed: no interval"
        return f"{arm} against {base}, {_where(r, labels)}: not tested with {seeds} seed{'s' if seeds != 1 else ''}; {told}."
    study = r.get("p_holm_study", math.nan)
    overall = ("" if math.isnan(study) else
               f"; study-wide Holm p {_p(study)}{' (survives every family)' if study < ALPHA else ' (not below 0.05 study-wide)'}")  # fmt: skip
    if kind == "none":
        bound = max(abs(r["t_lo"]), abs(r["t_hi"]))
        return (f"No detectable difference between {arm} and {base} in {_where(r, labels)}: {interval}, Holm p "
                f"{_p(r['p_holm'])}; differences larger than {bound:.4g} are unlikely (95% interval){overall}.")  # fmt: skip
    direction = "higher" if r["diff"] > 0 else "lower"
    article = "an" if kind == "improvement" else "a"
    return (f"{arm} is {direction} than {base} in {_where(r, labels)} ({article} {kind}): {interval}, Holm p "
            f"{_p(r['p_holm'])}{overall}.")  # fmt: skip


def change(ablated: Mapping, default: Mapping, labels: Mapping[str, str]) -> str:
    """Rule 4: what an ablation does to the default's difference from the base arm."""
    gain = default["diff"]
    bound = ablated["t_hi"] if gain > 0 else ablated["t_lo"]
    share = bound / gain
    arm, full = labels.get(ablated["arm"], ablated["arm"]), labels.get(default["arm"], default["arm"])
    what = (f"{full}'s difference from {labels.get(default['base'], default['base'])} in {_where(default, labels)} "
            f"({_num(gain)})")  # fmt: skip
    interval = f"{_num(ablated['diff'])} [{_num(ablated['t_lo'])}, {_num(ablated['t_hi'])}]"
    if ablated["t_lo"] <= gain <= ablated["t_hi"]:
        return f"With {arm}, {what} is not shown to change: {interval}."
    if share <= 0:
        return f"With {arm}, {what} is removed: {interval} allows none of it."
    return f"With {arm}, {what} is reduced: {interval} allows at most {share:.0%} of it."


def findings(main: pd.DataFrame, ablations: Mapping[str, list[tuple[str, str, pd.DataFrame]]],
             defaults: Mapping[str, str | None], labels: Mapping[str, str]) -> list[str]:  # fmt: skip
    """Markdown lines: the sentence of every primary comparison that has a seed, over the healthy runs, the
    main arms first, then each ablation (its settings against the base, the default's own sentence left to
    the main arms, then the reduced/removed sentences and its settings against its default). ``defaults``
    names each ablation's default arm id (or ``None``)."""

    def block(frame: pd.DataFrame, title: str) -> list[str]:
        rows = frame[(frame.runs == "healthy") & (frame.family == "primary") & (frame.seeds > 0)] if not frame.empty else frame
        if rows.empty:
            return []
        ordered = sorted(rows.to_dict("records"), key=lambda r: ["improvement", "worsening", "none", "untested"].index(conclusion(r)))
        return [f"### {title}", "", *(f"- {sentence(r, labels)}" for r in ordered), ""]

    lines = ["## Findings, worded from the numbers", "",
             "Each sentence follows fixed rules (docs/statistics.md) from the paired tables: higher or lower only with a "
             "Holm-adjusted p below 0.05, otherwise no detectable difference with the interval; healthy runs, primary "
             "metrics, the trained network (seed) as the unit, conditional on these test images.", ""]  # fmt: skip
    lines += block(main, "Each arm against the base arm")
    for name, listed in ablations.items():
        default = defaults.get(name)
        for what, _, frame in listed:  # the default setting against the base is worded above, once
            lines += block(frame[frame.arm_id != default] if not frame.empty else frame, f"Ablation '{name}': {what}")
        against_base = listed[0][2] if listed else pd.DataFrame()
        if default is None or against_base.empty or main.empty:
            continue
        full = main[(main.arm == default) & (main.runs == "healthy") & (main.family == "primary")]
        changed = []
        for d in full.to_dict("records"):
            if conclusion(d) not in ("improvement", "worsening"):
                continue
            others = against_base[(against_base.runs == "healthy") & (against_base.model == d["model"]) &
                                  (against_base.test == d["test"]) & (against_base.metric == d["metric"]) &
                                  (against_base.arm_id != default)]  # fmt: skip
            changed += [f"- {change(a, d, labels)}" for a in others.to_dict("records")]
        if changed:
            lines += [f"### Ablation '{name}': what each setting does to the default's differences", "", *changed, ""]
    return lines
