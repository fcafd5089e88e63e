"""The ``cddfuse`` convention: the Python evaluator shipped with CDDFuse, which published tables use.

Formulas and quirks are described in ``docs/metrics.md``. Arithmetic is
float64, as the reference's VIF and MI were, except SSIM, which reproduces the
reference's own float32 arithmetic (old scikit-image keeps float32 input in
float32). The loops run compiled (:mod:`benchmark.metrics._kernels`) on the
CPU; sums are formed per row and added in a fixed order, so values do not
depend on the thread count.

Grey levels: colour files become ``round(0.299 R + 0.587 G + 0.114 B)`` (half
to even) before scoring (:func:`benchmark.data.to_grey`).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from benchmark.metrics import _kernels as K
from benchmark.metrics.core import Convention, ImageTooSmall, MetricInfo
from benchmark.metrics.core import ratio as _ratio


class _Images:
    """Validated images of one evaluation with the intermediate results several metrics share."""

    def __init__(self, f: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None):
        self.f, self.a, self.b = f, a, b
        self.sources = () if a is None else (a, b)

    @cached_property
    def histograms(self) -> tuple[np.ndarray, np.ndarray]:
        """Histogram of f's grey levels (rounded half to even) and joint histograms with each source."""
        return K.histograms(self.f, self.sources) if self.sources else K.histograms(self.f, (self.f,))

    @cached_property
    def neighbour(self) -> np.ndarray:
        """Sums of squared row and column neighbour differences and of AG terms."""
        return K.neighbour_rows(self.f).sum(axis=1)

    @cached_property
    def centred(self) -> np.ndarray:
        """Centred second moments of the images and their differences (``_kernels.centred_rows``)."""
        f, a, b = self.f, self.a, self.b
        return K.centred_rows(f, a, b, f.mean(), a.mean(), b.mean()).sum(axis=1)


# ---------------------------------------------------------------- no-reference


def _en(x: _Images) -> float:
    """Entropy in bits of the 256-level histogram of ``round(f)``."""
    counts = x.histograms[0]
    p = counts[counts > 0] / x.f.size
    return float(-(p * np.log2(p)).sum())


def _sd(x: _Images) -> float:
    """Population standard deviation of ``f``."""
    f = x.f
    return float(np.sqrt(((f - f.mean()) ** 2).mean()))


def _sf(x: _Images) -> float:
    """Spatial frequency ``sqrt(RF^2 + CF^2)`` from row and column neighbour differences."""
    h, w = x.f.shape
    rf2 = x.neighbour[0] / (h * (w - 1)) if w > 1 else 0.0
    cf2 = x.neighbour[1] / ((h - 1) * w) if h > 1 else 0.0
    return float(np.sqrt(rf2 + cf2))


def _ag(x: _Images) -> float:
    """Average gradient ``mean(sqrt((Gx^2 + Gy^2) / 2))`` with ``np.gradient`` differences."""
    return float(x.neighbour[2] / x.f.size)


# ------------------------------------------------------------ with sources


def _mutual_information(joint: np.ndarray) -> float:
    """Mutual information (nats) from a joint grey-level histogram."""
    pxy = joint / joint.sum()
    px, py = pxy.sum(axis=1), pxy.sum(axis=0)
    i, j = np.nonzero(joint)
    p = pxy[i, j]
    return float((p * np.log(p / (px[i] * py[j]))).sum())


def _mi(x: _Images) -> float:
    """Mutual information ``MI(F,A) + MI(F,B)`` in nats."""
    joint = x.histograms[1]
    return _mutual_information(joint[0]) + _mutual_information(joint[1])


def _scd(x: _Images) -> float:
    """Sum of correlations of differences ``corr(A, F-B) + corr(B, F-A)``; NaN for 0/0."""
    m = x.centred
    return _ratio(m[7], math.sqrt(m[1] * m[5])) + _ratio(m[8], math.sqrt(m[2] * m[6]))


def _cc(x: _Images) -> float:
    """Mean correlation coefficient ``(corr(A,F) + corr(B,F)) / 2``; NaN for 0/0."""
    m = x.centred
    return (_ratio(m[3], math.sqrt(m[1] * m[0])) + _ratio(m[4], math.sqrt(m[2] * m[0]))) / 2


def _mse(x: _Images) -> float:
    """Mean squared error to the sources, averaged: ``(MSE(A,F) + MSE(B,F)) / 2``."""
    m, n = x.centred, x.f.size
    return float((m[9] / n + m[10] / n) / 2)


def _psnr(x: _Images) -> float:
    """``10 log10(max(F)^2 / MSE)`` with the peak taken from the fused image; ``inf`` when MSE is 0."""
    err = _mse(x)
    return math.inf if err == 0 else 10 * math.log10(float(x.f.max()) ** 2 / err)


# ----------------------------------------------------------------------- VIF

_VIF_SIGMA_N = 2.0  # noise variance of the VIFF model


def _gauss_1d(n: int) -> np.ndarray:
    """Normalised 1-D Gaussian of ``n`` taps, sigma ``n / 5``: the separable factor of the 2-D window."""
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2
    g = np.exp(-(t * t) / (2 * (n / 5.0) ** 2))
    return g / g.sum()


def vifp(refs: tuple[np.ndarray, ...], dist: np.ndarray) -> np.ndarray:
    """Pixel-domain multi-scale VIF of ``dist`` (H, W) against each of ``refs`` (a tuple of (H, W)), one
    ratio of sums over the four scales per reference (NaN for 0/0)."""
    if min(dist.shape) < 32:
        raise ImageTooSmall(f"VIF needs images of at least 32 x 32 pixels, got {dist.shape}")
    num = np.zeros(len(refs))
    den = np.zeros(len(refs))
    for scale in range(1, 5):
        g = _gauss_1d(2 ** (5 - scale) + 1)
        if scale > 1:
            refs = tuple(K.gauss_down(r, g) for r in refs)
            dist = K.gauss_down(dist, g)
        s_num, s_den = K.vif_scale(refs, dist, g, _VIF_SIGMA_N)
        num += s_num.sum(axis=1)
        den += s_den.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _vif(x: _Images) -> float:
    """Visual information fidelity (VIFF, pixel domain) summed over sources: ``vifp(A,F) + vifp(B,F)``,
    each 0/0 counted as 1 (the evaluator's rule)."""
    vif = vifp(x.sources, x.f)
    return float(np.where(np.isnan(vif), 1.0, vif).sum())


# ---------------------------------------------------------------- Qabf, SSIM


def _qabf(x: _Images) -> float:
    """Xydeas-Petrovic edge preservation ``Q^{AB/F}`` with the reference's tie quirk (G = gF where gX == gF)."""
    num, den = K.qabf_rows(x.f, x.a, x.b)
    return _ratio(num.sum(), den.sum())


_SSIM_WIN = 7


def _ssim(x: _Images) -> float:
    """Structural similarity summed over sources ``ssim(F,A) + ssim(F,B)``, old scikit-image float convention.

    7 x 7 box window, sample covariance, data range 2, float32 arithmetic, map
    averaged without a 3-pixel border (exactly the windows inside the image).
    """
    f = x.f
    if min(f.shape) < _SSIM_WIN:
        raise ImageTooSmall(f"SSIM needs images of at least 7 x 7 pixels, got {f.shape}")
    rows = K.ssim_rows(f, x.sources)
    n = (f.shape[0] - _SSIM_WIN + 1) * (f.shape[1] - _SSIM_WIN + 1)
    return float((rows.sum(axis=1) / n).sum())


# ------------------------------------------------------------------ the table


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("EN", _en, True, False, "entropy (bits) of the 256-level grey histogram"),
        MetricInfo("SD", _sd, True, False, "population standard deviation of grey levels", decimals=2),
        MetricInfo("SF", _sf, True, False, "spatial frequency from row and column neighbour differences", decimals=2),
        MetricInfo("AG", _ag, True, False, "average gradient, mean of sqrt((Gx^2 + Gy^2) / 2)"),
        MetricInfo("MI", _mi, True, True, "mutual information MI(F,A) + MI(F,B) in nats"),
        MetricInfo("SCD", _scd, True, True, "sum of correlations of differences corr(A,F-B) + corr(B,F-A)"),
        MetricInfo("VIF", _vif, True, True, "pixel-domain visual information fidelity, summed over sources"),
        MetricInfo("Qabf", _qabf, True, True, "Xydeas-Petrovic Sobel edge preservation"),
        MetricInfo("SSIM", _ssim, True, True, "SSIM(F,A) + SSIM(F,B), 7x7 box window, data range 2"),
        MetricInfo("CC", _cc, True, True, "mean Pearson correlation of F with each source"),
        MetricInfo("PSNR", _psnr, True, True, "10 log10(max(F)^2 / MSE) with the peak of F", decimals=2),
        MetricInfo("MSE", _mse, False, True, "mean squared error to each source, averaged", decimals=1),
    )
}

def grey(rgb: np.ndarray) -> np.ndarray:
    """The evaluator's grey levels of a colour image: ``round(0.299 R + 0.587 G + 0.114 B)``, half to even."""
    from benchmark.data import to_grey

    return to_grey(rgb)


CONVENTION = Convention(
    "cddfuse",
    "the Python evaluator of CDDFuse-era tables: MATLAB-derived formulas, old scikit-image float SSIM",
    METRICS,
    _Images,
    grey,
)
