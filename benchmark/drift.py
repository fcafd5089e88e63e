"""``python -m benchmark drift``: how far metric conventions drift apart on the same fused images.

Scores every method's fused folder under several conventions, then, per metric name that two or more
conventions share, gives each method's mean under each, the method ranking under each, Spearman's rho
and Kendall's tau between conventions, and whether the best method changes; a figure shows the rank
shifts. Everything is rebuilt from the per-image values file, so a committed result regenerates.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.metrics import get_convention
from benchmark.reports.tables import to_csv
from benchmark.store import ENV, atomic_write_text, write_json

VALUES, MEANS, AGREEMENT, REPORT, FIGURE = "values.csv", "means.csv", "agreement.csv", "drift.md", "rank_shifts.png"


def shared_metrics(conventions: Sequence[str]) -> list[str]:
    """Metric names that at least two of ``conventions`` define, in the first convention's order first."""
    names = [n for c in conventions for n in get_convention(c).names()]
    return [n for n in dict.fromkeys(names) if names.count(n) >= 2]


def method_means(values: pd.DataFrame, conventions: Sequence[str]) -> pd.DataFrame:
    """Long table: metric, convention, method, mean over images (NaN values left out), rank (1 = best)."""
    rows = []
    for metric in shared_metrics(conventions):
        for conv in [c for c in conventions if metric in get_convention(c).metrics]:
            means = values.groupby("method", sort=False)[f"{conv}:{metric}"].mean()
            higher = get_convention(conv).metrics[metric].higher_is_better
            ranks = (-means if higher else means).rank(method="min").astype(int)
            rows += [{"metric": metric, "convention": conv, "method": m, "mean": float(v), "rank": int(ranks[m])}
                     for m, v in means.items()]  # fmt: skip
    return pd.DataFrame(rows, columns=["metric", "convention", "method", "mean", "rank"])


def agreement(means: pd.DataFrame) -> pd.DataFrame:
    """Per shared metric and pair of conventions: Spearman, Kendall and the best method under each."""
    from scipy.stats import kendalltau, spearmanr

    rows = []
    for metric, g in means.groupby("metric", sort=False):
        convs = list(dict.fromkeys(g.convention))
        for i, a in enumerate(convs):
            for b in convs[i + 1 :]:
                x = g[g.convention == a].set_index("method")["mean"]
                y = g[g.convention == b].set_index("method")["mean"].reindex(x.index)
                flip = [-1.0 if not get_convention(c).metrics[metric].higher_is_better else 1.0 for c in (a, b)]
                rho, tau = spearmanr(x * flip[0], y * flip[1]).statistic, kendalltau(x * flip[0], y * flip[1]).statistic
                best = [g[(g.convention == c)].sort_values(["rank", "method"]).method.iloc[0] for c in (a, b)]
                rows.append({"metric": metric, "convention_a": a, "convention_b": b, "methods": len(x),
                             "spearman": float(rho), "kendall": float(tau), "best_a": best[0], "best_b": best[1],
                             "best_changes": best[0] != best[1]})  # fmt: skip
    return pd.DataFrame(rows)


def report_markdown(means: pd.DataFrame, agree: pd.DataFrame, dataset: str, images: int) -> str:
    """The drift report: agreement per metric and convention pair, then the ranking tables."""
    lines = [f"# Metric drift between conventions on {dataset}", "",
             f"{means.method.nunique()} methods, {images} fused images each, scored under "
             f"{', '.join(dict.fromkeys(means.convention))}. A metric name shared by two conventions is "
             "computed by different code; rho and tau compare the method rankings (each convention's own "
             "better direction).", "",
             "| metric | conventions | Spearman rho | Kendall tau | best method (first) | best method (second) |",
             "|---|---|---:|---:|---|---|"]  # fmt: skip
    for r in agree.to_dict("records"):
        mark = " (changes)" if r["best_changes"] else ""
        lines.append(f"| {r['metric']} | {r['convention_a']} vs {r['convention_b']} | {r['spearman']:.3f} | "
                     f"{r['kendall']:.3f} | {r['best_a']} | {r['best_b']}{mark} |")  # fmt: skip
    for metric, g in means.groupby("metric", sort=False):
        convs = list(dict.fromkeys(g.convention))
        wide = {c: g[g.convention == c].set_index("method") for c in convs}
        order = wide[convs[0]].sort_values(["rank"]).index
        lines += ["", f"## {metric}", "", "| method | " + " | ".join(f"{c} mean (rank)" for c in convs) + " |",
                  "|---|" + "---:|" * len(convs)]  # fmt: skip
        for m in order:
            lines.append(f"| {m} | " + " | ".join(f"{wide[c].loc[m, 'mean']:.4g} ({wide[c].loc[m, 'rank']})" for c in convs) + " |")
    return "\n".join(lines) + "\n"


def rank_figure(means: pd.DataFrame, agree: pd.DataFrame, path: Path) -> None:
    """One panel per shared metric: each method's rank under each convention, joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(means.metric))
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics):
        g = means[means.metric == metric]
        convs = list(dict.fromkeys(g.convention))
        for method, h in g.groupby("method", sort=False):
            ranks = h.set_index("convention").loc[convs, "rank"].to_numpy()
            moved = np.ptp(ranks) >= 5
            ax.plot(range(len(convs)), ranks, color="tab:red" if moved else "0.6", lw=1.2 if moved else 0.6, marker="o", ms=2)
            if moved:
                ax.annotate(method, (len(convs) - 1, ranks[-1]), fontsize=5, xytext=(2, 0), textcoords="offset points")
        rho = agree[(agree.metric == metric)].spearman.round(2).astype(str).tolist()
        ax.set_title(f"{metric} (rho {', '.join(rho)})", fontsize=8)
        ax.set_xticks(range(len(convs)), convs, fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=6)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("rank (1 = best)")
    fig.suptitle("Method ranks under each convention (red: a rank moves by 5 or more)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150, metadata={"Software": None})
    plt.close(fig)


def build(values: pd.DataFrame, conventions: Sequence[str], dataset: str, out: Path) -> list[Path]:
    """Write means, agreement, the report and the figure from per-image values; returns the files."""
    means = method_means(values, conventions)
    agree = agreement(means)
    files = [out / MEANS, out / AGREEMENT, out / REPORT, out / FIGURE]
    atomic_write_text(files[0], to_csv(means))
    atomic_write_text(files[1], to_csv(agree))
    atomic_write_text(files[2], report_markdown(means, agree, dataset, int(values.groupby("method").size().max())))
    rank_figure(means, agree, files[3])
    return files


def provenance(command: list[str]) -> dict[str, str]:
    """What scored ``values.csv``: the command, the code's commit (``-dirty`` when it differs from it) and
    the versions of what computes the metrics."""
    from benchmark.provenance import git_commit, versions

    return {"command": " ".join(command), "git_commit": git_commit(), **versions("numpy", "scipy", "numba")}


def drift_command(args: argparse.Namespace) -> int:
    """``damgl-bench drift`` (arguments in :mod:`benchmark.cli`)."""
    from benchmark.console import split_names
    from benchmark.data import DataError, PairedDataset, dataset_folder
    from benchmark.evaluate import evaluate_folders, write_csv

    conventions = split_names([args.convention])
    if len(conventions) < 2:
        raise DataError("--convention: name two or more conventions to compare")
    if args.fused and len(args.fused) < 2:
        raise DataError(f"drift compares methods: give at least two fused folders (got {len(args.fused)})")
    out = Path(args.out)
    if not args.fused and not (out / VALUES).is_file():
        raise DataError(f"--fused: needed, since {out / VALUES} does not exist yet")
    out.mkdir(parents=True, exist_ok=True)
    if args.fused:
        env = provenance(["python", "-m", "benchmark", "drift", *args.argv])
        dataset = PairedDataset(dataset_folder(args.dataset))
        write_csv(evaluate_folders(dataset, args.fused, convention=conventions), out / VALUES)
        write_json(out / ENV, env)  # what scored values.csv: command, commit, versions
    values = pd.read_csv(out / VALUES)
    files = build(values, conventions, Path(args.dataset).name, out)
    print(f"drift: {len(files) + 1} files under {out}")
    print((out / REPORT).read_text().split("\n## ")[0])
    return 0
