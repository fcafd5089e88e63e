"""The fuse stage: fuse a run's test images with its trained network, save them, and score them.

:func:`fuse_run` fuses every test image of a run at full resolution, saves the 8-bit Y and the colour
rebuild, and writes ``metrics.csv`` through the run store; one image is fused and scored by
:mod:`benchmark.scoring`, as validation does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from benchmark import interrupts
from benchmark.data import png_bytes, ycbcr_to_rgb
from benchmark.metrics import DEFAULT_CONVENTION, column, metric_names
from benchmark.scoring import fuse_sample, grey8, score
from benchmark.store import RunDir, atomic_write_bytes

if TYPE_CHECKING:
    import torch

    from benchmark.plan import RunSpec


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
