"""Hand-computed metric values, invariants, metadata and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark import metrics as M


def test_entropy_of_two_equal_levels_is_one_bit() -> None:
    f = np.zeros((8, 8))
    f[:, 4:] = 200
    assert M.en(f) == pytest.approx(1.0, abs=1e-15)
    assert M.en(np.full((5, 5), 7.0)) == 0.0


def test_sd_sf_ag_by_hand() -> None:
    f = np.array([[0.0, 2.0], [0.0, 2.0]])
    assert M.sd(f) == pytest.approx(1.0)
    # row differences all 2 (squared 4), column differences all 0: SF = 2
    assert M.sf(f) == pytest.approx(2.0)
    # np.gradient: Gx = 2 everywhere, Gy = 0: AG = sqrt(4 / 2)
    assert M.ag(f) == pytest.approx(math.sqrt(2.0))


def test_ramp_gradients() -> None:
    f = np.tile(np.arange(0.0, 50.0, 5.0), (6, 1))  # horizontal ramp, step 5
    assert M.sf(f) == pytest.approx(5.0)
    assert M.ag(f) == pytest.approx(5.0 / math.sqrt(2))


def test_identical_images() -> None:
    rng = np.random.default_rng(1)
    a = np.round(rng.uniform(0, 255, (40, 40)))
    values = M.evaluate(a, a, a)
    assert values["MSE"] == 0.0 and values["PSNR"] == math.inf
    assert values["CC"] == pytest.approx(1.0)
    assert math.isnan(values["SCD"])  # F - B is constant: 0/0, as the reference
    assert values["SSIM"] == pytest.approx(2.0, abs=1e-6)
    # MI(F, A) of an image with itself is its entropy in nats
    assert values["MI"] == pytest.approx(2 * M.en(a) * math.log(2), rel=1e-12)
    # Qabf: every edge strength ties, so G = gF (the quirk) and the angle term is
    # 0.9879 / (1 + exp(-22 * 0.2)); not 1
    assert 0 < values["Qabf"] < 1


def test_constant_fusion_gives_nan_correlations() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, 255, (2, 36, 36)).round()
    values = M.evaluate(np.full((36, 36), 128.0), a, b)
    assert math.isnan(values["CC"])  # corr with a constant: 0/0
    # F - B = 128 - B, so SCD = corr(A, -B) + corr(B, -A) = -2 corr(A, B): defined
    assert values["SCD"] == pytest.approx(-2 * np.corrcoef(a.ravel(), b.ravel())[0, 1], rel=1e-12)
    assert values["VIF"] == 0.0  # flat D: no information kept
    assert values["EN"] == 0.0 and values["SD"] == 0.0


def test_numpy_and_torch_inputs_agree() -> None:
    rng = np.random.default_rng(3)
    f, a, b = rng.integers(0, 256, (3, 48, 50)).astype(np.float64)
    as_numpy = M.evaluate(f, a, b)
    as_torch = M.evaluate(torch.from_numpy(f).float(), torch.from_numpy(a), torch.from_numpy(b).to(torch.uint8))
    assert as_numpy == as_torch


def test_public_functions_match_evaluate() -> None:
    rng = np.random.default_rng(4)
    f, a, b = rng.integers(0, 256, (3, 40, 44)).astype(np.float64)
    all_values = M.evaluate(f, a, b)
    for name, info in M.METRICS.items():
        fn = M.get_convention().function(name)
        single = fn(f) if not info.needs_sources else fn(f, a, b)
        assert single == all_values[name] or (math.isnan(single) and math.isnan(all_values[name]))


def test_metadata() -> None:
    assert M.metric_names() == ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "MSE"]
    assert not M.METRICS["MSE"].higher_is_better
    assert all(M.METRICS[n].higher_is_better for n in M.metric_names() if n != "MSE")
    assert {n for n, m in M.METRICS.items() if not m.needs_sources} == {"EN", "SD", "SF", "AG"}
    assert all(m.definition for m in M.METRICS.values())
    assert list(M.evaluate(np.zeros((40, 40)), np.ones((40, 40)), np.ones((40, 40)), metrics=["ssim", "EN"])) == [
        "SSIM",
        "EN",
    ]


def test_unknown_names_list_valid_ones() -> None:
    img = np.zeros((40, 40))
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['FOO'\]; valid: EN, SD, SF"):
        M.evaluate(img, img, img, metrics=["FOO"])
    with pytest.raises(ValueError, match="unknown metric convention 'matlab'; valid: cddfuse"):
        M.evaluate(img, img, img, convention="matlab")


def read_grey_of(rgb: np.ndarray) -> np.ndarray:
    from benchmark.data import to_grey

    return to_grey(rgb)


def test_bad_inputs() -> None:
    img = np.zeros((40, 40))
    with pytest.raises(ValueError, match=r"fused: expected a 2-D grey or \(H, W, 3\) colour image, got shape \(40, 40, 4\)"):
        M.evaluate(np.zeros((40, 40, 4)), img, img)
    rng = np.random.default_rng(1)
    rgb, src = rng.integers(0, 256, (40, 40, 3)).astype(np.uint8), rng.integers(0, 256, (40, 40)).astype(np.float64)
    assert M.evaluate(rgb, src, src) == M.evaluate(read_grey_of(rgb), src, src)  # colour: the evaluator's grey
    with pytest.raises(ValueError, match=r"ir: grey levels must be finite and within 0..255, got 256.0..256.0"):
        M.evaluate(img, np.full((40, 40), 256.0), img)
    with pytest.raises(ValueError, match="images differ in shape"):
        M.evaluate(img, img, np.zeros((40, 41)))
    with pytest.raises(ValueError, match="VIF needs images of at least 32 x 32"):
        M.vif(np.zeros((20, 40)), np.zeros((20, 40)), np.zeros((20, 40)))


def test_values_do_not_depend_on_thread_count() -> None:
    import numba

    rng = np.random.default_rng(5)
    f, a, b = rng.integers(0, 256, (3, 64, 70)).astype(np.float64)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = M.evaluate(f, a, b)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = M.evaluate(f, a, b)
    finally:
        numba.set_num_threads(before)
    assert one == many or all(one[k] == many[k] or (math.isnan(one[k]) and math.isnan(many[k])) for k in one)
