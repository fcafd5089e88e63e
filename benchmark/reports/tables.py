"""Formatted tables: Markdown, standalone booktabs LaTeX and full-precision CSV, with best and second marks."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.metrics import column_info
from benchmark.reports import significance
from benchmark.reports.stats import ranks
from benchmark.store import atomic_write_text

def decimals(label: str) -> int:
    """Printed decimals of a metric column, from the metric's metadata."""
    return column_info(label).decimals


def arrow(metric: str) -> str:
    return "↑" if column_info(metric).higher_is_better else "↓"


def _num(value: float, decimals: int) -> str:
    return "nan" if math.isnan(value) else f"{value:.{decimals}f}"


@dataclass
class Table:
    """A formatted table: header, rows of cells with a mark (0 bold, 1 underline, 2 italic), block starts, notes."""

    title: str
    header: list[str]
    rows: list[list[str]]
    marks: list[list[int | None]]
    blocks: list[int]  # row indices where a new model block starts
    notes: list[str]

    def markdown(self) -> str:
        def cell(text: str, mark: int | None) -> str:
            return {0: f"**{text}**", 1: f"<u>{text}</u>", 2: f"*{text}*"}.get(mark, text)

        lines = ["| " + " | ".join(self.header) + " |", "|" + "|".join(["---"] * len(self.header)) + "|"]
        for row, marks in zip(self.rows, self.marks):
            lines.append("| " + " | ".join(cell(c, m) for c, m in zip(row, marks)) + " |")
        return "\n".join([f"**{self.title}**", "", *lines, *([""] + self.notes if self.notes else [])]) + "\n"

    def latex(self) -> str:
        def cell(text: str, mark: int | None) -> str:
            text = latex_escape(text)
            return {0: f"\\textbf{{{text}}}", 1: f"\\underline{{{text}}}", 2: f"\\textit{{{text}}}"}.get(mark, text)

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
    """Rows model x arm from :func:`~benchmark.reports.stats.summarise_arms` output; ``labels`` gives display
    names of models and arms (ablation settings)."""
    header = ["model", label, "seeds", *[f"{m} {arrow(m)}" for m in metrics]]
    rows, marks, blocks, notes = [], [], [], []
    for model, g in summary.groupby("model", sort=False):
        blocks.append(len(rows))
        block_ranks = {m: ranks(g[f"{m}_mean"].tolist(), column_info(m).higher_is_better) for m in metrics}
        for i, r in enumerate(g.to_dict("records")):
            runs = r.get("runs", r["seeds"])
            seeds = str(r["seeds"]) if runs == r["seeds"] else f"{r['seeds']} of {runs}"
            cells, row_marks = [(labels or {}).get(model, model), (labels or {}).get(r["arm"], r["arm"]), seeds], [None, None, None]
            for m in metrics:
                text = _num(r[f"{m}_mean"], decimals(m))
                if r["seeds"] > 1:
                    text += f" ± {_num(r[f'{m}_std'], decimals(m))}"
                if r[f"{m}_nan"]:
                    text += "†"
                    notes.append(f"† {cells[0]} / {cells[1]} / {m}: {r[f'{m}_nan']} NaN value(s) excluded from the mean")
                cells.append(text)
                rank = block_ranks[m][i]
                row_marks.append(rank if rank < 2 and len(g) > 1 else None)
            rows.append(cells)
            marks.append(row_marks)
    if "runs" in summary and (summary["seeds"] < summary["runs"]).any():
        notes.append("'k of n' seeds: the means use the k healthy runs; the health table lists the failed ones.")
    if (summary["seeds"] < 3).any():
        notes.append("Fewer than 3 seeds in some rows: the ± is a spread of few runs, not a reliable estimate "
                     "(one seed: the mean alone).")
    return Table(title, header, rows, marks, blocks, notes)


def _signed(value: float, decimals: int) -> str:
    return "nan" if math.isnan(value) else f"{value:+.{decimals}f}"


SEED_NOTE = ("Cells: mean over seeds of the paired difference arm - base in the metric's own units, with its 95% "
             "t interval over seeds; a percent change only where the base mean is well away from zero (every seed's "
             "base mean of one sign and at least four seed standard deviations from zero). The unit is the trained "
             "network: arms with the same seed share initial weights and training patches. From 6 seeds on, a "
             "comparison is tested: p is the paired t test over seeds (the model of the interval), sign-flip the exact "
             "permutation p over all 2^n sign patterns, free of the t test's normality assumption but never below "
             "2/2^n (0.031 for 6 seeds). Intervals and tests are conditional on these test images: they generalise to "
             "new seeds, not to new images; the crossed_* table gives the interval that treats the images as a "
             "sample too.")  # fmt: skip


def _family_note(rows: pd.DataFrame) -> str:
    """What the primary family's adjustment can and cannot do with these seeds."""
    sizes = sorted({int(m) for m in rows["family_size"].dropna()})
    size = "/".join(str(m) for m in sizes)
    note = (f"Primary family (Holm over these metrics x models x test sets, per arm: {size} comparisons planned, "
            "those not run yet or with fewer than 6 seeds counted as untested with p = 1, so an adjusted p can only "
            "stay or fall as they are tested, and one below 0.05 stands once the family is complete): Holm is the "
            "adjusted t test p, bold an improvement and italic a worsening whose Holm p is below 0.05; Holm "
            "sign-flip is the exact test's adjusted p. Study Holm: the same t test p adjusted once over every primary "
            "test of the study (each arm against the base and each ablation setting against its default, all "
            "models, test sets and primary metrics), what survives every family at once.")  # fmt: skip
    tested = rows[rows["tested"]]
    if not tested.empty:
        n, m = int(tested["seeds"].min()), max(sizes)
        floor = min(1.0, m * significance.smallest_p(n))
        if floor >= significance.ALPHA:
            note += (f" With {n} seeds and {m} comparisons the Holm-adjusted sign-flip p cannot fall below "
                     f"{floor:.3f}, so the exact test alone cannot carry a claim in this family; it needs "
                     f"{significance.seeds_to_resolve(significance.ALPHA / m)} seeds.")  # fmt: skip
    return note


def seed_markup(rows: pd.DataFrame, metrics: Sequence[str], title: str, family: str, labels: dict[str, str]) -> Table:
    """Seed-level paired differences (one population of runs, one family of metrics) as a table.

    Bold: an improvement whose Holm-adjusted t test p (primary family) is below 0.05; italic: such a worsening.
    """
    header = ["model", "arm", "seeds", *[f"{m} {arrow(m)}" for m in metrics]]
    out, marks, blocks, notes = [], [], [], [SEED_NOTE]
    for model, g in rows.groupby("model", sort=False):
        blocks.append(len(out))
        for arm, h in g.groupby("arm", sort=False):
            by_metric = {r["metric"]: r for r in h.to_dict("records")}
            n, short = int(h["seeds"].max()), int(h["unconverged"].max())
            count = f"{n}; {short} short of plateau" if short else str(n)
            cells, row_marks = [labels.get(model, model), labels.get(arm, arm), count], [None, None, None]
            for m in metrics:
                r, dec = by_metric[m], decimals(m) + 1
                text = _signed(r["diff"], dec)
                if r["seeds"] > 1:
                    text += f" [{_signed(r['t_lo'], dec)}, {_signed(r['t_hi'], dec)}]"
                if not math.isnan(r["pct_change"]):
                    text += f" ({r['pct_change']:+.1f}%)"
                if r["tested"]:
                    text += f"; {format_p(r['p_t'])}"
                    if family == "primary":
                        text += f", Holm {p_text(r['p_holm'])}"
                        if "p_holm_study" in r and not math.isnan(r["p_holm_study"]):
                            text += f", study Holm {p_text(r['p_holm_study'])}"
                    text += f"; sign-flip {p_text(r['p_signflip'])}"
                    if family == "primary":
                        text += f", Holm sign-flip {p_text(r['p_holm_signflip'])}"
                better = (r["diff"] > 0) == column_info(m).higher_is_better
                row_marks.append((0 if better else 2) if family == "primary" and bool(r["survives_holm"]) else None)
                cells.append(text)
            out.append(cells)
            marks.append(row_marks)
    if family == "primary":
        notes.append(_family_note(rows))
    else:
        notes.append("Exploratory metrics: unadjusted for multiplicity; read them as descriptions, not tests.")
    if (rows["unconverged"] > 0).any():
        notes.append("'k short of plateau': k of the arm's and the base arm's runs compared stopped while their "
                     "validation criterion was still improving; that comparison is between unfinished networks.")  # fmt: skip
    if not rows.empty and (rows["unvalidated"] > 0).all():
        notes.append("These runs trained for a fixed budget without validation: whether they had converged is not "
                     "known, and the differences describe networks at that budget.")  # fmt: skip
    elif (rows["unvalidated"] > 0).any():
        notes.append("Some compared runs trained without validation: their convergence is not known.")
    if not rows.empty and not rows["tested"].all():
        notes.append(f"With fewer than 6 seeds (here {int(rows.loc[~rows['tested'], 'seeds'].max())} at most) a "
                     "comparison is not tested and no p is printed; the intervals show the size and the uncertainty "
                     "of each difference.")  # fmt: skip
    return Table(title, header, out, marks, blocks, notes)


def _per_arm(rows: pd.DataFrame, metrics: Sequence[str], title: str, labels: dict[str, str],
             cell: Callable[[dict, int], str], notes: list[str]) -> Table:  # fmt: skip
    """A model x arm table with the seeds and one ``cell(row, decimals)`` per metric, unmarked."""
    header, out, blocks = ["model", "arm", "seeds", *metrics], [], []
    for model, g in rows.groupby("model", sort=False):
        blocks.append(len(out))
        for arm, h in g.groupby("arm", sort=False):
            by_metric = {r["metric"]: r for r in h.to_dict("records")}
            out.append([labels.get(model, model), labels.get(arm, arm), str(int(h["seeds"].max())),
                        *(cell(by_metric[m], decimals(m) + 1) for m in metrics)])  # fmt: skip
    return Table(title, header, out, [[None] * len(header) for _ in out], blocks, notes)


def power_markup(rows: pd.DataFrame, metrics: Sequence[str], title: str, labels: dict[str, str]) -> Table:
    """Per comparison and metric: seed-to-seed SD of the paired difference, the difference detectable at
    alpha 0.05 with 80% power with these seeds, the observed difference, and the seeds it would need."""

    def cell(r: dict, dec: int) -> str:
        text = (f"sd {_num(r['diff_sd'], dec)}; MDD {_num(r['mdd'], dec)}; size {_num(abs(r['diff']), dec)}; "
                f"needs {_count(r['seeds_needed'])}")  # fmt: skip
        if r["family"] == "primary":
            text += f"; Holm: MDD {_num(r['mdd_holm'], dec)}, needs {_count(r['seeds_needed_holm'])}"
        return text

    note = ("sd: seed-to-seed standard deviation of the paired difference; MDD: the smallest true difference a paired "
            "t test over these seeds detects at alpha 0.05 with 80% power, exact (noncentral t); size: the absolute "
            "observed mean difference; needs: the fewest seeds with 80% power for that size (at least 6, the fewest a "
            "comparison is tested with; n/a beyond 1000 or for no difference). Holm (primary metrics): the same at 0.05 "
            "divided by the family's size, the strictest level Holm's adjustment applies (to the family's smallest p).")  # fmt: skip
    return _per_arm(rows, metrics, title, labels, cell, [note])


def crossed_markup(rows: pd.DataFrame, metrics: Sequence[str], title: str, labels: dict[str, str]) -> Table:
    """Per comparison and metric: the interval that treats seeds and test images as crossed samples, its width
    against the seed-level t interval's, and the three standard deviations it rests on."""

    def cell(r: dict, dec: int) -> str:
        if math.isnan(r["crossed_lo"]):
            return "n/a"
        width = (r["crossed_hi"] - r["crossed_lo"]) / (r["t_hi"] - r["t_lo"]) if r["t_hi"] > r["t_lo"] else math.nan
        sds = "/".join(_num(math.sqrt(r[f"crossed_var_{k}"]), dec) for k in ("seed", "image", "resid"))
        return (f"{_signed(r['diff'], dec)} [{_signed(r['crossed_lo'], dec)}, {_signed(r['crossed_hi'], dec)}] "
                f"({_num(width, 2)}x the seeds' width); sd seed/image/residual {sds}")  # fmt: skip

    note = ("Images as a second source of variation: the paired differences per seed and image are modelled as a "
            "seed effect, an image effect and a residual (crossed: every seed's network fuses the same images), and "
            "the 95% interval (Student t, Satterthwaite's degrees of freedom) generalises to new seeds and new images "
            "of the same kind; its coverage is checked by simulation in the test suite. The primary tables' intervals "
            "and tests are conditional on these test images. Width: this interval's width over the seed-level t "
            "interval's.")  # fmt: skip
    return _per_arm(rows, metrics, title, labels, cell, [note])


def tuning_markup(frame: pd.DataFrame, budget: pd.DataFrame, title: str, warnings: Sequence[str],
                  labels: dict[str, str], base: str) -> Table:  # fmt: skip
    """Per tuned model, arm and gradient scale: the validation criterion over the tuning seeds, how large the
    gradient term starts against the ``base`` arm's at scale 1, the selected scale marked, and each arm's
    expected best criterion with all of its trials."""
    name = labels.get(base, base)
    header = ["model", "arm", "gradient scale", "seeds", "validation criterion, mean ± sd",
              f"start term / {name} x1's", "selected"]  # fmt: skip
    out, marks, blocks = [], [], []
    for r in frame.to_dict("records"):
        if not out or r["model"] != out[-1][0]:
            blocks.append(len(out))
        out.append([labels.get(r["model"], r["model"]), labels.get(r["arm"], r["arm"]), f"x{r['gradient_scale']:g}",
                    str(r["seeds"]), f"{r['criterion_mean']:.4f} ± {_num(r['criterion_sd'], 4)}",
                    _num(r["start_vs_base"], 2), "selected" if r["selected"] else ""])  # fmt: skip
        marks.append([None] * 4 + ([0, None, 0] if r["selected"] else [None] * 3))
    criterion = ("the criterion is the validation criterion at the network the primary selection rule picked, never a "
                 f"test image. Start term / {name} x1's: the trial's weighted gradient term at its first logged step "
                 f"(the initial weights where that is step 1) over that of {name}'s trial at the recipe's weight with "
                 "the same seed, logged at the same step (so the same weights and batch), mean over the seeds; it "
                 "compares how large each arm's term starts, the scale included (its value, not the size of its "
                 "gradient with respect to the network's weights)")  # fmt: skip
    if budget.empty:  # tuning still running: what has finished, nothing selected
        notes = [f"Seeds: the tuning seeds finished so far at that scale; {criterion}. No scale is selected, and no "
                 "expected best criterion is given, until every arm has all of its trials."]  # fmt: skip
        return Table(title, header, out, marks, blocks, notes)
    trials = int(budget["trials"].max())
    best = "; ".join(f"{labels.get(m, m)} / {labels.get(a, a)} {g['expected_best'].iloc[-1]:.4f}"
                     for (m, a), g in budget.groupby(["model", "arm"], sort=False))  # fmt: skip
    notes = [f"Each arm had the same {trials} trials (every scale on every tuning seed); {criterion}. Selected: the "
             f"best mean over the tuning seeds. Expected best criterion with all {trials} trials (tuning_budget.csv has "
             f"it for 1 to {trials}): {best}.", *[f"Warning: {w}." for w in warnings]]  # fmt: skip
    return Table(title, header, out, marks, blocks, notes)


def budget_markup(budget: pd.DataFrame, labels: dict[str, str]) -> Table:
    """Per tuned model and arm, one row: the expected best validation criterion with 1, 2, ... of its trials
    (:func:`~benchmark.tuning.budget_table`, whose CSV keeps the full precision)."""
    counts = sorted(budget["trials"].unique())
    out = []
    for (model, arm), g in budget.groupby(["model", "arm"], sort=False):
        best = dict(zip(g["trials"], g["expected_best"]))
        out.append([labels.get(model, model), labels.get(arm, arm), *(_num(best.get(k, math.nan), 4) for k in counts)])
    blocks = model_blocks(budget.drop_duplicates(["model", "arm"]))  # one row each, in the groups' order
    note = ("Column k: the expected best validation criterion of k trials drawn at random, with replacement, from the "
            "arm's trials (k = 1: their mean); how much of an arm's best comes from the size of its tuning budget, "
            "which is the same for every arm.")  # fmt: skip
    return Table("Expected best validation criterion against trials", ["model", "arm", *(f"{k}" for k in counts)],
                 out, [[None] * (2 + len(counts)) for _ in out], blocks, [note])


def short_commit(commit: str | None) -> str:
    """A commit's first seven hex digits, keeping its ``-dirty`` mark (``unknown`` where none was recorded)."""
    commit = str(commit or "unknown")
    return commit[:7] + ("-dirty" if commit.endswith("-dirty") else "")


def trials_markup(frame: pd.DataFrame, title: str, labels: dict[str, str]) -> Table:
    """One row per finished tuning trial (:func:`~benchmark.tuning.trials`): gradient weight, seed, the step the
    primary rule picked and the validation criterion there, the first logged gradient term, short commit and
    seconds; run ids in the CSV."""
    header = ["model", "arm", "gradient weight", "seed", "scored step", "validation criterion", "start term", "commit",
              "seconds"]  # fmt: skip
    out = [[labels.get(r["model"], r["model"]), labels.get(r["arm"], r["arm"]), f"x{r['gradient_scale']:g}", str(r["seed"]),
            str(r["scored_step"]), f"{r['value']:.4f}", _num(r["start_term"], 4), short_commit(r["git_commit"]),
            f"{r['seconds']:.0f}"] for r in frame.to_dict("records")]  # fmt: skip
    notes = ["Each trial's value in the tuning table: the validation criterion at the network the primary selection "
             "rule picked (scored step), never a test image; the tuning table averages it over the tuning seeds. "
             "Start term: the weighted gradient term at the first logged step (train_log.csv), which the tuning "
             "table sets against the base arm's trial at scale 1 with the same seed. "
             "Commit: env.json (-dirty: the code differed from it). Seconds: done.json's wall time, a cost, not a "
             "result. The run directories are named in trials.csv (run_id)."]  # fmt: skip
    return Table(title, header, out, [[None] * len(header) for _ in out], model_blocks(frame), notes)


def model_blocks(frame: pd.DataFrame) -> list[int]:
    """The row indices of ``frame`` where a new model's block starts."""
    return [i for i, model in enumerate(frame["model"]) if i == 0 or model != frame["model"].iat[i - 1]]


def health_markup(health: pd.DataFrame, title: str, labels: dict[str, str]) -> Table:
    """Per model and arm: failed runs out of seeds, and which seeds failed how."""
    header = ["model", "arm", "failed / seeds", "failed runs"]
    out, marks, blocks = [], [], []
    for model, g in health.groupby("model", sort=False):
        blocks.append(len(out))
        for arm, h in g.groupby("arm", sort=False):
            bad = h[h.health != "ok"]
            which = ", ".join(f"seed {r.seed} {r.health}" for r in bad.itertuples()) or "none"
            out.append([labels.get(model, model), labels.get(arm, arm), f"{len(bad)} / {len(h)}", which])
            marks.append([None] * 4)
    notes = ["Health from the per-image values: inverted (summed SSIM or mean correlation with the sources below "
             "zero), collapsed (standard deviation below 1 grey level) or nan (a NaN metric, or a non-finite training "
             "loss) on most images of the run. Means, rankings and marks in the main tables use healthy runs only."]  # fmt: skip
    return Table(title, header, out, marks, blocks, notes)


def _count(value: float) -> str:
    """A seed count, or ``n/a`` for NaN."""
    return "n/a" if math.isnan(value) else f"{int(value)}"


def p_text(p: float) -> str:
    """``0.028``, ``<0.001`` or ``nan``; more digits where three would round onto 0.05 (``0.0495``)."""
    if math.isnan(p):
        return "nan"
    if p < 0.001:
        return "<0.001"
    digits = 3
    while digits < 12 and p != significance.ALPHA and round(p, digits) == significance.ALPHA:
        digits += 1
    return f"{p:.{digits}f}"


def format_p(p: float) -> str:
    """``p=0.028``, ``p<0.001`` or ``p=nan``."""
    text = p_text(p)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def to_csv(frame: pd.DataFrame) -> str:
    """CSV with full-precision floats (``repr``), stable across runs."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(frame.columns)
    for row in frame.itertuples(index=False):
        writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return out.getvalue()


def write_table(folder: Path, stem: str, frame: pd.DataFrame, table: Table, extra_markdown: Sequence[str] = ()) -> list[Path]:
    """``<stem>.csv`` (the numbers), ``.md`` and ``.tex`` (the formatted table; further Markdown tables may
    follow it in the ``.md``); returns the three paths."""
    paths = [folder / f"{stem}.{ext}" for ext in ("csv", "md", "tex")]
    markdown = "\n".join([table.markdown(), *extra_markdown])
    for path, text in zip(paths, (to_csv(frame), markdown, table.latex())):
        atomic_write_text(path, text)
    return paths


def loss_scale_markup(frame: pd.DataFrame, title: str, base: str, labels: dict[str, str]) -> Table:
    """The gradient term's share of the total at the start and the end of training, and its size at the start
    against the base arm's; the start is the initial weights where the runs logged step 1."""
    updates = sorted(set(frame["start_updates"]))
    start = "at the initial weights" if updates == [0] else f"after {'/'.join(map(str, updates))} updates"
    header = ["model", "arm", "seeds", f"gradient share {start}", "gradient share at end", f"start term / {base}'s"]
    out, marks, blocks = [], [], []
    for model, g in frame.groupby("model", sort=False):
        blocks.append(len(out))
        for r in g.to_dict("records"):
            out.append([labels.get(model, model), labels.get(r["arm"], r["arm"]), str(r["seeds"]),
                        f"{r['share_start']:.3f}", f"{r['share_end']:.3f}", _num(r["start_vs_base"], 2)])  # fmt: skip
            marks.append([None] * len(header))
    when = ("the loss of the first step, computed at the initial weights" if updates == [0] else
            f"the first logged step, whose loss was computed after {'/'.join(map(str, updates))} updates (these runs "
            "did not log the first step)")  # fmt: skip
    notes = [f"Shares are the weighted gradient term over the total objective at the start ({when}) and at the last "
             "logged step, mean over seeds; the last column is the arm's gradient term at the start over the base "
             "arm's with the same seed. Swapping the term at a fixed weight also changes its weight against the "
             "other terms; an arm with balance: initial starts at the base arm's share on the seed's first batch."]  # fmt: skip
    return Table(title, header, out, marks, blocks, notes)


def convergence_markup(frame: pd.DataFrame, title: str, labels: dict[str, str]) -> Table:
    """Reached plateau, k of n seeds, with the steps where each run stopped, had the network it scored and
    had its best validation, and the validations that collapsed."""
    header = ["model", "arm", "reached plateau", "stopped at step", "scored step", "best validation at step",
              "collapsed validations", "validation time"]  # fmt: skip
    out = [[labels.get(r["model"], r["model"]), labels.get(r["arm"], r["arm"]),
            f"{r['plateau']} of {r['seeds']} seeds" if r["watched"] else "no plateau rule",
            r["stopped_at"], r["scored_step"], r["best_step"], r["collapsed"],
            "" if math.isnan(r["validation_added_pct"]) else f"+{r['validation_added_pct']:.1f}%"]
           for r in frame.to_dict("records")]  # fmt: skip
    notes = ["Steps are listed per seed in the same order in each column. Scored step: the validated network the "
             "primary selection rule picked, whose test images every other table scores; where it differs from "
             "the best validation, the rule did not pick the best validated network.",
             "A run that did not reach its plateau ran out of budget while its validation criterion was still "
             "improving: comparisons that involve it compare networks that had not finished training.",
             "Collapsed validations: those whose criterion fell below half of the run's best criterion before them "
             "(or was not a number), a transient collapse of the output that choosing the best checkpoint hides; "
             "where the run's best validation came later, it recovered.",
             "Validation time: the wall time spent validating, as a percent of the rest of the run (training, "
             "fusing and scoring), mean over the runs."]  # fmt: skip
    blocks = model_blocks(frame)
    return Table(title, header, out, [[None] * len(header) for _ in out], blocks, notes)


AGREEMENT_NOTE = ("'agree': every side is tested and concludes the same; 'not tested': no side is; 'incomplete': the "
                  "tested sides agree and another is not tested yet.")
RULE_NOTE = ("Each cell: the mean paired difference arm - base over the healthy seeds, with the networks that rule "
             "selected, and its Holm-adjusted t test p in that rule's primary family ('not tested': fewer than 6 "
             "seeds). Bold: an improvement, italic: a worsening, with Holm p < 0.05. 'differ': the conclusion "
             "(improvement, worsening or none) is not the same under every rule, so it depends on which validated "
             f"network is scored. {AGREEMENT_NOTE}")  # fmt: skip


def sensitivity_markup(frame: pd.DataFrame, rules: Sequence[str], title: str, labels: dict[str, str],
                       names: Sequence[str] | None = None, note: str = RULE_NOTE) -> Table:  # fmt: skip
    """Each primary comparison under every variant (selection rules, or weights: ``rules`` are the suffixes of
    ``frame``'s columns, ``names`` their headers, by default the rules with the first marked primary): the
    difference, its Holm p and the conclusion, and a flag where the conclusions differ."""
    names = names or [f"{rule}{' (primary)' if i == 0 else ''}" for i, rule in enumerate(rules)]
    header = ["model", "test", "arm", "metric", *names, "conclusions"]
    out, marks = [], []
    for r in frame.to_dict("records"):
        cells = ["no runs yet" if not isinstance(r[f"conclusion_{rule}"], str)
                 else f"{_signed(r[f'diff_{rule}'], decimals(r['metric']))} "
                 + ("(not tested)" if math.isnan(r[f"p_holm_{rule}"]) else f"(Holm {p_text(r[f'p_holm_{rule}'])})")
                 for rule in rules]  # fmt: skip
        out.append([labels.get(r["model"], r["model"]), labels.get(r["test"], r["test"]), labels.get(r["arm"], r["arm"]),
                    f"{r['metric']} {arrow(r['metric'])}", *cells, r["conclusions"]])  # fmt: skip
        marks.append([None] * 4 + [{"improvement": 0, "worsening": 2}.get(r[f"conclusion_{rule}"]) for rule in rules]
                     + [0 if r["conclusions"] == "differ" else None])  # fmt: skip
    blocks = model_blocks(frame)
    return Table(title, header, out, marks, blocks, [note])


def runs_markup(frame: pd.DataFrame, title: str, labels: dict[str, str]) -> Table:
    """One row per finished run (:func:`~benchmark.reports.stats.run_table`): seed, gradient weight, short
    commit, seconds and the step each selection rule scored; the run ids are in the CSV."""
    rules = [c.removeprefix("step_") for c in frame.columns if c.startswith("step_")]
    header = ["model", "arm", "seed", "gradient weight", "commit", "seconds", *[f"{rule} step" for rule in rules]]
    out = [[labels.get(r["model"], r["model"]), labels.get(r["arm"], r["arm"]), str(r["seed"]), f"x{r['gradient_scale']:g}",
            short_commit(r["git_commit"]), f"{r['seconds']:.0f}",
            *["n/a" if pd.isna(r[f"step_{rule}"]) else str(r[f"step_{rule}"]) for rule in rules]]
           for r in frame.to_dict("records")]  # fmt: skip
    blocks = model_blocks(frame)
    notes = ["Gradient weight: the multiple of the recipe's gradient-term weight the run trained with. Commit: the "
             "code that trained and scored the run (env.json; -dirty: it differed from that commit). Seconds: "
             "done.json's wall time, training, validation, fusing and scoring together, summed over resumes; a "
             "cost that depends on what else ran on the machine, not a result. Steps: the validated network each "
             "selection rule scored (n/a: the run did not record that rule). The run directories are named in "
             "runs.csv (run_id)."]  # fmt: skip
    return Table(title, header, out, [[None] * len(header) for _ in out], blocks, notes)


def step_ratio_markup(frame: pd.DataFrame, title: str, labels: dict[str, str]) -> Table:
    """Pairs whose arm and base networks were scored at steps more than a factor of two apart."""
    header = ["model", "arm", "base", "seed", "rule", "arm's scored step", "base's scored step", "ratio"]
    out = [[labels.get(r["model"], r["model"]), labels.get(r["arm"], r["arm"]), labels.get(r["base"], r["base"]),
            str(r["seed"]), r["rule"], str(r["arm_step"]), str(r["base_step"]), f"{r['ratio']:.2f}"]
           for r in frame.to_dict("records")]  # fmt: skip
    notes = ["These paired networks were trained for very different numbers of steps before the rule picked them, "
             "so their difference mixes the gradient loss with the training length."]  # fmt: skip
    return Table(title, header, out, [[None] * len(header) for _ in out], [0], notes)


def published_markup(frame: pd.DataFrame, published: dict[str, float], title: str, notes: Sequence[str],
                     labels: dict[str, str]) -> Table:  # fmt: skip
    """One published row and, below it, each arm's reproduction: mean ± sd over seeds and its difference
    from the published value; ``frame`` is :func:`benchmark.published.compare_means` output with ``model``
    and ``arm``. A dagger marks a published value outside the seeds' range."""
    metrics = [m for m in published if m in set(frame.metric)]
    header = ["model", "arm", "seeds", *[f"{m} {arrow(m)}" for m in metrics]]
    out = [["published", "", "", *[f"{published[m]:g}" for m in metrics]]]
    for (model, arm), g in frame.groupby(["model", "arm"], sort=False):
        by_metric = {r["metric"]: r for r in g.to_dict("records")}
        cells = [labels.get(model, model), labels.get(arm, arm), str(int(g["seeds"].max()))]
        for m in metrics:
            r, dec = by_metric[m], decimals(m)
            text = _num(r["mean"], dec) + (f" ± {_num(r['std'], dec)}" if r["seeds"] > 1 else "")
            cells.append(f"{text} ({_signed(r['diff'], dec)})" + ("†" if r["within"] is False else ""))
        out.append(cells)
    notes = [*notes, "Cells: mean ± sd over healthy seeds of the per-seed image means, and in brackets the difference "
             "from the published value. † the published value, widened by half a unit of its last printed digit, "
             "lies outside the range of the seeds' means; with one seed there is no spread to place it in."]  # fmt: skip
    return Table(title, header, out, [[None] * len(header) for _ in out], [0, 1], notes)


def gains_markup(frame: pd.DataFrame, low: float, high: float, title: str, notes: Sequence[str]) -> Table:
    """A published range of relative changes beside the reproduced change per metric (percent of the base
    mean, 95% t interval over seeds); ``frame`` is :func:`benchmark.published.compare_gains` output."""
    metrics = list(frame.metric)
    header = ["", "seeds", *metrics]
    out = [["published", "", *[f"{low:+g} to {high:+g}%" for _ in metrics]]]
    cells = ["reproduced", str(int(frame["seeds"].max()))]
    for r in frame.to_dict("records"):
        text = f"{r['percent']:+.2f}%" + (f" [{r['percent_lo']:+.2f}, {r['percent_hi']:+.2f}]" if r["seeds"] > 1 else "")
        cells.append(text + ("†" if r["overlaps"] is False else ""))
    out.append(cells)
    notes = [*notes, "Reproduced: the mean paired change over seeds as a percent of the base arm's mean, with its 95% "
             "t interval. † the interval does not meet the published range."]  # fmt: skip
    return Table(title, header, out, [[None] * len(header) for _ in out], [0], notes)
