"""MATLAB building blocks shared by the ``vifb`` and ``tang`` conventions (float64: NumPy, SciPy, compiled loops).

Each function reproduces one MATLAB or Image Processing Toolbox behaviour that
the toolkits' scripts rely on: ``rgb2gray``, rounding, ``gradient``, ``fspecial``
Gaussians, ``freqspace`` filtering, ``entropy`` (their filters' borders are
handled by the compiled loops, on framed images).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from scipy import fft as sp_fft

from benchmark.metrics import _kernels as K

RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)  # MATLAB's rgb2gray weights


def round_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round`` and integer casts: halves away from zero."""
    x = np.asarray(x, dtype=np.float64)
    return K.round_away(np.ascontiguousarray(x).ravel()).reshape(x.shape)


def rgb2gray(rgb: np.ndarray, rounded: bool) -> np.ndarray:
    """MATLAB ``rgb2gray`` of an (H, W, 3) array: rounded to uint8 levels for uint8 input, not for double."""
    return K.weighted_channels(np.ascontiguousarray(rgb, dtype=np.float64), RGB2GRAY, rounded)


def grey_uint8(arr: np.ndarray) -> np.ndarray:
    """A decoded 8-bit image as MATLAB-grey levels (float64): ``rgb2gray`` (rounded) for colour, else as is."""
    return rgb2gray(arr, rounded=True) if arr.ndim == 3 else arr.astype(np.float64)


def average_gradient(x: np.ndarray) -> float:
    """``sum(sqrt((gx^2 + gy^2) / 2)) / ((M - 1)(N - 1))`` with MATLAB ``gradient`` (unit spacing, central
    inside, one-sided at the ends)."""
    m, n = x.shape
    return float(K.mean_square_gradient(np.ascontiguousarray(x, dtype=np.float64)).sum() / ((m - 1) * (n - 1)))


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
    """A filter ``H`` on MATLAB's centred frequency grid as :func:`filtered` applies it: shifted to the
    FFT's order, made Hermitian, ``(H(k) + H(-k)) / 2``, and cut to the half a real FFT keeps."""
    shifted = np.fft.ifftshift(h)
    mirrored = np.roll(shifted[::-1, ::-1], 1, axis=(0, 1))  # H(-k mod M, -k mod N)
    return ((shifted + mirrored) / 2)[:, : h.shape[1] // 2 + 1]


def spectrum(x: np.ndarray) -> np.ndarray:
    """The real FFT of an image, the half :func:`filtered` takes."""
    return sp_fft.rfft2(x, workers=1)


def threaded(fn: Callable[..., np.ndarray], *args: Iterable) -> list[np.ndarray]:
    """``[fn(*a) for a in zip(*args)]`` on as many threads as Numba uses: one FFT per thread runs faster
    here than one FFT split over threads, and each result is the same either way."""
    with ThreadPoolExecutor(max_workers=numba.get_num_threads()) as pool:
        return list(pool.map(fn, *args))


def filtered(spec: np.ndarray, half: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``real(ifft2(ifftshift(fftshift(fft2(x)) .* H)))`` from the :func:`spectrum` of ``x`` and
    :func:`hermitian_half` of ``H``.

    For real ``x`` the real part of that inverse is the inverse with ``H`` made Hermitian, so it is computed
    as a real FFT pair; by linearity the spectrum of a difference of images is the difference of theirs.
    """
    return sp_fft.irfft2(spec * half, s=shape, workers=1, overwrite_x=True)


def histogram256(x: np.ndarray) -> np.ndarray:
    """Counts of the integer levels 0..255 of ``x`` (values already integral)."""
    return K.histogram256(np.ascontiguousarray(x, dtype=np.float64).ravel())


def joint_histogram256(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts (256 x 256) of the level pairs of two equal-size arrays of integral values 0..255."""
    flat = (np.ascontiguousarray(x, dtype=np.float64).ravel() for x in (a, b))
    return K.joint_histogram256(*flat)


def entropy_bits(counts: np.ndarray) -> float:
    """``-sum p log2 p`` over non-empty bins of a histogram."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())
