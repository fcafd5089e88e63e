"""Timings printed by ``python -m benchmark speed <target>`` (numbers only; no test asserts them)."""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.data import DataError, PairedDataset, data_root
from benchmark.data.releases import release_for
from benchmark.launch import set_threads

if TYPE_CHECKING:
    from benchmark.train import Trainer


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
    baseline = get_convention("cddfuse")
    baseline.evaluate(*images[0])
    totals: list[float] = []
    baseline_totals: list[float] = []  # timed alternately with the convention's, so noise hits both alike
    per_metric: dict[str, list[float]] = {name: [] for name in convention.metrics}
    for _ in range(args.repeat):
        for f, a, b in images:
            t0 = time.perf_counter()
            convention.evaluate(f, a, b)
            totals.append(time.perf_counter() - t0)
            if convention is not baseline:
                t0 = time.perf_counter()
                baseline.evaluate(f, a, b)
                baseline_totals.append(time.perf_counter() - t0)
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
    if baseline_totals:
        print(f"cddfuse on the same images, timed alternately: median {_median_ms(baseline_totals):.1f} ms; "
              f"{convention.name} / cddfuse = {sum(totals) / sum(baseline_totals):.2f} (total time)")  # fmt: skip
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

    names = args.models.split(",") if args.models else baselines.names()
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
    """Steps per second of each model ``--models`` names (default PMGI) through the runner's training path and
    through a bare loop."""
    for model_name in (args.models or "pmgi").split(","):
        _speed_train_one(model_name, args)


def _speed_train_one(model_name: str, args: argparse.Namespace) -> None:
    """:func:`speed_train` for one model."""
    import tempfile

    import torch

    from benchmark.config import load_config
    from benchmark.plan import plan
    from benchmark.provenance import ROOT
    from benchmark.store import RunDir
    from benchmark.train import random_batch, train_run

    steps = max(args.repeat, 40)
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
        ir, vis = random_batch(8, 64)
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
            train_run(run, run_dir, "cpu", progress=False)
            return steps / (time.perf_counter() - t0)

    rates: dict[str, list[float]] = {"bare": [], "runner": []}
    for _ in range(3):
        rates["bare"].append(bare())
        rates["runner"].append(through_runner())
    b, r = statistics.median(rates["bare"]), statistics.median(rates["runner"])
    print(f"train speed: {model_name}, damgl, batch 8 of 64x64, {steps} steps, {args.threads} threads, median of 3")
    print(f"  bare loop {b:.2f} steps/s, runner {r:.2f} steps/s (model build, data loading, sampling, logging, "
          f"final checkpoint included): overhead {100 * (b / r - 1):.1f}%")


AGREEMENT = 2e-2  # bf16 autocast against float32: relative difference of a step's loss allowed by the check


def _first_step_losses(spec: Any, batch: int, patch: int, device: str) -> tuple[float, float, Trainer]:
    """The first training step's loss on ``device`` and in float32 on the CPU, from the same initial weights
    and batch; returns the device's trainer to go on timing."""
    import torch

    from benchmark.train import Trainer, random_batch

    torch.manual_seed(0)
    model = spec.build()
    reference = spec.build()
    reference.load_state_dict(model.state_dict())
    ir, vis = random_batch(batch, patch)
    there = Trainer(model, spec.recipe, {"type": "damgl"}, 10**9, device=device)
    here = Trainer(reference, spec.recipe, {"type": "damgl"}, 10**9, device="cpu")
    losses = []
    for trainer in (there, here):
        torch.manual_seed(1)  # the same dropout and drop-path draws for both
        losses.append(trainer.train_step(ir, vis).loss)
    return losses[0], losses[1], there


def speed_gpu(args: argparse.Namespace) -> int:
    """The GPU check, one command: per model, training steps per second (bf16 autocast, channels-last on
    CUDA) and the first step's loss against the float32 CPU step; then the fuse-and-score time of a test set.
    Without CUDA the same path runs on the CPU, smaller (the tests run it so). Exit status 1 when a loss
    disagrees by more than :data:`AGREEMENT`."""
    import torch

    from benchmark.config import load_config
    from benchmark.provenance import ROOT
    from benchmark.scoring import fuse_sample, grey8, score
    from benchmark.train import random_batch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    cfg = load_config(ROOT / "experiments.yaml")
    names = args.models.split(",") if args.models else [n for n, b in cfg.model_blocks.items()
                                                        if "type" in b and "backbone_checkpoint" not in b]  # fmt: skip
    steps = args.steps or (200 if cuda else 3)
    where = torch.cuda.get_device_name(0) if cuda else f"CPU ({args.threads} threads; no CUDA here, a smaller check)"
    print(f"gpu check on {where}: {steps} timed training steps per model after one, damgl arm")
    worst = 0.0
    for name in names:
        spec = cfg.model(name)
        batch = spec.recipe.batch_size if cuda else min(2, spec.recipe.batch_size)
        patch = (spec.recipe.patch_size or 128) if cuda else 64
        loss, reference, trainer = _first_step_losses(spec, batch, patch, device)
        rel = abs(loss - reference) / max(abs(reference), 1e-12)
        worst = max(worst, rel)
        ir, vis = random_batch(batch, patch, seed=1)
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(ir, vis)
        if cuda:
            torch.cuda.synchronize()
        rate = steps / (time.perf_counter() - t0)
        memory = f", peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
        print(f"  {name:12s} batch {batch} of {patch} x {patch}: {rate:.2f} steps/s{memory}; first-step loss "
              f"{loss:.6g} on {device} vs {reference:.6g} float32 on the CPU (relative {rel:.1e})", flush=True)  # fmt: skip
    root = data_root() / "TNO"
    dataset = PairedDataset(root) if root.is_dir() else cfg.datasets["synthetic_test"].open()
    count = min(len(dataset), args.images or (len(dataset) if cuda else 2))
    spec = cfg.model(names[0])
    torch.manual_seed(0)
    model = spec.build().to(device).eval()
    fuse_s = score_s = 0.0
    for i in range(count):
        sample = dataset[i]
        t0 = time.perf_counter()
        image = grey8(fuse_sample(model, sample, device)[2], "clamp")
        t1 = time.perf_counter()
        score(image, sample)
        fuse_s, score_s = fuse_s + t1 - t0, score_s + time.perf_counter() - t1
    print(f"fuse and score, {names[0]} on {count} pairs of {dataset.name}: fusing {count / fuse_s:.1f} images/s on "
          f"{device}, scoring (cddfuse metrics, CPU) {count / score_s:.1f} images/s")  # fmt: skip
    agree = worst <= AGREEMENT
    print(f"loss agreement: largest relative difference {worst:.1e}, {'within' if agree else 'OUTSIDE'} {AGREEMENT:g}")
    return 0 if agree else 1


H100_BF16_DENSE = 989e12  # FLOP/s: the H100 SXM's dense bf16 tensor-core peak (NVIDIA's data sheet)
ASSUMED_UTILISATION = 0.35  # of that peak, sustained by a mixed-precision ViT training step: an assumption


def speed_flops(args: argparse.Namespace) -> None:
    """FLOPs of a training step and of fusing one test image, counted with PyTorch's FLOP counter on the CPU,
    per model of the ``paper`` and ``paper-cnn`` profiles, and the GPU time they come to at an assumed share of
    an H100's bf16 peak: an estimate until a GPU measures it (``speed gpu``)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark.config import load_config
    from benchmark.plan import plan
    from benchmark.train import Trainer, random_batch

    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments.yaml")
    rate = H100_BF16_DENSE * ASSUMED_UTILISATION
    print(f"estimate at {ASSUMED_UTILISATION:.0%} of an H100's dense bf16 peak ({rate / 1e12:.0f} TFLOP/s sustained); "
          "FLOPs counted on the CPU in float32")  # fmt: skip
    for name in (args.models or "paper,paper-cnn").split(","):
        profile = cfg.profile(name)
        runs = plan(cfg, profile, allow_missing=True)
        for model in dict.fromkeys(r.model for r in runs):
            mine = [r for r in runs if r.model == model]
            c, spec = mine[0].config, cfg.model(model, without_checkpoint=True)
            torch.manual_seed(0)
            trainer = Trainer(spec.build(), spec.recipe, {"type": "damgl"}, 10**9)
            ir, vis = random_batch(c["batch_size"], c["patch_size"])
            with FlopCounterMode(display=False) as counter:
                trainer.train_step(ir, vis)
            step = counter.get_total_flops()
            fuse = {}
            for test in c["test"]:
                release = release_for(cfg.datasets[test].path or "")
                w, h = release[0].size if release and release[0].size else (640, 480)
                pair = (torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
                with FlopCounterMode(display=False) as counter, torch.no_grad():
                    trainer.model.eval()(*pair)
                images = c["test"][test].get("images") or 0
                fuse[test] = (counter.get_total_flops(), images)
            per_run = c["steps"] * step + sum(f * n for f, n in fuse.values())
            print(f"{name} / {model}: {step / 1e9:.1f} GFLOP a training step (batch {c['batch_size']} of {c['patch_size']} px), "
                  + ", ".join(f"{f / 1e9:.1f} GFLOP to fuse one {test} image ({n} images)" for test, (f, n) in fuse.items())
                  + f"; {c['steps']} steps a run: {per_run / 1e15:.2f} PFLOP, about {per_run / rate / 3600:.2f} GPU-h a run, "
                  f"{len(mine) * per_run / rate / 3600:.1f} GPU-h for its {len(mine)} runs")  # fmt: skip


_TARGETS = {"metrics": speed_metrics, "losses": speed_losses, "models": speed_models, "train": speed_train,
            "gpu": speed_gpu, "flops": speed_flops}  # fmt: skip


def run_speed(target: str, args: argparse.Namespace) -> int:
    """Run one timing target on ``args.threads`` threads; the process's thread counts are restored after."""
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    set_threads(args.threads)
    try:
        return _TARGETS[target](args) or 0
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
