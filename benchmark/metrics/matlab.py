"""MATLAB building blocks shared by the ``vifb`` and ``tang`` conventions (float64: NumPy, SciPy, compiled loops).

Each function reproduces one MATLAB or Image Processing Toolbox behaviour that
the toolkits' scripts rely on: ``rgb2gray``, rounding, ``gradient``, ``conv2``
/ ``filter2`` / ``imfilter`` borders, ``freqspace`` filtering, ``entropy``.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from benchmark.metrics import _kernels as K

RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)  # MATLAB's rgb2gray weights


def round_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round`` and integer casts: halves away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rgb2gray(rgb: np.ndarray, rounded: bool) -> np.ndarray:
    """MATLAB ``rgb2gray`` of an (H, W, 3) array: rounded to uint8 levels for uint8 input, not for double."""
    x = rgb.astype(np.float64)
    grey = RGB2GRAY[0] * x[..., 0] + RGB2GRAY[1] * x[..., 1] + RGB2GRAY[2] * x[..., 2]
    return np.clip(round_away(grey), 0, 255) if rounded else grey


def grey_uint8(arr: np.ndarray) -> np.ndarray:
    """A decoded 8-bit image as MATLAB-grey levels (float64): ``rgb2gray`` (rounded) for colour, else as is."""
    return rgb2gray(arr, rounded=True) if arr.ndim == 3 else arr.astype(np.float64)


def gradient(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``gradient`` with unit spacing: (along columns, along rows); central inside, one-sided at ends."""
    gx = np.gradient(x, axis=1) if x.shape[1] > 1 else np.zeros_like(x)
    gy = np.gradient(x, axis=0) if x.shape[0] > 1 else np.zeros_like(x)
    return gx, gy


def average_gradient(x: np.ndarray) -> float:
    """``sum(sqrt((gx^2 + gy^2) / 2)) / ((M - 1)(N - 1))`` with MATLAB ``gradient``."""
    gx, gy = gradient(x)
    m, n = x.shape
    return float(np.sqrt((gx * gx + gy * gy) / 2).sum() / ((m - 1) * (n - 1)))


def correlate_same(x: np.ndarray, kernel: np.ndarray, mode: str = "constant") -> np.ndarray:
    """``filter2(kernel, x, 'same')`` (``mode='constant'``: zero padding) or ``imfilter`` with
    ``'replicate'`` (``mode='nearest'``); odd kernel sizes."""
    return ndimage.correlate(x, kernel, mode=mode, cval=0.0)


def separable_same(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Zero-padded 'same' correlation with the separable kernel ``outer(g, g)`` (odd length)."""
    h = len(g) // 2
    return K.separable(np.ascontiguousarray(x, dtype=np.float64), g, -h, -h, x.shape[0], x.shape[1])


def separable_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``filter2(outer(g, g), x, 'valid')``."""
    n = len(g)
    return K.separable(np.ascontiguousarray(x, dtype=np.float64), g, 0, 0, x.shape[0] - n + 1, x.shape[1] - n + 1)


def gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """The separable factor of ``fspecial('gaussian', size, sigma)`` (normalised to sum 1)."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(t * t) / (2 * sigma * sigma))
    return g / g.sum()


def freqspace_radius(shape: tuple[int, int], scale: float) -> np.ndarray:
    """``sqrt(u^2 + v^2)`` on MATLAB's centred ``freqspace`` grid, u scaled by ``N / scale`` and v by
    ``M / scale`` (M x N the image size)."""
    m, n = shape
    u = (np.arange(n) - n // 2) * 2.0 / n * (n / scale)
    v = (np.arange(m) - m // 2) * 2.0 / m * (m / scale)
    return np.sqrt(u[None, :] ** 2 + v[:, None] ** 2)


def hermitian_half(h: np.ndarray) -> np.ndarray:
    """A filter ``H`` on MATLAB's centred frequency grid as :func:`centred_filter` applies it: shifted to the
    FFT's order, made Hermitian, ``(H(k) + H(-k)) / 2``, and cut to the half a real FFT keeps."""
    shifted = np.fft.ifftshift(h)
    mirrored = np.roll(shifted[::-1, ::-1], 1, axis=(0, 1))  # H(-k mod M, -k mod N)
    return ((shifted + mirrored) / 2)[:, : h.shape[1] // 2 + 1]


def centred_filter(x: np.ndarray, half: np.ndarray) -> np.ndarray:
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* H)))``, given :func:`hermitian_half` of ``H``.

    For real ``x`` the real part of that inverse is the inverse with ``H`` made Hermitian, so it is computed
    as a real FFT pair, on the threads Numba uses.
    """
    workers = numba.get_num_threads()
    return sp_fft.irfft2(sp_fft.rfft2(x, workers=workers) * half, s=x.shape, workers=workers)


def histogram256(x: np.ndarray) -> np.ndarray:
    """Counts of the integer levels 0..255 of ``x`` (values already integral)."""
    return np.bincount(x.astype(np.int64).ravel(), minlength=256)


def entropy_bits(counts: np.ndarray) -> float:
    """``-sum p log2 p`` over non-empty bins of a histogram."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())
