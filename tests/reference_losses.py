"""Plain transcriptions of the gradient losses as specs/losses.md and their releases state them.

Each image and each axis gets its own convolution, kernels are rebuilt per
call, everything runs with autograd: slow and obvious, for cross-checks only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KX = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
KY_DOWN = [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]
KY_UP = [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]


def conv(x, k, pad="zeros"):
    w = torch.tensor(k, dtype=x.dtype).view(1, 1, 3, 3)
    if pad == "replicate":
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), w)
    return F.conv2d(x, w, padding=1)


def magnitude(f, a, b):
    g = lambda x: conv(x, KX).abs() + conv(x, KY_UP).abs()  # noqa: E731
    return F.l1_loss(g(f), torch.max(g(a), g(b)))


def axis_max(f, a, b):
    gx = lambda x: conv(x, KX, "replicate").abs()  # noqa: E731
    gy = lambda x: conv(x, KY_DOWN, "replicate").abs()  # noqa: E731
    return F.l1_loss(gx(f), torch.max(gx(a), gx(b))) + F.l1_loss(gy(f), torch.max(gy(a), gy(b)))


def signed_sum(f, a, b):
    sx = [[-0.2, 0, 0.2], [-1, 0, 1], [-0.2, 0, 0.2]]
    sy = [[0.2, 1, 0.2], [0, 0, 0], [-0.2, -1, -0.2]]
    s = lambda x: conv(x, sx) + conv(x, sy)  # noqa: E731
    sa, sb = s(a), s(b)
    mask = sb.abs() >= sa.abs()
    target = sa.masked_fill(mask, 0) + sb.masked_fill(~mask, 0)
    return F.l1_loss(s(f), target)


def resize(x, r, mode="bilinear"):
    if r == 1.0:
        return x
    if mode == "avgpool":
        for _ in range(round(-math.log2(r))):
            x = F.avg_pool2d(x, (2 if x.shape[-2] > 1 else 1, 2 if x.shape[-1] > 1 else 1))
        return x
    size = (max(1, int(round(x.shape[-2] * r))), max(1, int(round(x.shape[-1] * r))))
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def damgl(f, a, b, scales=(1.0, 0.5, 0.25), weights=None, sign=True, axis="xy", resize_mode="bilinear", pad="zeros"):
    weights = weights or [1.0 / len(scales)] * len(scales)
    total = 0.0
    for r, w in zip(scales, weights):
        fs, as_, bs = (resize(x, r, resize_mode) for x in (f, a, b))
        gxf, gyf = conv(fs, KX, pad), conv(fs, KY_DOWN, pad)
        gxa, gya = conv(as_, KX, pad), conv(as_, KY_DOWN, pad)
        gxb, gyb = conv(bs, KX, pad), conv(bs, KY_DOWN, pad)
        if axis == "magnitude":
            ga, gb = gxa.abs() + gya.abs(), gxb.abs() + gyb.abs()
            loss = F.l1_loss(gxf.abs() + gyf.abs(), torch.max(ga, gb))
        elif sign:
            tx = torch.where(gxb.abs() >= gxa.abs(), gxb, gxa)
            ty = torch.where(gyb.abs() >= gya.abs(), gyb, gya)
            loss = F.l1_loss(gxf, tx) + F.l1_loss(gyf, ty)
        else:
            loss = F.l1_loss(gxf.abs(), torch.max(gxa.abs(), gxb.abs())) + F.l1_loss(
                gyf.abs(), torch.max(gya.abs(), gyb.abs())
            )
        total = total + w * loss
    return total
