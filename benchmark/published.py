"""Published results and how a reproduction compares with them (``benchmark/published.yaml``).

Two kinds of row: ``means`` (a method's per-dataset means as its authors printed them) and ``gains``
(a published relative change of one gradient arm over another). A row applies to a study's runs of the
same model ``type`` tested on the same images (pair count and stem digest, or the count alone where the
published image list is unknown). Means are compared only under the convention they were computed
with: numbers from different conventions differ by more than most published gaps (docs/metrics.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmark.metrics import METRICS, metric_names

PUBLISHED_FILE = Path(__file__).with_name("published.yaml")
KINDS = ("means", "gains")
_KEYS = {"means": {"kind", "method", "model_type", "test_set", "convention", "decimals", "source", "values"},
         "gains": {"kind", "method", "model_type", "test_set", "convention", "base", "arm", "metrics", "percent",
                   "source"}}  # fmt: skip


class PublishedError(ValueError):
    """A published-results file that does not hold what this module expects."""


@dataclass(frozen=True)
class Published:
    """One published row: what was measured, on which images, under which convention, and where it was printed."""

    key: str
    kind: str
    method: str
    model_type: str
    test_name: str
    images: int
    stems_sha256: str | None
    convention: str | None
    source: str
    values: Mapping[str, float]  # means: metric -> published mean
    decimals: int | None = None  # means: printed precision
    base: str | None = None  # gains: the arm the change is measured from
    arm: str | None = None
    percent: tuple[float, float] | None = None  # gains: published range of the relative change, percent

    def applies_to(self, model_type: str, identity: Mapping[str, Any], convention: str | None = None) -> bool:
        """Whether this row describes ``model_type`` on the test images of ``identity`` (and ``convention``)."""
        if model_type != self.model_type or identity.get("images") != self.images:
            return False
        if self.stems_sha256 is not None and identity.get("stems_sha256") != self.stems_sha256:
            return False
        return convention is None or self.kind == "gains" or convention == self.convention

    @property
    def half_unit(self) -> float:
        """Half a unit of the last printed digit: how far the unrounded value may lie from the printed one."""
        return 0.5 * 10.0 ** -(self.decimals or 0)


def _row(key: str, block: Any, where: str) -> Published:
    path = f"{where}: {key}"
    if not isinstance(block, dict) or block.get("kind") not in KINDS:
        raise PublishedError(f"{path}.kind: expected one of {list(KINDS)}, got {block.get('kind') if isinstance(block, dict) else block!r}")
    kind = block["kind"]
    if set(block) != _KEYS[kind]:
        missing, extra = sorted(_KEYS[kind] - set(block)), sorted(set(block) - _KEYS[kind])
        raise PublishedError(f"{path}: a '{kind}' row needs keys {sorted(_KEYS[kind])}"
                             + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))  # fmt: skip
    test = block["test_set"]
    if not isinstance(test, dict) or set(test) != {"name", "images", "stems_sha256"} or not isinstance(test["images"], int):
        raise PublishedError(f"{path}.test_set: expected {{name, images (an integer), stems_sha256 (or null)}}, got {test!r}")
    names = block["values"] if kind == "means" else {m: None for m in block["metrics"]}
    known = list(METRICS) if block["convention"] is None else _convention_metrics(block["convention"], path)
    unknown = [m for m in names if m not in known]
    if unknown:
        raise PublishedError(f"{path}: unknown metric(s) {unknown}; known: {', '.join(known)}")
    common = dict(key=key, kind=kind, method=str(block["method"]), model_type=str(block["model_type"]),
                  test_name=str(test["name"]), images=test["images"], stems_sha256=test["stems_sha256"],
                  convention=block["convention"], source=" ".join(str(block["source"]).split()))  # fmt: skip
    if kind == "means":
        if not isinstance(block["decimals"], int) or block["decimals"] < 0:
            raise PublishedError(f"{path}.decimals: expected a non-negative integer, got {block['decimals']!r}")
        values = {m: float(v) for m, v in block["values"].items()}
        return Published(**common, values=values, decimals=block["decimals"])
    low, high = block["percent"]
    return Published(**common, values={m: math.nan for m in block["metrics"]}, base=str(block["base"]),
                     arm=str(block["arm"]), percent=(float(low), float(high)))  # fmt: skip


def _convention_metrics(convention: Any, path: str) -> list[str]:
    try:
        return metric_names(str(convention))
    except ValueError as exc:
        raise PublishedError(f"{path}.convention: {exc}") from exc


def load_published(path: str | Path | None = None) -> dict[str, Published]:
    """The rows of a published-results file (default: the one shipped with the package), checked."""
    path = Path(path) if path is not None else PUBLISHED_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PublishedError(f"{path}: cannot read the published-results file ({exc.strerror})") from exc
    if not isinstance(raw, dict):
        raise PublishedError(f"{path}: expected a mapping of row names to rows")
    return {key: _row(key, block, str(path)) for key, block in raw.items()}


def compare_means(row: Published, seed_means: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Reproduced against published means, one line per metric both have.

    ``seed_means`` maps a metric to the per-seed image means of one model and arm. ``within`` says whether
    the published value (widened by its rounding) lies inside the range of the seeds' means; with one seed
    there is no spread and ``within`` is None. ``diff_in_sd`` is the difference in seed standard deviations;
    ``as_printed`` whether the mean rounds to the published value (the test for a method's released images).
    """
    lines = []
    for metric, published in row.values.items():
        if metric not in seed_means:
            continue
        v = np.asarray(seed_means[metric], dtype=float)
        v = v[~np.isnan(v)]
        mean = float(v.mean()) if len(v) else math.nan
        sd = float(v.std(ddof=1)) if len(v) > 1 else math.nan
        within = None if len(v) < 2 else bool(v.min() - row.half_unit <= published <= v.max() + row.half_unit)
        lines.append({"published_key": row.key, "metric": metric, "published": published, "decimals": row.decimals,
                      "seeds": len(v), "mean": mean, "std": sd, "min": float(v.min()) if len(v) else math.nan,
                      "max": float(v.max()) if len(v) else math.nan, "diff": mean - published,
                      "diff_in_sd": (mean - published) / sd if sd and not math.isnan(sd) else math.nan,
                      "within": within, "as_printed": bool(abs(mean - published) <= row.half_unit + 1e-12)})  # fmt: skip
    return pd.DataFrame(lines)


def compare_gains(row: Published, comparisons: pd.DataFrame) -> pd.DataFrame:
    """Reproduced relative changes (percent of the base mean, with the 95% t interval over seeds) against the
    published range, for the row's metrics. ``comparisons`` holds one model's and test set's seed-level rows
    (:func:`benchmark.reports.significance.seed_comparisons`, healthy runs). ``overlaps`` says whether the
    interval meets the published range (None with fewer than 2 seeds)."""
    low, high = row.percent
    here = comparisons[(comparisons.arm == row.arm) & (comparisons.base == row.base) & (comparisons.runs == "healthy")]
    lines = []
    for r in here[here.metric.isin(list(row.values))].to_dict("records"):
        scale = 100.0 / abs(r["base_mean"]) if r["base_mean"] else math.nan
        lo, hi = r["t_lo"] * scale, r["t_hi"] * scale
        overlaps = None if r["seeds"] < 2 else bool(lo <= high and hi >= low)
        lines.append({"published_key": row.key, "metric": r["metric"], "published_low": low, "published_high": high,
                      "seeds": r["seeds"], "percent": r["diff"] * scale, "percent_lo": lo, "percent_hi": hi,
                      "overlaps": overlaps})  # fmt: skip
    return pd.DataFrame(lines)


def format_against(row: Published, means: Mapping[str, Mapping[str, float]]) -> str:
    """Plain-text comparison of each method's means (method -> metric -> mean) with a published means row."""
    lines = [f"against '{row.key}': {row.method}, {row.test_name} ({row.convention} convention; {row.source})"]
    for method, by_metric in means.items():
        out = compare_means(row, {m: [v] for m, v in by_metric.items()})
        cells = [f"{r['metric']} {r['mean']:.{row.decimals + 2}f} vs {r['published']:g} ({r['diff']:+.{row.decimals + 2}f}"
                 + (", as printed)" if r["as_printed"] else ")") for r in out.to_dict("records")]  # fmt: skip
        matched = int(out.as_printed.sum())
        lines.append(f"{method}: {matched} of {len(out)} metrics round to the published value; " + "; ".join(cells))
    return "\n".join(lines)
