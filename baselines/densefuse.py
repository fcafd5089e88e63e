"""DenseFuse, trained end to end with a fusion objective (``densefuse_e2e``).

Paper: H. Li, X.-J. Wu, "DenseFuse: A Fusion Approach to Infrared and Visible Images", IEEE TIP
28(5), 2019. Official repository: hli1221/imagefusion_densefuse.

Deliberate differences:
- The release trains an autoencoder (pixel + SSIM reconstruction on MS-COCO) and fuses encoder
  features by addition or L1-norm weighting at test time. Here the same encoder, fusion rule and
  decoder are trained end to end with a fusion objective so that the gradient term can be
  swapped; hence the name ``densefuse_e2e``.
- The decoder's output is linear in the release (saved after min-max stretching); here its value
  is clamped to [0, 1] so the network returns the project's range, while the gradient passes as
  for the linear output (straight-through), so training sees the release's linear output. The
  recorded output normalisation remains ``image_minmax``. The output bias starts at 0.5 (mid-grey):
  from PyTorch's default initialisation the output would start below 0, clamped to a constant.
- Recipe (not in the paper, which has no fusion loss): ``L1(f, max(a, b)) + 10 L_grad + 0.5 (1 - SSIM)``
  with Adam 1e-4, 128 x 128 patches, batch 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import check_pair, clamp_straight_through, conv
from baselines.recipe import Phase, Recipe

FUSION_RULES = ("add", "l1norm")


class DenseFuseE2E(nn.Module):
    """Shared encoder (conv 1->16, dense block of three 16-channel convs), fusion rule, decoder 64->64->32->16->1.

    Args:
        fusion_rule: ``"add"`` (sum of features) or ``"l1norm"`` (softmax-free L1-norm weighting,
            with the activity map averaged over a 3 x 3 window, as the release).
    """

    def __init__(self, fusion_rule: str = "add"):
        super().__init__()
        if fusion_rule not in FUSION_RULES:
            raise ValueError(f"fusion_rule: '{fusion_rule}' is not one of {list(FUSION_RULES)}")
        self.fusion_rule = fusion_rule
        self.head = conv(1, 16, padding_mode="reflect")
        self.dense = nn.ModuleList([conv(16 * (i + 1), 16, padding_mode="reflect") for i in range(3)])
        self.decoder = nn.ModuleList([conv(64, 64, padding_mode="reflect"), conv(64, 32, padding_mode="reflect"),
                                      conv(32, 16, padding_mode="reflect")])  # fmt: skip
        self.out = conv(16, 1, padding_mode="reflect")
        nn.init.constant_(self.out.bias, 0.5)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.head(x))
        for layer in self.dense:
            x = torch.cat([x, F.relu(layer(x))], 1)
        return x

    def fuse(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        if self.fusion_rule == "add":
            return fa + fb
        act_a = F.avg_pool2d(fa.abs().sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False)
        act_b = F.avg_pool2d(fb.abs().sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False)
        w = act_a / (act_a + act_b + 1e-8)
        return w * fa + (1 - w) * fb

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        check_pair(ir, vis)
        x = self.fuse(self.encode(ir), self.encode(vis))
        for layer in self.decoder:
            x = F.relu(layer(x))
        return clamp_straight_through(self.out(x))

    recipe = Recipe(
        phases=(
            Phase(
                "fusion",
                {
                    "intensity": {"type": "max_l1", "weight": 1.0},
                    "gradient": {"type": "magnitude", "weight": 10.0},
                    "ssim": {"type": "ssim", "weight": 0.5},
                },
                epochs=4,
            ),
        ),
        gradient_weight=10.0,
        optimizer={"type": "adam", "lr": 1e-4},
        patch_size=128,
        batch_size=8,
        output_normalisation="image_minmax",
        notes="End-to-end fusion objective replaces the autoencoder training (see module docstring).",
    )
