"""TC-MoA: task-customised mixture of adapters on a shared MAE ViT (infrared-visible branch).

Paper: P. Zhu, Y. Sun, B. Cao, Q. Hu, "Task-Customized Mixture of Adapters for General Image
Fusion", CVPR 2024. Official repository: YangSun22/TC-MoA (``model/ViT_MAE.py``,
``model/TC_MoA.py``, ``model/MMOE.py``, ``config/base.yaml``).

The MAE encoder and decoder are shared by both modalities (infrared repeated to three channels,
ImageNet normalisation). After block ``i`` with ``(i + 2) % 4 == 3`` (every 4 blocks, offset 2,
``interval_tau`` and ``tau_shift_value`` of the release), a TC-MoA module mixes the two streams:
a router input ``LN(W LN([x, t]))`` (2C -> C/4), four MLP experts (C/4 -> C/32 -> C/4, ReLU)
under noisy top-2 gating with the load-balancing term ``1e-3 (CV^2(importance) + CV^2(load))``,
the expert outputs combined in log space as the release, two prompt halves each averaged over
its channels and passed through a sigmoid, ``fused = p_x x + s_x + p_t t + s_t``, a 1x1 C -> C/4,
3x3, 1x1 -> C convolution on the token grid, and ``stream = alpha fused + (1 - alpha) stream``
with ``alpha`` learnable from 0.5. The decoder's visible stream is projected to 16 x 16 x 3
patches, de-normalised and clipped.

Sizes: ``tiny`` (patch 8, width 64, 4 + 4 blocks; trains from scratch on a CPU), ``small``,
``base`` (ViT-B/16, MAE decoder 512 x 8) and ``large`` (ViT-L/16, the paper's). With
``backbone_checkpoint`` an MAE checkpoint is loaded by MAE's key names into the encoder and
decoder, which are then frozen (:meth:`TCMoA.load_mae`); the TC-MoA modules train.

Deliberate differences:
- Attention is MAE's global self-attention; the release replaced it by 14 x 14 shifted windows
  with learned relative position tables (which an MAE checkpoint does not contain). Global
  attention keeps every checkpoint weight in its original role; its cost grows with the square
  of the token count, so ``upsample`` (the release's 2x input upsampling) is off by default.
- One task (infrared-visible); the release carries gates and shifts for three tasks. The
  per-task shifts are registered parameters here; the release keeps them in a plain list, so
  they are neither trained nor saved there.
- Positional embeddings: MAE's 14 x 14 sin-cos grid resized bilinearly to the token grid
  (the release passes the size as (W, H), which transposes non-square grids).
- Inputs are padded by reflection to a multiple of the patch (and cropped back); the benchmark
  fuses luminance, so the visible input is Y repeated to three channels and the output is the
  luminance ``0.299 R + 0.587 G + 0.114 B`` of the decoded colour image.
- Recipe: the warm-up's pixel term is read as L1 to the mean of the sources (``mean_l1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import check_pair
from baselines.recipe import Phase, Recipe

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)
MAE_CHECKPOINTS = {  # MAE's released weights with the decoder (facebookresearch/mae), for backbone_checkpoint
    "base": "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_base.pth",
    "large": "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth",
}
MAE_GRID = 14  # MAE's positional embeddings: 14 x 14 patches (224 / 16) plus a class token

# width, depth, heads, decoder width, decoder depth, decoder heads, patch
SIZES: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "tiny": (64, 4, 4, 64, 4, 4, 8),
    "small": (384, 12, 6, 256, 4, 8, 16),
    "base": (768, 12, 12, 512, 8, 16, 16),
    "large": (1024, 24, 16, 512, 8, 16, 16),
}


def sincos_grid(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos embedding with a zero class-token row: ``(1, 1 + grid^2, dim)``."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")

    def embed(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([embed(xs), embed(ys)], dim=1)  # MAE: first half from the width index
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb]).float()[None]


class Attention(nn.Module):
    """Multi-head self-attention with MAE's names (``qkv``, ``proj``)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with MAE's names."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm/MAE layout, LayerNorm eps 1e-6, MLP ratio 4)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation ``var / mean^2`` (unbiased variance, as the release)."""
    return x.var() / (x.mean() ** 2 + 1e-10)


class NoisyTopKExperts(nn.Module):
    """Four MLP experts under noisy top-k gating (Shazeer et al. 2017), per token.

    Returns the combined output and the load-balancing loss ``CV^2(importance) + CV^2(load)``
    (unweighted). Gate and noise weights start at zero, as the release.
    """

    def __init__(self, dim: int, hidden: int, experts: int = 4, k: int = 2, noise_floor: float = 0.1):
        super().__init__()
        self.k, self.noise_floor = k, noise_floor
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim)) for _ in range(experts)])
        self.w_gate = nn.Parameter(torch.zeros(dim, experts))
        self.w_noise = nn.Parameter(torch.zeros(dim, experts))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clean = x @ self.w_gate
        if self.training:
            std = F.softplus(x @ self.w_noise) + self.noise_floor
            logits = clean + torch.randn_like(clean) * std
        else:
            logits = clean
        top, idx = logits.topk(min(self.k + 1, logits.shape[1]), dim=1)
        gates = torch.zeros_like(logits).scatter(1, idx[:, : self.k], torch.softmax(top[:, : self.k], dim=1))
        if self.training and self.k < logits.shape[1]:
            normal = torch.distributions.Normal(0.0, 1.0)  # probability of staying in the top k under new noise
            in_top = logits > top[:, self.k : self.k + 1]
            p_in = normal.cdf((clean - top[:, self.k : self.k + 1]) / std)
            p_out = normal.cdf((clean - top[:, self.k - 1 : self.k]) / std)
            load = torch.where(in_top, p_in, p_out).sum(0)
        else:
            load = (gates > 0).float().sum(0)
        balance = cv_squared(gates.sum(0)) + cv_squared(load)
        # the release combines sum_e g_e exp(y_e) and returns its log (zero sums set to machine eps)
        outputs = torch.stack([e(x) for e in self.experts], dim=1)  # (tokens, experts, dim)
        mixed = (gates.unsqueeze(-1) * outputs.exp()).sum(1)
        return torch.where(mixed > 0, mixed, torch.finfo(torch.float64).eps).log(), balance


class TCMoAModule(nn.Module):
    """One TC-MoA module: mixture-of-adapters prompts, shifts, the convolutional fusion and ``alpha``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim * 2)
        self.reduce = nn.Linear(dim * 2, dim // 4, bias=False)
        self.norm2 = nn.LayerNorm(dim // 4)
        self.moa = NoisyTopKExperts(dim // 4, max(1, dim // 32))
        self.shift_x = nn.Parameter(torch.randn(dim) * 0.02)
        self.shift_t = nn.Parameter(torch.randn(dim) * 0.02)
        self.fuse = nn.Sequential(
            nn.Conv2d(dim, dim // 4, 1, bias=False),
            nn.Conv2d(dim // 4, dim // 4, 3, padding=1, bias=False),
            nn.Conv2d(dim // 4, dim, 1, bias=False),
        )
        self.alpha = nn.Parameter(torch.tensor(0.5))
        nn.init.xavier_uniform_(self.reduce.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Mix streams ``x`` (visible) and ``t`` (infrared), ``(B, N, C)`` on a ``grid`` of tokens.

        Returns the new streams, the two prompts ``(B, N, 1)`` and the load-balancing loss.
        """
        b, n, c = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):  # as the release: gating in float32
            y = self.norm2(self.reduce(self.norm1(torch.cat([x, t], dim=-1).float())))
            y, balance = self.moa(y.reshape(b * n, -1))
            p_x, p_t = (torch.sigmoid(h.mean(-1, keepdim=True)) for h in y.reshape(b, n, -1).chunk(2, dim=-1))
        mixed = (p_x * x + self.shift_x) + (p_t * t + self.shift_t)
        h, w = grid
        fused = self.fuse(mixed.transpose(1, 2).reshape(b, c, h, w)).reshape(b, c, n).transpose(1, 2)
        return self.alpha * fused + (1 - self.alpha) * x, self.alpha * fused + (1 - self.alpha) * t, p_x, p_t, balance


class TCMoA(nn.Module):
    """TC-MoA for infrared-visible fusion; ``self.aux`` holds the prompts and the gating loss.

    Args:
        size: ``tiny`` | ``small`` | ``base`` | ``large`` (see :data:`SIZES`).
        interval: blocks between TC-MoA modules (``interval_tau``).
        offset: position of the module within each interval (``tau_shift_value``).
        upsample: upsample inputs 2x before patching (the release's default; quadratic attention cost).
        backbone_checkpoint: path of an MAE checkpoint (``{"model": state_dict}`` or a state dict).
        freeze_backbone: train only the TC-MoA parts (default: when a checkpoint is given).
    """

    def __init__(self, size: str = "tiny", interval: int = 4, offset: int = 2, upsample: bool = False,
                 backbone_checkpoint: str | None = None, freeze_backbone: bool | None = None):  # fmt: skip
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"size: '{size}' is not one of {list(SIZES)}")
        dim, depth, heads, ddim, ddepth, dheads, patch = SIZES[size]
        self.patch, self.interval, self.offset, self.upsample = patch, interval, offset, upsample
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.register_buffer("pos_embed", sincos_grid(dim, MAE_GRID), persistent=False)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder_embed = nn.Linear(dim, ddim)
        self.register_buffer("decoder_pos_embed", sincos_grid(ddim, MAE_GRID), persistent=False)
        self.decoder_blocks = nn.ModuleList([Block(ddim, dheads) for _ in range(ddepth)])
        self.decoder_norm = nn.LayerNorm(ddim, eps=1e-6)
        self.decoder_pred = nn.Linear(ddim, patch * patch * 3)
        self.blocks_moa = nn.ModuleList([TCMoAModule(dim) for _ in range(depth // interval)])
        self.decoder_blocks_moa = nn.ModuleList([TCMoAModule(ddim) for _ in range(ddepth // interval)])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_backbone()
        self.aux: dict[str, Any] = {}
        self.checkpoint_report: dict[str, list[str]] = {}
        if backbone_checkpoint is not None:
            self.checkpoint_report = self.load_mae(backbone_checkpoint)
        if freeze_backbone if freeze_backbone is not None else backbone_checkpoint is not None:
            for name, p in self.named_parameters():
                p.requires_grad_(name.split(".")[0] in ("blocks_moa", "decoder_blocks_moa"))

    def _init_backbone(self) -> None:
        """MAE's initialisation: xavier-uniform linears and patch projection, zero biases."""
        for m in [self.blocks, self.decoder_blocks, self.decoder_embed, self.decoder_pred]:
            for layer in m.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def backbone_keys(self) -> list[str]:
        """State-dict keys of the MAE encoder and decoder (what a checkpoint must provide)."""
        return [k for k in self.state_dict() if not k.startswith(("blocks_moa.", "decoder_blocks_moa."))]

    def load_mae(self, source: str | Path | dict[str, torch.Tensor]) -> dict[str, list[str]]:
        """Load an MAE checkpoint by MAE's key names into the encoder and decoder.

        Returns ``{"loaded": [...], "unused": [...]}``: ``pos_embed``/``decoder_pos_embed`` are checked
        against the fixed sin-cos tables they must equal in shape, and ``cls_token``/``mask_token`` are
        MAE parts this model has no use for (no class token, no masking). Any other unknown key, a
        missing backbone key or a shape mismatch is a ``ValueError`` naming it.
        """
        state = source if isinstance(source, dict) else torch.load(source, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        own = self.state_dict()
        fixed, unused = {"pos_embed": self.pos_embed, "decoder_pos_embed": self.decoder_pos_embed}, []
        for key, value in state.items():
            if key in fixed:
                if tuple(value.shape) != tuple(fixed[key].shape):
                    raise ValueError(f"checkpoint key '{key}': shape {tuple(value.shape)}, expected {tuple(fixed[key].shape)}")
                unused.append(key)
            elif key in ("cls_token", "mask_token"):
                unused.append(key)
            elif key not in own or key.startswith(("blocks_moa.", "decoder_blocks_moa.")):
                raise ValueError(f"checkpoint key '{key}' is not an MAE encoder/decoder key of this model (size mismatch?)")
            elif tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(f"checkpoint key '{key}': shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
        missing = [k for k in self.backbone_keys() if k not in state]
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} backbone key(s), e.g. {missing[:3]}")
        loaded = self.backbone_keys()
        self.load_state_dict({k: state[k] for k in loaded}, strict=False)
        return {"loaded": loaded, "unused": unused}

    def _positions(self, table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        c = table.shape[-1]
        square = table[:, 1:].reshape(1, MAE_GRID, MAE_GRID, c).permute(0, 3, 1, 2)
        return F.interpolate(square, size=grid, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)

    def _run(self, blocks: nn.ModuleList, modules: nn.ModuleList, x: torch.Tensor, t: torch.Tensor,
             grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, list, torch.Tensor]:  # fmt: skip
        """Both streams through shared ``blocks`` (as one batch), TC-MoA after every ``interval``-th."""
        n, prompts, balance = x.shape[0], [], x.new_zeros(())
        for i, block in enumerate(blocks):
            both = block(torch.cat([x, t]))
            x, t = both[:n], both[n:]
            if (i + self.offset) % self.interval == self.interval - 1 and i // self.interval < len(modules):
                x, t, p_x, p_t, bal = modules[i // self.interval](x, t, grid)
                prompts.append(p_x + p_t)
                balance = balance + bal
        return x, t, prompts, balance

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        check_pair(ir, vis)
        h, w = ir.shape[-2:]
        unit = self.patch // 2 if self.upsample else self.patch
        ph, pw = -h % unit, -w % unit
        images = []
        pad_mode = "reflect" if ph < h and pw < w else "replicate"  # reflection needs a pad smaller than the side
        for img in (vis, ir):
            img = F.pad(img, (0, pw, 0, ph), mode=pad_mode)
            img = (img.expand(-1, 3, -1, -1) - self.mean) / self.std
            if self.upsample:
                img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            images.append(img)
        tokens = self.patch_embed.proj(torch.cat(images))
        grid = tuple(tokens.shape[-2:])
        tokens = tokens.flatten(2).transpose(1, 2) + self._positions(self.pos_embed, grid)
        n = ir.shape[0]
        x, t, prompts, balance = self._run(self.blocks, self.blocks_moa, tokens[:n], tokens[n:], grid)
        x, t = self.norm(torch.cat([x, t])).chunk(2)
        d = self.decoder_embed(torch.cat([x, t])) + self._positions(self.decoder_pos_embed, grid)
        x, _, de_prompts, de_balance = self._run(self.decoder_blocks, self.decoder_blocks_moa, d[:n], d[n:], grid)
        patches = self.decoder_pred(self.decoder_norm(x))  # (N, L, p*p*3), the visible stream
        gh, gw = grid
        p = self.patch
        rgb = patches.reshape(n, gh, gw, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(n, 3, gh * p, gw * p)
        if self.upsample:
            rgb = F.interpolate(rgb, size=(h + ph, w + pw), mode="nearest")
        rgb = (rgb * self.std + self.mean).clamp(0, 1)[..., :h, :w]
        self.aux = {"prompts": prompts, "decoder_prompts": de_prompts, "balance": balance + de_balance}
        return sum(c * rgb[:, i : i + 1] for i, c in enumerate(LUMA))


class PromptLoss(nn.Module):
    """``0.75 MSE(p_x + p_t, 1)`` over the encoder's modules ``+ 0.25`` the same over the decoder's."""

    needs_aux = True

    def forward(self, fused, ir, vis, aux) -> torch.Tensor:
        total = fused.new_zeros((), dtype=torch.float32)
        for share, prompts in ((0.75, aux["prompts"]), (0.25, aux["decoder_prompts"])):
            if prompts:
                stacked = torch.stack(prompts).float()
                total = total + share * F.mse_loss(stacked, torch.ones_like(stacked))
        return total


class GatingBalanceLoss(nn.Module):
    """The gates' load-balancing loss summed over modules (weight it 1e-3 in the recipe)."""

    needs_aux = True

    def forward(self, fused, ir, vis, aux) -> torch.Tensor:
        return aux["balance"].float()


TCMoA.recipe = Recipe(
    phases=(
        Phase("warmup", {"pixel": {"type": "mean_l1", "weight": 1.0}, "prompt": {"type": "tcmoa_prompt", "weight": 20.0},
                         "ssim": {"type": "ssim", "weight": 1.0}, "balance": {"type": "tcmoa_balance", "weight": 1e-3}},
              epochs=2, swap_gradient=False),
        Phase("fusion", {"gradient": {"type": "signed_sum", "weight": 3.0}, "intensity": {"type": "max_l1", "weight": 1.0},
                         "prompt": {"type": "tcmoa_prompt", "weight": 20.0}, "ssim": {"type": "ssim", "weight": 0.5},
                         "balance": {"type": "tcmoa_balance", "weight": 1e-3}},
              epochs=18),
    ),  # fmt: skip
    gradient_weight=3.0,
    optimizer={"type": "adamw", "lr": 1.5e-4, "weight_decay": 0.05},
    patch_size=224,
    batch_size=3,
    grad_clip=None,
    output_normalisation="clamp",
    notes="LLVIP training in the paper, 20 epochs with 2 warm-up epochs; the EMA of the release is not used. "
    "The cosine schedule to 1e-6 is replaced by a constant rate.",
    terms={"tcmoa_prompt": PromptLoss, "tcmoa_balance": GatingBalanceLoss},
)

