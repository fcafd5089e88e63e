"""The gradient losses in their plain form: what each one computes, written to be read and audited.

Every class here has the name and the switches of its counterpart in
:mod:`losses` (``losses.reference.build("damgl", scales=[1, 0.5])``), and
computes the same value with one ``conv2d`` per image and axis, kernels built
per call, ``F.interpolate`` for resizing and autograd for the backward pass:
slow and obvious. The fast engine that :func:`losses.build` returns is tested
against these to 1e-6 in value and gradient. ``docs/losses.md`` states the
definitions in words.

Conventions: ``gx`` correlates with ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]``
(rightwards) and ``gy`` with ``[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]``
(downwards); zero padding unless stated; L1 is the mean absolute difference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import Registry
from losses.gradient import DAMGLSwitches

KX = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
KY_DOWN = [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]
KY_UP = [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]
SOFT_X = [[-0.2, 0.0, 0.2], [-1.0, 0.0, 1.0], [-0.2, 0.0, 0.2]]
SOFT_Y = [[0.2, 1.0, 0.2], [0.0, 0.0, 0.0], [-0.2, -1.0, -0.2]]


def correlate(x: torch.Tensor, kernel: list[list[float]], padding: str = "zeros") -> torch.Tensor:
    """3x3 cross-correlation of (N, 1, H, W) images, same size out."""
    w = torch.tensor(kernel, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    if padding == "replicate":
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w)
    return F.conv2d(x, w, padding=1)


def resize(x: torch.Tensor, ratio: float, method: str = "bilinear") -> torch.Tensor:
    """Resize by ``ratio``: to ``max(1, round(side * ratio))`` (bilinear without corner alignment, or area), or
    ``avgpool``: 2x average pooling repeated, a side of one pixel no longer halved."""
    if ratio == 1.0:
        return x
    if method == "avgpool":
        for _ in range(round(-math.log2(ratio))):
            x = F.avg_pool2d(x, (2 if x.shape[-2] > 1 else 1, 2 if x.shape[-1] > 1 else 1))
        return x
    size = (max(1, int(round(x.shape[-2] * ratio))), max(1, int(round(x.shape[-1] * ratio))))
    if method == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _split(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """float32 fused and sources (the visible luminance is the first channel); sources carry no gradient."""
    return fused.float(), ir.float().detach(), vis[:, :1].float().detach()


class MagnitudeGradLoss(nn.Module):
    """``L1(|gx f| + |gy f|, max(|gx a| + |gy a|, |gx b| + |gy b|))`` (SeAFusion, CDDFuse)."""

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        f, a, b = _split(fused, ir, vis)

        def g(x: torch.Tensor) -> torch.Tensor:
            return correlate(x, KX).abs() + correlate(x, KY_UP).abs()

        return F.l1_loss(g(f), torch.maximum(g(a), g(b)))


class AxisMaxGradLoss(nn.Module):
    """Per axis, ``L1(|g f|, max(|g a|, |g b|))``, summed over the two axes, replicate padding (LUT-Fuse)."""

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        f, a, b = _split(fused, ir, vis)
        total = f.new_zeros(())
        for kernel in (KX, KY_DOWN):
            gf, ga, gb = (correlate(x, kernel, "replicate").abs() for x in (f, a, b))
            total = total + F.l1_loss(gf, torch.maximum(ga, gb))
        return total


class SignedSumGradLoss(nn.Module):
    """TC-MoA's term: one signed map ``s = Sx * x + Sy * x`` with soft kernels; the target is the source's
    ``s`` of larger magnitude, with its sign (ties to the visible image)."""

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        f, a, b = _split(fused, ir, vis)

        def s(x: torch.Tensor) -> torch.Tensor:
            return correlate(x, SOFT_X) + correlate(x, SOFT_Y)

        sa, sb = s(a), s(b)
        return F.l1_loss(s(f), torch.where(sb.abs() >= sa.abs(), sb, sa))


class DAMGL(DAMGLSwitches):
    """Direction-aware multi-scale gradient loss: ``sum_k w_k loss_k`` over resized copies of all three images.

    Per scale, with ``sign`` (the default), each axis ``L1(g f, g s*)`` where ``s*`` is, per pixel, the source whose
    component is larger in magnitude (ties to the visible image), its sign kept; without ``sign`` each axis
    ``L1(|g f|, max(|g a|, |g b|))``; with ``axis: magnitude`` the magnitude loss ``L1(|gx f| + |gy f|, max(...))``.
    Switches as :class:`losses.DAMGL` (both take them from :class:`losses.gradient.DAMGLSwitches`).
    """

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        f, a, b = _split(fused, ir, vis)
        total = f.new_zeros(())
        for ratio, weight in zip(self.scales, self.weights):
            fs, as_, bs = (resize(x, ratio, self.resize) for x in (f, a, b))
            (gxf, gyf), (gxa, gya), (gxb, gyb) = (
                (correlate(x, KX, self.padding), correlate(x, KY_DOWN, self.padding)) for x in (fs, as_, bs))  # fmt: skip
            if self.axis == "magnitude":
                loss = F.l1_loss(gxf.abs() + gyf.abs(), torch.maximum(gxa.abs() + gya.abs(), gxb.abs() + gyb.abs()))
            elif self.sign:
                tx = torch.where(gxb.abs() >= gxa.abs(), gxb, gxa)
                ty = torch.where(gyb.abs() >= gya.abs(), gyb, gya)
                loss = F.l1_loss(gxf, tx) + F.l1_loss(gyf, ty)
            else:
                loss = F.l1_loss(gxf.abs(), torch.maximum(gxa.abs(), gxb.abs())) + F.l1_loss(
                    gyf.abs(), torch.maximum(gya.abs(), gyb.abs()))  # fmt: skip
            total = total + weight * loss
        return total


LOSSES: Registry[type[nn.Module]] = Registry("loss", {
    "magnitude": MagnitudeGradLoss,
    "axis_max": AxisMaxGradLoss,
    "signed_sum": SignedSumGradLoss,
    "damgl": DAMGL,
})  # fmt: skip


def build(name: str, **kwargs) -> nn.Module:
    """The plain form of a gradient loss, with the same names and switches as :func:`losses.build`."""
    return LOSSES.build(name, **kwargs)
