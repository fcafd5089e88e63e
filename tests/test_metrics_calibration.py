"""Calibration against the published reference values (shared/reference/metrics_reference.csv).

Tolerances as docs/metrics.md states them: relative 1e-4 (absolute 1e-6 near zero);
SSIM 1e-3, 2e-3 on the constant image. NaN exactly where the reference is NaN.
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

import pytest

from benchmark.data import list_images, read_grey
from benchmark.metrics import evaluate, metric_names
from tests.conftest import need, real_data, reference_root

pytestmark = pytest.mark.calibration

DATASETS = ("TNO", "RoadScene")


def tolerance(metric: str, method: str) -> float:
    """Relative tolerance of the spec for one metric and fused-image kind."""
    if metric == "SSIM":
        return 2e-3 if method == "const128" else 1e-3
    return 1e-4


@lru_cache(maxsize=None)
def reference_rows() -> list[dict[str, str]]:
    path = need(reference_root() / "metrics_reference.csv")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@lru_cache(maxsize=None)
def computed(dataset: str, method: str, image: str) -> dict[str, float]:
    src = need(real_data() / dataset)
    stem = Path(image).stem
    ir = read_grey(list_images(src / "ir")[stem])
    vi = read_grey(list_images(src / "vi")[stem])
    fused = read_grey(reference_root() / "fused" / dataset / method / f"{stem}.png")
    return evaluate(fused, ir, vi)


def agree(value: float, ref: float, rel: float) -> bool:
    if math.isnan(ref) or math.isnan(value):
        return math.isnan(ref) and math.isnan(value)
    return abs(value - ref) <= max(rel * abs(ref), 1e-6)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("metric", metric_names())
def test_reference_values(metric: str, dataset: str) -> None:
    rows = [r for r in reference_rows() if r["dataset"] == dataset]
    assert rows, f"no reference rows for {dataset}"
    bad = []
    for r in rows:
        value, ref = computed(r["dataset"], r["method"], r["image"])[metric], float(r[metric])
        if not agree(value, ref, tolerance(metric, r["method"])):
            bad.append(f"{r['method']}/{r['image']}: {value!r} vs reference {ref!r}")
    assert not bad, f"{metric} on {dataset}: {len(bad)} of {len(rows)} rows disagree:\n" + "\n".join(bad[:10])


def test_reference_covers_nan_cases() -> None:
    """The reference has NaN rows (constant or source-equal fusion); they must stay NaN, never made up."""
    nan_rows = [r for r in reference_rows() if any(v == "nan" for v in r.values())]
    assert nan_rows, "expected NaN rows in the reference (const128, ir, vi copies)"
    for r in nan_rows:
        values = computed(r["dataset"], r["method"], r["image"])
        for metric in metric_names():
            assert math.isnan(values[metric]) == (r[metric] == "nan"), (r["method"], metric)
