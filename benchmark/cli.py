"""Every command's arguments, in one parser: ``damgl-bench <command> ...`` (also ``python -m benchmark``;
``run_all.py`` is ``damgl-bench run``). Each command's work lives in its stage's module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.console import os_error, say, split_names
from benchmark.data import DataError, PairedDataset, data_root, dataset_folder
from benchmark.provenance import RESULTS, ROOT


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from benchmark.evaluate import evaluate_folders, format_means, write_csv

    dataset = PairedDataset(dataset_folder(args.dataset), args.split)
    conventions = split_names([args.convention])
    result = evaluate_folders(dataset, args.fused, split_names(args.metrics), allow_missing=args.allow_missing,
                              convention=conventions)  # fmt: skip
    if args.out:
        write_csv(result, args.out)
    print(f"\n{dataset.name}: {len(dataset)} pairs, convention {args.convention}")
    print(format_means(result))
    if args.published:
        print(_against_published(args, dataset, result, conventions))
    if args.out:
        print(f"per-image values: {args.out}")
    return 0


def _against_published(args: argparse.Namespace, dataset: PairedDataset, result, conventions: list[str]) -> str:
    """``--published KEY``: the folders' means beside a published row, which must describe these images and
    one of the conventions scored."""
    import numpy as np

    from benchmark.data import stems_identity
    from benchmark.published import format_against, load_published

    rows = load_published(args.published_file)
    if args.published not in rows or rows[args.published].kind != "means":
        valid = [k for k, r in rows.items() if r.kind == "means"]
        raise DataError(f"--published {args.published}: no published means row of that name; rows: {', '.join(valid)}")
    row = rows[args.published]
    identity = stems_identity(dataset.names())
    if not row.applies_to(row.model_type, identity):
        raise DataError(f"--published {row.key}: it describes {row.test_name} ({row.images} pairs, stems digest "
                        f"{row.stems_sha256}); {dataset.root} holds {identity['images']} pairs, digest {identity['stems_sha256']}")  # fmt: skip
    if row.convention not in conventions:
        raise DataError(f"--published {row.key}: computed under the {row.convention} convention; add it to --convention")
    prefix = "" if len(conventions) == 1 else f"{row.convention}:"
    means = {method: {m: float(np.nanmean(result.values(method, prefix + m))) for m in row.values if prefix + m in result.metrics}
             for method in result.methods()}  # fmt: skip
    return format_against(row, means)


def _cmd_split(args: argparse.Namespace) -> int:
    from benchmark.data import carve, read_split
    from benchmark.store import atomic_write_text

    source = Path(args.list) if Path(args.list).is_file() else data_root() / args.list
    rest, held = carve(read_split(source), args.fraction)
    header = f"# python -m benchmark split --list {args.list} --fraction {args.fraction}\n"
    for path, part, stems in ((args.rest, "the rest", rest), (args.held_out, "held out", held)):
        atomic_write_text(path, f"# {part} of {args.list}, made by\n{header}" + "".join(f"{s}\n" for s in stems))
    print(f"{source}: {len(rest)} stems -> {args.rest}, {len(held)} held out -> {args.held_out}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from benchmark.data import releases as D
    from benchmark.store import atomic_write_text

    if args.action == "list":
        for r in D.RELEASES.values():
            size = f"{r.size[0]} x {r.size[1]}" if r.size else "varied sizes"
            splits = ", ".join(f"{s} {n}" for s, n in r.pairs.items())
            print(f"{r.name}: {splits} pairs, {size}; {r.source}")
        return 0
    release = D.get_release(args.name)
    if args.action == "check":
        root = Path(args.path)
        rows = D.check(release, root, split_names(args.split), progress=True)
        manifest = Path(args.manifest) if args.manifest else root / D.MANIFEST
        text = D.manifest_text(rows)
        before = manifest.read_text() if manifest.is_file() else None
        atomic_write_text(manifest, text)
        note = "" if before is None else " (as before)" if before == text else " (replaced one that listed other files)"
        print(f"{root}: {release.name} {len(rows) // 2} pairs, as many as released, every image readable; "
              f"manifest {manifest}{note}")  # fmt: skip
        return 0
    rows = D.prepare(release, Path(args.path), Path(args.dest), progress=True)
    print(f"{args.dest}: {len(rows) // 2} {release.name} pairs in the ir/ + vi/ layout, manifest {Path(args.dest) / D.MANIFEST}")
    return 0


def _cmd_speed(args: argparse.Namespace) -> int:
    from benchmark.speed import run_speed

    return run_speed(args.target, args)


def _cmd_run(args: argparse.Namespace) -> int:
    from benchmark.runner import run_study

    return run_study(args)


def _cmd_report(args: argparse.Namespace) -> int:
    from benchmark.reports import report_command

    return report_command(args)


def _cmd_drift(args: argparse.Namespace) -> int:
    from benchmark.drift import drift_command

    return drift_command(args)


def _run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--config", default=str(ROOT / "experiments.yaml"), help="experiments file")
    run.add_argument("--profile", help="profile name (default: the file's default_profile)")
    run.add_argument("--only", help="filter runs, e.g. model=seafusion,loss=damgl")
    run.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a config field, e.g. profiles.smoke.steps=50 or models.tiny.width=16")  # fmt: skip
    run.add_argument("--dry-run", action="store_true", help="list the runs, which are done, how long they take "
                     "and what is missing")  # fmt: skip
    run.add_argument("--timing-steps", type=int, default=10, help="dry run: training steps timed per model for "
                     "the duration estimate, after 3 warm-up steps (default 10; 0 skips the timing)")  # fmt: skip
    run.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the profile's device")
    run.add_argument("--workers", type=int, default=1, help="parallel processes")
    run.add_argument("--launcher", default="local", choices=["local", "slurm"])
    run.add_argument("--pack", type=int, default=1, help="train up to N runs of one model together in one process "
                     "(their forward passes mapped over stacked weights; for GPUs a small CNN leaves idle)")  # fmt: skip
    run.add_argument("--results", default=str(RESULTS), help="results root (default: results/)")
    run.add_argument("--no-figures", action="store_true", help="report tables and summaries only")
    run.add_argument("--published", help="published-results file the report sets beside the reproduction "
                     "(default: the package's published.yaml)")  # fmt: skip
    run.set_defaults(func=_cmd_run)


def build_parser() -> argparse.ArgumentParser:
    """The one argument parser of every command (``damgl-bench``, ``python -m benchmark``, ``run_all.py``)."""
    parser = argparse.ArgumentParser(prog="damgl-bench", description="Gradient losses for infrared-visible fusion: train, fuse, score and report studies, and score fused images as published tables do (also python -m benchmark; run_all.py is damgl-bench run).")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    _run_arguments(sub.add_parser("run", help="train, fuse and score a profile's runs, then report (run_all.py)",
                                  description="Train, fuse and score the runs of a profile, then build its report."))  # fmt: skip

    rep = sub.add_parser("report", help="tables, summary.md and figures from a profile's stored runs",
                         description="Tables and figures from stored runs.")  # fmt: skip
    rep.add_argument("--results", required=True, help="a profile's results folder, e.g. results/real-cpu")
    rep.add_argument("--no-figures", action="store_true", help="tables and summary.md only")
    rep.add_argument("--published", help="published-results file to set beside the reproduction "
                     "(default: the package's published.yaml)")  # fmt: skip
    rep.set_defaults(func=_cmd_report)

    dr = sub.add_parser("drift", help="how far metric conventions drift apart on the same fused images",
                        description="How far metric conventions drift apart on the same fused images.")  # fmt: skip
    dr.add_argument("--dataset", required=True, help="dataset folder, or its name under $FUSION_DATA")
    dr.add_argument("--fused", action="extend", nargs="+", metavar="[NAME=]PATH",
                    help="fused folders, one per method, at least two, named by NAME= or else by the folder's name; "
                    "repeatable (omit to rebuild from --out's values)")  # fmt: skip
    dr.add_argument("--convention", default="cddfuse,vifb,tang", help="conventions, comma separated")
    dr.add_argument("--out", required=True, help="folder for values.csv, means.csv, agreement.csv, drift.md, the figure")
    dr.set_defaults(func=_cmd_drift)

    ev = sub.add_parser("evaluate", help="score folders of fused images against a paired dataset")
    ev.add_argument("--dataset", required=True,
                    help="dataset folder holding ir/ and vi/, or its name under $FUSION_DATA (e.g. VIFB)")  # fmt: skip
    ev.add_argument("--split", help="split file: one image file name per line")
    ev.add_argument("--fused", required=True, action="extend", nargs="+", metavar="[NAME=]PATH",
                    help="folders of fused images, one per method, named by NAME= or else by the folder's name; "
                    "repeatable")  # fmt: skip
    ev.add_argument("--metrics", nargs="+", help="metric names (default: all), space or comma separated")
    ev.add_argument("--out", help="CSV file for the per-image values")
    ev.add_argument("--allow-missing", action="store_true", help="skip (and list) missing or mis-sized fused images")
    ev.add_argument("--convention", default="cddfuse",
                    help="metric convention(s), comma separated: cddfuse, vifb, tang (default: cddfuse)")  # fmt: skip
    ev.add_argument("--published", help="compare the means with this row of the published-results file")
    ev.add_argument("--published-file", help="published-results file (default: the package's published.yaml)")
    ev.set_defaults(func=_cmd_evaluate)

    cut = sub.add_parser("split", help="carve a held-out (validation) list from a split file, the same on every machine")
    cut.add_argument("--list", required=True, help="split file to carve, a path or relative to $FUSION_DATA")
    cut.add_argument("--fraction", type=float, default=0.1, help="share held out (default 0.1)")
    cut.add_argument("--rest", required=True, help="file for the remaining stems")
    cut.add_argument("--held-out", required=True, help="file for the held-out stems")
    cut.set_defaults(func=_cmd_split)

    data = sub.add_parser("data", help="check a dataset folder against its release, or prepare a release as ir/ + vi/")
    acts = data.add_subparsers(dest="action", required=True)
    acts.add_parser("list", help="the datasets whose releases the harness knows")
    chk = acts.add_parser("check", help="verify pair counts, sizes and files; write a manifest with SHA-256 digests")
    chk.add_argument("name", help="dataset name (data list shows them)")
    chk.add_argument("path", help="the folder, prepared or as released")
    chk.add_argument("--split", nargs="+", help="check only these splits (default: all of the release's)")
    chk.add_argument("--manifest", help="manifest CSV to write (default: manifest.csv in the checked folder)")
    prep = acts.add_parser("prepare", help="copy a release into the ir/ + vi/ layout with split lists and a manifest")
    prep.add_argument("name", help="dataset name (data list shows them)")
    prep.add_argument("path", help="the folder as released")
    prep.add_argument("dest", help="new folder to create (never written over)")
    data.set_defaults(func=_cmd_data)

    sp = sub.add_parser("speed", help="print timings of a part of the benchmark")
    sp.add_argument("target", choices=["metrics", "losses", "models", "train", "gpu", "flops"],
                    help="what to time (gpu: the one-command check for a machine with a GPU; flops: FLOPs and the "
                    "GPU time they come to for the paper profiles, an estimate)")  # fmt: skip
    sp.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    sp.add_argument("--dataset", help="dataset folder (metrics: default $FUSION_DATA/TNO)")
    sp.add_argument("--repeat", type=int, default=3, help="timed passes over the images (default: 3)")
    sp.add_argument("--convention", default="cddfuse", help="metrics: the convention to time (default: cddfuse)")
    sp.add_argument("--models", help="models, gpu and train: comma-separated names (default: all for models and gpu, "
                    "pmgi for train); flops: profiles (default: paper,paper-cnn)")  # fmt: skip
    sp.add_argument("--steps", type=int, help="gpu: timed training steps per model (default 200 on CUDA, 3 on the CPU)")
    sp.add_argument("--images", type=int, help="gpu: test pairs to fuse and score (default all on CUDA, 2 on the CPU)")
    sp.add_argument("--max-seconds", type=float, default=10.0, help="models: skip fwd+bwd where one forward takes longer")
    sp.set_defaults(func=_cmd_speed)
    return parser


def console() -> None:
    """The ``damgl-bench`` console script: ``damgl-bench run|report|evaluate|data|... ``, as ``python -m benchmark``."""
    raise SystemExit(main())


def run(argv: Sequence[str] | None = None) -> int:
    """``run_all.py [ARGS]``: the same as ``damgl-bench run [ARGS]``."""
    return main(["run", *(sys.argv[1:] if argv is None else argv)])


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; bad input ends with a one-line error and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]  # the command's own arguments, for the files that record how they were made
    try:
        return args.func(args)
    except (DataError, ValueError) as exc:
        say(f"error: {exc}")
        return 2
    except OSError as exc:  # a folder without permission, a read-only disk, a file that vanished
        say(f"error: {os_error(exc)}")
        return 2
