"""Paper-style tables from stored per-image metrics: ``python -m benchmark report --results results/<profile>``.

Reads ``study.json`` and every completed run under ``runs/`` (``config.yaml``,
``env.json``, ``done.json``, ``metrics.csv``, ``train_log.csv``); never trains.
Writes, under the results folder:

- ``tables/main_<test>.{csv,md,tex}``: model x gradient arm, mean +- std over
  seeds of the per-seed image means, arrows for the better direction, best bold
  and second underlined within each model block;
- ``tables/paired_<test>.{csv,md,tex}``: each arm against ``magnitude`` per
  model: relative change of the mean, win rate over images and the two-sided
  paired Wilcoxon signed-rank p-value over images (values averaged over seeds);
- ``tables/ablation_<name>.{csv,md,tex}``: the same main-table form per ablation;
- ``summary.md``: all of it on one page with provenance;
- ``figures/``: see :mod:`benchmark.plots`.

NaN values are never averaged silently: means exclude them, and every cell that
excluded any carries a dagger with the count in the CSV and a footnote. The
output depends only on the stored files (no clock, no machine state), so a
rerun regenerates the tables byte for byte.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.stats import wilcoxon

from benchmark.config import run_id
from benchmark.evaluate import atomic_write_text
from benchmark.metrics import METRICS, metric_names

BASE_ARM = "magnitude"
DECIMALS = {"EN": 3, "SD": 2, "SF": 2, "AG": 3, "MI": 3, "SCD": 3, "VIF": 3, "Qabf": 3, "SSIM": 3, "CC": 3,
            "PSNR": 2, "MSE": 1}  # fmt: skip
CONVENTION = "cddfuse (specs/metrics.md: the MATLAB-derived convention of CDDFuse-era tables)"


class ReportError(ValueError):
    """A results folder that cannot be reported on."""


@dataclass
class Study:
    """A results folder: the study description and the per-image values of its completed runs."""

    root: Path
    spec: dict[str, Any]
    values: pd.DataFrame  # model, arm, seed, test, image, *metrics
    runs: dict[str, dict[str, Any]]  # run id -> {"config", "env", "done", "log"}
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        return [m for m in metric_names() if m in self.values.columns]

    def tests(self, arms: Sequence[str]) -> list[str]:
        """Test sets in planned order that hold values of any of ``arms``."""
        present = set(self.values.loc[self.values.arm.isin(arms), "test"])
        planned = [t for a in arms for t in self.spec["grids"][a]["test"]]
        return list(dict.fromkeys(t for t in planned if t in present))


def load_study(root: str | Path) -> Study:
    """Read ``study.json`` and the completed runs it plans; missing and failed runs are listed, not hidden."""
    root = Path(root)
    spec_path = root / "study.json"
    if not spec_path.is_file():
        raise ReportError(f"{spec_path}: not found; run the profile first (python run_all.py --profile NAME)")
    spec = json.loads(spec_path.read_text())
    frames, runs, missing, failed = [], {}, [], {}
    for arm, grid in spec["grids"].items():
        for model in grid["models"]:
            for seed in grid["seeds"]:
                rid = run_id(model, arm, spec["train"], seed)
                folder = root / "runs" / rid
                if (folder / "failed.json").is_file():
                    failed[rid] = json.loads((folder / "failed.json").read_text()).get("error", "").splitlines()[0]
                    continue
                if not (folder / "done.json").is_file():
                    missing.append(rid)
                    continue
                config = yaml.safe_load((folder / "config.yaml").read_text())
                done = json.loads((folder / "done.json").read_text())
                if done.get("config_hash") != config.get("config_hash"):
                    raise ReportError(f"{folder}: done.json and config.yaml disagree on the config hash")
                table = pd.read_csv(folder / "metrics.csv", dtype={"test": str, "image": str})
                table.insert(0, "seed", seed)
                table.insert(0, "arm", arm)
                table.insert(0, "model", model)
                frames.append(table)
                log = folder / "train_log.csv"
                runs[rid] = {"config": config, "env": json.loads((folder / "env.json").read_text()), "done": done,
                             "log": pd.read_csv(log) if log.is_file() else None}  # fmt: skip
    if not frames:
        raise ReportError(f"{root}: no completed runs yet ({len(missing)} planned, {len(failed)} failed)")
    return Study(root, spec, pd.concat(frames, ignore_index=True), runs, missing, failed)


# ------------------------------------------------------------------ statistics


def seed_means(values: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per (model, arm, test, seed): the image mean of each metric (NaN excluded) and its NaN count."""
    grouped = values.groupby(["model", "arm", "test", "seed"], sort=False)[list(metrics)]
    means = grouped.mean()
    nans = grouped.agg(lambda v: int(v.isna().sum())).add_suffix("_nan")
    return means.join(nans).reset_index()


def summarise_arms(values: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per (model, arm, test): mean and sample std (ddof 1; 0 for one seed) over seeds, seeds, NaN count."""
    per_seed = seed_means(values, metrics)
    rows = []
    for (model, arm, test), g in per_seed.groupby(["model", "arm", "test"], sort=False):
        row: dict[str, Any] = {"model": model, "arm": arm, "test": test, "seeds": len(g)}
        for m in metrics:
            v = g[m].to_numpy(dtype=float)
            v = v[~np.isnan(v)]
            row[f"{m}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else math.nan)
            row[f"{m}_nan"] = int(g[f"{m}_nan"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def paired(arm: np.ndarray, base: np.ndarray, higher_is_better: bool) -> dict[str, float]:
    """Paired comparison over images (NaN pairs dropped).

    Returns relative change of the mean in percent, the win rate (share of images where
    ``arm`` is better in the metric's direction, ties counted half), the two-sided Wilcoxon
    signed-rank p-value (1.0 when every difference is zero) and the number of pairs.
    """
    keep = ~(np.isnan(arm) | np.isnan(base))
    a, b = arm[keep], base[keep]
    if not len(a):
        return {"change_pct": math.nan, "win_rate": math.nan, "p_value": math.nan, "pairs": 0}
    diff = (a - b) if higher_is_better else (b - a)
    change = (a.mean() - b.mean()) / abs(b.mean()) * 100 if b.mean() != 0 else math.nan
    win = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / len(diff)
    p = 1.0 if np.all(diff == 0) else float(wilcoxon(a, b, alternative="two-sided").pvalue)
    return {"change_pct": float(change), "win_rate": float(win), "p_value": p, "pairs": int(len(a))}


def paired_images(values: pd.DataFrame, arm: str, base: str, metrics: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Per-image values of ``arm`` and ``base`` (one model, one test set), each averaged over the seeds both
    have, on the images both have; returns ``(arm, base, number of seeds)``."""
    seeds = set(values.loc[values.arm == arm, "seed"]) & set(values.loc[values.arm == base, "seed"])
    pick = values[values.seed.isin(seeds)]
    a, b = (pick[pick.arm == x].groupby("image", sort=True)[list(metrics)].mean() for x in (arm, base))
    images = a.index.intersection(b.index)
    return a.loc[images], b.loc[images], len(seeds)


def paired_table(values: pd.DataFrame, metrics: Sequence[str], base: str = BASE_ARM) -> pd.DataFrame:
    """Every arm against ``base`` per (model, test), on per-image values averaged over the seeds both have."""
    rows = []
    for (model, test), g in values.groupby(["model", "test"], sort=False):
        if base not in set(g.arm):
            continue
        for arm in [a for a in dict.fromkeys(g.arm) if a != base]:
            ours, theirs, seeds = paired_images(g, arm, base, metrics)
            if not seeds:
                continue
            row: dict[str, Any] = {"model": model, "test": test, "arm": arm, "base": base, "seeds": seeds,
                                   "images": len(ours)}  # fmt: skip
            for m in metrics:
                stats = paired(ours[m].to_numpy(float), theirs[m].to_numpy(float), METRICS[m].higher_is_better)
                for k, v in stats.items():
                    row[f"{m}_{k}"] = v
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ formatting


def arrow(metric: str) -> str:
    return "↑" if METRICS[metric].higher_is_better else "↓"


def ranks(means: Sequence[float], higher_is_better: bool) -> list[int]:
    """Rank of each value in its block (0 best, 1 second, ...); ties share the better rank; NaN gets
    ``len(means)``, below every real rank, so it is never marked."""
    keyed = [(-v if higher_is_better else v) for v in means if not math.isnan(v)]
    order = sorted(set(keyed))
    return [len(means) if math.isnan(v) else order.index(-v if higher_is_better else v) for v in means]


def _num(value: float, decimals: int) -> str:
    return "nan" if math.isnan(value) else f"{value:.{decimals}f}"


@dataclass
class Table:
    """A formatted table: header, rows of cells with a rank mark (0 bold, 1 underline), block starts, notes."""

    title: str
    header: list[str]
    rows: list[list[str]]
    marks: list[list[int | None]]
    blocks: list[int]  # row indices where a new model block starts
    notes: list[str]

    def markdown(self) -> str:
        def cell(text: str, mark: int | None) -> str:
            return f"**{text}**" if mark == 0 else (f"<u>{text}</u>" if mark == 1 else text)

        lines = ["| " + " | ".join(self.header) + " |", "|" + "|".join(["---"] * len(self.header)) + "|"]
        for row, marks in zip(self.rows, self.marks):
            lines.append("| " + " | ".join(cell(c, m) for c, m in zip(row, marks)) + " |")
        return "\n".join([f"**{self.title}**", "", *lines, *([""] + self.notes if self.notes else [])]) + "\n"

    def latex(self) -> str:
        def cell(text: str, mark: int | None) -> str:
            text = latex_escape(text)
            return f"\\textbf{{{text}}}" if mark == 0 else (f"\\underline{{{text}}}" if mark == 1 else text)

        body = []
        for i, (row, marks) in enumerate(zip(self.rows, self.marks)):
            if i in self.blocks and i > 0:
                body.append("\\midrule")
            body.append(" & ".join(cell(c, m) for c, m in zip(row, marks)) + " \\\\")
        notes = "".join(f"\\par\\footnotesize {latex_escape(n)}\n" for n in self.notes)
        return (
            "\\documentclass{article}\n\\usepackage[margin=1cm,landscape]{geometry}\n\\usepackage{booktabs}\n"
            "\\usepackage{amssymb}\n\\begin{document}\n\\begin{table}[t]\n\\centering\\scriptsize\n"
            f"\\caption{{{latex_escape(self.title)}}}\n"
            f"\\begin{{tabular}}{{{'l' * 2 + 'r' * (len(self.header) - 2)}}}\n\\toprule\n"
            + " & ".join(latex_escape(h) for h in self.header) + " \\\\\n\\midrule\n"
            + "\n".join(body) + "\n\\bottomrule\n\\end{tabular}\n" + notes
            + "\\end{table}\n\\end{document}\n"
        )  # fmt: skip


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
          "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
          "†": r"$^\dagger$", "≥": r"$\geq$", "<": r"$<$", ">": r"$>$"}  # fmt: skip


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; ``±``, arrows and the dagger become math symbols."""
    return "".join(_LATEX.get(ch, ch) for ch in text)


def main_table(summary: pd.DataFrame, metrics: Sequence[str], title: str, label: str = "arm",
               labels: dict[str, str] | None = None) -> Table:  # fmt: skip
    """Rows model x arm from :func:`summarise_arms` output; ``labels`` renames arms (ablation values)."""
    header = ["model", label, "seeds", *[f"{m} {arrow(m)}" for m in metrics]]
    rows, marks, blocks, notes = [], [], [], []
    for model, g in summary.groupby("model", sort=False):
        blocks.append(len(rows))
        block_ranks = {m: ranks(g[f"{m}_mean"].tolist(), METRICS[m].higher_is_better) for m in metrics}
        for i, r in enumerate(g.itertuples(index=False)):
            r = r._asdict()
            cells, row_marks = [model, (labels or {}).get(r["arm"], r["arm"]), str(r["seeds"])], [None, None, None]
            for m in metrics:
                text = _num(r[f"{m}_mean"], DECIMALS[m])
                if r["seeds"] > 1:
                    text += f" ± {_num(r[f'{m}_std'], DECIMALS[m])}"
                if r[f"{m}_nan"]:
                    text += "†"
                    notes.append(f"† {model} / {cells[1]} / {m}: {r[f'{m}_nan']} NaN value(s) excluded from the mean")
                cells.append(text)
                rank = block_ranks[m][i]
                row_marks.append(rank if rank < 2 and len(g) > 1 else None)
            rows.append(cells)
            marks.append(row_marks)
    if (summary["seeds"] < 3).any():
        notes.append("Fewer than 3 seeds in some rows: the ± is a spread of few runs, not a reliable estimate "
                     "(one seed: the mean alone).")
    return Table(title, header, rows, marks, blocks, notes)


def paired_markup(table: pd.DataFrame, metrics: Sequence[str], title: str) -> Table:
    """``change % (win rate, p)`` per metric; bold where p < 0.05 and the change is an improvement."""
    header = ["model", "arm vs magnitude", "seeds/images", *[f"{m} {arrow(m)}" for m in metrics]]
    rows, marks, blocks, notes = [], [], [], []
    for model, g in table.groupby("model", sort=False):
        blocks.append(len(rows))
        for r in g.to_dict("records"):
            cells, row_marks = [model, r["arm"], f"{r['seeds']}/{r['images']}"], [None, None, None]
            for m in metrics:
                change, win, p = r[f"{m}_change_pct"], r[f"{m}_win_rate"], r[f"{m}_p_value"]
                cells.append(f"{_num(change, 1)}% ({_num(100 * win, 0)}%, {format_p(p)})")
                better = not math.isnan(change) and (change > 0) == METRICS[m].higher_is_better and change != 0
                row_marks.append(0 if better and p < 0.05 else None)
            rows.append(cells)
            marks.append(row_marks)
    notes.append("Cells: relative change of the mean vs magnitude (win rate over images, two-sided paired Wilcoxon "
                 "signed-rank p over images, per-image values averaged over seeds). Bold: an improvement with p < 0.05, "
                 "uncorrected for the number of comparisons.")  # fmt: skip
    if not table.empty and (table["seeds"] < 3).any():
        notes.append("Fewer than 3 seeds: the test sees image-to-image variation only, not seed-to-seed variation.")
    return Table(title, header, rows, marks, blocks, notes)


def format_p(p: float) -> str:
    """``p=0.028``, ``p<0.001`` or ``p=nan``."""
    if math.isnan(p):
        return "p=nan"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def to_csv(frame: pd.DataFrame) -> str:
    """CSV with full-precision floats (``repr``), stable across runs."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(frame.columns)
    for row in frame.itertuples(index=False):
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return out.getvalue()


# ---------------------------------------------------------------------- report


def write_table(folder: Path, stem: str, frame: pd.DataFrame, table: Table) -> None:
    atomic_write_text(folder / f"{stem}.csv", to_csv(frame))
    atomic_write_text(folder / f"{stem}.md", table.markdown())
    atomic_write_text(folder / f"{stem}.tex", table.latex())


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
        f"- metrics: {CONVENTION}; every value is traceable to `runs/<run>/metrics.csv` with that run's "
        "`config.yaml` (hash), `env.json` and seed",
    ]  # fmt: skip


def build_report(root: str | Path, figures: bool = True) -> list[Path]:
    """Write tables, ``summary.md`` and (optionally) figures for a results folder; returns the files written."""
    study = load_study(root)
    tables = study.root / "tables"
    tables.mkdir(exist_ok=True)
    metrics, written = study.metrics, []
    main_arms = [a for a in study.spec["loss_arms"] if a in set(study.values.arm)]
    sections = ["# Results: " + study.spec["profile"], "", "## Provenance", "", *provenance(study), ""]
    for test in study.tests(main_arms):
        vals = study.values[(study.values.test == test) & study.values.arm.isin(main_arms)]
        summary = summarise_arms(vals, metrics)
        table = main_table(summary, metrics, f"{test}: mean ± std over seeds (training on {study.spec['train']})")
        write_table(tables, f"main_{test}", summary, table)
        sections += [f"## {test}", "", table.markdown()]
        pairs = paired_table(vals, metrics)
        if not pairs.empty:
            ptable = paired_markup(pairs, metrics, f"{test}: each arm against magnitude")
            write_table(tables, f"paired_{test}", pairs, ptable)
            sections += [ptable.markdown()]
        written += [tables / f"main_{test}.csv", tables / f"paired_{test}.csv"]
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
            write_table(tables, stem, summary, table)
            sections += [f"## Ablation: {name} ({test})", "", table.markdown()]
            written.append(tables / f"{stem}.csv")
            pairs = paired_table(here, metrics)
            if not pairs.empty:
                pairs["arm"] = pairs["arm"].map(names)
                ptable = paired_markup(pairs, metrics, f"Ablation '{name}' on {test}: each setting against magnitude")
                write_table(tables, f"{stem}_paired", pairs, ptable)
                sections += [ptable.markdown()]
    if study.failed or study.missing:
        sections += ["## Incomplete runs", ""] + [f"- failed: {k}: {v}" for k, v in study.failed.items()]
        sections += [f"- missing: {k}" for k in study.missing] + [""]
    if figures:
        from benchmark.plots import make_figures

        made = make_figures(study)
        written += made
        sections += ["## Figures", ""] + [f"- [{p.name}](figures/{p.name})" for p in made if p.suffix == ".png"] + [""]
    atomic_write_text(study.root / "summary.md", "\n".join(sections))
    return [study.root / "summary.md", *written]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmark report``."""
    parser = argparse.ArgumentParser(prog="python -m benchmark report", description="Tables and figures from stored runs.")
    parser.add_argument("--results", required=True, help="a profile's results folder, e.g. results/real-cpu")
    parser.add_argument("--no-figures", action="store_true", help="tables and summary.md only")
    args = parser.parse_args(argv)
    try:
        files = build_report(args.results, figures=not args.no_figures)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {len(files)} files under {Path(args.results)} (summary.md, tables/, figures/)")
    return 0
