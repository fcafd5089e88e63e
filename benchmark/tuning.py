"""Equal-budget tuning: each arm's gradient weight chosen on validation with the same trials as every other arm.

A profile's ``tune`` block trains every tuned (model, arm) at each ``gradient_scale`` (a multiple of the
recipe's gradient weight) on each tuning seed. A tuning run is validated and never tested; its value is
its validation criterion at the network the profile's primary selection rule picks. The selected scale
of a (model, arm) is the one with the best mean value over the tuning seeds (ties to the earlier listed
scale). :func:`expected_best` gives the expected best value against the number of trials (Dodge et al.,
"Show your work", EMNLP 2019), so a reader sees whether the budget was enough.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark.metrics import metric_names
from benchmark.selection import criterion_of
from benchmark.store import ResultsFolder, StoreError, run_id

COLUMNS = ["model", "arm", "gradient_scale", "seeds", "criterion_mean", "criterion_sd", "start_vs_base", "selected"]


def planned_trials(tune: Mapping[str, Any]) -> int:
    """How many trials a ``tune`` block plans: every model, arm, gradient scale and tuning seed."""
    return math.prod(len(tune[k]) for k in ("models", "arms", "gradient_scale", "seeds"))


def gradient_rows(log: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of a training log (``train_log.csv``) that carry a finite gradient term; none without a log or
    a gradient column (a loss with no gradient term)."""
    if log is None or "gradient" not in log:
        return pd.DataFrame(columns=["step", "loss", "gradient"])
    return log[np.isfinite(log["gradient"].to_numpy(float))]


def trial_record(folder: ResultsFolder, rid: str) -> dict[str, Any]:
    """A finished tuning run: its validation criterion at its primary rule's network (``value``), whether higher
    is better, the step of that network, its seconds (``done.json``), its code commit (``env.json``) and its
    weighted gradient term at the first logged step (``start_term``, ``train_log.csv``; the initial weights
    where that is step 1, ``start_step``; NaN without a gradient term).

    Raises:
        StoreError: the run has not finished.
    """
    run = folder.run(rid)
    if not run.done.is_file():
        raise StoreError(f"{run.root}: tuning run not finished; run the profile again to finish its tuning")
    done, config, val = run.read_json("done"), run.read_config(), run.read_val_frame()
    criterion = criterion_of(config)[0]
    value = val.loc[val.step == done["scored_step"], "criterion"]
    log = run.read_log_frame()
    rows = gradient_rows(log)
    first = rows.iloc[0] if len(rows) else None
    return {"value": float(value.iloc[0]), "higher": any(t in metric_names() for t in criterion.split("+")),
            "scored_step": int(done["scored_step"]), "seconds": float(done["seconds"]),
            "git_commit": run.read_json("env").get("git_commit"),
            "start_term": math.nan if first is None else float(first["gradient"]),
            "start_step": -1 if first is None else int(first["step"])}  # fmt: skip


TRIAL_COLUMNS = ["model", "arm", "gradient_scale", "seed", "value", "higher", "scored_step", "seconds", "run_id",
                 "git_commit", "start_term", "start_step", "start_vs_base"]


def trials(folder: ResultsFolder, tune: Mapping[str, Any], train: str, finished: bool = False,
           base: str | None = None) -> pd.DataFrame:  # fmt: skip
    """Every tuning trial, in the order of the ``tune`` block: model, arm, gradient scale, seed, the fields of
    :func:`trial_record`, its run id and :func:`start_vs_base` against the ``base`` arm (NaN without one); with
    ``finished``, only the trials that have finished.

    Raises:
        StoreError: a trial has not finished (unless ``finished``).
    """
    rows = []
    for model in tune["models"]:
        for arm in tune["arms"]:
            for scale in tune["gradient_scale"]:
                for seed in tune["seeds"]:
                    rid = run_id(model, arm, train, seed, scale)
                    if finished and not folder.run(rid).done.is_file():
                        continue
                    rows.append({"model": model, "arm": arm, "gradient_scale": scale, "seed": seed,
                                 **trial_record(folder, rid), "run_id": rid})  # fmt: skip
    frame = pd.DataFrame(rows, columns=TRIAL_COLUMNS[:-1])
    return frame.assign(start_vs_base=start_vs_base(frame, base))


def start_vs_base(done: pd.DataFrame, base: str | None) -> np.ndarray:
    """Each trial's ``start_term`` over that of the ``base`` arm's trial at scale 1 with the same model and
    seed, logged at the same step (NaN where that trial has not finished, logged another step, or there is no
    base): trials of one seed start from the same weights on the same first batch, so this is how large the
    arm's gradient term starts against the base arm's at the recipe's weight, its scale included."""
    at_one = done[(done.arm == base) & (done.gradient_scale == 1)].set_index(["model", "seed"])
    ref = [at_one["start_term"].get(k, math.nan) if at_one["start_step"].get(k) == step else math.nan
           for k, step in zip(zip(done.model, done.seed), done.start_step)]  # fmt: skip
    return done["start_term"].to_numpy(float) / np.asarray(ref, dtype=float)


def tuning_table(done: pd.DataFrame, select: bool = True) -> pd.DataFrame:
    """One row per tuned model, arm and scale from :func:`trials`: the mean and SD of the values over the
    tuning seeds, the mean of ``start_vs_base`` over the seeds that have it, and whether this scale is the
    selected one (none is without ``select``, for a tuning whose trials have not all finished)."""
    rows = []
    for (model, arm), g in done.groupby(["model", "arm"], sort=False):
        block = []
        for scale, h in g.groupby("gradient_scale", sort=False):
            v, ratio = h["value"].to_numpy(float), h["start_vs_base"].dropna().to_numpy(float)
            block.append({"model": model, "arm": arm, "gradient_scale": float(scale), "seeds": len(v),
                          "criterion_mean": float(v.mean()), "criterion_sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                          "start_vs_base": float(ratio.mean()) if len(ratio) else math.nan, "selected": False})  # fmt: skip
        sign = 1 if bool(g["higher"].iloc[0]) else -1
        block[int(np.argmax([sign * r["criterion_mean"] for r in block]))]["selected"] = select
        rows += block
    return pd.DataFrame(rows, columns=COLUMNS)


def select_scales(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Arm -> model -> the selected gradient scale."""
    out: dict[str, dict[str, float]] = {}
    for r in table[table.selected].itertuples():
        out.setdefault(r.arm, {})[r.model] = float(r.gradient_scale)
    return out


def at_edge(table: pd.DataFrame) -> list[str]:
    """Warnings for selected scales at the edge of the grid, where a wider grid might select beyond it."""
    out = []
    for (model, arm), g in table.groupby(["model", "arm"], sort=False):
        chosen = float(g.loc[g.selected, "gradient_scale"].iloc[0])
        if len(g) > 1 and chosen in (g.gradient_scale.min(), g.gradient_scale.max()):
            out.append(f"{model} / {arm}: the selected gradient scale {chosen:g} is at the edge of the grid "
                       f"({g.gradient_scale.min():g}-{g.gradient_scale.max():g}); widen the grid past it")  # fmt: skip
    return out


def expected_best(values: Sequence[float], higher: bool = True) -> list[float]:
    """Expected best of ``k`` trials drawn with replacement from ``values``, for ``k = 1 .. len(values)``:
    ``sum_i v_(i) ((i/n)^k - ((i-1)/n)^k)`` over the values sorted from worst to best."""
    v = np.sort(np.asarray(values, dtype=float) * (1 if higher else -1))
    n = len(v)
    i = np.arange(1, n + 1)
    sign = 1 if higher else -1
    return [sign * float(np.sum(v * ((i / n) ** k - ((i - 1) / n) ** k))) for k in range(1, n + 1)]


def budget_table(done: pd.DataFrame) -> pd.DataFrame:
    """Per tuned model and arm, from :func:`trials`: the expected best validation criterion against the
    number of trials."""
    rows = []
    for (model, arm), g in done.groupby(["model", "arm"], sort=False):
        for k, best in enumerate(expected_best(g["value"].tolist(), bool(g["higher"].iloc[0])), start=1):
            rows.append({"model": model, "arm": arm, "trials": k, "expected_best": best})
    return pd.DataFrame(rows, columns=["model", "arm", "trials", "expected_best"])
