"""The ``vifb`` convention: the 13 metrics of VIFB's MATLAB toolkit (Zhang et al., CVPRW 2020).

Formulas, quirks and colour handling are described in ``docs/metrics.md``.
Sources are passed to the toolkit as (visible, infrared, fused); a colour fused
image is scored per channel against the matching source channels and the
channel values are averaged, except for SF, AG and EI, which read the fused
array whole. A grey fused image with a colour source, where VIFB's own code
fails, is scored on sources turned to uint8 grey with MATLAB's ``rgb2gray``.
Arithmetic is float64 with NumPy, SciPy and compiled loops (SSIM's moments,
the Gaussian filters and Chen-Blum's quality map, Chen-Varshney's blocks); Qcb
and Qcv share the FFTs of their normalised images; Qabf uses the compiled
kernel it shares with ``cddfuse`` (the toolkit's Qabf is that one on images
times 255).
"""

from __future__ import annotations

import functools
import math
from functools import cached_property

import numpy as np

from benchmark.metrics import _kernels as K
from benchmark.metrics import matlab as M
from benchmark.metrics.core import Convention, ImageTooSmall, MetricInfo
from benchmark.metrics.core import ratio as _ratio


class _Images:
    """The arrays of one evaluation: the fused array as given and the per-channel (visible, infrared, fused)
    triples that the toolkit's per-channel metrics score."""

    def __init__(self, f: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None):
        self.f = f
        self.planes = [f[..., k] for k in range(f.shape[2])] if f.ndim == 3 else [f]
        if a is None:
            self.triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        elif f.ndim == 2:  # the rule for a grey fused image: colour sources to uint8 grey first
            self.triples = [(M.grey_uint8(b), M.grey_uint8(a), f)]
        else:
            if b.ndim != 3:
                raise ValueError("vifb: a colour fused image needs a colour visible image (VIFB scores it per channel)")
            self.triples = [(b[..., k], a[..., k] if a.ndim == 3 else a, f[..., k]) for k in range(3)]

    def per_channel(self, metric) -> float:
        """The toolkit's dispatch: the metric per channel triple, averaged over channels."""
        return float(np.mean([metric(*t) for t in self.triples]))

    @cached_property
    def normalised(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per channel, the (visible, infrared, fused) images as Qcb and Qcv normalise them."""
        return [tuple(_liu_normalise(x) for x in t) for t in self.triples]

    @cached_property
    def spectra(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per channel, the real FFTs of the normalised (visible, infrared, fused) images."""
        return [tuple(M.threaded(M.spectrum, t)) for t in self.normalised]


# ------------------------------------------------------------ of F alone


def _entropy_plane(f: np.ndarray) -> float:
    return M.entropy_bits(M.histogram256(np.floor(f)))


def _entropy(x: _Images) -> float:
    """Entropy (bits) of the 256-bin histogram of ``floor(F)``, per channel, averaged."""
    return float(np.mean([_entropy_plane(p) for p in x.planes]))


def _variance(x: _Images) -> float:
    """Despite its name, the population standard deviation of F, per channel, averaged."""
    return float(np.mean([p.std() for p in x.planes]))


def _spatial_frequency(x: _Images) -> float:
    """SF of F with its channels side by side (seams included), both sums over the full pixel count."""
    f = np.concatenate(x.planes, axis=1)
    n = f.size
    return float(math.sqrt((np.diff(f, axis=1) ** 2).sum() / n + (np.diff(f, axis=0) ** 2).sum() / n))


def _avg_gradient(x: _Images) -> float:
    """Average gradient ``sum sqrt((gx^2 + gy^2) / 2) / ((M-1)(N-1))``, per channel, averaged."""
    return float(np.mean([M.average_gradient(p) for p in x.planes]))


def _edge_intensity(x: _Images) -> float:
    """Mean Sobel magnitude of F, replicate borders, over all pixels and channels."""
    return float(sum(K.sobel_magnitude(np.pad(p, 1, mode="edge")).sum() for p in x.planes) / x.f.size)


# ------------------------------------------------------------ with sources


def _stretched(x: np.ndarray) -> np.ndarray:
    """``round(255 (x - min) / (max - min))`` (MATLAB rounding), NaN for a constant image (0/0)."""
    flat = np.ascontiguousarray(x, dtype=np.float64).ravel()
    return K.stretch_round(flat, flat.min(), flat.max()).reshape(x.shape)


def _stretched_levels(v: np.ndarray) -> np.ndarray:
    """MI's levels: :func:`_stretched`, all zero for a constant image."""
    return np.zeros_like(v) if v.min() == v.max() else _stretched(v)


def _mutinf_levels(x: np.ndarray, f: np.ndarray) -> float:
    """MI in nats between two arrays of stretched levels."""
    joint = M.joint_histogram256(x, f)
    p = joint / joint.sum()

    def h(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return h(p.sum(axis=1)) + h(p.sum(axis=0)) - h(p.ravel())


def _mutinf(x: _Images) -> float:
    """MI(visible, F) + MI(infrared, F) in nats on min-max stretched levels, per channel, averaged."""

    def one(v: np.ndarray, i: np.ndarray, f: np.ndarray) -> float:
        lf = _stretched_levels(f)
        return _mutinf_levels(_stretched_levels(v), lf) + _mutinf_levels(_stretched_levels(i), lf)

    return x.per_channel(one)


def _qabf(x: _Images) -> float:
    """Xydeas-Petrovic Qabf on the images times 255 (so the tie quirk gives Qg = 0.9994), per channel."""

    def one(v: np.ndarray, i: np.ndarray, f: np.ndarray) -> float:
        num, den = K.qabf_rows(np.ascontiguousarray(f * 255.0), np.ascontiguousarray(v * 255.0),
                               np.ascontiguousarray(i * 255.0))  # fmt: skip
        return _ratio(num.sum(), den.sum())

    return x.per_channel(one)


_SSIM_G = M.gaussian_1d(11, 1.5)
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _ssim_sum(v: np.ndarray, i: np.ndarray, f: np.ndarray) -> float:
    """SSIM(v, F) + SSIM(i, F): each the mean SSIM map, 11 x 11 Gaussian (sigma 1.5) at 'valid' positions,
    variances as E[x^2] - mu^2."""
    if min(f.shape) < 11:
        raise ImageTooSmall(f"SSIM needs images of at least 11 x 11 pixels, got {f.shape}")
    maps = K.ssim_maps(*(np.ascontiguousarray(x, dtype=np.float64) for x in (v, i, f)), _SSIM_G, _C1, _C2)
    return float(maps[0].mean()) + float(maps[1].mean())


def _ssim(x: _Images) -> float:
    """SSIM(visible, F) + SSIM(infrared, F), Gaussian window, per channel, averaged."""
    return x.per_channel(_ssim_sum)


def _root_sum(x: np.ndarray, f: np.ndarray) -> float:
    """The toolkit's "mse": ``sqrt(sum (X - F)^2) / (M N)``."""
    return math.sqrt(((x - f) ** 2).sum()) / f.size


def _rmse(x: _Images) -> float:
    """``(d(visible, F) + d(infrared, F)) / 2`` with the toolkit's d (not a root-mean-square), per channel."""
    return x.per_channel(lambda v, i, f: (_root_sum(v, f) + _root_sum(i, f)) / 2)


def _psnr(x: _Images) -> float:
    """``20 log10(255 / sqrt(Rmse))`` per channel, averaged; ``inf`` where Rmse is 0."""

    def one(v: np.ndarray, i: np.ndarray, f: np.ndarray) -> float:
        mes = (_root_sum(v, f) + _root_sum(i, f)) / 2
        return math.inf if mes == 0 else 20 * math.log10(255 / math.sqrt(mes))

    return x.per_channel(one)


def _cross_entropy_pair(x: np.ndarray, f: np.ndarray) -> float:
    px, pf = M.histogram256(x) / x.size, M.histogram256(f) / f.size
    both = (px > 0) & (pf > 0)
    return float((px[both] * np.log2(px[both] / pf[both])).sum())


def _cross_entropy(x: _Images) -> float:
    """``(CE(visible, F) + CE(infrared, F)) / 2``, CE = sum P_X log2(P_X / P_F) over bins both fill."""
    return x.per_channel(lambda v, i, f: (_cross_entropy_pair(v, f) + _cross_entropy_pair(i, f)) / 2)


def _liu_normalise(x: np.ndarray) -> np.ndarray:
    """Qcb and Qcv's stretch :func:`_stretched`; an all-zero image is kept, another constant image becomes
    NaN (0/0)."""
    return x if x.min() == 0 and x.max() == 0 else _stretched(x)


_QCB_T = np.arange(-15, 16, dtype=np.float64)
_QCB_NARROW, _QCB_WIDE = (np.exp(-(_QCB_T * _QCB_T) / (2 * s * s)) for s in (2.0, 4.0))


@functools.lru_cache(maxsize=8)
def _qcb_csf(shape: tuple[int, int]) -> np.ndarray:
    """Chen-Blum's contrast-sensitivity filter for an image size (the Hermitian half of it, kept per size)."""
    r = M.freqspace_radius(shape, 30.0)
    half = M.hermitian_half(np.exp(-((r / 15.3870) ** 2)) - 0.7622 * np.exp(-((r / 1.3456) ** 2)))
    half.flags.writeable = False  # shared by every call for this size
    return half


@functools.lru_cache(maxsize=8)
def _qcv_csf(shape: tuple[int, int]) -> np.ndarray:
    """Chen-Varshney's contrast-sensitivity filter for an image size (the Hermitian half, kept per size)."""
    r = M.freqspace_radius(shape, 8.0)
    half = M.hermitian_half(2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1)))
    half.flags.writeable = False  # shared by every call for this size
    return half


def _qcb_pair(spectra: tuple[np.ndarray, np.ndarray, np.ndarray], shape: tuple[int, int]) -> float:
    csf = _qcb_csf(shape)
    filtered = M.threaded(M.filtered, spectra, [csf] * 3, [shape] * 3)
    rows = K.qcb_rows(*filtered, _QCB_NARROW, _QCB_WIDE, 2 * math.pi * 4.0, 2 * math.pi * 16.0)
    return float(rows.sum() / (shape[0] * shape[1]))


def _qcb(x: _Images) -> float:
    """Chen-Blum: contrast preservation after a CSF filter, weighted by source contrast, per channel."""
    return float(np.mean([_qcb_pair(spec, x.f.shape[:2]) for spec in x.spectra]))


_BLOCK = 16


def _qcv_pair(normalised: tuple[np.ndarray, np.ndarray, np.ndarray],
              spectra: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:  # fmt: skip
    shape = normalised[2].shape
    csf = _qcv_csf(shape)
    num = den = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = M.threaded(M.filtered, [spectra[0] - spectra[2], spectra[1] - spectra[2]], [csf] * 2, [shape] * 2)
        for src, error in zip(normalised[:2], errors):
            saliency, squared = K.qcv_blocks(np.pad(src, 1), error, _BLOCK)
            num = num + (saliency * (squared / (_BLOCK * _BLOCK))).sum()
            den = den + saliency.sum()
        return _ratio(num, den)


def _qcv(x: _Images) -> float:
    """Chen-Varshney: CSF-filtered squared error per 16 x 16 block (``blkproc``: from the top-left, a partial
    last block zero-padded) weighted by source edge saliency (lower is better), per channel."""
    return float(np.mean([_qcv_pair(n, spec) for n, spec in zip(x.normalised, x.spectra)]))


# ------------------------------------------------------------------ the table


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("EN", _entropy, True, False, "entropy (bits) of the 256-bin histogram of F"),
        MetricInfo("SD", _variance, True, False, "population standard deviation of F (VIFB calls it Variance)", decimals=2),
        MetricInfo("SF", _spatial_frequency, True, False, "spatial frequency, both sums over the pixel count", decimals=2),
        MetricInfo("AG", _avg_gradient, True, False, "average gradient, sum over (M-1)(N-1)"),
        MetricInfo("MI", _mutinf, True, True, "MI(vis,F) + MI(ir,F) in nats on min-max stretched levels"),
        MetricInfo("Qabf", _qabf, True, True, "Xydeas-Petrovic edge preservation on images x 255"),
        MetricInfo("SSIM", _ssim, True, True, "SSIM(vis,F) + SSIM(ir,F), 11x11 Gaussian window, 'valid'"),
        MetricInfo("PSNR", _psnr, True, True, "20 log10(255 / sqrt(RMSE)) with VIFB's RMSE", decimals=2),
        MetricInfo("RMSE", _rmse, False, True, "mean over sources of sqrt(sum (X-F)^2) / (M N)"),
        MetricInfo("CE", _cross_entropy, False, True, "cross entropy (bits) of each source's histogram to F's, averaged"),
        MetricInfo("EI", _edge_intensity, True, False, "edge intensity, mean Sobel magnitude, replicate borders"),
        MetricInfo("Qcb", _qcb, True, True, "Chen-Blum human-perception contrast preservation"),
        MetricInfo("Qcv", _qcv, False, True, "Chen-Varshney CSF-weighted block error (lower is better)"),
    )
}

TOOLKIT_NAMES = {"EN": "Entropy", "SD": "Variance", "SF": "Spatial_frequency", "AG": "Avg_gradient",
                 "MI": "Mutinf", "Qabf": "Qabf", "SSIM": "Ssim", "PSNR": "Psnr", "RMSE": "Rmse",
                 "CE": "Cross_entropy", "EI": "Edge_intensity", "Qcb": "Qcb", "Qcv": "Qcv"}  # fmt: skip
"""This convention's metric names -> the column names of VIFB's own result files."""

CONVENTION = Convention(
    "vifb",
    "VIFB's MATLAB toolkit: colour scored per channel, a grey fused image against rgb2gray sources",
    METRICS,
    _Images,
    grey=None,
)
