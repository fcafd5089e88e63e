"""damgl-bench: reproducible evaluation of gradient losses for infrared-visible fusion.

The public API, one function a stage of the study (each imports its stage only when called, so importing
``benchmark`` is cheap and has no side effects)::

    import benchmark

    cfg = benchmark.load_config("experiments.yaml")                # config
    runs = benchmark.plan_runs(cfg, "smoke")                        # plan: the runs and their hashes
    benchmark.run_study("--profile", "smoke", "--results", "out")   # train, fuse, score, report (exit status)
    benchmark.build_report("out/smoke")                             # the report again, from the stored runs
    result = benchmark.evaluate_folders("data/TNO", ["mine/"])      # score fused images in folders

The commands (``damgl-bench ...``) are :mod:`benchmark.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmark.config import Config
    from benchmark.evaluate import EvaluationResult
    from benchmark.plan import RunSpec

__version__ = "0.1.0"


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read and validate an experiments file, with ``key.path=value`` overrides (``--set``)."""
    from benchmark.config import load_config as load

    return load(path, overrides)


def plan_runs(cfg: Config, profile: str | None = None, only: str | None = None) -> list[RunSpec]:
    """The runs a profile (default: the file's ``default_profile``) plans, filtered by ``only``
    (``model=pmgi,loss=damgl``); reads the data folders and checks each model once."""
    from benchmark.plan import plan, select

    return select(plan(cfg, cfg.profile(profile), only=only), only)


def run_study(*args: str) -> int:
    """``damgl-bench run ARGS``: plan, train, fuse, score and report; returns the exit status."""
    from benchmark.cli import run

    return run(list(args))


def build_report(results: str | Path, figures: bool = True) -> list[Path]:
    """Rebuild a profile's report (``results/<profile>``) from its stored runs; returns the files written."""
    from benchmark.reports import build_report as build
    from benchmark.store import ResultsFolder

    with ResultsFolder(results).report_lock():
        return build(results, figures=figures)


def evaluate_folders(dataset: str | Path, fused: list[str | Path], **options: Any) -> EvaluationResult:
    """Score folders of fused images (``NAME=PATH`` or a path each) against a dataset folder or a name under
    ``$FUSION_DATA``; ``options`` as :func:`benchmark.evaluate.evaluate_folders` (metrics, convention, ...)."""
    from benchmark.data import PairedDataset, dataset_folder
    from benchmark.evaluate import evaluate_folders as score

    return score(PairedDataset(dataset_folder(str(dataset))), fused, **options)


__all__ = ["__version__", "build_report", "evaluate_folders", "load_config", "plan_runs", "run_study"]
