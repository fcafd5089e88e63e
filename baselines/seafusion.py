"""SeAFusion's fusion network.

Paper: L. Tang, J. Yuan, J. Ma, "Image fusion in the loop of high-level vision tasks: A
semantic-aware real-time infrared and visible image fusion network", Information Fusion 82, 2022.
Official repository: Linfeng-Tang/SeAFusion (``FusionNet.py``, ``loss.py``).

Deliberate differences:
- The release defines BatchNorm layers it never applies; they are left out (the parameter count,
  166,657, is that of the layers that are used).
- Trained here for the benchmark's step budget on random patches instead of 640 x 480 MSRS images
  (the runner decides); the recipe records the paper's values.
- The semantic (segmentation) loss of the joint training is not part of this re-implementation;
  the fusion recipe is the paper's ``L1(f, max(a, b)) + 10 L_grad``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import check_pair, conv
from baselines.recipe import Phase, Recipe


class SobelMagnitude(nn.Module):
    """Depthwise Sobel giving ``|gx| + |gy|`` per channel; kernels start as Sobel and are trainable."""

    def __init__(self, channels: int):
        super().__init__()
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.kx = nn.Parameter(kx.expand(channels, 1, 3, 3).clone())
        self.ky = nn.Parameter(kx.t().flip(0).expand(channels, 1, 3, 3).clone())
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = F.conv2d(x, self.kx, padding=1, groups=self.channels)
        gy = F.conv2d(x, self.ky, padding=1, groups=self.channels)
        return gx.abs() + gy.abs()


class RGRB(nn.Module):
    """Residual gradient dense block: LReLU(0.1) of a dense branch plus a Sobel-gradient branch."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dense1 = conv(cin, cin)
        self.dense2 = conv(2 * cin, cin)
        self.dense_out = conv(3 * cin, cout, 1)
        self.sobel = SobelMagnitude(cin)
        self.grad_out = conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cat([x, F.leaky_relu(self.dense1(x), 0.2)], 1)
        d = torch.cat([d, F.leaky_relu(self.dense2(d), 0.2)], 1)
        return F.leaky_relu(self.dense_out(d) + self.grad_out(self.sobel(x)), 0.1)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = conv(1, 16)
        self.rgrb1 = RGRB(16, 32)
        self.rgrb2 = RGRB(32, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rgrb2(self.rgrb1(F.leaky_relu(self.head(x), 0.2)))


class SeAFusion(nn.Module):
    """Two encoders (visible, infrared), concatenated features, a convolutional decoder, ``tanh/2 + 0.5``."""

    def __init__(self) -> None:
        super().__init__()
        self.enc_vis = _Encoder()
        self.enc_ir = _Encoder()
        self.decoder = nn.ModuleList([conv(96, 64), conv(64, 32), conv(32, 16)])
        self.out = conv(16, 1)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        check_pair(ir, vis)
        x = torch.cat([self.enc_vis(vis), self.enc_ir(ir)], 1)
        for layer in self.decoder:
            x = F.leaky_relu(layer(x), 0.2)
        return torch.tanh(self.out(x)) / 2 + 0.5

    recipe = Recipe(
        phases=(
            Phase(
                "fusion",
                {"intensity": {"type": "max_l1", "weight": 1.0}, "gradient": {"type": "magnitude", "weight": 10.0}},
                epochs=10,
            ),
        ),
        gradient_weight=10.0,
        optimizer={"type": "adam", "lr": 1e-3},
        schedule={"type": "step", "every_epochs": 1, "gamma": 0.75},
        patch_size=None,
        batch_size=16,
        output_normalisation="batch_minmax",
        notes="Paper: whole 640x480 MSRS images, batch 16, Adam 1e-3 decayed x0.75 per epoch.",
    )
