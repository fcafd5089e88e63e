"""Cross-checks of benchmark.metrics against the independent implementation in tests/reference_impl.py,
on fused images the calibration never saw (VIFB's published fused outputs) and on synthetic images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.data import list_images, read_grey
from benchmark.metrics import METRICS, evaluate
from tests import reference_impl as ref
from tests.conftest import need, real_data

# float64 on both sides: differences are summation order only, 100 times below the
# spec's 1e-4 or tighter. VIF divides by near-zero local variances in almost flat
# windows, which amplifies rounding (seen: 2e-8). SSIM: scikit-image's float32 running
# sums against ours, which may differ in the last float32 bit.
REL = {name: 1e-8 for name in METRICS} | {"VIF": 1e-6, "SSIM": 1e-5}


def check_all(f: np.ndarray, a: np.ndarray, b: np.ndarray, label: str) -> None:
    ours = evaluate(f, a, b)
    for name, fn in ref.ALL.items():
        theirs = fn(f) if name in ref.NO_REFERENCE else fn(f, a, b)
        value = ours[name]
        if math.isnan(theirs):
            assert math.isnan(value), f"{label} {name}: {value} but the cross-check gives NaN"
            continue
        assert abs(value - theirs) <= max(REL[name] * abs(theirs), 1e-9), f"{label} {name}: {value!r} vs {theirs!r}"


VIFB_CASES = [
    ("SeAFusion", "fight"), ("U2Fusion", "labMan"), ("SwinFusion", "manWalking"), ("LatLRR", "carShadow"),
    ("GTF", "tricycle"), ("CBF", "kettle"), ("IFEVIP", "carLight"), ("ResNet", "manCall"),
]  # fmt: skip


@pytest.mark.calibration
@pytest.mark.parametrize("method,scene", VIFB_CASES)
def test_unseen_vifb_outputs(method: str, scene: str) -> None:
    root = need(real_data() / "VIFB")
    f = read_grey(list_images(root / "fused" / method)[scene])
    a = read_grey(list_images(root / "ir")[scene])
    b = read_grey(list_images(root / "vi")[scene])
    check_all(f, a, b, f"VIFB {method}/{scene}")


@pytest.mark.parametrize("seed", range(4))
def test_synthetic_images(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = 64 + 7 * seed, 80 - 5 * seed
    a = np.round(rng.uniform(0, 255, (h, w)))
    b = np.round(np.clip(a * 0.5 + rng.normal(100, 40, (h, w)), 0, 255))
    b[: h // 3, : w // 3] = 17  # a flat region: VIF's and Qabf's special cases
    f = np.round(np.clip((a + b) / 2 + rng.normal(0, 5, (h, w)), 0, 255))
    f[h // 2 :, w // 2 :] = b[h // 2 :, w // 2 :]  # ties in Qabf's edge strength
    check_all(f, a, b, f"synthetic seed {seed}")
