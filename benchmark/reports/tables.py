"""Formatted tables: Markdown, standalone booktabs LaTeX and full-precision CSV, with best and second marks."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.metrics import METRICS
from benchmark.reports.stats import BASE_ARM, ranks
from benchmark.store import atomic_write_text

DECIMALS = {"EN": 3, "SD": 2, "SF": 2, "AG": 3, "MI": 3, "SCD": 3, "VIF": 3, "Qabf": 3, "SSIM": 3, "CC": 3,
            "PSNR": 2, "MSE": 1}  # fmt: skip


def arrow(metric: str) -> str:
    return "↑" if METRICS[metric].higher_is_better else "↓"


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
    """Rows model x arm from :func:`~benchmark.reports.stats.summarise_arms` output; ``labels`` renames arms."""
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
    header = ["model", f"arm vs {BASE_ARM}", "seeds/images", *[f"{m} {arrow(m)}" for m in metrics]]
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


def write_table(folder: Path, stem: str, frame: pd.DataFrame, table: Table) -> list[Path]:
    """``<stem>.csv`` (the numbers), ``.md`` and ``.tex`` (the formatted table); returns the three paths."""
    paths = [folder / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    for path, text in zip(paths, (to_csv(frame), table.markdown(), table.latex())):
        atomic_write_text(path, text)
    return paths
