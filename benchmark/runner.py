"""``damgl-bench run`` (also ``run_all.py``, ``python -m benchmark run``): the study, stage by stage.

config (:mod:`benchmark.config`) -> plan (:mod:`benchmark.plan`) -> launch
(:mod:`benchmark.launch`, or :mod:`benchmark.slurm` on a cluster), which trains
(:mod:`benchmark.train`) and fuses and scores (:mod:`benchmark.fuse`) each run
-> report (:mod:`benchmark.reports`). Every file lives where the run
store (:mod:`benchmark.store`) puts it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark import interrupts
from benchmark.config import Config, ConfigError, Profile, load_config
from benchmark.console import os_error, say
from benchmark.data import DataError
from benchmark.launch import RunOutcome, launch, resolve_device, threads_for
from benchmark.plan import RunSpec, missing_inputs, plan, select, verify_data
from benchmark.published import PublishedError
from benchmark.reports import build_report, closing_lines, format_summary
from benchmark.slurm import launch_slurm
from benchmark.store import ResultsFolder, RunDir, StoreError, load_study
from benchmark.tuning import at_edge, select_scales, trials, tuning_table


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
    threads = profile.threads
    lines = [f"time (one training step timed on {device} with {threads} thread(s), the runs' count, median of "
             f"{timing_steps} after 3 warm-up steps, on this machine as loaded now; validation, fusing and scoring "
             "not included):"]  # fmt: skip
    with threads_for(threads):
        for model in dict.fromkeys(r.model for r in runs):
            mine = [r for r in runs if r.model == model]
            c = mine[0].config
            spec = cfg.model(model, without_checkpoint=f"models.{model}.backbone_checkpoint" in missing)
            torch.manual_seed(0)
            step = time_step(spec.build(), spec.recipe, arm_gradient(c["arm"]), c["batch_size"], c["patch_size"], device,
                             timing_steps)  # fmt: skip
            cap = " at most (runs may stop on their plateau)" if profile.stop else ""
            for stage, what in (("tune", "tuning runs (validation only)"), ("study", "study runs")):
                chosen = [r for r in mine if (r.stage == "tune") == (stage == "tune")]
                if chosen:
                    total = sum(r.config["steps"] for r in chosen) * step
                    lines.append(f"  {model}: {step:.3g} s a step -> {_duration(c['steps'] * step)} a run, "
                                 f"{_duration(total)} for its {len(chosen)} {what} on one worker{cap}")  # fmt: skip
    return lines


def describe(cfg: Config, profile: Profile, runs: list[RunSpec], folder: ResultsFolder, timing_steps: int = 0,
             device: str | None = None) -> str:  # fmt: skip
    """The dry run: each run and its state, the budget per model, the data, its duration estimated from
    ``timing_steps`` timed training steps per model (0: not timed), and what is missing."""
    lines = []
    for stage, title in (("tune", "tuning runs: every tuned arm at every gradient scale and tuning seed, validated, never "
                                  "tested"), ("study", "study runs")):  # fmt: skip
        chosen = [r for r in runs if (r.stage == "tune") == (stage == "tune")]
        if chosen and profile.tune:
            lines.append(f"{title} ({len(chosen)}):")
        for run in chosen:
            state = "todo" if run.provisional else folder.run(run.run_id).state(run.config_hash)
            note = "config hash once its data is here" if run.provisional else f"config {run.config_hash}"
            if run.stage == "pending":
                state, note = "pending", "its gradient scale is selected by the tuning runs"
            elif (there := _reusable(run, profile, folder)) is not None:
                state, note = "reuse", f"{note}, finished in {there.root}"
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


def _tuned(cfg: Config, profile: Profile, folder: ResultsFolder, tuning: list[RunSpec], only: str | None) -> list[RunSpec]:
    """After the tuning runs: select each tuned arm's scale (:mod:`benchmark.tuning`), record it in
    ``study.json``, warn of a selection at the edge of the grid, and plan the study's runs at those scales."""
    tune = {**profile.tune, "models": list(dict.fromkeys(r.model for r in tuning)),
            "arms": list(dict.fromkeys(r.arm for r in tuning))}  # what --only left of the tuning grid  # fmt: skip
    table = tuning_table(trials(folder, tune, profile.train))
    scales = select_scales(table)
    folder.write_study({**profile.study(), "scales": scales})
    for warning in at_edge(table):
        say(f"warning: {warning}")
    chosen = ", ".join(f"{m} / {a}: x{x:g}" for a, by_model in scales.items() for m, x in by_model.items())
    print(f"tuning: {len(tuning)} runs; selected gradient scales {chosen}")
    return select(plan(cfg, profile, scales=scales, only=only), only)


def _after_tuning_failed(outcomes: list) -> int:
    """A tuning run that failed or stopped leaves the selection undecided: say so, train nothing further."""
    for o in outcomes:
        if o.status not in ("done", "trained"):
            say(f"{o.status}: {o.run_id}: {o.message.splitlines()[0] if o.message else ''}")
    say("tuning is incomplete, so no arm's gradient scale is selected and the study's runs wait; "
        "run the same command again once the problem is fixed")  # fmt: skip
    return _stopped_exit() if any(o.status == "interrupted" for o in outcomes) else 1


def _stopped_exit() -> int:
    """The exit status when runs stopped unfinished: 128 + the signal of a stop request (130, 143), or 1 when
    none was made here (Slurm ended a task for good: cancelled, out of time)."""
    signum = interrupts.requested()
    return 1 if signum is None else 128 + signum


def _reusable(run: RunSpec, profile: Profile, folder: ResultsFolder) -> RunDir | None:
    """The finished run of equal config hash (so of equal numbers) in the folder of a profile of ``reuse:``
    beside this one, for a run not yet begun here; else ``None``."""
    if run.provisional or folder.run(run.run_id).root.exists():
        return None
    for other in profile.reuse:
        there = ResultsFolder(folder.root.parent / other).run(run.run_id)
        if there.is_done(run.config_hash):
            return there
    return None


def _reuse(runs: list[RunSpec], profile: Profile, folder: ResultsFolder) -> None:
    """Copy each run that :func:`_reusable` finds into this folder, saying so."""
    for run in runs:
        there = _reusable(run, profile, folder)
        if there is not None:
            folder.run(run.run_id).adopt(there)
            say(f"{run.run_id}: reused from {there.root} (the same config hash {run.config_hash})")


def _launch(runs: list[RunSpec], profile: Profile, folder: ResultsFolder, device: str,
            args: argparse.Namespace) -> list[RunOutcome]:  # fmt: skip
    """Run ``runs`` with the chosen launcher (on this machine, or as Slurm jobs), after copying those a
    profile of ``reuse:`` has finished."""
    _reuse(runs, profile, folder)
    if args.launcher == "slurm":
        return launch_slurm(runs, profile, folder.root, device, args.pack)
    return launch(runs, folder.root, device, args.workers, args.pack)


def run_study(args: argparse.Namespace) -> int:
    """``damgl-bench run`` (arguments in :mod:`benchmark.cli`): plan, check the data, run and report a profile.

    Exit status: 0, 1 when a run failed, 2 for bad input (config, data, a results folder that cannot be
    written), 128 + the signal number when SIGINT or SIGTERM stopped it (130, 143).
    """
    try:
        if args.pack < 1:
            raise ConfigError(f"--pack: expected a positive number of runs, got {args.pack}")
        cfg = load_config(args.config, args.set)
        profile = cfg.profile(args.profile)
        runs = select(plan(cfg, profile, allow_missing=args.dry_run, only=args.only), args.only)
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
                # tuning that the study's runs wait for comes first; tuning with apply: false runs beside them
                tuning = [r for r in runs if r.stage == "tune"] if profile.tune and profile.tune["apply"] else []
                outcomes = _launch(tuning, profile, folder, device, args) if tuning else []
                if any(o.status not in ("done", "trained") for o in outcomes):
                    return _after_tuning_failed(outcomes)
                if tuning:
                    runs = _tuned(cfg, profile, folder, tuning, args.only)
                rest = [r for r in runs if r.stage == "study" or (r.stage == "tune" and not tuning)]
                outcomes += _launch(rest, profile, folder, device, args)
            except interrupts.Interrupted as exc:
                say(str(exc))
                return exc.exit_code
        stopped = [o for o in outcomes if o.status == "interrupted"]
        for o in stopped:
            say(o.message)
        if stopped:
            return _stopped_exit()
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
    except OSError as exc:  # a results folder on a read-only disk, without permission, or full
        say(f"error: {os_error(exc)}")
        return 2
