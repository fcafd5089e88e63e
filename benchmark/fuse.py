"""The fuse stage: fuse test images with a trained network, save them, and score them.

:func:`fuse_run` fuses every test image of a run at full resolution, saves the
8-bit Y and the colour rebuild, and writes ``metrics.csv`` through the run
store. :func:`evaluate_folders` (``python -m benchmark evaluate``) scores
folders of fused images that already exist. Both score through :func:`score`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from benchmark import interrupts
from benchmark.data import DataError, PairedDataset, Sample, list_images, png_bytes, read_rgb_or_grey, ycbcr_to_rgb
from benchmark.metrics import DEFAULT_CONVENTION, column, evaluate, metric_names, resolve_metrics
from benchmark.store import RunDir, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import torch

    from benchmark.plan import RunSpec


def score(fused: np.ndarray, sample: Sample, metrics: Sequence[str] | None = None,
          convention: str = DEFAULT_CONVENTION) -> dict[str, float]:  # fmt: skip
    """Metric values of one fused image (grey or colour levels 0..255) against a loaded pair's decoded files,
    each convention turning colour into what it scores."""
    return evaluate(fused, sample.ir_raw, sample.vi_raw, metrics, convention)


def normalise(y: torch.Tensor, mode: str) -> torch.Tensor:
    """Output normalisation before saving: ``clamp``, ``image_minmax`` / ``batch_minmax`` (per image here)."""
    if mode in ("clamp", "none"):
        return y.clamp(0, 1)
    lo, hi = y.amin(dim=(-2, -1), keepdim=True), y.amax(dim=(-2, -1), keepdim=True)
    return ((y - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def fuse_sample(model: torch.nn.Module, sample: Sample, device: str | torch.device) -> tuple[torch.Tensor, ...]:
    """``(ir, vis_y, fused)`` of one loaded pair as (1, 1, H, W) tensors on ``device``, fused at full size.

    float32 even on CUDA: bf16 would move saved grey levels by up to one.
    """
    import torch

    ir = torch.from_numpy(sample.ir_unit)[None, None].to(device)
    vis = torch.from_numpy(sample.vi_ycbcr[0])[None, None].to(device)
    with torch.no_grad():
        return ir, vis, model(ir, vis).float()


def grey8(fused: torch.Tensor, mode: str) -> np.ndarray:
    """A fused (1, 1, H, W) output normalised by ``mode`` as the 8-bit grey image that is saved and scored."""
    return np.round(normalise(fused, mode)[0, 0].cpu().numpy() * 255).astype(np.uint8)


def fuse_run(model: torch.nn.Module, run: RunSpec, run_dir: RunDir, device: str,
             progress: bool = True) -> list[dict[str, Any]]:  # fmt: skip
    """Fuse every test image at full resolution, save 8-bit Y and colour PNGs, score, write ``metrics.csv``.

    The 8-bit Y image is scored under the default convention and the run's other ``conventions`` (columns
    ``convention:metric``), each turning the colour visible source into what its toolkit scores.

    A stop request is honoured between images (nothing marks the run done, so the same command fuses again).
    """
    model.eval()
    if hasattr(model, "set_phase"):
        model.set_phase(run.model_spec(check=False).recipe.phases[-1].name)
    conventions = [DEFAULT_CONVENTION, *run.config.get("conventions", [])]
    names = [column(c, m) for c in conventions for m in metric_names(c)]
    rows: list[dict[str, Any]] = []
    for test in run.config["test"]:
        dataset = run.dataset(test)
        for i in tqdm(range(len(dataset)), desc=f"{run.run_id} fuse {test}", unit="img", disable=not progress, leave=False):
            interrupts.check(run.run_id, f"while fusing {test} (training is complete and saved)")
            s = dataset[i]
            y8 = grey8(fuse_sample(model, s, device)[2], run.config["normalisation"])
            atomic_write_bytes(run_dir.fused(test, s.name), png_bytes(y8))
            rgb = ycbcr_to_rgb(np.stack([y8 / 255.0, s.vi_ycbcr[1], s.vi_ycbcr[2]]))
            atomic_write_bytes(run_dir.fused(test, s.name, colour=True), png_bytes(rgb))
            grey = y8.astype(np.float64)
            values = {column(c, m): v for c in conventions for m, v in score(grey, s, convention=c).items()}
            rows.append({"test": test, "image": s.name, **values})
    run_dir.write_metrics(names, rows)
    return rows


@dataclass
class EvaluationResult:
    """Per-image metric values of several methods on one dataset.

    Attributes:
        metrics: metric names, in column order.
        rows: ``(method, image, {metric: value})`` in dataset order, methods in the given order.
        skipped: ``(method, image, reason)`` for images left out under ``allow_missing``.
    """

    metrics: list[str]
    rows: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def methods(self) -> list[str]:
        """Method names in first-seen order."""
        return list(dict.fromkeys(m for m, _, _ in self.rows))

    def values(self, method: str, metric: str) -> np.ndarray:
        """All per-image values of one method and metric."""
        return np.array([v[metric] for m, _, v in self.rows if m == method], dtype=np.float64)


def evaluate_folders(
    dataset: PairedDataset,
    fused_dirs: Sequence[str | Path],
    metrics: Iterable[str] | None = None,
    allow_missing: bool = False,
    convention: str | Sequence[str] = DEFAULT_CONVENTION,
    progress: bool = True,
) -> EvaluationResult:
    """Compute metrics for every fused folder (one method each) on every pair of ``dataset``.

    Fused files are matched to pairs by stem, any image extension, and scored as decoded (grey or colour),
    each convention turning colour into what its toolkit scores. Several conventions give one column block
    each, named ``convention:metric``; ``metrics`` then picks, in each, the names it has. A missing fused
    image or one whose size differs from its sources raises :class:`DataError` naming the file, unless
    ``allow_missing`` is set, in which case it is recorded in ``skipped``.
    """
    blocks = column_blocks([convention] if isinstance(convention, str) else list(convention), metrics)
    names = [label for _, chosen in blocks for label, _ in chosen]
    methods: list[tuple[str, Path, dict[str, Path]]] = []
    for d in fused_dirs:
        folder = Path(d)
        if not folder.is_dir():
            raise DataError(f"fused folder not found: {folder}")
        method = folder.resolve().name
        if any(method == m for m, _, _ in methods):
            raise DataError(f"two fused folders are both named '{method}' (the folder name is the method name): {folder}")
        methods.append((method, folder, list_images(folder)))
    result = EvaluationResult(names)
    per_method: dict[str, list[tuple[str, dict[str, float]]]] = {m: [] for m, _, _ in methods}
    bar = tqdm(total=len(dataset) * len(methods), desc=f"evaluate {dataset.name}", unit="img", disable=not progress)
    for pair in dataset.pairs:
        sample = dataset.load(pair)
        for method, folder, files in methods:
            bar.update()
            path = files.get(pair.name)
            if path is None:
                reason = f"no fused image for '{pair.name}' in {folder}"
                if not allow_missing:
                    raise DataError(reason + " (use --allow-missing to skip it)")
                result.skipped.append((method, pair.name, reason))
                continue
            fused = read_rgb_or_grey(path)
            if fused.shape[:2] != sample.ir_grey.shape:
                reason = (
                    f"{path} is {fused.shape[1]}x{fused.shape[0]} but its sources are "
                    f"{sample.ir_grey.shape[1]}x{sample.ir_grey.shape[0]} (width x height)"
                )
                if not allow_missing:
                    raise DataError(reason + "; nothing is resized")
                result.skipped.append((method, pair.name, reason))
                continue
            values = {}
            for conv, chosen in blocks:
                got = score(fused, sample, [name for _, name in chosen], conv)
                values.update({label: got[name] for label, name in chosen})
            per_method[method].append((pair.name, values))
    bar.close()
    for method, _, _ in methods:
        result.rows.extend((method, image, values) for image, values in per_method[method])
    return result


def column_blocks(conventions: Sequence[str], metrics: Iterable[str] | None) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per convention, its ``(column label, metric name)`` pairs: plain names for one convention,
    ``convention:name`` for several. With several, a requested name is taken from every convention that
    has it, and a name none of them has is an error listing each one's names."""
    if len(conventions) == 1:
        return [(conventions[0], [(m.name, m.name) for m in resolve_metrics(metrics, conventions[0])])]
    wanted = None if metrics is None else [m.lower() for m in metrics]
    blocks = []
    for conv in conventions:
        names = [n for n in metric_names(conv) if wanted is None or n.lower() in wanted]
        blocks.append((conv, [(f"{conv}:{n}", n) for n in names]))
    found = {n.lower() for _, chosen in blocks for _, n in chosen}
    unknown = [m for m in (metrics or []) if m.lower() not in found]
    if unknown:
        valid = "; ".join(f"{c}: {', '.join(metric_names(c))}" for c in conventions)
        raise ValueError(f"unknown metric(s) {unknown} in conventions {', '.join(conventions)} ({valid})")
    return blocks


def write_csv(result: EvaluationResult, path: str | Path) -> None:
    """Write ``method,image,<metric>...`` rows at full precision (``repr`` of each float)."""
    lines = [",".join(["method", "image", *result.metrics])]
    for method, image, values in result.rows:
        lines.append(",".join([method, image, *(repr(float(values[m])) for m in result.metrics)]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def means_table(result: EvaluationResult) -> tuple[list[str], list[list[str]], list[str]]:
    """Per-method means with two decimals: ``(header, rows, notes)``.

    A mean marked ``*`` excludes NaN values; ``notes`` says how many.
    """
    metrics = result.metrics
    header = ["method", "n", *metrics]
    rows, notes = [], []
    for method in result.methods():
        cells = [method, str(len(result.values(method, metrics[0])))]
        for metric in metrics:
            vals = result.values(method, metric)
            nan = int(np.isnan(vals).sum())
            finite = vals[~np.isnan(vals)]
            cell = "nan" if finite.size == 0 else f"{finite.mean():.2f}"
            if nan:
                cell += "*"
                notes.append(f"* {method} {metric}: {nan} of {vals.size} values are NaN and excluded from the mean")
            cells.append(cell)
        rows.append(cells)
    return header, rows, notes


def format_means(result: EvaluationResult) -> str:
    """The per-method means as aligned plain text, then NaN notes and skipped images."""
    header, rows, notes = means_table(result)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines = [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows), *notes]
    lines += [f"skipped: {method} {image}: {reason}" for method, image, reason in result.skipped]
    return "\n".join(lines)


def format_markdown_means(result: EvaluationResult) -> str:
    """The per-method means as a Markdown table, NaN notes below it."""
    header, rows, notes = means_table(result)
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + ([""] + notes if notes else []))
