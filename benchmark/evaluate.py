"""Folders of fused images scored against a paired dataset: ``python -m benchmark evaluate``.

Each folder is one method. Its files are matched to the dataset's pairs by stem, any image extension, and
scored as decoded (grey or colour), each convention turning colour into what its toolkit scores
(:func:`benchmark.scoring.score`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmark.console import say
from benchmark.data import DataError, PairedDataset, Sample, list_images, read_rgb_or_grey
from benchmark.metrics import DEFAULT_CONVENTION, column_info, metric_names, resolve_metrics
from benchmark.scoring import score
from benchmark.store import atomic_write_text


@dataclass
class EvaluationResult:
    """Per-image metric values of several methods on one dataset.

    Attributes:
        metrics: metric names, in column order.
        methods_given: every method, in the given order, scored or not.
        rows: ``(method, image, {metric: value})`` in dataset order, methods in the given order.
        skipped: ``(method, image, reason)`` for images left out under ``allow_missing``.
    """

    metrics: list[str]
    methods_given: list[str]
    rows: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def methods(self) -> list[str]:
        """Every method, in the given order (a method with no scored image too)."""
        return list(self.methods_given)

    def images(self, method: str) -> list[str]:
        """The images scored for one method, in dataset order."""
        return [image for m, image, _ in self.rows if m == method]

    def values(self, method: str, metric: str, images: Iterable[str] | None = None) -> np.ndarray:
        """Per-image values of one method and metric (only of ``images`` when given)."""
        keep = None if images is None else set(images)
        return np.array([v[metric] for m, image, v in self.rows if m == method and (keep is None or image in keep)],
                        dtype=np.float64)  # fmt: skip

    def shared_images(self) -> list[str] | None:
        """When the scored methods were scored on different images, the images all of them share (in dataset
        order); None when every scored method has the same images."""
        scored = [images for images in (frozenset(self.images(m)) for m in self.methods_given) if images]
        if len(set(scored)) <= 1:
            return None
        common = frozenset.intersection(*scored)
        return [image for image in dict.fromkeys(i for _, i, _ in self.rows) if image in common]


def named_folders(values: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """``--fused`` values as ``(method, folder)``: ``NAME=PATH`` names a folder, a plain path is named by its
    folder's name (links followed). A missing folder or two folders of one name is an error naming them."""
    named: list[tuple[str, Path]] = []
    for value in values:
        text = str(value)
        name, sep, rest = text.partition("=")
        if sep and name and "/" not in name and not Path(text).exists():
            folder = Path(rest)
        else:
            name, folder = "", Path(text)
        if not folder.is_dir():
            raise DataError(f"--fused {text}: fused folder not found: {folder}")
        name = name or folder.resolve().name
        if any(name == m for m, _ in named):
            raise DataError(f"two fused folders are both named '{name}' (a folder's name is its method name): "
                            f"{folder}; name each with --fused NAME=PATH")  # fmt: skip
        named.append((name, folder))
    return named


def evaluate_folders(
    dataset: PairedDataset,
    fused_dirs: Sequence[str | Path],
    metrics: Iterable[str] | None = None,
    allow_missing: bool = False,
    convention: str | Sequence[str] = DEFAULT_CONVENTION,
    progress: bool = True,
) -> EvaluationResult:
    """Compute metrics for every fused folder (one method each, see :func:`named_folders`) on every pair.

    Fused files are matched to pairs by stem, any image extension, and scored as decoded (grey or colour),
    each convention turning colour into what its toolkit scores. Several conventions give one column block
    each, named ``convention:metric``; ``metrics`` then picks, in each, the names it has. A missing fused
    image or one whose size differs from its sources raises :class:`DataError` naming the file, unless
    ``allow_missing`` is set, in which case it is recorded in ``skipped`` (a method may then have no scored
    image: it keeps its place in :meth:`EvaluationResult.methods`).
    """
    blocks = column_blocks([convention] if isinstance(convention, str) else list(convention), metrics)
    names = [label for _, chosen in blocks for label, _ in chosen]
    methods = [(method, folder, list_images(folder)) for method, folder in named_folders(fused_dirs)]
    result = EvaluationResult(names, [m for m, _, _ in methods])
    per_method: dict[str, list[tuple[str, dict[str, float]]]] = {m: [] for m, _, _ in methods}
    if progress and not kernels_cached():
        say("compiling the metric kernels (numba; once per installation, about a minute)")
    with tqdm(total=len(dataset) * len(methods), desc=f"evaluate {dataset.name}", unit="img", disable=not progress) as bar:
        for pair in dataset.pairs:
            sample = dataset.load(pair)
            for method, folder, files in methods:
                bar.update()
                scored = _score_file(files.get(pair.name), folder, sample, blocks, allow_missing)
                if isinstance(scored, str):
                    result.skipped.append((method, pair.name, scored))
                else:
                    per_method[method].append((pair.name, scored))
    for method, _, _ in methods:
        result.rows.extend((method, image, values) for image, values in per_method[method])
    return result


def _score_file(path: Path | None, folder: Path, sample: Sample, blocks: list[tuple[str, list[tuple[str, str]]]],
                allow_missing: bool) -> dict[str, float] | str:  # fmt: skip
    """One fused file's values, or under ``allow_missing`` the reason it is left out."""
    if path is None:
        reason = f"no fused image for '{sample.name}' in {folder}"
        if not allow_missing:
            raise DataError(reason + " (use --allow-missing to skip it)")
        return reason
    fused = read_rgb_or_grey(path)
    if fused.shape[:2] != sample.ir_grey.shape:
        reason = (f"{path} is {fused.shape[1]}x{fused.shape[0]} but its sources are "
                  f"{sample.ir_grey.shape[1]}x{sample.ir_grey.shape[0]} (width x height)")  # fmt: skip
        if not allow_missing:
            raise DataError(reason + "; nothing is resized")
        return reason
    values = {}
    for conv, chosen in blocks:
        try:
            got = score(fused, sample, [name for _, name in chosen], conv)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        values.update({label: got[name] for label, name in chosen})
    return values


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


def means_table(result: EvaluationResult, images: list[str] | None = None) -> tuple[list[str], list[list[str]], list[str]]:
    """Per-method means, each metric with its decimals, its header marked with its better direction (``↑``
    higher, ``↓`` lower): ``(header, rows, notes)``. With ``images``, only those images count.

    A mean marked ``*`` excludes NaN values; ``notes`` says how many. A method with no scored image has a
    row that says so.
    """
    metrics = result.metrics
    header = ["method", "n", *(f"{m} {'↑' if column_info(m).higher_is_better else '↓'}" for m in metrics)]
    rows, notes = [], []
    for method in result.methods():
        count = len(result.values(method, metrics[0], images))
        if not count:
            rows.append([method, "0", "no image scored", *([""] * (len(metrics) - 1))])
            continue
        cells = [method, str(count)]
        for metric in metrics:
            vals = result.values(method, metric, images)
            nan = int(np.isnan(vals).sum())
            finite = vals[~np.isnan(vals)]
            cell = "nan" if finite.size == 0 else f"{finite.mean():.{column_info(metric).decimals}f}"
            if nan:
                cell += "*"
                notes.append(f"* {method} {metric}: {nan} of {vals.size} values are NaN and excluded from the mean")
            cells.append(cell)
        rows.append(cells)
    return header, rows, notes


def _plain(header: list[str], rows: list[list[str]], width: int) -> list[str]:
    """Aligned plain text, the metric columns split into blocks that fit ``width`` characters (method and n
    repeated in each)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    blocks, current = [], []
    for i in range(2, len(header)):
        if current and sum(widths[j] + 2 for j in [0, 1, *current, i]) > width:
            blocks.append(current)
            current = []
        current.append(i)

    def fmt(row: list[str], cols: list[int]) -> str:
        return "  ".join(row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in cols).rstrip()

    lines: list[str] = []
    for block in [*blocks, current]:
        cols = [0, 1, *block]
        lines += ([""] if lines else []) + [fmt(r, cols) for r in (header, ["-" * w for w in widths], *rows)]
    return lines


def format_means(result: EvaluationResult, width: int | None = None) -> str:
    """The per-method means as aligned plain text that fits the terminal (or ``width``), then NaN notes,
    skipped images and, when methods were scored on different images, the means on the images they share."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    header, rows, notes = means_table(result)
    lines = [*_plain(header, rows, width), *notes]
    lines += [f"skipped: {method} {image}: {reason}" for method, image, reason in result.skipped]
    shared = result.shared_images()
    if shared is not None:
        counts = ", ".join(f"{m} {len(result.images(m))}" for m in result.methods())
        lines += ["", f"methods were scored on different images ({counts}), so the means above are not comparable; "
                      f"on the {len(shared)} images all scored methods share:"]  # fmt: skip
        if shared:
            header, rows, notes = means_table(result, shared)
            lines += [*_plain(header, [r for r in rows if r[1] != "0"], width), *notes]
    return "\n".join(lines)


def format_markdown_means(result: EvaluationResult) -> str:
    """The per-method means as a Markdown table, NaN notes below it."""
    header, rows, notes = means_table(result)
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + ([""] + notes if notes else []))


def kernels_cached() -> bool:
    """Whether numba has cached the metric kernels here (else the first evaluation compiles them)."""
    from benchmark.metrics import _kernels

    cache = os.environ.get("NUMBA_CACHE_DIR")
    where = Path(cache) if cache else Path(_kernels.__file__).parent / "__pycache__"
    return any(where.rglob("_kernels.*.nbi"))
