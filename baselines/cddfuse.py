"""CDDFuse: correlation-driven dual-branch feature decomposition.

Paper: Z. Zhao, H. Bai, J. Zhang, Y. Zhang, S. Xu, Z. Lin, R. Timofte, L. Van Gool, "CDDFuse:
Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality Image Fusion", CVPR 2023.
Official repository: Zhaozixiang1228/MMIF-CDDFuse (``net.py``, ``train.py``, ``utils/loss.py``).

Parameter count 1,188,272, as the release (the base branch's gated MLP uses a grouped 3 x 3
convolution with two channels per group).

Deliberate differences:
- One module holds encoder, fusion layers and decoder; the release keeps four modules with one
  Adam optimiser each. Adam is per parameter, so one optimiser over all of them is the same;
  gradient-norm clipping (0.01) is applied to all parameters jointly instead of per module.
- The two training stages are the recipe's phases: ``reconstruction`` (40 of 120 epochs) trains
  encoder and decoder only (the fusion layers are frozen and unused), ``fusion`` (80) trains all.
  The model is told the phase through :meth:`CDDFuse.set_phase`.
- Phase I's gradient term uses Sobel components divided by 8 with replicate borders (kornia's
  ``SpatialGradient``, which the release calls), and the SSIM loss is ``(1 - SSIM) / 2`` with an
  11 x 11 Gaussian window (kornia's ``SSIMLoss``), computed with piq.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import check_pair
from baselines.recipe import Phase, Recipe
from losses import Sobel
from losses.fusion import ssim


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels at every pixel, with weight and bias (Restormer's ``WithBias``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelAttention(nn.Module):
    """Transposed (channel) attention with L2-normalised q, k over space and a learnable temperature.

    ``full_conv=False``: Restormer's MDTA (depthwise 3 x 3 after the 1 x 1 qkv projection);
    ``True``: CDDFuse's Lite-Transformer base attention (a full 3 x 3 convolution there).
    """

    def __init__(self, dim: int, heads: int, full_conv: bool):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        groups = 1 if full_conv else 3 * dim
        self.qkv_conv = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=groups, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_conv(self.qkv(x)).chunk(3, dim=1)
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class GatedFFN(nn.Module):
    """1 x 1 up-projection, grouped 3 x 3 convolution, GELU gate, 1 x 1 down-projection."""

    def __init__(self, dim: int, expansion: float, channels_per_group: int):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=False)
        self.conv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden // channels_per_group, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class TransformerBlock(nn.Module):
    """Pre-norm attention and gated FFN with residuals.

    ``base=False``: Restormer block (MDTA, FFN expansion 2, depthwise); ``True``: the base branch's
    Lite-Transformer block (full 3 x 3 in attention, expansion 1, two channels per group).
    """

    def __init__(self, dim: int = 64, heads: int = 8, base: bool = False):
        super().__init__()
        self.norm1, self.norm2 = ChannelLayerNorm(dim), ChannelLayerNorm(dim)
        self.attn = ChannelAttention(dim, heads, full_conv=base)
        self.ffn = GatedFFN(dim, 1.0 if base else 2.0, channels_per_group=2 if base else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class InvertedResidual(nn.Sequential):
    """1 x 1 (32 -> 64), ReLU6, reflect-padded depthwise 3 x 3, ReLU6, 1 x 1 (64 -> 32); no biases."""

    def __init__(self, channels: int = 32, expand: int = 2):
        hidden = channels * expand
        super().__init__(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="reflect", groups=hidden, bias=False), nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )  # fmt: skip


class DetailNode(nn.Module):
    """Invertible node: 1 x 1 shuffle, split, ``z2 += phi(z1); z1 = z1 * exp(rho(z2)) + eta(z2)``."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.shuffle = nn.Conv2d(dim, dim, 1)
        self.phi, self.rho, self.eta = InvertedResidual(dim // 2), InvertedResidual(dim // 2), InvertedResidual(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.shuffle(x).chunk(2, dim=1)
        z2 = z2 + self.phi(z1)
        z1 = z1 * torch.exp(self.rho(z2)) + self.eta(z2)
        return torch.cat([z1, z2], dim=1)


class DetailBranch(nn.Sequential):
    """A chain of invertible detail nodes."""

    def __init__(self, nodes: int, dim: int = 64):
        super().__init__(*(DetailNode(dim) for _ in range(nodes)))


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over batch and channels of the spatial Pearson correlation, clamped to [-1, 1] (the release's ``cc``)."""
    eps = torch.finfo(torch.float32).eps
    a = a.flatten(2).float()
    b = b.flatten(2).float()
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    cc = (a * b).sum(-1) / (eps + a.pow(2).sum(-1).sqrt() * b.pow(2).sum(-1).sqrt())
    return cc.clamp(-1.0, 1.0).mean()


class DecompositionLoss(nn.Module):
    """``CC(detail_vis, detail_ir)^2 / (1.01 + CC(base_vis, base_ir))`` from the model's ``aux``."""

    needs_aux = True

    def forward(self, fused, ir, vis, aux) -> torch.Tensor:
        return correlation(aux["detail_vis"], aux["detail_ir"]) ** 2 / (1.01 + correlation(aux["base_vis"], aux["base_ir"]))


class ReconstructionLoss(nn.Module):
    """Phase I: per modality ``5 (1 - SSIM) / 2 + MSE``, plus ``5 L1`` between the visible image's and its
    reconstruction's normalised Sobel components."""

    needs_aux = True

    def __init__(self) -> None:
        super().__init__()
        self.sobel = Sobel(padding="replicate")

    def forward(self, fused, ir, vis, aux) -> torch.Tensor:
        total = fused.new_zeros((), dtype=torch.float32)
        for source, recon in ((vis[:, :1], aux["recon_vis"]), (ir[:, :1], aux["recon_ir"])):
            source, recon = source.float(), recon.float()
            similarity = ssim(recon.clamp(0, 1), source.clamp(0, 1))
            total = total + 5 * (1 - similarity) / 2 + F.mse_loss(recon, source)
        # kornia's L1 averages over both components of Sobel / 8: (sum of per-axis means) / 2 / 8
        target = self.sobel(vis[:, :1].float())
        return total + 5 * self.sobel.l1(aux["recon_vis"].float(), target, "axes") / 16


class CDDFuse(nn.Module):
    """Shared Restormer encoder with base/detail branches, fusion layers, decoder with the visible residual.

    ``forward(ir, vis)`` returns the fused image in the ``fusion`` phase and the visible
    reconstruction in the ``reconstruction`` phase; ``self.aux`` holds the branch features (and
    the reconstructions) for the recipe's terms.
    """

    PHASES = ("reconstruction", "fusion")

    def __init__(self, dim: int = 64, heads: int = 8, blocks: int = 4):
        super().__init__()
        self.embed = nn.Conv2d(1, dim, 3, padding=1, bias=False)
        self.encoder = nn.Sequential(*(TransformerBlock(dim, heads) for _ in range(blocks)))
        self.base = TransformerBlock(dim, heads, base=True)
        self.detail = DetailBranch(3, dim)
        self.fuse_base = TransformerBlock(dim, heads, base=True)
        self.fuse_detail = DetailBranch(1, dim)
        self.reduce = nn.Conv2d(2 * dim, dim, 1, bias=False)
        self.decoder = nn.Sequential(*(TransformerBlock(dim, heads) for _ in range(blocks)))
        self.out = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.LeakyReLU(), nn.Conv2d(dim // 2, 1, 3, padding=1, bias=False)
        )
        self.phase = "fusion"
        self.aux: dict[str, torch.Tensor] = {}

    def set_phase(self, phase: str) -> None:
        if phase not in self.PHASES:
            raise ValueError(f"phase: '{phase}' is not one of {list(self.PHASES)}")
        self.phase = phase

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(self.embed(x))
        return self.base(features), self.detail(features)

    def decode(self, image: torch.Tensor, base: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        x = self.decoder(self.reduce(torch.cat([base, detail], dim=1)))
        return torch.sigmoid(self.out(x) + image)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        check_pair(ir, vis)
        base_v, detail_v = self.encode(vis)
        base_i, detail_i = self.encode(ir)
        self.aux = {"base_vis": base_v, "base_ir": base_i, "detail_vis": detail_v, "detail_ir": detail_i}
        if self.phase == "reconstruction":
            self.aux["recon_ir"] = self.decode(ir, base_i, detail_i)
            self.aux["recon_vis"] = self.decode(vis, base_v, detail_v)
            return self.aux["recon_vis"]
        return self.decode(vis, self.fuse_base(base_i + base_v), self.fuse_detail(detail_i + detail_v))

    recipe = Recipe(
        phases=(
            Phase(
                "reconstruction",
                {"reconstruction": {"type": "cddfuse_reconstruction", "weight": 1.0},
                 "decomposition": {"type": "cddfuse_decomposition", "weight": 2.0}},
                epochs=40,
                swap_gradient=False,
                trainable=("embed.", "encoder.", "base.", "detail.", "reduce.", "decoder.", "out."),
            ),
            Phase(
                "fusion",
                {"intensity": {"type": "max_l1", "weight": 1.0}, "gradient": {"type": "magnitude", "weight": 10.0},
                 "decomposition": {"type": "cddfuse_decomposition", "weight": 2.0}},
                epochs=80,
            ),
        ),  # fmt: skip
        gradient_weight=10.0,
        optimizer={"type": "adam", "lr": 1e-4},
        schedule={"type": "step", "every_epochs": 20, "gamma": 0.5},
        patch_size=128,
        batch_size=8,
        grad_clip=0.01,
        output_normalisation="image_minmax",
        notes="Two stages as phases; joint gradient clipping (see module docstring).",
        terms={"cddfuse_reconstruction": ReconstructionLoss, "cddfuse_decomposition": DecompositionLoss},
    )
