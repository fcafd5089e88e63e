"""Procedural infrared/visible pairs, generated in memory, deterministic by seed.

Each scene has a textured visible background (smooth shading plus oriented
stripes and noise, in colour), rectangles that appear in both modalities with
the *same* edge polarity (structures: both brighter than their surroundings),
and warm objects that are bright in infrared but dark in the visible image
(edges of *opposite* polarity at the same place), plus a few objects visible
only in one modality. That is the situation in which a magnitude gradient loss
and a sign-preserving one disagree, so a small study on it is informative.
"""

from __future__ import annotations

import numpy as np

from benchmark.data.pairs import Sample, rgb_to_ycbcr, to_grey


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random grid: smooth shading in [0, 1]."""
    grid = rng.random((cells + 1, cells + 1))
    ys, xs = np.linspace(0, cells, h), np.linspace(0, cells, w)
    y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    g = grid
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
    bottom = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _disc(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_pair(seed: int, height: int = 128, width: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(ir, vis_rgb)`` as uint8 arrays, (H, W) and (H, W, 3)."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, np.pi)
    stripes = 0.5 + 0.5 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(0.3, 0.8))
    vis = 0.45 * _smooth_noise(rng, h, w, 4) + 0.25 * stripes + 0.1 * rng.random((h, w))
    ir = 0.25 + 0.2 * _smooth_noise(rng, h, w, 3)  # cool, smooth background
    for _ in range(rng.integers(2, 4)):  # structures: same polarity in both
        y0, x0 = rng.integers(0, h - 24), rng.integers(0, w - 24)
        y1, x1 = y0 + rng.integers(12, 40), x0 + rng.integers(12, 40)
        level = rng.uniform(0.15, 0.3)
        vis[y0:y1, x0:x1] += level
        ir[y0:y1, x0:x1] += 0.6 * level
    for _ in range(rng.integers(2, 4)):  # warm objects: bright in IR, dark in visible
        mask = _disc(h, w, rng.uniform(10, h - 10), rng.uniform(10, w - 10), rng.uniform(6, 18), rng.uniform(4, 12))
        ir[mask] += rng.uniform(0.35, 0.55)
        vis[mask] -= rng.uniform(0.2, 0.35)
    mask = _disc(h, w, rng.uniform(10, h - 10), rng.uniform(10, w - 10), 8, 8)  # visible-only detail
    vis[mask] += 0.3 * (((xx[mask] // 3) % 2) - 0.5)
    ir = np.clip(ir + 0.01 * rng.standard_normal((h, w)), 0, 1)
    vis = np.clip(vis, 0, 1)
    tint = rng.uniform(0.8, 1.2, 3)
    rgb = np.clip(vis[..., None] * tint[None, None, :], 0, 1)
    return np.round(ir * 255).astype(np.uint8), np.round(rgb * 255).astype(np.uint8)


class SyntheticDataset:
    """``count`` procedural pairs of ``height x width``; pair ``i`` uses seed ``seed * 100003 + i``.

    Offers the part of :class:`~benchmark.data.PairedDataset`'s interface the runner uses.
    """

    def __init__(self, count: int = 8, height: int = 128, width: int = 160, seed: int = 0, name: str = "synthetic"):
        if count < 1 or height < 32 or width < 32:
            raise ValueError(f"synthetic: expected count >= 1 and sizes >= 32, got {count}, {height}x{width}")
        self.count, self.height, self.width, self.seed, self.name = count, height, width, seed, name

    def __len__(self) -> int:
        return self.count

    def names(self) -> list[str]:
        return [f"syn{self.seed:02d}_{i:03d}" for i in range(self.count)]

    def pixels(self) -> int:
        """The number of pixels of all pairs' images."""
        return self.count * self.height * self.width

    def __getitem__(self, index: int) -> Sample:
        ir, rgb = make_pair(self.seed * 100003 + index, self.height, self.width)
        return Sample(self.names()[index], ir.astype(np.float64), to_grey(rgb), rgb_to_ycbcr(rgb), ir, rgb)
