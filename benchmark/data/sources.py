"""Where a run reads a dataset: a folder of paired images or the synthetic generator, from its description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.data.pairs import PairedDataset
from benchmark.data.synthetic import SyntheticDataset


def open_dataset(source: dict[str, Any], name: str) -> PairedDataset | SyntheticDataset:
    """A dataset from its description: ``{"synthetic": {...}}`` or ``{"path": folder, "split": file or None}``."""
    if "synthetic" in source:
        return SyntheticDataset(**source["synthetic"], name=name)
    split = source.get("split")
    return PairedDataset(Path(source["path"]), Path(split) if split else None, name=name)
