"""One pair fused and scored: what validation (:mod:`benchmark.train`) and the fuse stage
(:mod:`benchmark.fuse`) share, and what :mod:`benchmark.evaluate` scores folders with.

A network's output is normalised as its recipe says, rounded to the 8-bit grey image that is saved, and that
image is scored against the pair's decoded files under a metric convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from benchmark.data import DataError, Sample
from benchmark.metrics import DEFAULT_CONVENTION, evaluate
from benchmark.metrics.core import ImageTooSmall

if TYPE_CHECKING:
    import torch


class NonFiniteOutput(ValueError):
    """A network's output holds NaN or infinite values, which no 8-bit image can represent."""


def score(fused: np.ndarray, sample: Sample, metrics: Sequence[str] | None = None,
          convention: str = DEFAULT_CONVENTION) -> dict[str, float]:  # fmt: skip
    """Metric values of one fused image (grey or colour levels 0..255) against a loaded pair's decoded files,
    each convention turning colour into what it scores. An image a metric cannot score (smaller than its
    window) is a :class:`~benchmark.data.DataError` naming the pair's files."""
    try:
        return evaluate(fused, sample.ir_raw, sample.vi_raw, metrics, convention)
    except ImageTooSmall as exc:
        raise DataError(f"{sample.where()}: {exc}") from None


def normalise(y: torch.Tensor, mode: str) -> torch.Tensor:
    """Output normalisation before saving: ``clamp``, ``image_minmax`` / ``batch_minmax`` (per image here)."""
    if mode in ("clamp", "none"):
        return y.clamp(0, 1)
    lo, hi = y.amin(dim=(-2, -1), keepdim=True), y.amax(dim=(-2, -1), keepdim=True)
    return ((y - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def fuse_sample(model: torch.nn.Module, sample: Sample, device: str | torch.device) -> tuple[torch.Tensor, ...]:
    """``(ir, vis_y, fused)`` of one loaded pair as (1, 1, H, W) tensors on ``device``, fused at full size.

    float32 even on CUDA: bf16 would move saved grey levels by up to one. An output with a NaN or infinite
    value raises :class:`NonFiniteOutput` naming the image, before anything is saved.
    """
    import torch

    ir = torch.from_numpy(sample.ir_unit)[None, None].to(device)
    vis = torch.from_numpy(sample.vi_ycbcr[0])[None, None].to(device)
    with torch.no_grad():
        fused = model(ir, vis).float()
    bad = int((~torch.isfinite(fused)).sum())
    if bad:
        raise NonFiniteOutput(f"{sample.name}: the network's output has {bad} NaN or infinite values of {fused.numel()}; "
                              "nothing is saved or scored for it (the network diverged: see its train_log.csv)")  # fmt: skip
    return ir, vis, fused


def grey8(fused: torch.Tensor, mode: str) -> np.ndarray:
    """A fused (1, 1, H, W) output normalised by ``mode`` as the 8-bit grey image that is saved and scored."""
    return np.round(normalise(fused, mode)[0, 0].cpu().numpy() * 255).astype(np.uint8)
