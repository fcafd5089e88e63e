"""Paper-style tables and figures from stored per-image values: ``python -m benchmark report --results DIR``.

Reads a results folder through :func:`benchmark.store.load_study` and never
trains. Writes, under the results folder:

- ``summary.csv``: one row per finished run and test set (the image means);
- ``tables/main_<test>.{csv,md,tex}``: model x gradient arm, mean +- std over
  seeds of the per-seed image means, arrows for the better direction, best bold
  and second underlined within each model block;
- ``tables/paired_<test>.{csv,md,tex}``: each arm against ``magnitude`` per
  model: relative change of the mean, win rate over images and the two-sided
  paired Wilcoxon signed-rank p-value over images (values averaged over seeds);
- ``tables/ablation_<name>_<test>.{csv,md,tex}`` and ``..._paired.*``: the same per ablation;
- ``summary.md``: all of it on one page with provenance;
- ``figures/``: see :mod:`benchmark.reports.figures`.

The numbers come from :mod:`benchmark.reports.stats` (one NaN rule: means
exclude NaN values, and every cell that excluded any carries a dagger with the
count in the CSV and a footnote), the formatting from
:mod:`benchmark.reports.tables`. The output depends only on the stored files
(no clock, no machine state), so a rerun regenerates the tables byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.metrics import DEFAULT_CONVENTION, get_convention
from benchmark.reports.stats import BASE_ARM, paired_table, run_summary, study_metrics, summarise_arms
from benchmark.reports.figures import make_figures
from benchmark.reports.tables import main_table, paired_markup, to_csv, write_table
from benchmark.store import ResultsFolder, Study, StoreError, atomic_write_text, load_study


def _plan_order(study: Study) -> dict[str, list]:
    """Model, arm and test order of the study's plan."""
    grids = study.spec["grids"].values()
    return {"model": list(dict.fromkeys(m for grid in grids for m in grid["models"])),
            "arm": list(study.spec["arms"]), "test": list(dict.fromkeys(t for grid in grids for t in grid["test"]))}  # fmt: skip


def write_summary_csv(study: Study) -> Path:
    """``summary.csv`` from every finished run of the study, in plan order."""
    atomic_write_text(study.folder.summary_csv, to_csv(run_summary(study.values, study_metrics(study), _plan_order(study))))
    return study.folder.summary_csv


def format_summary(study: Study) -> str:
    """Means over seeds per (test, model, arm), two decimals, for the terminal; ``*`` marks means that
    exclude NaN values, with a note naming the run."""
    names = study_metrics(study)
    summary = summarise_arms(study.values, names)
    header = ["test", "model", "arm", "seeds", *names]
    body = [[r["test"], r["model"], r["arm"], str(r["seeds"])]
            + [("nan" if np.isnan(r[f"{m}_mean"]) else f"{r[f'{m}_mean']:.2f}") + ("*" if r[f"{m}_nan"] else "")
               for m in names] for r in summary.to_dict("records")]  # fmt: skip
    notes = [f"* {r['run_id']} on {r['test']}: NaN values excluded from the means ({r['nan_values']})"
             for r in run_summary(study.values, names, _plan_order(study)).to_dict("records") if r["nan_values"]]  # fmt: skip
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *body]]
    return "\n".join(lines + notes)


def provenance(study: Study) -> list[str]:
    """Lines saying where the numbers come from, read from the run files only."""
    envs = [r["env"] for r in study.runs.values()]
    done = [r["done"] for r in study.runs.values()]
    config = next(iter(study.runs.values()))["config"]

    def values(key: str) -> str:
        return ", ".join(sorted({str(e.get(key)) for e in envs}))

    planned = len(study.runs) + len(study.missing) + len(study.failed)
    return [
        f"- profile: `{study.spec['profile']}`; train set `{study.spec['train']}`, {study.spec['steps']} steps, "
        f"batch {config['batch_size']}, patches {config['patch_size']} px, output normalisation `{config['normalisation']}`",
        f"- runs: {len(study.runs)} of {planned} complete, {len(study.failed)} failed, {len(study.missing)} missing",
        f"- finished: {min(d['finished'] for d in done)} to {max(d['finished'] for d in done)}",
        f"- code: commit(s) {values('git_commit')}",
        f"- device: {values('device')} (torch threads per run: {values('torch_threads')}); host {values('platform')}",
        f"- versions: python {values('python')}, torch {values('torch')}, numpy {values('numpy')}, "
        f"numba {values('numba')}, piq {values('piq')}",
        f"- metrics: `{DEFAULT_CONVENTION}` convention, {get_convention().description} (docs/metrics.md); every value is traceable to `runs/<run>/metrics.csv` with that run's "
        "`config.yaml` (hash), `env.json` and seed",
    ]  # fmt: skip


def build_report(root: str | Path, figures: bool = True) -> list[Path]:
    """Write ``summary.csv``, the tables, ``summary.md`` and (optionally) the figures; returns every file written."""
    study = load_study(root)
    tables = study.folder.tables
    tables.mkdir(exist_ok=True)
    metrics, written = study_metrics(study), [write_summary_csv(study)]
    main_arms = [a for a in study.spec["loss_arms"] if a in set(study.values.arm)]
    sections = ["# Results: " + study.spec["profile"], "", "## Provenance", "", *provenance(study), ""]
    for test in study.tests(main_arms):
        vals = study.values[(study.values.test == test) & study.values.arm.isin(main_arms)]
        summary = summarise_arms(vals, metrics)
        table = main_table(summary, metrics, f"{test}: mean ± std over seeds (training on {study.spec['train']})")
        written += write_table(tables, f"main_{test}", summary, table)
        sections += [f"## {test}", "", table.markdown()]
        pairs = paired_table(vals, metrics)
        if not pairs.empty:
            ptable = paired_markup(pairs, metrics, f"{test}: each arm against {BASE_ARM}")
            written += write_table(tables, f"paired_{test}", pairs, ptable)
            sections += [ptable.markdown()]
    for name, labels in study.spec["ablations"].items():
        arms = list(dict.fromkeys(labels.values()))
        grid = study.spec["grids"][next(a for a in arms if a not in main_arms)] if set(arms) - set(main_arms) else None
        vals = study.values[study.values.arm.isin([*arms, BASE_ARM])]
        if grid is not None:
            vals = vals[vals.model.isin(grid["models"]) & vals.test.isin(grid["test"]) & vals.seed.isin(grid["seeds"])]
        if vals.empty:
            continue
        names = {arm: ", ".join(f"{name}={v}" for v, a in labels.items() if a == arm) for arm in arms}
        for test in list(dict.fromkeys(vals.test)):
            here = vals[vals.test == test]
            if not here.arm.isin(arms).any():  # only the magnitude rows so far
                continue
            summary = summarise_arms(here[here.arm.isin(arms)], metrics)
            summary["arm"] = pd.Categorical(summary["arm"], categories=arms, ordered=True)
            summary = summary.sort_values(["model", "arm"], kind="stable").assign(arm=lambda d: d["arm"].astype(str))
            stem = f"ablation_{name}_{test}"
            table = main_table(summary, metrics, f"Ablation '{name}' on {test} (base: DAMGL)", label=name, labels=names)
            written += write_table(tables, stem, summary, table)
            sections += [f"## Ablation: {name} ({test})", "", table.markdown()]
            pairs = paired_table(here, metrics)
            if not pairs.empty:
                pairs["arm"] = pairs["arm"].map(names)
                ptable = paired_markup(pairs, metrics, f"Ablation '{name}' on {test}: each setting against {BASE_ARM}")
                written += write_table(tables, f"{stem}_paired", pairs, ptable)
                sections += [ptable.markdown()]
    if study.failed or study.missing:
        sections += ["## Incomplete runs", ""] + [f"- failed: {k}: {v}" for k, v in study.failed.items()]
        sections += [f"- missing: {k}" for k in study.missing] + [""]
    if figures:
        made = make_figures(study)
        written += made
        sections += ["## Figures", ""] + [f"- [{p.name}](figures/{p.name})" for p in made if p.suffix == ".png"] + [""]
    atomic_write_text(study.folder.summary_md, "\n".join(sections))
    return [study.folder.summary_md, *written]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmark report``."""
    parser = argparse.ArgumentParser(prog="python -m benchmark report", description="Tables and figures from stored runs.")
    parser.add_argument("--results", required=True, help="a profile's results folder, e.g. results/real-cpu")
    parser.add_argument("--no-figures", action="store_true", help="tables and summary.md only")
    args = parser.parse_args(argv)
    folder = ResultsFolder(args.results)
    try:
        if not folder.study.is_file():
            load_study(folder.root)  # raises, naming the missing file
        with folder.report_lock():
            files = build_report(folder.root, figures=not args.no_figures)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {len(files)} files written under {Path(args.results)} (summary.csv, summary.md, tables/, figures/, examples/)")
    return 0
