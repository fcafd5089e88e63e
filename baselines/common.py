"""Small building blocks shared by the re-implemented networks."""

from __future__ import annotations

import torch
from torch import nn


def conv(cin: int, cout: int, k: int = 3, padding_mode: str = "zeros", bias: bool = True) -> nn.Conv2d:
    """A 'same' convolution with odd kernel ``k``."""
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode=padding_mode, bias=bias)


def check_pair(ir: torch.Tensor, vis: torch.Tensor) -> None:
    """Require two (N, 1, H, W) tensors of equal shape."""
    if ir.ndim != 4 or ir.shape[1] != 1 or vis.shape != ir.shape:
        raise ValueError(f"expected ir and vis of equal shape (N, 1, H, W), got {tuple(ir.shape)} and {tuple(vis.shape)}")


def clamp_straight_through(x: torch.Tensor) -> torch.Tensor:
    """``x`` clamped to [0, 1] in value, with the gradient of ``x`` itself (straight-through).

    For networks whose release has a linear output and clamps only when saving.
    """
    return x + (x.clamp(0, 1) - x).detach()
