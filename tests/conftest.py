"""Shared fixtures: where the real data lives, and small synthetic datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data import data_root


def real_data() -> Path:
    """``$FUSION_DATA`` (default ``data/`` inside the project)."""
    return data_root()


def reference_root() -> Path:
    """The reference metric values and fused images, beside the datasets folder."""
    return real_data().parent / "reference"


def need(path: Path) -> Path:
    """Skip the calling test, saying why, when a real-data path is absent."""
    if not path.exists():
        pytest.skip(f"real data not found: {path} (set FUSION_DATA to the datasets folder)")
    return path


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save a uint8 array as an image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Three 40 x 48 pairs (grey IR png, colour visible png) under tmp_path/ds."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    for name in ("a", "b", "c"):
        write_image(root / "ir" / f"{name}.png", rng.integers(0, 256, (40, 48)))
        write_image(root / "vi" / f"{name}.png", rng.integers(0, 256, (40, 48, 3)))
    return root
