"""Fusion objectives: intensity, SSIM and gradient terms combined from a recipe.

A recipe maps a part name to a block ``{type: ..., weight: ..., **kwargs}``::

    {"intensity": {"type": "max_l1", "weight": 1},
     "gradient": {"type": "damgl", "weight": 10, "scales": [1, 0.5, 0.25]},
     "ssim": {"type": "ssim", "weight": 0.5}}

The part called ``gradient`` is the slot the benchmark swaps; the one way to
fill it is :meth:`baselines.Recipe.objective`, which gives the arm the recipe's
``gradient_weight``. Terms are called as ``term(fused, ir, vis)``; a term whose
``needs_aux`` is true also receives ``aux``, the dict of extra outputs a model
returns (features, gating losses). A model adds its own terms explicitly: its
recipe lists them (``Recipe.terms``), and only its objectives see them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import Registry
from losses.gradient import LOSSES

GRADIENT_SLOT = "gradient"


def ssim(x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """piq's Gaussian SSIM (11 x 11, sigma 1.5) with data range 1; piq, which loads torchvision, is imported
    on first use so that loading a configuration stays cheap."""
    import piq

    return piq.ssim(x, y, data_range=1.0, **kwargs)


class MaxL1(nn.Module):
    """``L1(f, max(a, b))``: the intensity term of SeAFusion and CDDFuse."""

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(fused.float(), torch.maximum(ir[:, :1], vis[:, :1]).float())


class MeanL1(nn.Module):
    """``L1(f, (a + b) / 2)``: the mean-intensity variant."""

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(fused.float(), ((ir[:, :1] + vis[:, :1]) / 2).float())


class SSIMLoss(nn.Module):
    """``mean over sources of (1 - SSIM(f, source))`` with piq's Gaussian SSIM (11 x 11, data range 1).

    Args:
        ir_weight: weight of the infrared term; the visible term gets ``1 - ir_weight``.
    """

    def __init__(self, ir_weight: float = 0.5):
        super().__init__()
        if not 0 <= ir_weight <= 1:
            raise ValueError(f"ir_weight: expected a number in [0, 1], got {ir_weight!r}")
        self.ir_weight = ir_weight

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=fused.device.type, enabled=False):
            f = fused.float().clamp(0, 1)
            s_ir = ssim(f, ir[:, :1].float().clamp(0, 1))
            s_vis = ssim(f, vis[:, :1].float().clamp(0, 1))
        return self.ir_weight * (1 - s_ir) + (1 - self.ir_weight) * (1 - s_vis)


TERMS: Registry[type[nn.Module]] = Registry("loss", {"max_l1": MaxL1, "mean_l1": MeanL1, "ssim": SSIMLoss})
ALL: Registry[type[nn.Module]] = Registry("loss", dict(LOSSES.items())).extended(dict(TERMS.items()))  # every term by name


def build_from(registry: Registry[type[nn.Module]], name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Build ``name`` from ``registry``; an unknown name reads ``type: unknown loss 'x' ...``."""
    try:
        registry.get(name)
    except ValueError as exc:
        raise ValueError(f"type: {exc}") from None
    return registry.build(name, **kwargs)


class FusionObjective(nn.Module):
    """Weighted sum of terms built from a recipe; returns ``(total, {part: weighted value})``.

    Args:
        recipe: ``{part: {type, weight, **kwargs}}``.
        terms: model-specific term classes by name, beside the gradient losses and :data:`TERMS`;
            a name already taken is an error.
    """

    def __init__(self, recipe: Mapping[str, Mapping[str, Any]], terms: Mapping[str, type[nn.Module]] | None = None):
        super().__init__()
        registry = ALL.extended(dict(terms or {}))
        if not recipe:
            raise ValueError("recipe: expected at least one term")
        self.recipe = copy.deepcopy(dict(recipe))
        self.weights: dict[str, float] = {}
        modules = {}
        for part, block in self.recipe.items():
            if not isinstance(block, Mapping) or "type" not in block:
                raise ValueError(f"recipe.{part}: expected a block with 'type' and 'weight', got {block!r}")
            options = dict(block)
            kind = options.pop("type")
            weight = options.pop("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise ValueError(f"recipe.{part}.weight: expected a non-negative number, got {weight!r}")
            try:
                modules[part] = build_from(registry, kind, options)
            except ValueError as exc:
                raise ValueError(f"recipe.{part}: {exc}") from None
            self.weights[part] = float(weight)
        self.terms = nn.ModuleDict(modules)

    def forward(
        self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor, aux: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {}
        for part, term in self.terms.items():
            value = term(fused, ir, vis, aux) if getattr(term, "needs_aux", False) else term(fused, ir, vis)
            parts[part] = self.weights[part] * value
        total = torch.stack([v.float() for v in parts.values()]).sum()
        return total, parts
