"""Timings printed by ``python -m benchmark speed <target>`` (numbers only; no test asserts them)."""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from benchmark.data import DataError, PairedDataset, data_root


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch and in the compiled metric kernels."""
    import numba
    import torch

    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def _median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def speed_metrics(args: argparse.Namespace) -> None:
    """Median milliseconds per image for a convention's full metric set (fused = rounded mean of the
    grey sources; sources as decoded, so each convention's colour handling is timed too)."""
    from benchmark.metrics import get_convention

    convention = get_convention(args.convention)
    root = Path(args.dataset) if args.dataset else data_root() / "TNO"
    if not root.is_dir():
        raise DataError(f"speed metrics needs the TNO pairs: {root} not found (set FUSION_DATA or --dataset)")
    dataset = PairedDataset(root)
    images = []
    for sample in (dataset[i] for i in range(len(dataset))):
        fused = np.round((sample.ir_grey + sample.vi_grey) / 2)
        images.append((fused, sample.ir_raw, sample.vi_raw))
    t0 = time.perf_counter()
    convention.evaluate(*images[0])
    first = time.perf_counter() - t0
    totals: list[float] = []
    per_metric: dict[str, list[float]] = {name: [] for name in convention.metrics}
    for _ in range(args.repeat):
        for f, a, b in images:
            t0 = time.perf_counter()
            convention.evaluate(f, a, b)
            totals.append(time.perf_counter() - t0)
            shared = convention.prepare(*convention.images((f, "fused"), (a, "ir"), (b, "vis")))
            for name, info in convention.metrics.items():
                t0 = time.perf_counter()
                info.impl(shared)
                per_metric[name].append(time.perf_counter() - t0)
    h, w = images[0][0].shape
    print(f"metrics speed, convention {convention.name}: {len(images)} pairs of {dataset.name} ({w} x {h} first), "
          f"{args.threads} threads, {platform.processor() or platform.machine()}")  # fmt: skip
    print(f"first call (includes loading compiled kernels): {first * 1000:.0f} ms")
    print(f"full metric set: median {_median_ms(totals):.1f} ms per image over {len(totals)} evaluations "
          f"({len(totals) / sum(totals):.1f} images per second)")  # fmt: skip
    print("per metric (median ms, shared intermediates counted where first used): " + ", ".join(
        f"{name} {_median_ms(v):.1f}" for name, v in per_metric.items()
    ))


def _interleaved(fns: dict, rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds of each callable per round, timed round-robin so that machine noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                samples[name].append(time.perf_counter() - t0)
    return samples


def _interleaved_median(fns: dict, rounds: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds of each callable, timed round-robin (see :func:`_interleaved`)."""
    return {name: statistics.median(v) for name, v in _interleaved(fns, rounds, warmup).items()}


def speed_losses(args: argparse.Namespace) -> None:
    """Forward + backward milliseconds of each gradient loss, and the ratio to ``magnitude``."""
    import torch

    import losses

    def step(loss, f, a, b):
        def run() -> None:
            loss(f.detach().requires_grad_(), a, b).backward()
            if f.is_cuda:
                torch.cuda.synchronize()

        return run

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for shape in ((8, 1, 128, 128), (1, 1, 480, 640)):
            g = torch.Generator().manual_seed(0)
            f, a, b = (torch.rand(shape, generator=g).to(device) for _ in range(3))
            fns = {name: step(losses.build(name).to(device), f, a, b) for name in losses.LOSSES}
            samples = _interleaved(fns, max(args.repeat, 20))
            base = samples["magnitude"]
            cells = ", ".join(
                f"{n} {statistics.median(t) * 1000:.2f} ms ({statistics.median(x / y for x, y in zip(t, base)):.2f}x)"
                for n, t in samples.items()
            )
            print(f"losses fwd+bwd {device} {'x'.join(map(str, shape))}, {args.threads} threads: {cells}")
    print("median ms over rounds; ratio: median over rounds of the loss's time over magnitude's in the same round")


def _model_call(model, ir, vis, backward: bool):
    """A timed call: forward without autograd (eval mode), or forward and backward (train mode)."""
    import torch

    def run() -> None:
        if backward:
            model.train()(ir, vis).mean().backward()
        else:
            with torch.no_grad():
                model.eval()(ir, vis)
        if ir.is_cuda:
            torch.cuda.synchronize()

    return run


def speed_models(args: argparse.Namespace) -> None:
    """Per model: parameters, forward and forward + backward milliseconds (batch 8 of 64 x 64, one 480 x 640).

    A size whose single forward pass takes longer than ``--max-seconds`` is reported with that one
    timing only (the transformers at 480 x 640 on a CPU take minutes and gigabytes for a backward pass).
    """
    import torch

    import baselines

    names = args.models.split(",") if args.models else baselines.list()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        print(f"models on {device}, {args.threads} threads (median ms)")
        for name in names:
            torch.manual_seed(0)
            model = baselines.build(name).to(device)
            params = sum(p.numel() for p in model.parameters())
            cells = []
            for shape in ((8, 1, 64, 64), (1, 1, 480, 640)):
                ir, vis = torch.rand(shape, device=device), torch.rand(shape, device=device)
                forward, forward_backward = _model_call(model, ir, vis, backward=False), _model_call(model, ir, vis, backward=True)
                t0 = time.perf_counter()
                forward()
                once = time.perf_counter() - t0
                label = "x".join(map(str, shape))
                if once > args.max_seconds:
                    cells.append(f"{label}: fwd {once * 1000:.0f} (one pass; fwd+bwd skipped, over {args.max_seconds:g} s)")
                    continue
                t = _interleaved_median({"f": forward, "fb": forward_backward}, max(args.repeat, 5), warmup=1)
                cells.append(f"{label}: fwd {t['f'] * 1000:.1f}, fwd+bwd {t['fb'] * 1000:.1f}")
            print(f"  {name:14s} {params:>9,d} params | " + " | ".join(cells), flush=True)


def speed_train(args: argparse.Namespace) -> None:
    """Steps per second of one model through the runner's training path and through a bare loop."""
    import tempfile

    import torch

    from benchmark.config import load_config
    from benchmark.launch import ROOT
    from benchmark.plan import plan
    from benchmark.store import RunDir
    from benchmark.train import train_run

    steps, model_name = max(args.repeat, 40), "pmgi"
    overrides = [f"profiles.smoke.models=[{model_name}]", "profiles.smoke.losses=[damgl]", f"profiles.smoke.steps={steps}",
                 "profiles.smoke.batch_size=8", "profiles.smoke.patch_size=64", "profiles.smoke.checkpoint_every=1000000",
                 "profiles.smoke.log_every=10", "datasets.synthetic_small.synthetic.height=96",
                 "datasets.synthetic_small.synthetic.width=96"]  # fmt: skip
    cfg = load_config(ROOT / "experiments.yaml", overrides)
    run = plan(cfg, cfg.profile("smoke"))[0]
    spec = cfg.model(model_name)

    def bare() -> float:
        torch.manual_seed(0)
        model = spec.build()
        objective = spec.recipe.objective(0, {"type": "damgl"})
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.recipe.optimizer["lr"])
        g = torch.Generator().manual_seed(0)
        ir, vis = torch.rand(8, 1, 64, 64, generator=g), torch.rand(8, 1, 64, 64, generator=g)
        t0 = time.perf_counter()
        for _ in range(steps):
            total, _ = objective(model(ir, vis), ir, vis)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        return steps / (time.perf_counter() - t0)

    def through_runner() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = RunDir(Path(tmp))
            t0 = time.perf_counter()
            train_run(run, cfg, run_dir, "cpu", progress=False)
            return steps / (time.perf_counter() - t0)

    rates: dict[str, list[float]] = {"bare": [], "runner": []}
    for _ in range(3):
        rates["bare"].append(bare())
        rates["runner"].append(through_runner())
    b, r = statistics.median(rates["bare"]), statistics.median(rates["runner"])
    print(f"train speed: {model_name}, damgl, batch 8 of 64x64, {steps} steps, {args.threads} threads, median of 3")
    print(f"  bare loop {b:.2f} steps/s, runner {r:.2f} steps/s (model build, data loading, sampling, logging, "
          f"final checkpoint included): overhead {100 * (b / r - 1):.1f}%")


_TARGETS = {"metrics": speed_metrics, "losses": speed_losses, "models": speed_models, "train": speed_train}


def run_speed(target: str, args: argparse.Namespace) -> int:
    """Run one timing target on ``args.threads`` threads; the process's thread counts are restored after."""
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    set_threads(args.threads)
    try:
        _TARGETS[target](args)
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
    return 0
