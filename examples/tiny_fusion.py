"""A user's own fusion network, added to a study by import path (see README, "Adding a model").

In ``experiments.yaml``::

    models:
      tiny:
        class: examples.tiny_fusion:TinyFusion
        kwargs: {width: 8}
"""

from __future__ import annotations

import torch
from torch import nn

from baselines import Phase, Recipe


class TinyFusion(nn.Module):
    """Three 3x3 convolutions on the concatenated sources, sigmoid output."""

    recipe = Recipe(
        phases=(
            Phase(
                "fusion",
                {"intensity": {"type": "max_l1", "weight": 1.0}, "gradient": {"type": "magnitude", "weight": 10.0}},
            ),
        ),
        gradient_weight=10.0,
        optimizer={"type": "adam", "lr": 1e-3},
        patch_size=64,
        batch_size=8,
    )

    def __init__(self, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1),
        )  # fmt: skip

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(torch.cat([ir, vis], 1)))
