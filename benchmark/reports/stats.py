"""Aggregation of per-image values: the one path from ``metrics.csv`` rows to every table and summary.

The NaN rule, everywhere: a run's mean over images excludes NaN values and
counts them; a mean over seeds uses the seeds whose mean is a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from benchmark.metrics import column, metric_names
from benchmark.selection import criterion_of, first_gain
from benchmark.store import Study
from benchmark.tuning import gradient_rows


def setting_names(name: str, arm_of: Mapping[str, str]) -> dict[str, str]:
    """Arm id -> the ablation's display name for it (``sign=false``; ``scales=1.0, scales=1`` for one arm
    listed under two values)."""
    return {arm: ", ".join(f"{name}={v}" for v, a in arm_of.items() if a == arm) for arm in dict.fromkeys(arm_of.values())}


def display_labels(spec: Mapping[str, Any]) -> dict[str, str]:
    """The display names every table and figure of a study uses: the labels it declares, and for each arm that
    only an ablation plans, the name its first ablation gives it (``sign=false``, not the arm id
    ``sign:sign=false``), so the tuning, run and ablation tables name an arm alike."""
    shown: dict[str, str] = {}
    for name, arm_of in spec["ablations"].items():
        for arm, setting in setting_names(name, arm_of).items():
            if arm not in spec["loss_arms"]:
                shown.setdefault(arm, setting)
    return {**shown, **spec["labels"]}


def study_metrics(study: Study) -> list[str]:
    """The default convention's metrics that a study's values hold, in table order."""
    return [m for m in metric_names() if m in study.values.columns]


def study_columns(study: Study) -> list[str]:
    """Every metric column a study's values hold: the default convention's, then each further convention's."""
    extra = [column(c, m) for c in study.spec.get("conventions", []) for m in metric_names(c)]
    return study_metrics(study) + [c for c in extra if c in study.values.columns]


def seed_means(values: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per (model, arm, test, seed): the image mean of each metric (NaN excluded) and its NaN count."""
    grouped = values.groupby(["model", "arm", "test", "seed"], sort=False)[list(metrics)]
    means = grouped.mean()
    nans = grouped.agg(lambda v: int(v.isna().sum())).add_suffix("_nan")
    return means.join(nans).reset_index()


def summarise_arms(values: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per (model, arm, test): mean and sample std (ddof 1; 0 for one seed) over seeds, seeds, NaN count."""
    per_seed = seed_means(values, metrics)
    rows = []
    for (model, arm, test), g in per_seed.groupby(["model", "arm", "test"], sort=False):
        row: dict[str, Any] = {"model": model, "arm": arm, "test": test, "seeds": len(g)}
        for m in metrics:
            v = g[m].to_numpy(dtype=float)
            v = v[~np.isnan(v)]
            row[f"{m}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else math.nan)
            row[f"{m}_nan"] = int(g[f"{m}_nan"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def run_summary(values: pd.DataFrame, metrics: Sequence[str], order: dict[str, list]) -> pd.DataFrame:
    """``summary.csv``: one row per run and test set, the image mean of each metric, and ``nan_values``
    naming the metrics whose mean excluded NaN values with their counts (``CC:2;SCD:1``).

    Rows follow the plan: ``order`` gives the model, arm and test order; seeds ascend.
    """
    per_seed = seed_means(values, metrics)
    ids = dict(zip(zip(values.model, values.arm, values.seed), values.run_id))
    per_seed.insert(0, "run_id", [ids[k] for k in zip(per_seed.model, per_seed.arm, per_seed.seed)])
    per_seed["nan_values"] = [";".join(f"{m}:{int(r[f'{m}_nan'])}" for m in metrics if r[f"{m}_nan"])
                              for r in per_seed.to_dict("records")]  # fmt: skip
    return in_plan_order(per_seed, order)[["run_id", "model", "arm", "seed", "test", *metrics, "nan_values"]]


def in_plan_order(frame: pd.DataFrame, order: dict[str, list]) -> pd.DataFrame:
    """``frame``'s rows by model, arm, seed and test (those of them it has), the models, arms and tests in
    ``order``'s order and the seeds ascending."""
    position = {key: {name: i for i, name in enumerate(names)} for key, names in order.items()}
    keys = [k for k in ("model", "arm", "seed", "test") if k in frame.columns]
    return frame.sort_values(keys, key=lambda c: c.map(position[c.name].__getitem__) if c.name in position else c,
                             kind="stable").reset_index(drop=True)  # fmt: skip


def paired(arm: np.ndarray, base: np.ndarray, higher_is_better: bool) -> dict[str, float]:
    """Paired comparison over images (NaN pairs dropped).

    Returns relative change of the mean in percent, the win rate (share of images where
    ``arm`` is better in the metric's direction, ties counted half), the two-sided Wilcoxon
    signed-rank p-value (1.0 when every difference is zero) and the number of pairs.
    """
    keep = ~(np.isnan(arm) | np.isnan(base))
    a, b = arm[keep], base[keep]
    if not len(a):
        return {"change_pct": math.nan, "win_rate": math.nan, "p_value": math.nan, "pairs": 0}
    diff = (a - b) if higher_is_better else (b - a)
    change = (a.mean() - b.mean()) / abs(b.mean()) * 100 if b.mean() != 0 else math.nan
    win = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / len(diff)
    p = 1.0 if np.all(diff == 0) else float(wilcoxon(a, b, alternative="two-sided").pvalue)
    return {"change_pct": float(change), "win_rate": float(win), "p_value": p, "pairs": int(len(a))}


def paired_images(values: pd.DataFrame, arm: str, base: str, metrics: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Per-image values of ``arm`` and ``base`` (one model, one test set), each averaged over the seeds both
    have, on the images both have; returns ``(arm, base, number of seeds)``."""
    seeds = set(values.loc[values.arm == arm, "seed"]) & set(values.loc[values.arm == base, "seed"])
    pick = values[values.seed.isin(seeds)]
    a, b = (pick[pick.arm == x].groupby("image", sort=True)[list(metrics)].mean() for x in (arm, base))
    images = a.index.intersection(b.index)
    return a.loc[images], b.loc[images], len(seeds)


def ranks(means: Sequence[float], higher_is_better: bool) -> list[int]:
    """Rank of each value in its block (0 best, 1 second, ...); ties share the better rank; NaN gets
    ``len(means)``, below every real rank, so it is never marked."""
    keyed = [(-v if higher_is_better else v) for v in means if not math.isnan(v)]
    order = sorted(set(keyed))
    return [len(means) if math.isnan(v) else order.index(-v if higher_is_better else v) for v in means]


def loss_scale(study: Study, arms: Sequence[str], base: str) -> pd.DataFrame:
    """Per model and arm: the gradient term's share of the total loss at the first and the last logged step
    (mean over seeds), and the arm's gradient term at the first logged step over the base arm's with the same
    seed (mean over seeds). A swapped gradient term changes the balance against the other terms; this shows
    by how much. Logged values are the weighted parts, computed before each step's update, so the row of step
    1 is the loss at the initial weights; ``start_updates`` is the number of updates before the first logged
    row (0 where step 1 is logged; runs written before it was have their first ``log_every`` step)."""
    first: dict[tuple[str, str, int], tuple[float, float, float, int]] = {}
    for run in study.runs.values():
        cfg, log = run["config"], run["log"]
        if cfg["arm"]["name"] not in arms:
            continue
        rows = gradient_rows(log)
        if len(rows):
            share = (rows["gradient"] / rows["loss"]).to_numpy(float)
            first[(cfg["model"]["name"], cfg["arm"]["name"], cfg["seed"])] = (share[0], share[-1], float(rows["gradient"].iloc[0]),
                                                                      int(rows["step"].iloc[0]) - 1)  # fmt: skip
    out = []
    for model in dict.fromkeys(k[0] for k in first):
        for arm in [a for a in arms if any(k[:2] == (model, a) for k in first)]:
            seeds = sorted(k[2] for k in first if k[:2] == (model, arm))
            ratios = [first[(model, arm, s)][2] / first[(model, base, s)][2] for s in seeds if (model, base, s) in first]
            out.append({"model": model, "arm": arm, "seeds": len(seeds),
                        "share_start": float(np.mean([first[(model, arm, s)][0] for s in seeds])),
                        "share_end": float(np.mean([first[(model, arm, s)][1] for s in seeds])),
                        "start_vs_base": float(np.mean(ratios)) if ratios else math.nan,
                        "start_updates": max(first[(model, arm, s)][3] for s in seeds)})  # fmt: skip
    return pd.DataFrame(out, columns=["model", "arm", "seeds", "share_start", "share_end", "start_vs_base", "start_updates"])


COLLAPSE_SHARE = 0.5  # a validation below this share of the best criterion before it is a collapse


def collapsed_validations(criterion: Sequence[float], share: float = COLLAPSE_SHARE) -> list[int]:
    """Positions of the validations whose criterion fell below ``share`` of the best one before them, or
    was not a number: transient collapses that choosing the best checkpoint hides. The first validation
    has nothing before it and never counts."""
    out, best = [], -math.inf
    for i, c in enumerate(criterion):
        if i and not c >= share * best:  # NaN compares false
            out.append(i)
        if not math.isnan(c):
            best = max(best, c)
    return out


def scored_step(done: dict[str, Any], config: dict[str, Any], val: pd.DataFrame | None) -> int:
    """The step whose network a finished run scored under its primary selection rule.

    Runs that record it say so (``scored_step``); older runs with ``select: best`` scored the network of
    :func:`benchmark.selection.first_gain` on their validation history, and those without it their last step.
    """
    if "scored_step" in done:
        return int(done["scored_step"])
    if done.get("selected") == "best" and val is not None and len(val):
        criterion, min_delta = criterion_of(config)
        higher = any(t in metric_names() for t in criterion.split("+"))
        return first_gain(val["step"].tolist(), val["criterion"].tolist(), higher, min_delta)
    return int(done["stopped_at"] if "stopped_at" in done else done["steps"])


def convergence(study: Study) -> pd.DataFrame:
    """Per model and arm, for runs that validated during training: how many reached their plateau (of those
    with a plateau rule), the steps at which each stopped, had its best validation and had the network its
    primary selection rule scored (see :func:`scored_step`), the validations that collapsed (see
    :func:`collapsed_validations`; "seed S at step N", or "none"), and the time validation added, as a
    percent of the rest of the run's wall time (mean over runs; empty when no run validated)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for run in study.runs.values():
        done, cfg, val = run["done"], run["config"], run["val"]
        if "plateau" not in done:
            continue
        row = rows.setdefault((cfg["model"]["name"], cfg["arm"]["name"]), {"model": cfg["model"]["name"],
                              "arm": cfg["arm"]["name"], "seeds": 0, "plateau": 0, "watched": 0, "stopped_at": [],
                              "scored_step": [], "best_step": [], "collapsed": [], "added": []})  # fmt: skip
        row["seeds"] += 1
        row["plateau"] += bool(done["plateau"])
        row["watched"] += done["plateau"] is not None
        row["stopped_at"].append(done["stopped_at"])
        row["scored_step"].append(scored_step(done, cfg, val))
        row["best_step"].append(done["best_step"])
        if val is not None:
            steps = val["step"].tolist()
            row["collapsed"] += [f"seed {cfg['seed']} at step {steps[i]}" for i in collapsed_validations(val["criterion"].tolist())]
        if "val_seconds" in done:
            row["added"].append(100 * done["val_seconds"] / (done["seconds"] - done["val_seconds"]))
    joined = ("stopped_at", "scored_step", "best_step")
    return pd.DataFrame([{**r, **{k: " ".join(map(str, r[k])) for k in joined}, "collapsed": "; ".join(r["collapsed"]) or "none",
                          "validation_added_pct": float(np.mean(r["added"])) if r["added"] else math.nan}
                         for r in rows.values()],
                        columns=["model", "arm", "seeds", "plateau", "watched", *joined, "collapsed",
                                 "validation_added_pct"])  # fmt: skip


def _picks(study: Study, run: dict[str, Any]) -> dict[str, int]:
    """Selection rule -> the step whose network it scored, for one finished run (a run written before rules
    were recorded has its primary rule's step only)."""
    done = run["done"]
    picks = done.get("select") or {done.get("selected", study.rules[0]): scored_step(done, run["config"], run["val"])}
    return {rule: int(step) for rule, step in picks.items()}


def scored_steps(study: Study) -> pd.DataFrame:
    """Per finished run and selection rule it recorded: the step whose network that rule scored."""
    rows = []
    for rid, run in study.runs.items():
        cfg = run["config"]
        rows += [{"run_id": rid, "model": cfg["model"]["name"], "arm": cfg["arm"]["name"], "seed": cfg["seed"],
                  "rule": rule, "step": step} for rule, step in _picks(study, run).items()]  # fmt: skip
    return pd.DataFrame(rows, columns=["run_id", "model", "arm", "seed", "rule", "step"])


def run_table(study: Study, order: dict[str, list]) -> pd.DataFrame:
    """One row per finished run, models and arms in ``order``'s order and seeds ascending: its model, arm,
    seed, gradient weight (the multiple of the recipe's), run id, code commit (``env.json``), seconds
    (``done.json``: training, validation, fusing and scoring, across resumes) and a ``step_<rule>`` column
    per selection rule the runs recorded (the study's declared rules first): the step whose network that rule
    scored, ``<NA>`` for a run that did not record that rule."""
    picks = {rid: _picks(study, run) for rid, run in study.runs.items()}
    recorded = {rule for p in picks.values() for rule in p}
    rules = [rule for rule in dict.fromkeys([*study.rules, *sorted(recorded)]) if rule in recorded]
    rows = [{"model": run["config"]["model"]["name"], "arm": run["config"]["arm"]["name"], "seed": run["config"]["seed"],
             "gradient_scale": float(run["config"].get("gradient_scale", 1.0)), "run_id": rid,
             "git_commit": run["env"].get("git_commit", "unknown"), "seconds": float(run["done"]["seconds"]),
             **{f"step_{rule}": picks[rid].get(rule) for rule in rules}} for rid, run in study.runs.items()]  # fmt: skip
    columns = ["model", "arm", "seed", "gradient_scale", "run_id", "git_commit", "seconds", *[f"step_{r}" for r in rules]]
    return in_plan_order(pd.DataFrame(rows, columns=columns), order).astype({f"step_{r}": "Int64" for r in rules})


def step_ratios(steps: pd.DataFrame, base: str, factor: float = 2.0) -> pd.DataFrame:
    """Pairs (model, seed, rule) whose arm and base networks were scored at steps more than ``factor`` apart:
    their comparison is also one of training lengths."""
    out = []
    for (model, seed, rule), g in steps.groupby(["model", "seed", "rule"], sort=False):
        ref = g[g.arm == base]
        if ref.empty:
            continue
        b = int(ref.step.iloc[0])
        for r in g[g.arm != base].to_dict("records"):
            ratio = r["step"] / b
            if ratio > factor or ratio < 1 / factor:
                out.append({"model": model, "arm": r["arm"], "base": base, "seed": seed, "rule": rule,
                            "arm_step": r["step"], "base_step": b, "ratio": ratio})  # fmt: skip
    return pd.DataFrame(out, columns=["model", "arm", "base", "seed", "rule", "arm_step", "base_step", "ratio"])


def reached_plateau(study: Study) -> dict[str, bool | None]:
    """Per finished run: whether it reached its validation plateau (``None``: it trained to a fixed budget
    without validation, so nobody knows)."""
    return {rid: (None if run["done"].get("plateau") is None else bool(run["done"]["plateau"]))
            for rid, run in study.runs.items()}  # fmt: skip
