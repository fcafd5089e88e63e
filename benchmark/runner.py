"""``run_all.py`` / ``python -m benchmark run``: the study, stage by stage.

config (:mod:`benchmark.config`) -> plan (:mod:`benchmark.plan`) -> launch,
which trains (:mod:`benchmark.train`) and fuses and scores (:mod:`benchmark.fuse`)
each run -> report (:mod:`benchmark.reports`). Every file lives where the run
store (:mod:`benchmark.store`) puts it.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Sequence
from pathlib import Path

from benchmark import interrupts
from benchmark.config import Config, ConfigError, Profile, load_config
from benchmark.console import say
from benchmark.data import DataError
from benchmark.launch import ROOT, launch, resolve_device
from benchmark.plan import RunSpec, missing_inputs, plan, select, verify_data
from benchmark.published import PublishedError
from benchmark.reports import build_report, closing_lines, format_summary
from benchmark.store import ResultsFolder, StoreError, load_study


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_all.py", description="Train, fuse and score the runs of a profile.")
    parser.add_argument("--config", default=str(ROOT / "experiments.yaml"), help="experiments file")
    parser.add_argument("--profile", help="profile name (default: the file's default_profile)")
    parser.add_argument("--only", help="filter runs, e.g. model=seafusion,loss=damgl")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a config field")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, which are done, how long they take "
                        "and what is missing")  # fmt: skip
    parser.add_argument("--timing-steps", type=int, default=2, help="dry run: training steps timed per model for "
                        "the duration estimate (default 2; 0 skips the timing)")  # fmt: skip
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the profile's device")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--launcher", default="local", choices=["local", "slurm"])
    parser.add_argument("--pack", type=int, default=1, help="train up to N runs of one model together in one process "
                        "(their forward passes mapped over stacked weights; for GPUs a small CNN leaves idle)")  # fmt: skip
    parser.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    parser.add_argument("--no-figures", action="store_true", help="report tables and summaries only")
    parser.add_argument("--published", help="published-results file the report sets beside the reproduction "
                        "(default: the package's published.yaml)")  # fmt: skip
    return parser


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def estimate(cfg: Config, profile: Profile, runs: list[RunSpec], timing_steps: int, device: str,
             missing: dict[str, str]) -> list[str]:  # fmt: skip
    """Per model: one training step timed on random patches on ``device``, times each run's budget and the
    number of its runs; not timed where ``device`` is a GPU that is not here (a CPU step says nothing of it).
    ``missing`` (:func:`~benchmark.plan.missing_inputs`) says which models are built without their checkpoint."""
    import torch

    from benchmark.train import arm_gradient, time_step

    device = resolve_device("auto") if device == "auto" else device
    if device == "cuda" and not torch.cuda.is_available():
        return ["time: not estimated: the profile trains on cuda, which is not here; on the GPU machine the dry run "
                "times it (or run python -m benchmark speed gpu there)"]  # fmt: skip
    lines = [f"time (one training step timed on {device} after a warm-up, median of {timing_steps}, on this machine as "
             "loaded now; validation, fusing and scoring not included):"]  # fmt: skip
    for model in dict.fromkeys(r.model for r in runs):
        mine = [r for r in runs if r.model == model]
        c = mine[0].config
        spec = cfg.model(model, without_checkpoint=f"models.{model}.backbone_checkpoint" in missing)
        torch.manual_seed(0)
        step = time_step(spec.build(), spec.recipe, arm_gradient(c["arm"]), c["batch_size"], c["patch_size"], device,
                         timing_steps)  # fmt: skip
        total = sum(r.config["steps"] for r in mine) * step
        cap = " at most (runs may stop on their plateau)" if profile.stop else ""
        lines.append(f"  {model}: {step:.3g} s a step -> {_duration(c['steps'] * step)} a run, {_duration(total)} for its "
                     f"{len(mine)} runs on one worker{cap}")  # fmt: skip
    return lines


def describe(cfg: Config, profile: Profile, runs: list[RunSpec], folder: ResultsFolder, timing_steps: int = 0,
             device: str | None = None) -> str:  # fmt: skip
    """The dry run: each run and its state, the budget per model, the data, its duration estimated from
    ``timing_steps`` timed training steps per model (0: not timed), and what is missing."""
    lines = []
    for run in runs:
        state = "todo" if run.provisional else folder.run(run.run_id).state(run.config_hash)
        note = "config hash once its data is here" if run.provisional else f"config {run.config_hash}"
        lines.append(f"{state:8s} {run.run_id}  ({note})")
    lines.append(f"{len(runs)} runs in profile '{profile.name}' -> {folder.root}, on {profile.device}")
    for model in dict.fromkeys(r.model for r in runs):
        c = next(r.config for r in runs if r.model == model)
        images = c["train"].get("images")
        lines.append(f"  {model}: {c['steps']} steps of {c['batch_size']} patches of {c['patch_size']} x {c['patch_size']}"
                     f" = {c['epochs']:.3g} epochs of {c['train']['name']} ({images if images is not None else '?'} pairs)")  # fmt: skip
    tests = dict.fromkeys(t for r in runs for t in r.config["test"])
    lines.append(f"  tested on {', '.join(tests)}; primary metrics {', '.join(profile.primary_metrics)}")
    missing = missing_inputs(cfg, profile)
    if timing_steps and runs:
        lines += estimate(cfg, profile, runs, timing_steps, device or profile.device, missing)
    if missing:
        lines.append("missing before it can run:")
        lines += [f"  {key}: {why}" for key, why in missing.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Plan, check the data, run and report a profile.

    Exit status: 0, 1 when a run failed, 2 for bad input (config, data, a results folder that cannot be
    written), 128 + the signal number when SIGINT or SIGTERM stopped it (130, 143).
    """
    args = build_parser().parse_args(argv)
    try:
        if args.pack < 1:
            raise ConfigError(f"--pack: expected a positive number of runs, got {args.pack}")
        cfg = load_config(args.config, args.set)
        profile = cfg.profile(args.profile)
        runs = select(plan(cfg, profile, allow_missing=args.dry_run), args.only)
        folder = ResultsFolder(Path(args.results) / profile.name)
        if args.dry_run:
            print(describe(cfg, profile, runs, folder, args.timing_steps, args.device))
            return 0
        device = resolve_device(args.device or profile.device)
        pairs, manifests = verify_data(cfg, profile, runs)
        for name, text in manifests.items():
            folder.write_manifest(name, text)
        print(f"profile '{profile.name}': {len(runs)} runs on {device} -> {folder.root} ({pairs} image pairs checked)")
        with interrupts.handling_stops():
            try:
                folder.write_study(profile.study())
                outcomes = launch(runs, cfg, profile, args.config, folder.root, device, args.workers, args.launcher, args.set,
                                  args.pack)  # fmt: skip
            except interrupts.Interrupted as exc:
                say(str(exc))
                return exc.exit_code
        stopped = [o for o in outcomes if o.status == "interrupted"]
        for o in stopped:
            say(o.message)
        if stopped:
            return 128 + (interrupts.requested() or signal.SIGINT)
        with folder.report_lock():
            try:
                study = load_study(folder.root)
            except StoreError:  # no run of the profile has finished yet
                study = None
            if study is not None:
                written = build_report(folder.root, figures=not args.no_figures, published=args.published)
        if study is not None:
            print(format_summary(study))
            print(f"tables and figures: {folder.summary_md} (rebuild with python -m benchmark report --results {folder.root})")
            print("\n".join(closing_lines(study, written)))
        failed = [o for o in outcomes if o.status == "failed"]
        for o in failed:
            say(f"failed: {o.run_id}: {o.message.splitlines()[0] if o.message else ''}")
        return 1 if failed else 0
    except (ConfigError, DataError, StoreError, PublishedError) as exc:
        say(f"error: {exc}")
        return 2
