"""Infrared-visible fusion metrics, by convention.

A convention (:class:`~benchmark.metrics.core.Convention`) is one toolkit's
table of metric functions with their metadata; :data:`CONVENTIONS` lists them.
Every metric is a pure function of 2-D grey images (NumPy arrays or torch
tensors, any real dtype) holding grey levels 0..255, returning a float. ``f``
is the fused image, ``a`` the infrared and ``b`` the visible source.

Use :func:`evaluate` for several metrics at once. ``docs/metrics.md`` states
each convention's formulas.
"""

from __future__ import annotations

from collections.abc import Iterable

from benchmark.metrics import cddfuse, tang, vifb
from benchmark.metrics.core import ArrayLike, Convention, MetricInfo
from benchmark.registry import Registry

CONVENTIONS: Registry[Convention] = Registry(
    "metric convention", {c.name: c for c in (cddfuse.CONVENTION, vifb.CONVENTION, tang.CONVENTION)}
)
DEFAULT_CONVENTION = "cddfuse"
METRICS: dict[str, MetricInfo] = cddfuse.METRICS  # the default convention's table

en, sd, sf, ag, mi, scd, vif, qabf, ssim, cc, psnr, mse = (
    cddfuse.CONVENTION.function(n) for n in ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "MSE")
)


def get_convention(name: str = DEFAULT_CONVENTION) -> Convention:
    """A convention by name; an unknown name lists the valid ones."""
    return CONVENTIONS.get(name)


def metric_names(name: str = DEFAULT_CONVENTION) -> list[str]:
    """Metric names of a convention, in table order."""
    return get_convention(name).names()


def resolve_metrics(metrics: Iterable[str] | None = None, convention: str = DEFAULT_CONVENTION) -> list[MetricInfo]:
    """Look up metric names (case-insensitive) in a convention; ``None`` means all, in table order."""
    return get_convention(convention).resolve(metrics)


def evaluate(
    fused: ArrayLike,
    ir: ArrayLike,
    vis: ArrayLike,
    metrics: Iterable[str] | None = None,
    convention: str = DEFAULT_CONVENTION,
) -> dict[str, float]:
    """Score one fused image against its sources.

    Args:
        fused: fused grey image, 2-D, levels 0..255.
        ir: infrared grey image, same shape.
        vis: visible grey image, same shape.
        metrics: names to compute (case-insensitive); all when ``None``.
        convention: metric convention (see :data:`CONVENTIONS`).

    Returns:
        ``{name: value}`` in the requested (or table) order; NaN where the convention yields NaN.
    """
    return get_convention(convention).evaluate(fused, ir, vis, metrics)


def column(convention: str, name: str) -> str:
    """A value's column name in tables: the metric's name under the default convention, ``convention:name``
    under another (the same name means other code under another convention)."""
    return name if convention == DEFAULT_CONVENTION else f"{convention}:{name}"


def column_info(label: str) -> MetricInfo:
    """The metadata of a column named by :func:`column`."""
    convention, _, name = label.rpartition(":")
    return get_convention(convention or DEFAULT_CONVENTION).metrics[name]


__all__ = ["CONVENTIONS", "METRICS", "Convention", "MetricInfo", "column", "column_info", "evaluate", "get_convention",
           "metric_names", "resolve_metrics"]  # fmt: skip
