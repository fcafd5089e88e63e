"""A plain, slow, independent implementation of the cddfuse convention (docs/metrics.md) for cross-checks.

Written directly from the spec with NumPy, SciPy and scikit-image, in float64
(SSIM through scikit-image on float32, as the reference ran it). It shares no
code with benchmark.metrics.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity


def en(f):
    hist = np.bincount(np.round(f).astype(np.uint8).ravel(), minlength=256) / f.size
    hist = hist[hist > 0]
    return float(-(hist * np.log2(hist)).sum())


def sd(f):
    return float(np.std(f))


def sf(f):
    rf = np.mean((f[:, 1:] - f[:, :-1]) ** 2)
    cf = np.mean((f[1:, :] - f[:-1, :]) ** 2)
    return float(np.sqrt(rf + cf))


def ag(f):
    gy, gx = np.gradient(f)
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2)))


def _mi(x, y):
    joint, _, _ = np.histogram2d(np.round(x).ravel(), np.round(y).ravel(), bins=256, range=[[-0.5, 255.5]] * 2)
    p = joint / joint.sum()
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())


def mi(f, a, b):
    return _mi(f, a) + _mi(f, b)


def _corr(x, y):
    x, y = x - x.mean(), y - y.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y)))


def scd(f, a, b):
    return _corr(a, f - b) + _corr(b, f - a)


def cc(f, a, b):
    return (_corr(a, f) + _corr(b, f)) / 2


def mse(f, a, b):
    return float((np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2)


def psnr(f, a, b):
    return float(10 * np.log10(np.max(f) ** 2 / mse(f, a, b)))


def _gauss(n):
    m = (n - 1) / 2
    y, x = np.ogrid[-m : m + 1, -m : m + 1]
    h = np.exp(-(x * x + y * y) / (2 * (n / 5.0) ** 2))
    return h / h.sum()


def _vifp(ref, dist):
    num = den = 0.0
    for scale in range(1, 5):
        win = _gauss(2 ** (5 - scale) + 1)
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = convolve2d(ref * ref, win, mode="valid") - mu1 * mu1
        s2 = convolve2d(dist * dist, win, mode="valid") - mu2 * mu2
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        s1[s1 < 0] = 0
        s2[s2 < 0] = 0
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        low = s1 < 1e-10
        g[low], sv[low], s1[low] = 0, s2[low], 0
        low = s2 < 1e-10
        g[low], sv[low] = 0, 0
        neg = g < 0
        sv[neg], g[neg] = s2[neg], 0
        sv[sv <= 1e-10] = 1e-10
        num += np.sum(np.log10(1 + g * g * s1 / (sv + 2)))
        den += np.sum(np.log10(1 + s1 / 2))
    v = num / den
    return 1.0 if np.isnan(v) else float(v)


def vif(f, a, b):
    return _vifp(a, f) + _vifp(b, f)


def _edges(x):
    sx = convolve2d(x, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float), mode="same")
    sy = convolve2d(x, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float), mode="same")
    g = np.sqrt(sx * sx + sy * sy)
    a = np.full_like(x, math.pi / 2)
    nz = sx != 0
    a[nz] = np.arctan(sy[nz] / sx[nz])
    return g, a


def qabf(f, a, b):
    gf, af = _edges(f)
    total = np.zeros_like(f)
    for src in (a, b):
        gx, ax = _edges(src)
        big_g = np.zeros_like(f)
        big_g[gx > gf] = gf[gx > gf] / gx[gx > gf]
        big_g[gx == gf] = gf[gx == gf]
        big_g[gx < gf] = gx[gx < gf] / gf[gx < gf]
        align = 1 - np.abs(ax - af) / (math.pi / 2)
        q = 0.9994 / (1 + np.exp(-15 * (big_g - 0.5))) * 0.9879 / (1 + np.exp(-22 * (align - 0.8)))
        total += q * gx
    ga, _ = _edges(a)
    gb, _ = _edges(b)
    return float(total.sum() / (ga + gb).sum())


def ssim(f, a, b):
    def one(x, y):
        return structural_similarity(
            x.astype(np.float32), y.astype(np.float32), win_size=7, data_range=2.0,
            gaussian_weights=False, use_sample_covariance=True,
        )  # fmt: skip

    return float(one(f, a) + one(f, b))


ALL = {"EN": en, "SD": sd, "SF": sf, "AG": ag, "MI": mi, "SCD": scd, "VIF": vif, "Qabf": qabf,
       "SSIM": ssim, "CC": cc, "PSNR": psnr, "MSE": mse}  # fmt: skip
NO_REFERENCE = {"EN", "SD", "SF", "AG"}
