"""U2Fusion's fusion network (infrared-visible task).

Paper: H. Xu, J. Ma, J. Jiang, X. Guo, H. Ling, "U2Fusion: A Unified Unsupervised Image Fusion
Network", IEEE TPAMI 44(1), 2022. Official repository: hanna-xu/U2Fusion.

Deliberate differences:
- The release weighs the sources by the information in pretrained VGG-16 features, which cannot
  be loaded offline. Substitute (``u2fusion_adaptive`` term): ``s = softmax(e / c)`` over the two
  sources, with ``e`` the mean squared Sobel gradient of each source image (a gradient-energy
  measure of the same kind, on pixels instead of features) and temperature ``c = 0.05``.
- No continual-learning (EWC) stage: one task only.
- U2Fusion has no gradient term of its own; for the benchmark's arms the ``gradient`` slot is
  added with weight 10 (as SeAFusion), the same in every arm.
- Optimiser and patch size were not established from the release: Adam 1e-4, 64 x 64 patches,
  batch 18 are used and recorded here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import check_pair, conv
from baselines.recipe import Phase, Recipe
from losses import Sobel
from losses.fusion import ssim


class U2FusionAdaptiveLoss(nn.Module):
    """``sum_i s_i (1 - SSIM(f, x_i)) + mse_weight * sum_i s_i MSE(f, x_i)`` with gradient-energy weights ``s``."""

    def __init__(self, mse_weight: float = 20.0, temperature: float = 0.05):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        self.mse_weight, self.temperature = mse_weight, temperature
        self.sobel = Sobel()

    def source_weights(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """(N, 2) softmax weights of infrared and visible from their mean squared gradient."""
        with torch.no_grad():
            g = self.sobel(torch.stack([ir, vis], 1).flatten(0, 1).float())
            energy = g.pow(2).sum(0).mean(dim=(1, 2, 3)).view(-1, 2)
            return torch.softmax(energy / self.temperature, dim=1)

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        ir, vis = ir[:, :1].float(), vis[:, :1].float()
        f = fused.float().clamp(0, 1)
        s = self.source_weights(ir, vis)
        total = f.new_zeros(())
        for i, src in enumerate((ir, vis)):
            similarity = ssim(f, src.clamp(0, 1), reduction="none")
            mse = F.mse_loss(f, src, reduction="none").mean(dim=(1, 2, 3))
            total = total + (s[:, i] * ((1 - similarity) + self.mse_weight * mse)).mean()
        return total



class U2Fusion(nn.Module):
    """Dense CNN on the 2-channel input: conv 2->44, five dense 3x3 convs (44 each), decoder 264->128->64->32->1."""

    def __init__(self) -> None:
        super().__init__()
        self.head = conv(2, 44, padding_mode="reflect")
        self.dense = nn.ModuleList([conv(44 * (i + 1), 44, padding_mode="reflect") for i in range(5)])
        self.decoder = nn.ModuleList([conv(264, 128, padding_mode="reflect"), conv(128, 64, padding_mode="reflect"),
                                      conv(64, 32, padding_mode="reflect")])  # fmt: skip
        self.out = conv(32, 1, padding_mode="reflect")

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        check_pair(ir, vis)
        x = F.leaky_relu(self.head(torch.cat([ir, vis], 1)), 0.2)
        for layer in self.dense:
            x = torch.cat([x, F.leaky_relu(layer(x), 0.2)], 1)
        for layer in self.decoder:
            x = F.leaky_relu(layer(x), 0.2)
        return torch.tanh(self.out(x)) / 2 + 0.5

    recipe = Recipe(
        phases=(Phase("fusion", {"adaptive": {"type": "u2fusion_adaptive", "weight": 1.0}}, epochs=10),),
        gradient_weight=10.0,
        optimizer={"type": "adam", "lr": 1e-4},
        patch_size=64,
        batch_size=18,
        output_normalisation="image_minmax",
        notes="VGG information weights replaced by gradient energy; gradient slot added for the arms.",
        terms={"u2fusion_adaptive": U2FusionAdaptiveLoss},
    )
