"""Infrared-visible fusion metrics under the ``cddfuse`` convention.

Every metric is a pure function of 2-D grey images (NumPy arrays or torch
tensors, any real dtype) holding grey levels 0..255, returning a Python float.
``f`` is the fused image, ``a`` the infrared and ``b`` the visible source.
Formulas and quirks follow ``specs/metrics.md`` (the Python evaluator shipped
with CDDFuse, with scikit-image's old float SSIM), which is what published
tables use.

Arithmetic is float64, as the reference's VIF and MI were, except SSIM, which
reproduces the reference's own float32 arithmetic (scikit-image keeps float32
input in float32). The loops run compiled (:mod:`benchmark._kernels`) on the
CPU; sums are formed per row and added in a fixed order, so values do not
depend on the thread count.

Use :func:`evaluate` for several metrics at once; :data:`METRICS` holds each
metric's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from benchmark import _kernels as K

ArrayLike = Any  # np.ndarray or torch.Tensor, 2-D


def _as_image(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a C-contiguous float64 2-D array, checking shape and range."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D grey image, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: image is empty")
    lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > 255:
        raise ValueError(f"{name}: grey levels must be finite and within 0..255, got {lo}..{hi}")
    return arr


def _images(*pairs: tuple[ArrayLike, str]) -> list[np.ndarray]:
    """Convert several images, requiring equal shapes."""
    out = [_as_image(x, name) for x, name in pairs]
    if len({t.shape for t in out}) > 1:
        shapes = ", ".join(f"{n}={t.shape}" for t, (_, n) in zip(out, pairs))
        raise ValueError(f"images differ in shape: {shapes}")
    return out


def _ratio(num: float, den: float) -> float:
    """``num / den`` with IEEE semantics (0/0 is NaN), as NumPy float division gives."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(num) / np.float64(den))


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


def _vifp_many(refs: tuple[np.ndarray, ...], dist: np.ndarray) -> np.ndarray:
    """Pixel-domain multi-scale VIF of ``dist`` (H, W) against each of ``refs`` (a tuple of (H, W)); 1.0 where NaN."""
    if min(dist.shape) < 32:
        raise ValueError(f"VIF needs images of at least 32 x 32 pixels, got {dist.shape}")
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
        vif = num / den
    return np.where(np.isnan(vif), 1.0, vif)


def _vif(x: _Images) -> float:
    """Visual information fidelity (VIFF, pixel domain) summed over sources: ``vifp(A,F) + vifp(B,F)``."""
    return float(_vifp_many(x.sources, x.f).sum())


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
        raise ValueError(f"SSIM needs images of at least 7 x 7 pixels, got {f.shape}")
    rows = K.ssim_rows(f, x.sources)
    n = (f.shape[0] - _SSIM_WIN + 1) * (f.shape[1] - _SSIM_WIN + 1)
    return float((rows.sum(axis=1) / n).sum())


# ------------------------------------------------------------------ registry


def _public(impl: Callable[..., float], needs_sources: bool) -> Callable[..., float]:
    """Wrap an implementation into the public function: validate, convert, call."""

    if needs_sources:

        def fn(f: ArrayLike, a: ArrayLike, b: ArrayLike) -> float:
            return impl(_Images(*_images((f, "fused"), (a, "ir"), (b, "vis"))))

    else:

        def fn(f: ArrayLike) -> float:
            return impl(_Images(_as_image(f, "fused")))

    fn.__name__ = fn.__qualname__ = impl.__name__.lstrip("_")
    fn.__doc__ = impl.__doc__
    return fn


@dataclass(frozen=True)
class MetricInfo:
    """A metric and its metadata.

    Attributes:
        name: the column name used in tables.
        impl: the implementation, taking the validated images of one evaluation.
        higher_is_better: direction of improvement.
        needs_sources: whether the metric takes the infrared and visible sources.
        definition: one line, for tables and ``--help``.
    """

    name: str
    impl: Callable[..., float]
    higher_is_better: bool
    needs_sources: bool
    definition: str

    @property
    def fn(self) -> Callable[..., float]:
        """The public function (NumPy array or torch tensor input, validated)."""
        return _public(self.impl, self.needs_sources)


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("EN", _en, True, False, "entropy (bits) of the 256-level grey histogram"),
        MetricInfo("SD", _sd, True, False, "population standard deviation of grey levels"),
        MetricInfo("SF", _sf, True, False, "spatial frequency from row and column neighbour differences"),
        MetricInfo("AG", _ag, True, False, "average gradient, mean of sqrt((Gx^2 + Gy^2) / 2)"),
        MetricInfo("MI", _mi, True, True, "mutual information MI(F,A) + MI(F,B) in nats"),
        MetricInfo("SCD", _scd, True, True, "sum of correlations of differences corr(A,F-B) + corr(B,F-A)"),
        MetricInfo("VIF", _vif, True, True, "pixel-domain visual information fidelity, summed over sources"),
        MetricInfo("Qabf", _qabf, True, True, "Xydeas-Petrovic Sobel edge preservation"),
        MetricInfo("SSIM", _ssim, True, True, "SSIM(F,A) + SSIM(F,B), 7x7 box window, data range 2"),
        MetricInfo("CC", _cc, True, True, "mean Pearson correlation of F with each source"),
        MetricInfo("PSNR", _psnr, True, True, "10 log10(max(F)^2 / MSE) with the peak of F"),
        MetricInfo("MSE", _mse, False, True, "mean squared error to each source, averaged"),
    )
}

en, sd, sf, ag = (METRICS[n].fn for n in ("EN", "SD", "SF", "AG"))
mi, scd, vif, qabf, ssim, cc, psnr, mse = (
    METRICS[n].fn for n in ("MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "MSE")
)

CONVENTIONS: dict[str, dict[str, MetricInfo]] = {"cddfuse": METRICS}


def _convention(convention: str) -> dict[str, MetricInfo]:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown metric convention '{convention}'; valid: {', '.join(CONVENTIONS)}")
    return CONVENTIONS[convention]


def metric_names(convention: str = "cddfuse") -> list[str]:
    """Metric names of a convention, in table order."""
    return list(_convention(convention))


def resolve_metrics(metrics: Iterable[str] | None = None, convention: str = "cddfuse") -> list[MetricInfo]:
    """Look up metric names (case-insensitive); ``None`` means all, in table order."""
    table = _convention(convention)
    if metrics is None:
        return list(table.values())
    by_lower = {k.lower(): v for k, v in table.items()}
    unknown = [n for n in metrics if n.lower() not in by_lower]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(table)}")
    return [by_lower[n.lower()] for n in metrics]


def evaluate(
    fused: ArrayLike,
    ir: ArrayLike,
    vis: ArrayLike,
    metrics: Iterable[str] | None = None,
    convention: str = "cddfuse",
) -> dict[str, float]:
    """Score one fused image against its sources.

    Args:
        fused: fused grey image, 2-D, levels 0..255.
        ir: infrared grey image, same shape.
        vis: visible grey image, same shape.
        metrics: names to compute (case-insensitive); all when ``None``.
        convention: metric convention; only ``cddfuse`` exists.

    Returns:
        ``{name: value}`` in the requested (or table) order; NaN where the convention yields NaN.
    """
    chosen = resolve_metrics(metrics, convention)
    images = _Images(*_images((fused, "fused"), (ir, "ir"), (vis, "vis")))
    return {m.name: m.impl(images) for m in chosen}
