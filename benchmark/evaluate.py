"""Score folders of fused images against a paired dataset (``python -m benchmark evaluate``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmark.data import DataError, PairedDataset, list_images, read_grey
from benchmark.metrics import MetricInfo, evaluate, resolve_metrics


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
    convention: str = "cddfuse",
    progress: bool = True,
) -> EvaluationResult:
    """Compute metrics for every fused folder (one method each) on every pair of ``dataset``.

    Fused files are matched to pairs by stem, any image extension. A missing
    fused image or one whose size differs from its sources raises
    :class:`DataError` naming the file, unless ``allow_missing`` is set, in
    which case it is recorded in ``skipped``.
    """
    chosen: list[MetricInfo] = resolve_metrics(metrics, convention)
    names = [m.name for m in chosen]
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
            fused = read_grey(path)
            if fused.shape != sample.ir_grey.shape:
                reason = (
                    f"{path} is {fused.shape[1]}x{fused.shape[0]} but its sources are "
                    f"{sample.ir_grey.shape[1]}x{sample.ir_grey.shape[0]} (width x height)"
                )
                if not allow_missing:
                    raise DataError(reason + "; nothing is resized")
                result.skipped.append((method, pair.name, reason))
                continue
            values = evaluate(fused, sample.ir_grey, sample.vi_grey, names, convention)
            per_method[method].append((pair.name, values))
    bar.close()
    for method, _, _ in methods:
        result.rows.extend((method, image, values) for image, values in per_method[method])
    return result


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
