"""The gradient losses, by name (:data:`LOSSES`), on a fast engine; :mod:`losses.reference` states what they compute.

Every loss is an ``nn.Module`` called as ``loss(fused, ir, vis)`` on
``(N, 1, H, W)`` tensors in [0, 1] (``vis`` may carry more channels: its first
one, the luminance, is used) and returns a scalar. Targets come from the
sources under ``torch.no_grad``; only ``fused`` receives gradients.

Cost: each loss is one autograd node. The fused image and both sources sit on
one zero-framed canvas at full size and one canvas for all coarser scales, so
one pass of shifted adds gives both Sobel axes of every image on a canvas, and
one selection and one comparison follow. A resize by an integer factor is a sum
of strided views. Only sign maps are kept; backward applies the hand-written
Sobel and resize adjoints to them. The losses compute in float32 with autocast
disabled, so they behave the same under bf16/fp16 autocast and never see a
half-precision overflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property, partial

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import Registry

# Kernels as (smoothing weights, sign of the y kernel); see Sobel.
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


def _every(x: torch.Tensor, dim: int, start: int, step: int, count: int) -> torch.Tensor:
    """A view of ``count`` entries of ``x`` along ``dim`` (-1 or -2), from ``start`` every ``step``."""
    stride = list(x.stride())
    size, offset = list(x.shape), x.storage_offset() + start * stride[dim]
    size[dim], stride[dim] = count, stride[dim] * step
    return x.as_strided(size, stride, offset)


class _Canvas:
    """Where the images of one loss call sit in a single zero buffer, one block per scale.

    An image of size (h, w) takes a block of (h + 2 frame, w + 2 frame). With zero padding a
    1-pixel zero frame is the padding, and a 3x3 filter never mixes two blocks. Replicate padding
    takes a 2-pixel frame: the inner ring holds the copied edge, the outer ring stays zero and
    gives the adjoint room for the inner one. The tallest block sits at the top left, the others
    fill columns to its right, top to bottom. One pass of each operation then serves every image
    on the canvas, which matters on small images, where the cost per call dominates.
    """

    def __init__(self, sizes: Sequence[tuple[int, int]], frame: int):
        self.frame = frame
        height = max(h for h, _ in sizes) + 2 * frame
        origins: dict[int, tuple[int, int]] = {}
        x = y = column = 0
        for k in sorted(range(len(sizes)), key=lambda k: -sizes[k][0]):
            rows, cols = sizes[k][0] + 2 * frame, sizes[k][1] + 2 * frame
            if y + rows > height:
                x, y, column = x + column, 0, 0
            origins[k] = (y, x)
            y, column = y + rows, max(column, cols)
        self.sizes = [tuple(s) for s in sizes]
        self.origins = [origins[k] for k in range(len(sizes))]
        self.shape = (height, x + column)

    def view(self, t: torch.Tensor, k: int, valid: bool = False, grow: int = 0) -> torch.Tensor:
        """Image ``k`` inside ``t`` (grown by ``grow`` pixels on each side): a canvas-sized tensor, or with
        ``valid`` a 3x3 filter's 'valid' output (or adjoint), which lacks one pixel on each side."""
        (r, c), (h, w) = self.origins[k], self.sizes[k]
        (sr, sc), first = t.stride()[-2:], self.frame - valid - grow
        return t.as_strided((*t.shape[:-2], h + 2 * grow, w + 2 * grow), t.stride(),
                            t.storage_offset() + (r + first) * sr + (c + first) * sc)  # fmt: skip

    def blank(self, like: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        """A ``(*lead, *shape)`` buffer, zero outside the images; the images are left to the caller."""
        if len(self.sizes) > 1:
            return like.new_zeros((*lead, *self.shape))
        buf, m = like.new_empty((*lead, *self.shape)), self.frame
        buf[..., :m, :].zero_()
        buf[..., -m:, :].zero_()
        buf[..., m:-m, :m].zero_()
        buf[..., m:-m, -m:].zero_()
        return buf

    def count(self, k: int) -> int:
        """Pixels of image ``k``."""
        return self.sizes[k][0] * self.sizes[k][1]


class Sobel(nn.Module):
    """A separable 3x3 gradient on both axes, and L1 losses on it with a hand-written backward pass.

    The one Sobel helper of the project (exported as ``losses.Sobel``): ``Sobel()(x)`` gives
    ``[gx, gy]`` of ``(.., H, W)`` images with zero padding, ``gx`` rightwards and ``gy``
    downwards; ``Sobel(padding="replicate")`` pads by edge copies.

    ``gx`` correlates with ``outer(smooth, [-1, 0, 1])`` and ``gy`` with
    ``y_sign * outer([-1, 0, 1], smooth)``: Sobel is ``smooth = (1, 2, 1)``,
    TC-MoA's soft kernels ``(0.2, 1, 0.2)``. Both run as shifted adds on a
    padded canvas (see :class:`_Canvas`), which equal the convolution up to
    float rounding; each kernel's flip is its negative (symmetric smoothing,
    antisymmetric difference), so the backward pass is minus the same operator.
    On a CPU this costs a fraction of a one-channel convolution.
    """

    def __init__(self, smooth: Sequence[float] = (1.0, 2.0, 1.0), y_sign: float = 1.0, padding: str = "zeros"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding: '{padding}' is not one of {list(PADDINGS)}")
        if len(smooth) != 3 or smooth[0] != smooth[2] or 1.0 not in smooth[:2]:
            raise ValueError(f"smooth: expected symmetric weights (1, w, 1) or (w, 1, w), got {smooth!r}")
        self.padding = padding
        self.smooth = tuple(float(v) for v in smooth)
        self.y_sign = float(y_sign)
        self.frame = 2 if padding == "replicate" else 1  # see _Canvas

    def kernels(self) -> torch.Tensor:
        """The two 3x3 cross-correlation kernels, shape (2, 3, 3), float64."""
        s, d = torch.tensor(self.smooth, dtype=torch.float64), torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
        return torch.stack([torch.outer(s, d), self.y_sign * torch.outer(d, s)])

    def pad(self, ring: torch.Tensor) -> None:
        """Fill the padding ring around an image written inside ``ring`` (the canvas is zero already)."""
        if self.padding == "replicate":
            ring[..., 1:-1, 0] = ring[..., 1:-1, 1]
            ring[..., 1:-1, -1] = ring[..., 1:-1, -2]
            ring[..., 0, :] = ring[..., 1, :]
            ring[..., -1, :] = ring[..., -2, :]

    def _smoothed(self, p: torch.Tensor, dim: int) -> torch.Tensor:
        """'Valid' filtering of ``p`` with the smoothing weights along ``dim``."""
        n = p.shape[dim] - 2
        w0, w1, _ = self.smooth
        ends, mid = p.narrow(dim, 0, n) + p.narrow(dim, 2, n), p.narrow(dim, 1, n)
        return ends.add_(mid, alpha=w1) if w0 == 1 else torch.add(mid, ends, alpha=w0, out=ends)

    @staticmethod
    def _ends(s: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s[2:], s[:-2])`` along ``dim``: the two taps of the difference ``[-1, 0, 1]``."""
        m = s.shape[dim] - 2
        return s.narrow(dim, 2, m), s.narrow(dim, 0, m)

    def gradients(self, p: torch.Tensor) -> torch.Tensor:
        """``[gx, gy]`` of the padded ``p`` (S, 1, H, W), 'valid': shape (2, S, 1, H - 2, W - 2)."""
        out = p.new_empty((2, *p.shape[:-2], p.shape[-2] - 2, p.shape[-1] - 2))
        hi, lo = self._ends(self._smoothed(p, -2), -1)
        torch.sub(hi, lo, out=out[0])
        hi, lo = self._ends(self._smoothed(p, -1), -2)
        torch.sub(*((hi, lo) if self.y_sign > 0 else (lo, hi)), out=out[1])
        if abs(self.y_sign) != 1:
            out[1].mul_(abs(self.y_sign))
        return out

    def adjoint(self, maps: torch.Tensor) -> torch.Tensor:
        """Gradient with respect to the padded input of ``sum(maps * gradients(p))``, 'valid' as there.

        ``maps`` (2, N, 1, H, W) must be zero outside the images; the result (N, 1, H - 2, W - 2)
        lines up with :meth:`gradients`' output. :meth:`image_grad` takes one image's part.
        """
        hi, lo = self._ends(self._smoothed(maps[0], -2), -1)
        grad = torch.sub(lo, hi)
        hi, lo = self._ends(self._smoothed(maps[1], -1), -2)
        if self.y_sign < 0:
            hi, lo = lo, hi
        if abs(self.y_sign) != 1:
            return grad.add_(torch.sub(lo, hi), alpha=abs(self.y_sign))
        return grad.add_(lo).sub_(hi)

    def image_grad(self, adjoint: torch.Tensor, canvas: _Canvas, k: int) -> torch.Tensor:
        """Image ``k``'s part of :meth:`adjoint`, its padding ring folded back onto the edge it copied."""
        if self.padding == "zeros":
            return canvas.view(adjoint, k, valid=True)
        ring = canvas.view(adjoint, k, valid=True, grow=1)
        ring[..., 1, :] += ring[..., 0, :]
        ring[..., -2, :] += ring[..., -1, :]
        ring[..., :, 1] += ring[..., :, 0]
        ring[..., :, -2] += ring[..., :, -1]
        return ring[..., 1:-1, 1:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked gradients ``(2, *x.shape)``: ``[gx, gy]`` (no autograd; for targets)."""
        canvas = _Canvas([tuple(x.shape[-2:])], self.frame)
        p = canvas.blank(x, x.shape[:-2])
        canvas.view(p, 0).copy_(x.detach())
        self.pad(canvas.view(p, 0, grow=1))
        return canvas.view(self.gradients(p), 0, valid=True)

    def l1(self, x: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
        """L1 between a map of ``x``'s gradients and a fixed ``target``, differentiable in ``x``.

        Modes: ``axes`` ``L1(gx, tx) + L1(gy, ty)``; ``abs_axes`` the same on ``|g|``;
        ``magnitude`` ``L1(|gx| + |gy|, t)``; ``sum`` ``L1(gx + gy, t)``.
        """
        return _GradientL1.apply(x, target, self, mode)


def _mapped(g: torch.Tensor, mode: str) -> torch.Tensor:
    """The map of stacked gradients ``g`` (2, S, ..) that ``mode`` compares (see ``Sobel.l1``)."""
    if mode == "axes":
        return g
    if mode == "abs_axes":
        return g.abs()
    return torch.add(*g.abs()) if mode == "magnitude" else torch.add(*g)


def _larger_with_sign(m: torch.Tensor, n: int) -> torch.Tensor:
    """Elementwise, of ``m[.., :n]`` (ir) and ``m[.., n:]`` (vis), the value of larger magnitude with its sign;
    ties go to the visible image.

    ``lerp(a, b, w)`` returns ``b - (b - a) (1 - w)`` for ``w >= 0.5``, so with a 0/1 float mask it picks
    exactly; this is several times faster than ``where`` with a boolean mask on a CPU.
    """
    size = m.abs()
    a, b = m.narrow(-4, 0, n), m.narrow(-4, n, n)
    take_b = torch.ge(size.narrow(-4, n, n), size.narrow(-4, 0, n), out=torch.empty_like(a))
    return torch.lerp(a, b, take_b)


def _source_target(m: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """The target from the mapped source gradients ``m`` (ir items, then vis items, on axis -4)."""
    if mode in ("axes", "sum"):
        return _larger_with_sign(m, n)
    return torch.maximum(m.narrow(-4, 0, n), m.narrow(-4, n, n))


def _write_signs(out: torch.Tensor, gf: torch.Tensor, diff: torch.Tensor, mode: str) -> None:
    """Write ``d |diff| / d gf`` into ``out`` (2, N, .., h, w) for the stacked gradients ``gf``."""
    if mode == "axes":
        torch.sign(diff, out=out)
    elif mode == "sum":
        torch.sign(diff, out=out[0])
        out[1].copy_(out[0])
    else:  # through |g|
        torch.mul(torch.sign(gf), torch.sign(diff), out=out)


class _GradientL1(torch.autograd.Function):
    """``Sobel.l1`` as one autograd node (see there)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, target: torch.Tensor, sobel: Sobel, mode: str):  # noqa: D102
        g = sobel(x)
        diff = _mapped(g, mode) - target
        canvas = _Canvas([tuple(x.shape[-2:])], sobel.frame)
        maps = canvas.blank(x, (2, *x.shape[:-2]))
        _write_signs(canvas.view(maps, 0), g, diff, mode)
        ctx.sobel, ctx.canvas, ctx.count = sobel, canvas, g[0].numel()
        ctx.save_for_backward(maps)
        return diff.abs_().sum() / ctx.count

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        (maps,) = ctx.saved_tensors
        grad = ctx.sobel.image_grad(ctx.sobel.adjoint(maps), ctx.canvas, 0) * (grad_out / ctx.count)
        return grad, None, None, None


def _resized_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    """``(max(1, round(H r)), max(1, round(W r)))`` with Python's rounding, as the release."""
    return max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))


def _avgpool_halvings(ratio: float) -> int:
    """Number of 2x poolings for a ratio that is a power of 1/2; ValueError otherwise."""
    k = -math.log2(ratio)
    if abs(k - round(k)) > 1e-9:
        raise ValueError(f"scales: resize 'avgpool' needs ratios that are powers of 1/2, got {ratio}")
    return int(round(k))


def _avgpool(x: torch.Tensor, halvings: int) -> torch.Tensor:
    """2x average pooling ``halvings`` times; a side of one pixel is no longer halved."""
    for _ in range(halvings):
        x = F.avg_pool2d(x, (2 if x.shape[-2] > 1 else 1, 2 if x.shape[-1] > 1 else 1))
    return x


def _pooled_side(n: int, halvings: int) -> tuple[int, bool]:
    """The side after ``halvings`` 2x poolings, and whether every pooling kept all pixels."""
    exact = True
    for _ in range(halvings):
        if n > 1:
            exact, n = exact and n % 2 == 0, n // 2
    return n, exact


def _taps(method: str, n_in: int, n_out: int) -> tuple[int, tuple[int, ...], float] | None:
    """One axis of a resize by an integer factor ``k`` as ``(k, taps, factor)``: output ``i`` is ``factor`` times the
    sum of inputs ``k i + t`` over the taps; ``None`` when ``n_in`` is not ``k n_out``.

    Bilinear with align_corners=False samples ``k i + (k - 1) / 2``: the mean of two neighbours for even ``k``, one
    pixel for odd ``k``. Area and exact 2x poolings take the mean of the ``k`` pixels.
    """
    k = n_in // n_out
    if k * n_out != n_in:
        return None
    if method != "bilinear":
        return k, tuple(range(k)), 1.0 / k
    return (k, (k // 2 - 1, k // 2), 0.5) if k % 2 == 0 else (k, ((k - 1) // 2,), 1.0)


def _summed(views: list[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """The sum of same-shaped tensors, written into ``out`` when given (a lone view is returned as is)."""
    if len(views) == 1:
        return views[0] if out is None else out.copy_(views[0])
    total = torch.add(views[0], views[1], out=out)
    for view in views[2:]:
        total.add_(view)
    return total


class _Resize:
    """One resize of ``(.., H, W)`` tensors with its adjoint, for one loss scale.

    When both sides shrink by integer factors (128 -> 64 -> 32), the resize is a sum of strided
    views and its adjoint a few strided adds: exact, and far cheaper than the general kernels,
    which serve every other size. The strided path leaves out the constant ``factor``; every loss
    here is positively homogeneous in the resized images, so the caller folds it into the weight.
    """

    def __init__(self, method: str, h: int, w: int, ratio: float):
        if method == "avgpool":
            halvings = _avgpool_halvings(ratio)
            (self.h, exact_h), (self.w, exact_w) = _pooled_side(h, halvings), _pooled_side(w, halvings)
            self.general = partial(_avgpool, halvings=halvings)
        else:
            (self.h, self.w), exact_h, exact_w = _resized_size(h, w, ratio), True, True
            extra = {"align_corners": False} if method == "bilinear" else {}
            self.general = partial(F.interpolate, size=(self.h, self.w), mode=method, **extra)
        self.method = method
        self.rows, self.cols = _taps(method, h, self.h), _taps(method, w, self.w)
        self.strided = exact_h and exact_w and self.rows is not None and self.cols is not None
        self.factor = self.rows[2] * self.cols[2] if self.strided else 1.0

    def __call__(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the resized ``x`` (divided by ``factor``) into ``out``."""
        if not self.strided:
            return out.copy_(self.general(x))
        (kh, rows, _), (kw, cols, _) = self.rows, self.cols
        across = _summed([_every(x, -1, t, kw, self.w) for t in cols])  # along the width first, as PyTorch
        return _summed([_every(across, -2, t, kh, self.h) for t in rows], out)

    def adjoint_add(self, grad: torch.Tensor, g: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Add ``scale`` times the adjoint of :meth:`__call__` applied to ``g`` into ``grad`` (full size)."""
        if self.strided:
            (kh, rows, _), (kw, cols, _) = self.rows, self.cols
            if len(cols) == kw:  # every column takes part: repeat each value
                spread = g.repeat_interleave(kw, -1)
            else:  # taps are consecutive columns of each group of kw
                spread = g.new_zeros((*g.shape, kw))
                spread[..., cols[0] : cols[-1] + 1] = g.unsqueeze(-1)
                spread = spread.flatten(-2)
            for r in rows:  # full rows, contiguous along the width
                _every(grad, -2, r, kh, self.h).addcmul_(spread, scale)
            return grad
        if self.method == "bilinear":  # F.interpolate(size=...) runs upsample_bilinear2d without scales
            full = torch.ops.aten.upsample_bilinear2d_backward(g, [self.h, self.w], list(grad.shape),
                                                               False, None, None)  # fmt: skip
        else:
            with torch.enable_grad():
                leaf = grad.new_zeros(grad.shape).requires_grad_()
                full = torch.autograd.grad(self.general(leaf), leaf, g)[0]
        return grad.addcmul_(full, scale)


class _MultiScaleL1(torch.autograd.Function):
    """``sum_k w_k L1(map(G(R_k f)), target_k)`` as one autograd node, targets from the sources.

    The fused image and both sources share one canvas at full size and one for all coarser scales
    (see :class:`_Canvas`), so one gradient pass, one target selection and one comparison serve
    each canvas. Per scale, one resize writes all three images into place. Only the sign maps are
    kept; backward applies one adjoint per canvas, then each scale's weight and resize adjoint.
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor, a: torch.Tensor, b: torch.Tensor, sobel: Sobel, mode: str,  # noqa: D102
                plan: tuple) -> torch.Tensor:  # fmt: skip
        n, size = f.shape[0], tuple(f.shape[-2:])
        full = [k for k, (_, resize) in enumerate(plan) if resize is None]
        groups = [group for group in (full, [k for k in range(len(plan)) if k not in full]) if group]
        total, stack, kept, all_maps = f.new_zeros(()), None, [], []
        for group in groups:
            sizes = [size if plan[k][1] is None else (plan[k][1].h, plan[k][1].w) for k in group]
            canvas = _Canvas(sizes, sobel.frame)
            p = canvas.blank(f, (3 * n, 1))
            for i, k in enumerate(group):
                image, resize = canvas.view(p, i), plan[k][1]
                if resize is None and stack is None:
                    for j, x in enumerate((f, a, b)):
                        image[j * n : (j + 1) * n].copy_(x)
                    stack = image
                elif resize is None:
                    image.copy_(stack)
                else:
                    stack = torch.cat([f, a, b]) if stack is None else stack
                    resize(stack, image)
                sobel.pad(canvas.view(p, i, grow=1))
            g = sobel.gradients(p)
            m = _mapped(g, mode)  # the stacked images are on axis -4
            diff = m.narrow(-4, 0, n) - _source_target(m.narrow(-4, n, 2 * n), n, mode)
            gf, maps, shares = g.narrow(1, 0, n), canvas.blank(f, (2, n, 1)), []
            for i, k in enumerate(group):
                weight, resize = plan[k]
                shares.append(weight * (1.0 if resize is None else resize.factor) / (n * canvas.count(i)))
                region = canvas.view(diff, i, valid=True)
                _write_signs(canvas.view(maps, i), canvas.view(gf, i, valid=True), region, mode)
                total += region.abs().sum() * shares[-1]
            kept.append((canvas, group, shares))
            all_maps.append(maps)
        ctx.sobel, ctx.kept, ctx.plan, ctx.shape = sobel, kept, plan, f.shape
        ctx.save_for_backward(*all_maps)
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # noqa: D102
        grad = None
        for (canvas, group, shares), maps in zip(ctx.kept, ctx.saved_tensors):
            adjoint = ctx.sobel.adjoint(maps)
            for i, k in enumerate(group):
                part, resize = ctx.sobel.image_grad(adjoint, canvas, i), ctx.plan[k][1]
                scale = grad_out * shares[i]
                if resize is None:
                    grad = part * scale if grad is None else grad.addcmul_(part, scale)
                    continue
                if grad is None:
                    grad = part.new_zeros(ctx.shape)
                resize.adjoint_add(grad, part, scale)
        return grad, None, None, None, None, None


class _SingleScaleLoss(nn.Module):
    """A gradient loss at full resolution: a kernel pair and a target mode (see ``Sobel.l1``)."""

    smooth: tuple[float, float, float] = SOBEL
    y_sign: float = 1.0
    padding: str = "zeros"
    mode: str = "axes"

    def __init__(self) -> None:
        super().__init__()
        self.sobel = Sobel(self.smooth, self.y_sign, self.padding)

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        with _float32(fused.device):
            f, a, b = _check_inputs(fused, ir, vis)
            return _MultiScaleL1.apply(f, a, b, self.sobel, self.mode, ((1.0, None),))


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


class DAMGLSwitches(nn.Module):
    """DAMGL's switches, checked: the base of the fast :class:`DAMGL` and of its plain form in
    :mod:`losses.reference`, so that both take exactly the same arguments.

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
        if padding not in PADDINGS:
            raise ValueError(f"padding: '{padding}' is not one of {list(PADDINGS)}")
        if resize == "avgpool":
            for r in scales:
                _avgpool_halvings(float(r))
        self.scales = tuple(float(r) for r in scales)
        self.weights = tuple(float(w) for w in weights)
        self.sign, self.axis, self.resize, self.padding = sign, axis, resize, padding

    def extra_repr(self) -> str:
        return (
            f"scales={list(self.scales)}, weights={list(self.weights)}, sign={self.sign}, axis={self.axis}, "
            f"resize={self.resize}, padding={self.padding}"
        )


class DAMGL(DAMGLSwitches):
    """Direction-aware multi-scale gradient loss (arXiv 2510.13067) with the ablation switches of
    :class:`DAMGLSwitches`."""

    @cached_property
    def sobel(self) -> Sobel:
        return Sobel(SOBEL, 1.0, self.padding)

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        with _float32(fused.device):
            f, a, b = _check_inputs(fused, ir, vis)
            mode = "magnitude" if self.axis == "magnitude" else ("axes" if self.sign else "abs_axes")
            h, w = f.shape[-2:]
            plan = tuple((wt, None if r == 1 else _Resize(self.resize, h, w, r))
                         for r, wt in zip(self.scales, self.weights) if wt > 0)  # fmt: skip
            return _MultiScaleL1.apply(f, a, b, self.sobel, mode, plan)


LOSSES: Registry[type[nn.Module]] = Registry("gradient loss", {
    "magnitude": MagnitudeGradLoss,
    "axis_max": AxisMaxGradLoss,
    "signed_sum": SignedSumGradLoss,
    "damgl": DAMGL,
})  # fmt: skip
