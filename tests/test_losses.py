"""Gradient losses: identities, hand-computed values, cross-checks, autograd, dtypes and errors."""

from __future__ import annotations

import pytest
import torch

import losses
from losses import DAMGL, build, reference


def row(*values: float) -> torch.Tensor:
    """A 1 x W image: its vertical Sobel response is zero, so values are easy to compute by hand."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def rand(n: int = 2, h: int = 37, w: int = 53, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(seed))


def test_identities_hold_exactly() -> None:
    f, a, b = rand(seed=1), rand(seed=2), rand(seed=3)
    assert torch.equal(DAMGL([1.0], axis="magnitude", sign=False)(f, a, b), build("magnitude")(f, a, b))
    assert torch.equal(DAMGL([1.0], sign=False, padding="replicate")(f, a, b), build("axis_max")(f, a, b))


def test_ramp_by_hand() -> None:
    # x = [0, .1, .2, .3, .4]; with zero padding gx = 2 (x[j+1] - x[j-1]) = [.2, .4, .4, .4, -.6]
    ramp, zero = row(0, 0.1, 0.2, 0.3, 0.4), row(0, 0, 0, 0, 0)
    assert build("magnitude")(zero, ramp, zero).item() == pytest.approx(2.0 / 5)
    assert DAMGL([1.0])(zero, ramp, zero).item() == pytest.approx(2.0 / 5)
    assert DAMGL([1.0])(ramp, ramp, zero).item() == 0.0
    # replicate padding: the rows above and below repeat the row, so all three kernel rows
    # count (gx = 4 (x[j+1] - x[j-1])), and the ends see x[-1] = x[0], x[5] = x[4]:
    # gx = [.4, .8, .8, .8, .4]
    assert build("axis_max")(zero, ramp, zero).item() == pytest.approx(3.2 / 5)
    # TC-MoA's soft kernels on one row: s = x[j+1] - x[j-1] = [.1, .2, .2, .2, -.3]
    assert build("signed_sum")(zero, ramp, zero).item() == pytest.approx(1.0 / 5)


def test_opposite_signs_by_hand() -> None:
    # IR steps up where visible steps down: |gx| equal everywhere inside, signs opposite.
    v = 0.6
    a, b = row(0, 0, v, v, 0, 0), row(v, v, 0, 0, v, v)
    # gx(a) = [0, 2v, 2v, -2v, -2v, 0]; gx(b) = [2v, -2v, -2v, 2v, 2v, -2v]
    fused = a
    # magnitude: target max(|gx|) = 2v everywhere; |gx(f)| misses it only at both ends
    assert build("magnitude")(fused, a, b).item() == pytest.approx(4 * v / 6)
    # DAMGL: ties go to the visible image with its sign, so the fused image that copies the
    # infrared edges is told they point the wrong way: |diff| = [2v, 4v, 4v, 4v, 4v, 2v]
    assert DAMGL([1.0])(fused, a, b).item() == pytest.approx(20 * v / 6)
    assert DAMGL([1.0], sign=False)(fused, a, b).item() == pytest.approx(4 * v / 6)


def test_checkerboard_by_hand() -> None:
    # a period-2 pattern has zero Sobel response inside: only the first pixel sees the padding
    board, zero = row(0, 1, 0, 1, 0, 1), row(0, 0, 0, 0, 0, 0)
    assert DAMGL([1.0])(zero, board, zero).item() == pytest.approx(2.0 / 6)
    board2d = (torch.arange(8).view(-1, 1) + torch.arange(8)).remainder(2).float().view(1, 1, 8, 8)
    gx, gy = losses.Sobel()(board2d)  # stacked on axis 0
    assert gx[..., 1:-1, 1:-1].abs().max().item() == 0.0 and gy[..., 1:-1, 1:-1].abs().max().item() == 0.0


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
@pytest.mark.parametrize("size", [(19, 23), (1, 5), (4, 1), (1, 1)])
@pytest.mark.parametrize("smooth,y_sign", [((1.0, 2.0, 1.0), 1.0), ((1.0, 2.0, 1.0), -1.0), ((0.2, 1.0, 0.2), -1.0)])
@pytest.mark.parametrize("mode", ["axes", "abs_axes", "magnitude", "sum"])
def test_shifted_adds_and_backward_equal_autograd_through_convolution(
    smooth: tuple, y_sign: float, padding: str, size: tuple, mode: str
) -> None:
    sobel = losses.Sobel(smooth, y_sign, padding)
    x = rand(2, *size, seed=3).double()

    def by_conv(x: torch.Tensor) -> torch.Tensor:
        p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate" if padding == "replicate" else "constant")
        return torch.nn.functional.conv2d(p, sobel.kernels().double().unsqueeze(1)).transpose(0, 1).unsqueeze(2)

    assert torch.allclose(sobel(x), by_conv(x), atol=1e-12)
    mapped = {"axes": lambda g: g, "abs_axes": torch.abs, "magnitude": lambda g: g.abs().sum(0), "sum": lambda g: g.sum(0)}
    target = mapped[mode](by_conv(rand(2, *size, seed=4).double()))
    per_axis = 2 if mode in ("axes", "abs_axes") else 1
    xa = x.clone().requires_grad_()
    ours = sobel.l1(xa, target, mode)
    ours.backward()
    xb = x.clone().requires_grad_()
    theirs = per_axis * torch.nn.functional.l1_loss(mapped[mode](by_conv(xb)), target)
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-12)


def test_vertical_step_by_hand() -> None:
    column = torch.tensor([0.0, 0.0, 0.5, 0.5]).view(1, 1, 4, 1)  # gy = 2 (x[i+1] - x[i-1]) = [0, 1, 1, -1]
    zero = torch.zeros_like(column)
    assert DAMGL([1.0])(zero, column, zero).item() == pytest.approx(3.0 / 4)


def test_zero_when_fused_has_the_selected_gradients() -> None:
    a = rand(seed=4)
    for name in losses.LOSSES:  # the visible image has no gradients, so the infrared ones are the target
        assert build(name)(a, a, torch.zeros_like(a)).item() == 0.0, name


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("magnitude", {}),
        ("axis_max", {}),
        ("signed_sum", {}),
        ("damgl", {}),
        ("damgl", {"scales": [1.0, 0.5]}),
        ("damgl", {"scales": [1.0, 0.5, 0.25, 0.125], "weights": [0.4, 0.3, 0.2, 0.1]}),
        ("damgl", {"sign": False}),
        ("damgl", {"sign": False, "axis": "magnitude", "scales": [0.5]}),
        ("damgl", {"resize": "area"}),
        ("damgl", {"resize": "avgpool", "padding": "replicate"}),
        ("damgl", {"scales": [1.0, 1 / 3], "padding": "replicate"}),
        ("damgl", {"scales": [0.5, 1 / 3], "resize": "area"}),
    ],
)
@pytest.mark.parametrize("size", [(61, 45), (64, 48), (48, 72)])
def test_matches_plain_transcription(name: str, kwargs: dict, size: tuple[int, int]) -> None:
    """Values to 1e-6, and gradients with respect to the fused image (hand-written backward, resize adjoints
    included) to 1e-6 of autograd through the transcription. Odd sizes take the general resize kernels;
    sides that 2, 3, 4 and 8 divide take the strided resize."""
    f, a, b = (rand(3, *size, seed=seed) for seed in (10, 11, 12))
    f_ours, f_theirs = f.clone().requires_grad_(), f.clone().requires_grad_()
    ours = build(name, **kwargs)(f_ours, a, b)
    theirs = reference.build(name, **kwargs)(f_theirs, a, b)
    assert abs(ours.item() - theirs.item()) <= 1e-6
    ours.backward()
    theirs.backward()
    assert f_ours.grad.abs().max() > 0
    assert torch.allclose(f_ours.grad, f_theirs.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_gradients_flow_only_into_fused(name: str) -> None:
    f = rand(seed=5).requires_grad_()
    a, b = rand(seed=6).requires_grad_(), rand(seed=7).requires_grad_()
    build(name)(f, a, b).backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    assert a.grad is None and b.grad is None


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_batch_is_mean_of_items(name: str) -> None:
    f, a, b = rand(4, seed=8), rand(4, seed=9), rand(4, seed=10)
    loss = build(name)
    per_item = torch.stack([loss(f[i : i + 1], a[i : i + 1], b[i : i + 1]) for i in range(4)]).mean()
    assert loss(f, a, b).item() == pytest.approx(per_item.item(), rel=1e-6)


@pytest.mark.parametrize("name", list(losses.LOSSES))
@pytest.mark.parametrize("size", [(301, 497), (17, 23), (3, 2), (1, 1)])
def test_odd_and_tiny_sizes(name: str, size: tuple[int, int]) -> None:
    f = rand(1, *size, seed=1).requires_grad_()
    value = build(name)(f, rand(1, *size, seed=2), rand(1, *size, seed=3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(f.grad).all()


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_autocast_and_dtypes(name: str) -> None:
    f, a, b = rand(seed=1), rand(seed=2), rand(seed=3)
    loss = build(name)
    expected = loss(f, a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = loss(f.bfloat16().float().requires_grad_(), a, b)
        half_inputs = loss(f.bfloat16(), a.bfloat16(), b.bfloat16())
    assert under_autocast.dtype == torch.float32 and torch.isfinite(under_autocast)
    assert torch.isfinite(half_inputs)
    assert under_autocast.item() == pytest.approx(expected.item(), rel=1e-2)
    assert loss(f.double(), a.double(), b.double()).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_cuda_matches_cpu(name: str) -> None:
    f, a, b = rand(seed=1), rand(seed=2), rand(seed=3)
    loss = build(name)
    assert loss.cuda()(f.cuda(), a.cuda(), b.cuda()).item() == pytest.approx(loss.cpu()(f, a, b).item(), rel=1e-5)


def test_vis_luminance_is_first_channel() -> None:
    f, a = rand(seed=1), rand(seed=2)
    vis = torch.cat([rand(seed=3), rand(seed=4), rand(seed=5)], dim=1)
    assert build("damgl")(f, a, vis).item() == build("damgl")(f, a, vis[:, :1]).item()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"sign": True, "axis": "magnitude"}, "sign: true has no meaning with axis: magnitude"),
        ({"scales": []}, "scales: expected a non-empty list"),
        ({"scales": [1, 0]}, r"scales: every ratio must be a number in \(0, 1\], got 0"),
        ({"scales": [1, -0.5]}, "got -0.5"),
        ({"scales": [1, 1.5]}, "got 1.5"),
        ({"weights": [1, 2]}, "weights: expected 'equal' or a list of 3 numbers"),
        ({"weights": "uniform"}, "weights: expected 'equal' or a list of 3 numbers"),
        ({"axis": "diag", "sign": False}, r"axis: 'diag' is not one of \['xy', 'magnitude'\]"),
        ({"resize": "nearest"}, r"resize: 'nearest' is not one of \['bilinear', 'area', 'avgpool'\]"),
        ({"padding": "reflect"}, r"padding: 'reflect' is not one of \['zeros', 'replicate'\]"),
        ({"resize": "avgpool", "scales": [1, 0.3]}, "powers of 1/2, got 0.3"),
        ({"sign": "yes"}, "sign: expected true or false"),
    ],
)
def test_invalid_switches(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build("damgl", **kwargs)


def test_registry_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'damlg' \(did you mean 'damgl'\?\); valid: magnitude, axis_max"):
        build("damlg")
    with pytest.raises(ValueError, match=r"damgl: unknown key 'scale' \(did you mean 'scales'\?\); allowed: scales"):
        build("damgl", scale=[1])
    with pytest.raises(ValueError, match="magnitude: unknown key 'sign'"):
        build("magnitude", sign=True)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"fused must be \(N, 1, H, W\)"):
        build("damgl")(torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="ir must match fused"):
        build("damgl")(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 9), torch.rand(2, 1, 8, 8))


@pytest.mark.parametrize("method", ["bilinear", "area", "avgpool"])
@pytest.mark.parametrize("size,ratio", [((64, 48), 0.5), ((64, 48), 0.25), ((48, 72), 0.125), ((61, 45), 0.5)])
def test_resize_and_its_adjoint(method: str, size: tuple[int, int], ratio: float) -> None:
    """The strided resize (integer factors) equals the general kernel up to its folded constant, and
    adjoint_add is the adjoint: <R x, g> = <x, R^T g>."""
    resize = losses.gradient._Resize(method, *size, ratio)
    assert resize.strided == (size != (61, 45))
    x, g = rand(2, *size, seed=1), rand(2, resize.h, resize.w, seed=2)
    out = x.new_empty(g.shape)
    resize(x, out)
    assert torch.allclose(out * resize.factor, resize.general(x), rtol=0, atol=1e-6)
    back = resize.adjoint_add(torch.zeros_like(x), g, torch.tensor(1.0))
    assert (out * g).sum().item() == pytest.approx((x * back).sum().item(), rel=1e-5)


def test_canvas_blocks_are_disjoint_and_framed() -> None:
    sizes = [(128, 96), (64, 48), (32, 24), (16, 12), (64, 48)]
    for frame in (1, 2):
        canvas = losses.gradient._Canvas(sizes, frame)
        marks = torch.zeros(canvas.shape, dtype=torch.int64)
        for k, (h, w) in enumerate(sizes):
            block = canvas.view(marks, k, grow=frame)
            assert block.shape == (h + 2 * frame, w + 2 * frame)
            block += 1
        assert marks.max().item() == 1  # no pixel belongs to two blocks
        assert canvas.shape[0] == 128 + 2 * frame
