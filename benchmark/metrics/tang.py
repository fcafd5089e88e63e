"""The ``tang`` convention: the MATLAB scripts of Tang Linfeng's evaluation toolkit (SeAFusion, PIAFusion
and many later tables), ``analysis_Reference`` with ``easy = 1`` plus Nabf.

Formulas and quirks are described in ``docs/metrics.md``. Colour images become
uint8 grey with MATLAB's ``rgb2gray`` before anything else. The toolkit's
SSIM (MATLAB's built-in ``ssim``), MS-SSIM and FMI were not reproduced and are
left out. VIF and Qabf use the compiled kernels they share with ``cddfuse``:
the two toolkits compute them alike (``tang`` keeps VIF's 0/0 as NaN).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from benchmark.metrics import _kernels as K
from benchmark.metrics import matlab as M
from benchmark.metrics.cddfuse import vifp
from benchmark.metrics.core import Convention, MetricInfo
from benchmark.metrics.core import ratio as _ratio


class _Images:
    """Grey images of one evaluation, infrared first as the toolkit passes them, with shared results."""

    def __init__(self, f: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None):
        self.f, self.ir, self.vi = f, a, b

    @cached_property
    def hist(self) -> np.ndarray:
        return M.histogram256(self.f)

    @cached_property
    def mse(self) -> float:
        """``(MSE(ir, F) + MSE(vi, F)) / 2`` on images divided by 255."""
        f = self.f / 255
        return float((((f - self.ir / 255) ** 2).mean() + ((f - self.vi / 255) ** 2).mean()) / 2)


def _corr2(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB ``corr2``: Pearson correlation over all pixels; NaN for 0/0."""
    xc, yc = x - x.mean(), y - y.mean()
    return _ratio((xc * yc).sum(), math.sqrt((xc * xc).sum() * (yc * yc).sum()))


def _en(x: _Images) -> float:
    """MATLAB ``entropy`` of the uint8 fused image (bits)."""
    return M.entropy_bits(x.hist)


def _sf(x: _Images) -> float:
    """``sqrt(RF^2 + CF^2)``, each the root mean square of the neighbour differences along one axis."""
    f = x.f
    return float(math.sqrt((np.diff(f, axis=0) ** 2).mean() + (np.diff(f, axis=1) ** 2).mean()))


def _sd(x: _Images) -> float:
    """Population standard deviation of F."""
    return float(x.f.std())


def _psnr(x: _Images) -> float:
    """``20 log10(255 / sqrt(MSE))`` with the MSE on the 0..1 scale (the toolkit's quirk)."""
    return math.inf if x.mse == 0 else 20 * math.log10(255 / math.sqrt(x.mse))


def _mse(x: _Images) -> float:
    """``(MSE(ir, F) + MSE(vi, F)) / 2`` on images divided by 255."""
    return x.mse


def _joint_entropy(f: np.ndarray, s: np.ndarray) -> float:
    """Joint entropy (bits) with the uint8 ``+1`` saturation: levels 254 and 255 share a bin."""
    fi, si = np.minimum(f, 254).astype(np.int64), np.minimum(s, 254).astype(np.int64)
    joint = np.bincount((fi * 256 + si).ravel(), minlength=256 * 256)
    return M.entropy_bits(joint)


def _mi(x: _Images) -> float:
    """``(H_ir + H_F - H_F,ir) + (H_vi + H_F - H_F,vi)`` in bits, joint bins merged at 254/255."""
    hf = M.entropy_bits(x.hist)
    return sum(M.entropy_bits(M.histogram256(s)) + hf - _joint_entropy(x.f, s) for s in (x.ir, x.vi))


def _vif(x: _Images) -> float:
    """``vifp(ir, F) + vifp(vi, F)``, LIVE pixel-domain multiscale VIF; NaN where a ratio is 0/0."""
    return float(vifp((x.ir, x.vi), x.f).sum())


def _ag(x: _Images) -> float:
    """Average gradient ``sum sqrt((gx^2 + gy^2) / 2) / ((M-1)(N-1))``, MATLAB ``gradient``."""
    return M.average_gradient(x.f)


def _cc(x: _Images) -> float:
    """``(corr(ir, F) + corr(vi, F)) / 2``."""
    return (_corr2(x.ir, x.f) + _corr2(x.vi, x.f)) / 2


def _scd(x: _Images) -> float:
    """``corr2(F - vi, ir) + corr2(F - ir, vi)``."""
    return _corr2(x.f - x.vi, x.ir) + _corr2(x.f - x.ir, x.vi)


def _qabf(x: _Images) -> float:
    """Xydeas-Petrovic Qabf on grey levels (tie quirk: G = gF where gX == gF)."""
    num, den = K.qabf_rows(x.f, x.ir, x.vi)
    return _ratio(num.sum(), den.sum())


def nabf_as_called(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Kumar's modified artefact measure ``Nabf(F', A', B')`` for fused ``f`` and sources ``a``, ``b``: Sobel
    / 8 with mirrored borders (``sobel_fn``), weights ``g^1.5`` where ``g >= 2`` else 0.001."""
    framed = (np.pad(np.asarray(x, dtype=np.float64), 1, mode="reflect") for x in (f, a, b))
    num, den = K.nabf_rows(*framed)
    return _ratio(num.sum(), den.sum())


def _nabf(x: _Images) -> float:
    """Nabf as the toolkit calls it: ``analysis_nabf(ir, vi, F)``, so the infrared image takes the fused
    image's place and (vi, F) are the sources."""
    return nabf_as_called(x.ir, x.vi, x.f)


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("EN", _en, True, False, "entropy (bits) of the uint8 fused image"),
        MetricInfo("SF", _sf, True, False, "spatial frequency, root mean square differences per axis", decimals=2),
        MetricInfo("SD", _sd, True, False, "population standard deviation of F", decimals=2),
        MetricInfo("PSNR", _psnr, True, True, "20 log10(255 / sqrt(MSE)) with the MSE on the 0..1 scale", decimals=2),
        MetricInfo("MSE", _mse, False, True, "mean squared error to each source on the 0..1 scale, averaged", decimals=4),
        MetricInfo("MI", _mi, True, True, "MI(ir,F) + MI(vi,F) in bits, joint bins 254 and 255 merged"),
        MetricInfo("VIF", _vif, True, True, "pixel-domain multiscale VIF, vifp(ir,F) + vifp(vi,F)"),
        MetricInfo("AG", _ag, True, False, "average gradient, sum over (M-1)(N-1)"),
        MetricInfo("CC", _cc, True, True, "mean Pearson correlation of F with each source"),
        MetricInfo("SCD", _scd, True, True, "sum of correlations of differences corr(F-vi,ir) + corr(F-ir,vi)"),
        MetricInfo("Qabf", _qabf, True, True, "Xydeas-Petrovic Sobel edge preservation"),
        MetricInfo("Nabf", _nabf, False, True, "Kumar's artefact measure as the script calls it (ir in F's place)"),
    )
}

CONVENTION = Convention(
    "tang",
    "Tang's MATLAB evaluation scripts (SeAFusion, PIAFusion): colour to rgb2gray uint8, MATLAB quirks kept",
    METRICS,
    _Images,
    grey=lambda rgb: M.rgb2gray(rgb, rounded=True),
)
