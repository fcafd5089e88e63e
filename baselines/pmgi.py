"""PMGI: proportional maintenance of gradient and intensity.

Paper: H. Zhang, H. Xu, Y. Xiao, X. Guo, J. Ma, "Rethinking the Image Fusion: A Fast Unified
Image Fusion Network based on Proportional Maintenance of Gradient and Intensity", AAAI 2020.
Official repository: HaoZhang1018/PMGI_AAAI2020 (TensorFlow, ``Code_PMGI/IR_VI/model.py``).

Deliberate differences:
- The release feeds images in [-1, 1] and outputs ``tanh``; here inputs in [0, 1] are mapped to
  [-1, 1] inside and the output is ``(tanh + 1) / 2``: the same function in the project's range.
- The release's BatchNorm layers always use batch statistics (training mode, also when fusing);
  here evaluation uses the running statistics, as PyTorch does.
- Recipe: the release's ``100 [MSE(f, ir) + 0.3 MSE(f, vis) + 5 MSE(lap f, lap vis) + 4 MSE(lap f,
  lap ir)]`` with the Laplacian ``[[0,1,0],[1,-4,1],[0,1,0]]``, split into an intensity part and the
  Laplacian ``gradient`` part. For the benchmark's arms the gradient slot weight is 10 (as SeAFusion),
  the same in every arm; the native arm keeps the release's weights. 120 x 120 patches, batch 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import check_pair, conv
from baselines.recipe import Phase, Recipe

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


class PMGIIntensityLoss(nn.Module):
    """``ir_weight MSE(f, ir) + vis_weight MSE(f, vis)``."""

    def __init__(self, ir_weight: float = 1.0, vis_weight: float = 0.3):
        super().__init__()
        self.ir_weight, self.vis_weight = ir_weight, vis_weight

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        f = fused.float()
        return self.ir_weight * F.mse_loss(f, ir[:, :1].float()) + self.vis_weight * F.mse_loss(f, vis[:, :1].float())


class LaplacianL2Loss(nn.Module):
    """PMGI's gradient term: ``ir_weight MSE(lap f, lap ir) + vis_weight MSE(lap f, lap vis)``, zero padding."""

    def __init__(self, ir_weight: float = 4.0, vis_weight: float = 5.0):
        super().__init__()
        self.ir_weight, self.vis_weight = ir_weight, vis_weight
        self.register_buffer("kernel", _LAPLACIAN.clone(), persistent=False)

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        lap = lambda x: F.conv2d(x.float(), self.kernel, padding=1)  # noqa: E731
        lf = lap(fused)
        with torch.no_grad():
            la, lb = lap(ir[:, :1]), lap(vis[:, :1])
        return self.ir_weight * F.mse_loss(lf, la) + self.vis_weight * F.mse_loss(lf, lb)



class _ConvBN(nn.Sequential):
    """conv + bias, BatchNorm (momentum 0.1, eps 1e-5), LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__(conv(cin, cout, k), nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1), nn.LeakyReLU(0.2))


class _Path(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = _ConvBN(3, 16, 5), _ConvBN(16, 16, 3)
        self.t1, self.l3 = _ConvBN(32, 16, 1), _ConvBN(48, 16, 3)
        self.t2, self.l4 = _ConvBN(32, 16, 1), _ConvBN(64, 16, 3)


class PMGI(nn.Module):
    """Gradient path [ir, ir, vis] and intensity path [vis, vis, ir] exchanging features twice."""

    def __init__(self) -> None:
        super().__init__()
        self.path_ir, self.path_vis = _Path(), _Path()
        self.out = conv(128, 1, 1)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        check_pair(ir, vis)
        a, b = ir * 2 - 1, vis * 2 - 1
        p, q = self.path_ir, self.path_vis
        x1, y1 = p.l1(torch.cat([a, a, b], 1)), q.l1(torch.cat([b, b, a], 1))
        x2, y2 = p.l2(x1), q.l2(y1)
        mid = torch.cat([x2, y2], 1)
        x3 = p.l3(torch.cat([x1, x2, p.t1(mid)], 1))
        y3 = q.l3(torch.cat([y1, y2, q.t1(mid)], 1))
        mid = torch.cat([x3, y3], 1)
        x4 = p.l4(torch.cat([x1, x2, x3, p.t2(mid)], 1))
        y4 = q.l4(torch.cat([y1, y2, y3, q.t2(mid)], 1))
        out = self.out(torch.cat([x1, y1, x2, y2, x3, y3, x4, y4], 1))
        return (torch.tanh(out) + 1) / 2

    recipe = Recipe(
        phases=(
            Phase(
                "fusion",
                {
                    "intensity": {"type": "pmgi_intensity", "weight": 100.0},
                    "gradient": {"type": "laplacian_l2", "weight": 100.0},
                },
                epochs=10,
            ),
        ),
        gradient_weight=10.0,
        optimizer={"type": "adam", "lr": 1e-4},
        patch_size=120,
        batch_size=32,
        output_normalisation="image_minmax",
        notes="Release loss weights kept; the compared gradient arms use weight 10.",
        terms={"pmgi_intensity": PMGIIntensityLoss, "laplacian_l2": LaplacianL2Loss},
    )
