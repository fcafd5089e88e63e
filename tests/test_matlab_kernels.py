"""The compiled loops behind the ``vifb`` and ``tang`` conventions against plain NumPy / SciPy formulations
of the same MATLAB operations: equal bits where the loop keeps the order of operations, summation-order
differences only (1e-12 relative) where it does not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import fft as sp_fft
from scipy import ndimage

from benchmark.metrics import _kernels as K
from benchmark.metrics import matlab as M
from benchmark.metrics import vifb as V
from benchmark.metrics.tang import nabf_as_called

RNG = np.random.default_rng(7)
SHAPES = [(37, 50), (64, 48)]
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _images(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.round(RNG.uniform(0, 255, shape))
    i = np.round(RNG.uniform(0, 255, shape))
    return v, i, np.round(np.clip((v + i) / 2 + RNG.normal(0, 9, shape), 0, 255))


def _gauss_same(x: np.ndarray, g: np.ndarray, valid: bool) -> np.ndarray:
    full = ndimage.correlate(x, np.outer(g, g), mode="constant")
    h = len(g) // 2
    return full[h:-h, h:-h] if valid else full


@pytest.mark.parametrize("shape", SHAPES)
def test_sobel_magnitude_equals_scipy_with_zero_and_replicated_borders(shape) -> None:
    v = _images(shape)[0]
    for mode, pad in (("constant", "constant"), ("nearest", "edge")):
        gx, gy = ndimage.correlate(v, SOBEL_X, mode=mode), ndimage.correlate(v, SOBEL_X.T, mode=mode)
        assert np.array_equal(K.sobel_magnitude(np.pad(v, 1, mode=pad)), np.sqrt(gx * gx + gy * gy))


@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_maps_match_filtered_moments(shape) -> None:
    v, i, f = _images(shape)
    g, c1, c2 = V._SSIM_G, V._C1, V._C2
    maps = K.ssim_maps(v, i, f, g, c1, c2)
    my = _gauss_same(f, g, True)
    syy = _gauss_same(f * f, g, True) - my * my
    for k, x in enumerate((v, i)):
        mx = _gauss_same(x, g, True)
        sxx, sxy = _gauss_same(x * x, g, True) - mx * mx, _gauss_same(x * f, g, True) - mx * my
        ref = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        assert np.allclose(maps[k], ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_qcb_rows_match_the_quality_map_in_numpy(shape) -> None:
    filtered = [RNG.normal(0, 40, shape) for _ in range(3)]
    sn, sw = 2 * math.pi * 4.0, 2 * math.pi * 16.0
    narrow = [_gauss_same(x, V._QCB_NARROW, False) for x in filtered]
    wide = [_gauss_same(x, V._QCB_WIDE, False) for x in filtered]
    d = [np.abs((n / sn) / (w / sw) - 1.0) for n, w in zip(narrow, wide)]
    cv, ci, cf = (x**3 / (x * x + 1e-4) for x in d)
    mv, mi = (cv < cf).astype(float), (ci < cf).astype(float)
    qv, qi = (cv / cf) * mv + (cf / cv) * (1 - mv), (ci / cf) * mi + (cf / ci) * (1 - mi)
    both = cv * cv + ci * ci
    ref = ((cv * cv / both) * qv + (ci * ci / both) * qi).sum(axis=1)
    assert np.allclose(K.qcb_rows(*filtered, V._QCB_NARROW, V._QCB_WIDE, sn, sw), ref, rtol=1e-12, atol=0)


def test_qcv_blocks_match_blockwise_sums_with_a_partial_last_block() -> None:
    v, _, f = _images((37, 50))  # 3 x 4 blocks of 16, the last ones partial
    error = v - f
    saliency, squared = K.qcv_blocks(np.pad(v, 1), error, 16)
    gx, gy = ndimage.correlate(v, SOBEL_X, mode="constant"), ndimage.correlate(v, SOBEL_X.T, mode="constant")
    s5 = np.sqrt(gx * gx + gy * gy) ** 5
    for br in range(3):
        for bc in range(4):
            block = np.s_[16 * br : 16 * br + 16, 16 * bc : 16 * bc + 16]
            assert saliency[br, bc] == pytest.approx(s5[block].sum(), rel=1e-12)
            assert squared[br, bc] == pytest.approx((error[block] ** 2).sum(), rel=1e-12)


def test_shared_spectra_give_the_filter_of_a_difference() -> None:
    v, _, f = _images((40, 30))
    half = V._qcv_csf(v.shape)
    direct = sp_fft.irfft2(sp_fft.rfft2(v - f) * half, s=v.shape)
    assert np.allclose(M.filtered(M.spectrum(v) - M.spectrum(f), half, v.shape), direct, rtol=0, atol=1e-10)


def test_rounding_stretching_and_histograms_equal_numpy() -> None:
    x = np.array([np.nan, 0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 254.5, -np.inf, np.inf])
    ref = np.sign(x) * np.floor(np.abs(x) + 0.5)
    got = M.round_away(x)
    assert np.array_equal(got, ref, equal_nan=True) and not np.signbit(got[2])  # -0.0 rounds to +0.0 as in NumPy
    v = RNG.uniform(3, 9, (30, 20))
    assert np.array_equal(V._stretched(v), ref_stretch := np.sign(s := (v - v.min()) / (v.max() - v.min()) * 255)
                          * np.floor(np.abs(s) + 0.5))  # fmt: skip
    assert np.isnan(V._liu_normalise(np.full((3, 3), 7.0))).all() and not V._stretched_levels(np.full((3, 3), 7.0)).any()
    a, b = ref_stretch.ravel(), np.round(RNG.uniform(0, 255, 600))
    joint = np.bincount((a.astype(int) * 256 + b.astype(int)), minlength=65536).reshape(256, 256)
    assert np.array_equal(M.joint_histogram256(a, b), joint)
    assert np.array_equal(M.histogram256(b), np.bincount(b.astype(int), minlength=256))
    with pytest.raises(ValueError, match="outside 0..255"):
        M.joint_histogram256(np.array([256.0]), np.array([0.0]))


def test_rgb2gray_and_average_gradient_equal_numpy() -> None:
    rgb = RNG.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    x = rgb.astype(np.float64)
    grey = M.RGB2GRAY[0] * x[..., 0] + M.RGB2GRAY[1] * x[..., 1] + M.RGB2GRAY[2] * x[..., 2]
    assert np.array_equal(M.rgb2gray(rgb, rounded=False), grey)
    assert np.array_equal(M.rgb2gray(rgb, rounded=True), np.clip(np.sign(grey) * np.floor(np.abs(grey) + 0.5), 0, 255))
    for img in (grey, grey[:1], grey[:, :1]):
        gx = np.gradient(img, axis=1) if img.shape[1] > 1 else np.zeros_like(img)
        gy = np.gradient(img, axis=0) if img.shape[0] > 1 else np.zeros_like(img)
        assert np.array_equal(K.mean_square_gradient(np.ascontiguousarray(img)), np.sqrt((gx * gx + gy * gy) / 2))


def _nabf_numpy(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Kumar's Nabf on whole arrays: mirrored Sobel / 8, strength and angle maps, quality everywhere."""
    edges = []
    for x in (f, a, b):
        gv = ndimage.correlate(x, SOBEL_X / 8, mode="mirror")
        gh = ndimage.correlate(x, SOBEL_X.T / 8, mode="mirror")
        with np.errstate(invalid="ignore", divide="ignore"):
            edges.append((np.sqrt(gh * gh + gv * gv), np.where((gv == 0) & (gh == 0), 0.0, np.arctan(gv / gh))))
    (gf, af), sources = edges[0], edges[1:]
    loss, weights = [], []
    for gx, ax in sources:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where((gx == 0) | (gf == 0), 0.0, np.minimum(gx, gf) / np.maximum(gx, gf))
        align = np.abs(np.abs(ax - af) - np.pi / 2) * 2 / np.pi
        qg = 0.9999 / (1 + np.exp(-19 * (ratio - 0.5)))
        qa = 0.9995 / (1 + np.exp(-22 * (align - 0.5)))
        loss.append(1 - np.sqrt(qg * qa))
        weights.append(np.where(gx >= 2, gx**1.5, 0.001))
    artefact = (gf > sources[0][0]) & (gf > sources[1][0])
    num = (artefact * (loss[0] * weights[0] + loss[1] * weights[1])).sum()
    return float(num / (weights[0] + weights[1]).sum())


@pytest.mark.parametrize("shape", SHAPES)
def test_nabf_rows_match_the_artefact_measure_on_whole_arrays(shape) -> None:
    v, i, f = _images(shape)
    flat = np.full(shape, 90.0)
    across = np.add.outer(np.zeros(shape[0]), np.arange(shape[1])) * 3.0  # gv alone: angles of pi/2
    down = np.add.outer(np.arange(shape[0]), np.zeros(shape[1])) * 3.0  # gh alone: angles of 0
    for fused, a, b in ((f, v, i), (i, v, f), (across, flat, v), (-across, v, flat), (down, across, v), (f, flat, flat)):
        got, ref = nabf_as_called(fused, a, b), _nabf_numpy(fused, a, b)
        assert got == pytest.approx(ref, rel=1e-12, abs=0)
    assert nabf_as_called(flat, flat, flat) == 0.0  # no artefact pixel: the numerator is exactly 0
