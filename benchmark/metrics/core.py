"""What every metric convention shares: metric metadata, input checks, and the convention table type."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

ArrayLike = Any  # np.ndarray or torch.Tensor, 2-D


class ImageTooSmall(ValueError):
    """An image smaller than a metric's window: the metric has no value for it."""


def as_image(x: ArrayLike, name: str, colour: bool = False) -> np.ndarray:
    """Return ``x`` as a C-contiguous float64 array, checking shape and range (levels 0..255): 2-D grey,
    or with ``colour`` also (H, W, 3)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if not (arr.ndim == 2 or (colour and arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"{name}: expected a 2-D grey {'or (H, W, 3) colour ' if colour else ''}image, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: image is empty")
    lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > 255:
        raise ValueError(f"{name}: grey levels must be finite and within 0..255, got {lo}..{hi}")
    return arr


def as_images(*pairs: tuple[ArrayLike, str], colour: bool = False) -> list[np.ndarray]:
    """Convert several images with :func:`as_image`, requiring equal sizes (height and width)."""
    out = [as_image(x, name, colour) for x, name in pairs]
    if len({t.shape[:2] for t in out}) > 1:
        shapes = ", ".join(f"{n}={t.shape}" for t, (_, n) in zip(out, pairs))
        raise ValueError(f"images differ in shape: {shapes}")
    return out


def ratio(num: float, den: float) -> float:
    """``num / den`` with IEEE semantics (0/0 is NaN), as NumPy float division gives."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(num) / np.float64(den))


@dataclass(frozen=True)
class MetricInfo:
    """A metric and its metadata.

    Attributes:
        name: the column name used in tables.
        impl: the implementation, taking the convention's prepared images of one evaluation.
        higher_is_better: direction of improvement.
        needs_sources: whether the metric takes the infrared and visible sources.
        definition: one line, for tables and ``--help``.
        decimals: decimals printed in tables (one more for differences between arms).
    """

    name: str
    impl: Callable[..., float]
    higher_is_better: bool
    needs_sources: bool
    definition: str
    decimals: int = 3


@dataclass(frozen=True)
class Convention:
    """One toolkit's way of computing the metrics: a table of metrics and how it prepares the images.

    Attributes:
        name: e.g. ``cddfuse``.
        description: one line saying which code published tables used.
        metrics: ``name -> MetricInfo`` in table order.
        prepare: builds the shared per-evaluation object from validated ``(fused, ir, vis)``
            (or ``(fused,)``) float64 arrays; each metric's ``impl`` takes it.
        grey: how the toolkit turns an (H, W, 3) colour image into grey levels before scoring;
            ``None`` for a toolkit that scores colour itself (``prepare`` then receives colour arrays).
    """

    name: str
    description: str
    metrics: dict[str, MetricInfo]
    prepare: Callable[..., Any]
    grey: Callable[[np.ndarray], np.ndarray] | None

    def images(self, *pairs: tuple[ArrayLike, str]) -> list[np.ndarray]:
        """Validated float64 arrays, colour ones turned to this toolkit's grey where it scores grey."""
        out = as_images(*pairs, colour=True)
        return [self.grey(x) if x.ndim == 3 and self.grey is not None else x for x in out]

    def names(self) -> list[str]:
        """Metric names in table order."""
        return list(self.metrics)

    def resolve(self, metrics: Iterable[str] | None = None) -> list[MetricInfo]:
        """Look up metric names (case-insensitive); ``None`` means all, in table order."""
        if metrics is None:
            return list(self.metrics.values())
        by_lower = {k.lower(): v for k, v in self.metrics.items()}
        unknown = [n for n in metrics if n.lower() not in by_lower]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(self.metrics)}")
        return [by_lower[n.lower()] for n in metrics]

    def evaluate(self, fused: ArrayLike, ir: ArrayLike, vis: ArrayLike, metrics: Iterable[str] | None = None) -> dict[str, float]:
        """``{name: value}`` for one fused image and its sources (all metrics when ``metrics`` is ``None``).

        Images are 2-D grey or (H, W, 3) colour arrays of levels 0..255, as decoded from their files.
        """
        chosen = self.resolve(metrics)
        images = self.prepare(*self.images((fused, "fused"), (ir, "ir"), (vis, "vis")))
        return {m.name: m.impl(images) for m in chosen}

    def function(self, name: str) -> Callable[..., float]:
        """The public function of one metric: ``fn(f)`` or ``fn(f, a, b)`` on arrays or tensors, validated."""
        info = self.resolve([name])[0]
        prepare = self.prepare

        if info.needs_sources:

            def fn(f: ArrayLike, a: ArrayLike, b: ArrayLike) -> float:
                return info.impl(prepare(*self.images((f, "fused"), (a, "ir"), (b, "vis"))))

        else:

            def fn(f: ArrayLike) -> float:
                return info.impl(prepare(*self.images((f, "fused"))))

        fn.__name__ = fn.__qualname__ = info.name.lower()
        fn.__doc__ = info.impl.__doc__
        return fn
