"""Gradient losses compared by the benchmark (``specs/losses.md``).

Every loss is an ``nn.Module`` called as ``loss(fused, ir, vis)`` on
``(N, 1, H, W)`` tensors in [0, 1] (``vis`` may carry more channels: its first
one, the luminance, is used) and returns a scalar. Targets come from the
sources under ``torch.no_grad``; only ``fused`` receives gradients.

Cost: each loss is one autograd node. Per scale, one resize call serves the
fused image and both sources, one pass of shifted adds gives both Sobel axes of
all three, and backward applies the hand-written Sobel and resize adjoints to
the kept sign maps. The losses compute in float32 with autocast disabled, so
they behave the same under bf16/fp16 autocast and never see a half-precision
overflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

# Kernels as (smoothing weights, sign of the y kernel); see _SobelPair.
# Sobel Kx = [[-1,0,1],[-2,0,2],[-1,0,1]]; Ky = [[-1,-2,-1],[0,0,0],[1,2,1]] (y_sign +1, DAMGL,
# axis_max) or its negative (y_sign -1, SeAFusion's magnitude term, where the sign cancels).
SOBEL = (1.0, 2.0, 1.0)
# TC-MoA: Sx = [[-0.2,0,0.2],[-1,0,1],[-0.2,0,0.2]], Sy = [[0.2,1,0.2],[0,0,0],[-0.2,-1,-0.2]] (y_sign -1).
SOFT = (0.2, 1.0, 0.2)

PADDINGS = ("zeros", "replicate")
RESIZES = ("bilinear", "area", "avgpool")
AXES = ("xy", "magnitude")


def _float32(device: torch.device) -> torch.autocast:
    """Context for float32 math with autocast off, whatever the caller's autocast state."""
    return torch.autocast(device_type=device.type, enabled=False)


def _check_inputs(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Validate shapes and return float32 (fused, ir, vis-luminance)."""
    if fused.ndim != 4 or fused.shape[1] != 1:
        raise ValueError(f"fused must be (N, 1, H, W), got {tuple(fused.shape)}")
    vis_y = vis[:, :1]
    for name, t in (("ir", ir), ("vis", vis_y)):
        if t.ndim != 4 or t.shape[0] != fused.shape[0] or t.shape[1] != 1 or t.shape[-2:] != fused.shape[-2:]:
            raise ValueError(f"{name} must match fused {tuple(fused.shape)}, got {tuple(t.shape)}")
    return fused.float(), ir.float(), vis_y.float()


class _SobelPair(nn.Module):
    """A separable 3x3 gradient on both axes, and L1 losses on it with a hand-written backward pass.

    ``gx`` correlates with ``outer(smooth, [-1, 0, 1])`` and ``gy`` with
    ``y_sign * outer([-1, 0, 1], smooth)``: Sobel is ``smooth = (1, 2, 1)``,
    TC-MoA's soft kernels ``(0.2, 1, 0.2)``. Both run as shifted adds, which
    equal the convolution up to float rounding; each kernel's flip is its
    negative (symmetric smoothing, antisymmetric difference), so the backward
    pass is minus the same operator. On a CPU this costs a fraction of a
    one-channel convolution and of autograd through the slices.
    """

    def __init__(self, smooth: Sequence[float], y_sign: float, padding: str = "zeros"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding: '{padding}' is not one of {list(PADDINGS)}")
        if len(smooth) != 3 or smooth[0] != smooth[2]:
            raise ValueError(f"smooth: expected symmetric weights (w0, w1, w0), got {smooth!r}")
        self.padding = padding
        self.smooth = tuple(float(v) for v in smooth)
        self.y_sign = float(y_sign)

    def kernels(self) -> torch.Tensor:
        """The two 3x3 cross-correlation kernels, shape (2, 3, 3), float64."""
        s, d = torch.tensor(self.smooth, dtype=torch.float64), torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
        return torch.stack([torch.outer(s, d), self.y_sign * torch.outer(d, s)])

    def _valid(self, p: torch.Tensor, axis: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """'Valid' correlation of a padded (.., H + 2, W + 2) tensor with the kernel of one axis (0: x, 1: y)."""
        across, along = (-2, -1) if axis == 0 else (-1, -2)
        n = p.shape[across] - 2
        w0, w1, _ = self.smooth
        ends = p.narrow(across, 0, n) + p.narrow(across, 2, n)
        smoothed = (ends if w0 == 1 else w0 * ends) + w1 * p.narrow(across, 1, n)
        m = p.shape[along] - 2
        out = torch.sub(smoothed.narrow(along, 2, m), smoothed.narrow(along, 0, m), out=out)
        return out.mul_(self.y_sign) if axis == 1 and self.y_sign != 1 else out

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1), mode="replicate" if self.padding == "replicate" else "constant")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked gradients ``(2, *x.shape)``: ``[gx, gy]`` (no autograd; for targets)."""
        p = self._pad(x.detach())
        out = x.new_empty((2, *x.shape))
        self._valid(p, 0, out[0])
        self._valid(p, 1, out[1])
        return out

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """Gradient with respect to ``x`` of ``sum(g * forward(x))``."""
        pad = 2 if self.padding == "replicate" else 1  # replicate: on the padded image, folded below
        grad = self._valid(F.pad(g[0], (pad,) * 4), 0)
        grad += self._valid(F.pad(g[1], (pad,) * 4), 1)
        grad.neg_()
        if self.padding == "replicate":  # each padded pixel copied an edge pixel: add its gradient there
            grad[..., 1, :] += grad[..., 0, :]
            grad[..., -2, :] += grad[..., -1, :]
            grad[..., :, 1] += grad[..., :, 0]
            grad[..., :, -2] += grad[..., :, -1]
            grad = grad[..., 1:-1, 1:-1]
        return grad

    def l1(self, x: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
        """L1 between a map of ``x``'s gradients and a fixed ``target``, differentiable in ``x``.

        Modes: ``axes`` ``L1(gx, tx) + L1(gy, ty)``; ``abs_axes`` the same on ``|g|``;
        ``magnitude`` ``L1(|gx| + |gy|, t)``; ``sum`` ``L1(gx + gy, t)``.
        """
        return _GradientL1.apply(x, target, self, mode)


def _mapped(g: torch.Tensor, mode: str) -> torch.Tensor:
    """The map of stacked gradients ``g`` that ``mode`` compares (see ``_SobelPair.l1``)."""
    if mode == "axes":
        return g
    if mode == "abs_axes":
        return g.abs()
    return g.abs().sum(0) if mode == "magnitude" else g.sum(0)


def _count(diff: torch.Tensor, mode: str) -> int:
    """Pixels an L1 mean divides by (each axis of ``axes`` modes is a mean of its own)."""
    return diff.numel() // (2 if mode in ("axes", "abs_axes") else 1)


def _signs(diff: torch.Tensor, g: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What backward keeps: ``sign(diff)`` and, for modes with ``|g|``, ``sign(g)``."""
    return torch.sign(diff), (torch.sign(g) if mode in ("abs_axes", "magnitude") else None)


def _unmap(d_mapped: torch.Tensor, sign_g: torch.Tensor | None, mode: str) -> torch.Tensor:
    """Chain rule through :func:`_mapped`: the gradient with respect to the stacked ``g``."""
    if sign_g is not None:
        return d_mapped * sign_g
    return d_mapped.expand(2, *d_mapped.shape) if mode == "sum" else d_mapped


class _GradientL1(torch.autograd.Function):
    """``_SobelPair.l1`` as one autograd node (see there)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, target: torch.Tensor, sobel: _SobelPair, mode: str):  # noqa: D102
        g = sobel(x)
        diff = _mapped(g, mode) - target
        ctx.sobel, ctx.mode, ctx.count = sobel, mode, _count(diff, mode)
        ctx.save_for_backward(*_signs(diff, g, mode))
        return diff.abs().sum() / ctx.count

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        sign_diff, sign_g = ctx.saved_tensors
        return ctx.sobel.adjoint(_unmap(sign_diff * (grad_out / ctx.count), sign_g, ctx.mode)), None, None, None


def _magnitude(g: torch.Tensor) -> torch.Tensor:
    """``|gx| + |gy|`` of stacked gradients."""
    return g.abs().sum(0)


def _larger_with_sign(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise the value of larger magnitude, with its sign; ties go to ``b`` (the visible image)."""
    return torch.where(b.abs() >= a.abs(), b, a)


# Target from the two sources' stacked gradients, for each mode of _SobelPair.l1.
_TARGETS = {
    "magnitude": lambda ga, gb: torch.maximum(_magnitude(ga), _magnitude(gb)),
    "abs_axes": lambda ga, gb: torch.maximum(ga.abs(), gb.abs()),
    "axes": _larger_with_sign,
    "sum": lambda ga, gb: _larger_with_sign(ga.sum(0), gb.sum(0)),
}


def _resize_adjoint(grad: torch.Tensor, full: torch.Tensor, resize: partial) -> torch.Tensor:
    """Gradient with respect to ``full`` of ``sum(grad * resize(full))``."""
    if resize.keywords.get("mode") == "bilinear":  # F.interpolate(size=...) runs upsample_bilinear2d without scales
        return torch.ops.aten.upsample_bilinear2d_backward(grad, list(grad.shape[-2:]), list(full.shape),
                                                           False, None, None)  # fmt: skip
    with torch.enable_grad():
        leaf = full.detach().requires_grad_()
        return torch.autograd.grad(resize(leaf), leaf, grad)[0]


class _MultiScaleL1(torch.autograd.Function):
    """``sum_k w_k L1(map(G(R_k f)), target_k)`` as one autograd node, targets from the sources.

    Per scale ``k`` one resize call serves the fused image and both sources, and one
    gradient pass serves all three; only the sign maps are kept for backward, which
    applies the Sobel adjoint and the resize adjoint directly.
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor, sources: torch.Tensor, sobel: _SobelPair, mode: str, plan: tuple):  # noqa: D102
        n, stack = f.shape[0], torch.cat([f.detach(), sources])
        total, saved = f.new_zeros(()), []
        for weight, resize in plan:
            g = sobel(stack if resize is None else resize(stack))
            gf = g[:, :n]
            diff = _mapped(gf, mode) - _TARGETS[mode](g[:, n : 2 * n], g[:, 2 * n :])
            share = weight / _count(diff, mode)
            total += diff.abs().sum() * share
            sign_diff, sign_g = _signs(diff, gf, mode)
            saved.append((sign_diff.mul_(share), sign_g, resize))
        ctx.sobel, ctx.mode, ctx.saved, ctx.full = sobel, mode, saved, f.detach()
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        grad = None
        for d_mapped, sign_g, resize in ctx.saved:
            part = ctx.sobel.adjoint(_unmap(d_mapped * grad_out, sign_g, ctx.mode))
            if resize is not None:
                part = _resize_adjoint(part, ctx.full, resize)
            grad = part if grad is None else grad.add_(part)
        return grad, None, None, None, None


def _gradient_loss(sobel: _SobelPair, mode: str, f: torch.Tensor, sources: torch.Tensor,
                   plan: tuple = ((1.0, None),)) -> torch.Tensor:  # fmt: skip
    """Weighted L1 of ``f``'s gradient maps against targets selected from ``sources = cat([ir, vis])``.

    ``plan`` holds ``(weight, resize)`` per scale, ``resize`` a callable or ``None`` at full size.
    """
    return _MultiScaleL1.apply(f, sources, sobel, mode, plan)


class _SingleScaleLoss(nn.Module):
    """A gradient loss at full resolution: a kernel pair and a target mode (see ``_SobelPair.l1``)."""

    smooth: tuple[float, float, float] = SOBEL
    y_sign: float = 1.0
    padding: str = "zeros"
    mode: str = "axes"

    def __init__(self) -> None:
        super().__init__()
        self.sobel = _SobelPair(self.smooth, self.y_sign, self.padding)

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        with _float32(fused.device):
            f, a, b = _check_inputs(fused, ir, vis)
            return _gradient_loss(self.sobel, self.mode, f, torch.cat([a, b]))


class MagnitudeGradLoss(_SingleScaleLoss):
    """The conventional term (SeAFusion, CDDFuse): ``L1(|gx f| + |gy f|, max(G(a), G(b)))``."""

    y_sign, mode = -1.0, "magnitude"


class AxisMaxGradLoss(_SingleScaleLoss):
    """LUT-Fuse's per-axis maximum of absolute gradients, replicate padding."""

    padding, mode = "replicate", "abs_axes"


class SignedSumGradLoss(_SingleScaleLoss):
    """TC-MoA's released term: one signed map ``s = Sx*x + Sy*x`` with soft kernels; the source with
    the larger ``|s|`` is the target (ties to visible)."""

    smooth, y_sign, mode = SOFT, -1.0, "sum"


def _resized_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    """``(max(1, round(H r)), max(1, round(W r)))`` with Python's rounding, as the release."""
    return max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))


def _avgpool_halvings(ratio: float) -> int:
    """Number of 2x poolings for a ratio that is a power of 1/2; ValueError otherwise."""
    k = -math.log2(ratio)
    if abs(k - round(k)) > 1e-9:
        raise ValueError(f"scales: resize 'avgpool' needs ratios that are powers of 1/2, got {ratio}")
    return int(round(k))


class DAMGL(nn.Module):
    """Direction-aware multi-scale gradient loss (arXiv 2510.13067) with the ablation switches.

    Args:
        scales: resize ratios in (0, 1]; the paper's default is (1, 0.5, 0.25).
        weights: ``"equal"`` (1 / number of scales) or one non-negative weight per scale.
        sign: keep the selected component's sign (``True``) or compare magnitudes per axis.
        axis: ``"xy"`` supervises each Sobel axis; ``"magnitude"`` collapses to ``|gx| + |gy|`` first
            (only with ``sign=False``).
        resize: ``"bilinear"`` (align_corners=False), ``"area"``, or ``"avgpool"`` (2x average pooling
            repeated; ratios must be powers of 1/2; a side of one pixel is no longer halved).
        padding: ``"zeros"`` or ``"replicate"`` for the Sobel filters.
    """

    def __init__(
        self,
        scales: Sequence[float] = (1.0, 0.5, 0.25),
        weights: str | Sequence[float] = "equal",
        sign: bool = True,
        axis: str = "xy",
        resize: str = "bilinear",
        padding: str = "zeros",
    ):
        super().__init__()
        if isinstance(scales, (int, float)) or not len(scales):
            raise ValueError(f"scales: expected a non-empty list of ratios in (0, 1], got {scales!r}")
        for r in scales:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
                raise ValueError(f"scales: every ratio must be a number in (0, 1], got {r!r}")
        if weights == "equal":
            weights = [1.0 / len(scales)] * len(scales)
        elif isinstance(weights, str) or len(weights) != len(scales):
            raise ValueError(f"weights: expected 'equal' or a list of {len(scales)} numbers, got {weights!r}")
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(f"weights: expected non-negative numbers, at least one positive, got {list(weights)}")
        if not isinstance(sign, bool):
            raise ValueError(f"sign: expected true or false, got {sign!r}")
        if axis not in AXES:
            raise ValueError(f"axis: '{axis}' is not one of {list(AXES)}")
        if sign and axis == "magnitude":
            raise ValueError("sign: true has no meaning with axis: magnitude (a magnitude has no sign); set sign: false")
        if resize not in RESIZES:
            raise ValueError(f"resize: '{resize}' is not one of {list(RESIZES)}")
        if resize == "avgpool":
            for r in scales:
                _avgpool_halvings(float(r))
        self.scales = tuple(float(r) for r in scales)
        self.weights = tuple(float(w) for w in weights)
        self.sign, self.axis, self.resize = sign, axis, resize
        self.sobel = _SobelPair(SOBEL, 1.0, padding)

    def extra_repr(self) -> str:
        return (
            f"scales={list(self.scales)}, weights={list(self.weights)}, sign={self.sign}, axis={self.axis}, "
            f"resize={self.resize}, padding={self.sobel.padding}"
        )

    def _resizer(self, h: int, w: int, ratio: float) -> partial | None:
        """A callable resizing ``(.., h, w)`` tensors by ``ratio`` with this loss's method, or ``None`` at 1."""
        if ratio == 1.0:
            return None
        if self.resize == "avgpool":
            return partial(_avgpool, halvings=_avgpool_halvings(ratio))
        if self.resize == "area":
            return partial(F.interpolate, size=_resized_size(h, w, ratio), mode="area")
        return partial(F.interpolate, size=_resized_size(h, w, ratio), mode="bilinear", align_corners=False)

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        with _float32(fused.device):
            f, a, b = _check_inputs(fused, ir, vis)
            mode = "magnitude" if self.axis == "magnitude" else ("axes" if self.sign else "abs_axes")
            h, w = f.shape[-2:]
            plan = tuple((wt, self._resizer(h, w, r)) for r, wt in zip(self.scales, self.weights) if wt > 0)
            return _gradient_loss(self.sobel, mode, f, torch.cat([a, b]), plan)


def _avgpool(x: torch.Tensor, halvings: int) -> torch.Tensor:
    """2x average pooling ``halvings`` times; a side of one pixel is no longer halved."""
    for _ in range(halvings):
        x = F.avg_pool2d(x, (2 if x.shape[-2] > 1 else 1, 2 if x.shape[-1] > 1 else 1))
    return x
