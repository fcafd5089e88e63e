"""Figures of a study (PNG and PDF under ``<results>/figures``), drawn from stored values only.

- ``forest_<test>``: per metric and model, each arm's seed-level paired difference against the
  base arm in the metric's units: a dot per seed, the mean of healthy pairs and its t interval;
- ``training_curves``: per model, the total loss of each arm (its own objective) and the
  intensity part they share, mean over seeds with the min-max band;
- ``qualitative_<model>_<test>``: infrared, visible and each arm's fused image for example
  images, with a zoomed inset on the region of strongest source edges;
- ``direction_<model>_<test>``: per arm, the angle between the fused image's Sobel gradient and
  the selected source gradient (the source whose gradient is longer at that pixel) on edge
  pixels, as a map and a histogram;
- ``validation_curves``: per model, each arm's validation criterion against epochs, and where each run stopped;
- ``tuning``: for a study with tuning trials, the validation criterion against the gradient scale
  (finished trials only while some are missing) and, once all have finished, the expected best
  criterion against the number of trials.

The example images (sources and seed-0 fused images of the first two images of the first test
set) are copied into ``<results>/examples/`` so that the figures can be redrawn from the
repository alone. Figures carry no timestamps.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from benchmark.data import DataError, png_bytes  # noqa: E402
from benchmark.metrics import column_info  # noqa: E402
from benchmark.reports.significance import t_interval  # noqa: E402
from benchmark.reports.stats import display_labels, seed_means, setting_names, study_metrics  # noqa: E402
from benchmark.selection import criterion_of  # noqa: E402
from benchmark.data.sources import open_dataset  # noqa: E402
from benchmark.store import Study, atomic_write_bytes, dataset_source, read_image_array  # noqa: E402
from benchmark.tuning import budget_table, planned_trials, trials  # noqa: E402
from losses import Sobel  # noqa: E402


def fused_example(image: str, model: str, arm: str, seed: int) -> str:
    """File stem of an example fused image under ``examples/<test>/``."""
    return f"{image}_{model}_{arm.replace(':', '-')}_s{seed}"


def median_seed(study: Study, model: str, arms: list[str], healthy: set[str]) -> int | None:
    """The model's median seed: seeds (healthy in every arm where possible) ordered by their mean rank over the
    arms and primary metrics, the middle one (the lower middle for an even count)."""
    values = study.values[(study.values.model == model) & study.values.arm.isin(arms)]
    if values.empty:
        return None
    primary = [m for m in study.spec["primary_metrics"] if m in values.columns]
    good = values[values.run_id.isin(healthy)]
    per_arm = [set(good.seed[good.arm == a]) for a in arms if a in set(values.arm)]
    seeds = sorted(set.intersection(*per_arm)) if per_arm and all(per_arm) else []
    seeds = seeds or sorted(set(values.seed))  # no seed healthy in every arm: rank them all
    means = seed_means(values[values.seed.isin(seeds)], primary)
    score = {s: 0.0 for s in seeds}
    for (_, _), g in means.groupby(["arm", "test"], sort=False):
        for m in primary:
            order = g.sort_values(m, ascending=not column_info(m).higher_is_better, kind="stable").seed.tolist()
            for rank, s in enumerate(order):
                score[s] += rank
    ranked = sorted(seeds, key=lambda s: (score[s], s))
    return ranked[(len(ranked) - 1) // 2]

EXAMPLES = 2  # images per qualitative figure
EDGE_QUANTILE = 0.9  # direction error is measured where the selected source gradient is in its top 10%
PALETTE = ["#4d4d4d", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]

plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
                     "xtick.labelsize": 7, "ytick.labelsize": 7, "svg.hashsalt": "damgl-bench"})  # fmt: skip


def save(fig: plt.Figure, folder: Path, stem: str) -> list[Path]:
    """PNG (200 dpi) and PDF without creation dates."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        path = folder / f"{stem}.{ext}"
        tmp = folder / f".{stem}.{ext}.tmp"
        fig.savefig(tmp, dpi=200, bbox_inches="tight", metadata=meta, format=ext)
        tmp.replace(path)
        out.append(path)
    plt.close(fig)
    return out


def forest_figure(study: Study, test: str, arms: list[str], base: str, healthy: set[str],
                  labels: dict[str, str]) -> plt.Figure | None:  # fmt: skip
    """Seed-level paired differences (arm - base) of every metric, one panel per metric and model.

    Each seed is a dot (hollow where either run of the pair is unhealthy), the bar is the mean over
    healthy pairs with its 95% t interval; arms are dodged vertically. Each metric row shares its x axis
    (the metric's own units), so the models of a row compare at a glance.
    """
    values = study.values[(study.values.test == test) & study.values.arm.isin(arms)]
    others = [a for a in arms if a != base and a in set(values.arm)]
    models = list(dict.fromkeys(values.model))
    metrics = study_metrics(study)  # MSE included: its row reads in squared grey levels
    if base not in set(values.arm) or not others:
        return None
    per_seed = seed_means(values, metrics).merge(values[["model", "arm", "seed", "run_id"]].drop_duplicates(),
                                                 on=["model", "arm", "seed"])  # fmt: skip
    fig, axes = plt.subplots(len(metrics), len(models), figsize=(1.9 * len(models) + 1.1, 0.62 * len(metrics) + 0.9),
                             sharex="row", squeeze=False)  # fmt: skip
    for col, model in enumerate(models):
        mine = per_seed[per_seed.model == model].set_index(["arm", "seed"])
        for row, m in enumerate(metrics):
            ax = axes[row][col]
            for j, arm in enumerate(others):
                y = (j - (len(others) - 1) / 2) * 0.3
                seeds = sorted(set(mine.loc[arm].index) & set(mine.loc[base].index)) if arm in mine.index else []
                if not seeds:
                    continue
                d = np.array([mine.loc[(arm, s), m] - mine.loc[(base, s), m] for s in seeds])
                ok = np.array([{mine.loc[(arm, s), "run_id"], mine.loc[(base, s), "run_id"]} <= healthy for s in seeds])
                color = PALETTE[(j + 1) % len(PALETTE)]
                ax.scatter(d[ok], np.full(ok.sum(), y), s=9, color=color, zorder=3, lw=0)
                ax.scatter(d[~ok], np.full((~ok).sum(), y), s=9, facecolors="none", edgecolors=color, zorder=3, lw=0.6)
                good = d[ok & ~np.isnan(d)]
                if len(good):
                    lo, hi = t_interval(good)
                    ax.plot([good.mean()] * 2, [y - 0.12, y + 0.12], color=color, lw=1.4)
                    if not np.isnan(lo):
                        ax.plot([lo, hi], [y, y], color=color, lw=0.8)
            ax.axvline(0, color="k", lw=0.5)
            ax.set_yticks([])
            ax.set_ylim(-0.6, 0.6)
            ax.tick_params(axis="x", labelsize=5.5, pad=1)
            ax.grid(axis="x", lw=0.3, alpha=0.4)
            if col == 0:
                ax.set_ylabel(f"{m} {'↑' if column_info(m).higher_is_better else '↓'}", rotation=0, ha="right", va="center",
                              fontsize=7)  # fmt: skip
            if row == 0:
                ax.set_title(labels.get(model, model), fontsize=8)
    handles = [plt.Line2D([], [], color=PALETTE[(j + 1) % len(PALETTE)], marker="o", ms=3, lw=1, label=labels.get(a, a))
               for j, a in enumerate(others)]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=len(others), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{labels.get(test, test)}: seed-level difference against {labels.get(base, base)} in each metric's "
                 "units\n(dots: seeds, hollow: a failed run in the pair; bar and line: mean of healthy pairs, 95% t "
                 "interval)", fontsize=7.5)  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1), h_pad=0.3, w_pad=0.4)
    return fig


SMOOTH = 5  # logged points in the running mean of the training curves


def _smoothed(values: np.ndarray) -> np.ndarray:
    """Running mean over the last :data:`SMOOTH` logged points (fewer at the start)."""
    c = np.cumsum(np.insert(values, 0, 0.0))
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - SMOOTH, 0)
    return (c[end] - c[start]) / (end - start)


def _curve(log, quantity: str) -> np.ndarray:
    """A logged part, or ``gradient share``: the gradient term over the total."""
    if quantity == "gradient share":
        return (log["gradient"] / log["loss"]).to_numpy(float) if "gradient" in log else np.full(len(log), np.nan)
    return log[quantity].to_numpy(float)


def training_figure(study: Study, arms: list[str], labels: dict[str, str]) -> plt.Figure | None:
    """Per model: a part of the objective that every arm shares (the intensity term where the recipe has
    one), and the gradient term's share of the total, each smoothed; mean over seeds with the min-max band,
    drawn up to the last step logged by every seed of the arm.

    The arms' totals are not compared: each arm's gradient term has its own scale.
    """
    logs: dict[str, dict[str, list]] = {}
    for run in study.runs.values():
        cfg = run["config"]
        if cfg["arm"]["name"] in arms and run["log"] is not None:
            logs.setdefault(cfg["model"]["name"], {}).setdefault(cfg["arm"]["name"], []).append(run["log"])
    if not logs:
        return None
    fig, axes = plt.subplots(2, len(logs), figsize=(2.3 * len(logs) + 0.4, 3.9), squeeze=False, sharex="col")
    for col, (model, by_arm) in enumerate(logs.items()):
        log0 = next(iter(by_arm.values()))[0]
        shared = [c for c in log0.columns if c not in ("step", "phase", "lr", "loss", "gradient", "seconds")
                  and not np.isnan(float(log0[c].iloc[-1]))]  # a part of the last phase, equal in every arm
        shared.sort(key=lambda c: c != "intensity")
        for change in log0["step"][log0["phase"].ne(log0["phase"].shift()) & (log0.index > 0)]:
            for ax in axes[:, col]:
                ax.axvline(change, color="k", lw=0.5, ls=":")
        for j, arm in enumerate(a for a in arms if a in by_arm):
            n = min(len(log) for log in by_arm[arm])  # seeds that stop on their plateau stop at different steps
            steps = by_arm[arm][0]["step"].to_numpy()[:n]
            for row, quantity in enumerate([shared[0] if shared else "loss", "gradient share"]):
                curves = np.stack([_smoothed(_curve(log, quantity)[: len(steps)]) for log in by_arm[arm]])
                ax = axes[row][col]
                color = PALETTE[j % len(PALETTE)]
                ax.plot(steps, curves.mean(0), color=color, lw=0.9, label=labels.get(arm, arm))
                ax.fill_between(steps, curves.min(0), curves.max(0), color=color, alpha=0.15, lw=0)
        axes[0][col].set_ylabel(f"'{shared[0] if shared else 'loss'}' part")
        axes[1][col].set_ylabel("gradient term / total")
        axes[0][col].set_title(labels.get(model, model))
        axes[1][col].set_xlabel("step")
    axes[0][0].legend(frameon=False)
    fig.suptitle(f"Training: a part every arm shares (top) and the gradient term's share (bottom), running mean of "
                 f"{SMOOTH} logged steps,\nmean over seeds, band = min-max; dotted: recipe phase change", y=1.02)  # fmt: skip
    fig.tight_layout()
    return fig


def validation_figure(study: Study, arms: list[str], labels: dict[str, str]) -> plt.Figure | None:
    """Per model: the validation criterion against epochs, mean over the seeds still training at each
    validation with the min-max band, and a marker where each run stopped (filled: at its plateau)."""
    curves: dict[str, dict[str, list]] = {}
    for run in study.runs.values():
        cfg = run["config"]
        if cfg["arm"]["name"] in arms and run.get("val") is not None and len(run["val"]):
            curves.setdefault(cfg["model"]["name"], {}).setdefault(cfg["arm"]["name"], []).append((run["val"], run["done"]))
    if not curves:
        return None
    criterion = criterion_of(next(iter(study.runs.values()))["config"])[0]
    fig, axes = plt.subplots(1, len(curves), figsize=(2.6 * len(curves) + 0.4, 2.6), squeeze=False)
    for ax, (model, by_arm) in zip(axes[0], curves.items()):
        for j, arm in enumerate(a for a in arms if a in by_arm):
            color = PALETTE[j % len(PALETTE)]
            frame = pd.concat([v[["epoch", "criterion"]].assign(run=i) for i, (v, _) in enumerate(by_arm[arm])])
            frame["epoch"] = frame["epoch"].round(6)  # equal steps, equal epochs, whatever the float text
            stats = frame.groupby("epoch")["criterion"].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], color=color, lw=0.9, label=labels.get(arm, arm))
            ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.15, lw=0)
            for v, done in by_arm[arm]:
                ax.plot(v["epoch"].iloc[-1], v["criterion"].iloc[-1], "o", ms=3.5, color=color,
                        mfc=color if done.get("plateau") else "white")  # fmt: skip
        ax.set_title(labels.get(model, model))
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel(f"validation {criterion}")
    axes[0][0].legend(frameon=False)
    fig.suptitle("Validation during training: mean over seeds, band = min-max;\ndot = where a run stopped "
                 "(filled: at its plateau, open: at the end of its budget)", y=1.08, fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def collect_examples(study: Study, model: str, test: str, arms: list[str], seed: int) -> list[str]:
    """Copy sources and the given seed's fused images of the first :data:`EXAMPLES` images into ``examples/``
    (once; fused images exist only while the run directories keep them)."""
    images = sorted(set(study.values.loc[(study.values.test == test) & (study.values.model == model), "image"]))[:EXAMPLES]
    folder = study.folder
    run = next((r for r in study.runs.values() if r["config"]["model"]["name"] == model and test in r["config"]["test"]), None)
    for image in images:
        if not folder.example(test, f"{image}_ir").is_file() and run is not None:
            try:  # recorded paths are as the run saw them
                dataset = open_dataset(dataset_source(run["config"], test), test)
            except DataError:
                continue
            sample = next(s for s in (dataset[i] for i in range(len(dataset))) if s.name == image)
            for kind, grey in (("ir", sample.ir_grey), ("vi", sample.vi_grey)):
                atomic_write_bytes(folder.example(test, f"{image}_{kind}"), png_bytes(np.round(grey).astype(np.uint8)))
        for arm in arms:
            target = folder.example(test, fused_example(image, model, arm, seed))
            source = folder.run(study.run_id_of(model, arm, seed)).fused(test, image)
            if not target.is_file() and source.is_file():
                atomic_write_bytes(target, source.read_bytes())
    return [i for i in images if folder.example(test, f"{i}_ir").is_file()]


def shown_seeds(study: Study, test: str, image: str, model: str, arms: list[str], seed: int) -> dict[str, int]:
    """The seed whose example fused image each arm shows: ``seed`` where every arm keeps it in ``examples/``,
    else the kept seed common to every arm nearest to it (same seed, same initial weights: the panels stay
    paired), else each arm's lowest kept seed (``seed`` for an arm that keeps none)."""
    kept = {a: sorted(int(p.stem.rsplit("_s", 1)[1]) for p in study.folder.examples.joinpath(test).glob(
                f"{fused_example(image, model, a, 0)[:-1]}*.png")) for a in arms}  # fmt: skip
    common = set.intersection(*(set(k) for k in kept.values())) if kept else set()
    if common:
        chosen = min(common, key=lambda s: (abs(s - seed), s))
        return dict.fromkeys(arms, chosen)
    return {a: k[0] if k else seed for a, k in kept.items()}


def _fused(study: Study, test: str, image: str, model: str, arm: str, seed: int) -> np.ndarray | None:
    """An arm's example fused image at ``seed`` from ``examples/``, or ``None`` where it is not kept."""
    return _example(study, test, fused_example(image, model, arm, seed))


def _example(study: Study, test: str, name: str) -> np.ndarray | None:
    path = study.folder.example(test, name)
    return read_image_array(path) if path.is_file() else None


def sobel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel ``gx, gy`` of a 2-D image with zero padding (x: rightwards, y: downwards), float64."""
    g = Sobel()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))[None, None])
    return g[0, 0, 0].numpy(), g[1, 0, 0].numpy()


def direction_error(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angle (degrees, 0..180) between the fused gradient and the longer source gradient, and the edge mask.

    Edges: pixels where the selected source gradient is in its top ``1 - EDGE_QUANTILE`` and the
    fused gradient is not zero.
    """
    (fx, fy), (ax_, ay), (bx, by) = sobel(fused), sobel(ir), sobel(vis)
    use_b = np.hypot(bx, by) >= np.hypot(ax_, ay)
    sx, sy = np.where(use_b, bx, ax_), np.where(use_b, by, ay)
    strength = np.hypot(sx, sy)
    cos = (fx * sx + fy * sy) / np.maximum(np.hypot(fx, fy) * strength, 1e-12)
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    mask = (strength >= np.quantile(strength, EDGE_QUANTILE)) & (np.hypot(fx, fy) > 0)
    return angle, mask


def edge_window(ir: np.ndarray, vis: np.ndarray, frac: float = 0.22) -> tuple[int, int, int, int]:
    """``(row, col, h, w)`` of the window (``frac`` of each side) holding the most source gradient energy."""
    energy = sum(np.hypot(*sobel(x)) for x in (ir, vis))
    h, w = max(8, int(energy.shape[0] * frac)), max(8, int(energy.shape[1] * frac))
    c = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]
    r, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(r), int(col), h, w


def _inset_corner(y: int, x: int, h: int, w: int, shape: tuple[int, ...]) -> list[float]:
    """Axes-fraction bounds of a 45% inset in the corner farthest from the zoomed box, so it never covers it."""
    right = x + w / 2 < shape[1] / 2  # box on the left: inset on the right
    top = y + h / 2 > shape[0] / 2  # box in the lower half (rows grow downwards): inset at the top
    return [0.55 if right else 0.0, 0.55 if top else 0.0, 0.45, 0.45]


def qualitative_figure(study: Study, model: str, test: str, arms: list[str], images: list[str], seed: int,
                       labels: dict[str, str] | None = None, title: str = "") -> plt.Figure | None:  # fmt: skip
    """Infrared, visible and each arm's fused image (at the seeds :func:`shown_seeds` picks from ``seed``) of each
    example image, with a zoomed inset of the region of strongest source edges placed away from its box."""
    labels = labels or {}
    rows, seeds = [], shown_seeds(study, test, images[0], model, arms, seed) if images else {}
    for image in images:  # one seed per arm for every row, as the column headings say
        panels = [_example(study, test, f"{image}_ir"), _example(study, test, f"{image}_vi"),
                  *(_fused(study, test, image, model, a, seeds[a]) for a in arms)]
        if all(p is not None for p in panels):
            rows.append((image, panels))
    if not rows:
        return None
    columns = ["infrared", "visible", *(f"{labels.get(a, a)} (seed {seeds[a]})" for a in arms)]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.45 * len(columns), 1.3 * len(rows) + 0.4), squeeze=False)
    for r, (image, panels) in enumerate(rows):
        y, x, h, w = edge_window(panels[0], panels[1])
        for c, (heading, img) in enumerate(zip(columns, panels)):
            ax = axes[r][c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec="#ffd400", lw=0.8))
            inset = ax.inset_axes(_inset_corner(y, x, h, w, img.shape))
            inset.imshow(img[y : y + h, x : x + w], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            inset.set_xticks([])
            inset.set_yticks([])
            for side in inset.spines.values():
                side.set_edgecolor("#ffd400")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heading, fontsize=7)
        axes[r][0].set_ylabel(image, fontsize=6)
    fig.suptitle(title or f"{labels.get(model, model)} on {labels.get(test, test)}; inset: the boxed region of strongest "
                 "source edges", fontsize=8)  # fmt: skip
    fig.tight_layout(pad=0.3)
    return fig


def direction_figure(study: Study, model: str, test: str, arms: list[str], image: str, seed: int) -> plt.Figure | None:
    ir, vis = _example(study, test, f"{image}_ir"), _example(study, test, f"{image}_vi")
    seeds = shown_seeds(study, test, image, model, arms, seed)
    fused = {a: _fused(study, test, image, model, a, seeds[a]) for a in arms}
    fused = {a: f for a, f in fused.items() if f is not None}
    if ir is None or vis is None or not fused:
        return None
    fig, axes = plt.subplots(2, len(fused), figsize=(1.9 * len(fused) + 0.8, 3.6), squeeze=False, sharey="row",
                             gridspec_kw={"height_ratios": [1.4, 1]})  # fmt: skip
    bins = np.linspace(0, 180, 37)
    for c, (arm, f) in enumerate(fused.items()):
        angle, mask = direction_error(f, ir, vis)
        shown = np.where(mask, angle, np.nan)
        im = axes[0][c].imshow(shown, cmap="magma", vmin=0, vmax=180, interpolation="nearest")
        axes[0][c].set_facecolor("black")
        axes[0][c].set_xticks([])
        axes[0][c].set_yticks([])
        axes[0][c].set_title(f"{arm} (seed {seeds[arm]})\nmean {np.nanmean(shown):.1f}°, median {np.nanmedian(shown):.1f}°",
                             fontsize=7)  # fmt: skip
        axes[1][c].hist(angle[mask], bins=bins, color=PALETTE[c % len(PALETTE)], density=True)
        axes[1][c].set_xlabel("angle error (°)")
        axes[1][c].set_xticks([0, 45, 90, 135, 180])
    axes[1][0].set_ylabel("density")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="angle (°)")
    fig.suptitle(f"Gradient-direction error, {model} on {test}, {image} (edge pixels: top 10% source gradient)", fontsize=8)
    return fig


def tuning_figure(done: pd.DataFrame, budget: pd.DataFrame | None, planned: int, labels: dict[str, str],
                  base: str) -> plt.Figure:  # fmt: skip
    """Per tuned model: the validation criterion against the gradient scale (a line through each arm's means,
    a dot per tuning seed); below it the same values against how large each trial's gradient term starts
    against the ``base`` arm's at scale 1 (``start_vs_base``, :func:`~benchmark.tuning.trials`), where arms whose terms
    differ only in size would fall on one curve; and, once every trial has finished (``budget``), the expected
    best criterion against the number of trials. While trials are missing, the title says how many have."""
    models = list(dict.fromkeys(done.model))
    rows = 2 if budget is None else 3
    fig, axes = plt.subplots(rows, len(models), figsize=(3.0 * len(models) + 0.4, 2.6 * rows), squeeze=False)
    name = labels.get(base, base)
    for col, model in enumerate(models):
        for j, (arm, g) in enumerate(done[done.model == model].groupby("arm", sort=False)):
            color, label = PALETTE[j % len(PALETTE)], labels.get(arm, arm)
            means = g.groupby("gradient_scale", sort=False)[["start_vs_base", "value"]].mean()
            for ax, x, xs in ((axes[0][col], means.index, g["gradient_scale"]),
                              (axes[1][col], means["start_vs_base"], g["start_vs_base"])):  # fmt: skip
                ax.plot(x, means["value"].to_numpy(), color=color, lw=0.9, label=label)
                ax.plot(xs, g["value"], "o", ms=3, color=color, alpha=0.7)
            if budget is not None:
                b = budget[(budget.model == model) & (budget.arm == arm)]
                axes[2][col].plot(b["trials"], b["expected_best"], color=color, lw=0.9, label=label)
                axes[2][col].set_xlabel("trials")
        for ax in axes[0][col], axes[1][col]:
            ax.set_xscale("log", base=2)
        axes[0][col].set_title(labels.get(model, model))
        axes[0][col].set_xlabel("gradient scale (x the recipe's weight)")
        axes[1][col].set_xlabel(f"start term / {name} x1's")
    for row in range(2):
        axes[row][0].set_ylabel("validation criterion")
    axes[0][0].legend(frameon=False, fontsize=7)
    per_scale = (f"the validation criterion per scale (line: mean over tuning seeds, dots: seeds),\nand against the "
                 f"gradient term's start over {name}'s at x1")  # fmt: skip
    if budget is None:
        fig.suptitle(f"Tuning, incomplete ({len(done)} of {planned} trials finished, no scale selected):\n{per_scale}",
                     y=1.06, fontsize=9)  # fmt: skip
    else:
        axes[2][0].set_ylabel("expected best criterion")
        fig.suptitle(f"Tuning: {per_scale}, and the expected best criterion\nagainst the number of trials "
                     "(Dodge et al. 2019)", y=1.05, fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def make_figures(study: Study, healthy: set[str]) -> list[Path]:
    """Draw every figure the stored values allow; returns the files written."""
    folder = study.folder.figures
    base, labels = study.spec["base_arm"], display_labels(study.spec)
    arms = [a for a in study.spec["loss_arms"] if a in set(study.values.arm)]
    written: list[Path] = []
    tests = study.tests(arms)
    for test in tests:
        fig = forest_figure(study, test, arms, base, healthy, labels)
        if fig is not None:
            written += save(fig, folder, f"forest_{test}")
    fig = training_figure(study, arms, labels)
    if fig is not None:
        written += save(fig, folder, "training_curves")
    fig = validation_figure(study, arms, labels)
    if fig is not None:
        written += save(fig, folder, "validation_curves")
    if study.spec.get("tune"):  # the finished trials; the budget curve once all have finished
        tune = study.spec["tune"]
        done, planned = trials(study.folder, tune, study.spec["train"], finished=True, base=base), planned_trials(tune)
        if not done.empty:
            budget = budget_table(done) if len(done) == planned else None
            written += save(tuning_figure(done, budget, planned, labels, base), folder, "tuning")
    for model in dict.fromkeys(study.values.model) if tests else []:
        test, seed = tests[0], median_seed(study, model, arms, healthy)
        images = collect_examples(study, model, test, arms, seed)
        fig = qualitative_figure(study, model, test, arms, images, seed, labels)
        if fig is not None:
            written += save(fig, folder, f"qualitative_{model}_{test}")
        if images:
            fig = direction_figure(study, model, test, arms, images[0], seed)
            if fig is not None:
                written += save(fig, folder, f"direction_{model}_{test}")
    for name, arm_of in study.spec["ablations"].items():
        chosen = [base, *dict.fromkeys(arm_of.values())]
        grid = study.ablation_grid(chosen) or study.spec["grids"][base]
        names = {**labels, **setting_names(name, arm_of)}
        for model in [m for m in grid["models"] if m in set(study.values.model)]:
            test, seed = grid["test"][0], median_seed(study, model, chosen, healthy)
            images = collect_examples(study, model, test, chosen, seed)
            fig = qualitative_figure(study, model, test, chosen, images, seed, names,
                                     f"Ablation '{name}': {labels.get(model, model)} on {labels.get(test, test)}")  # fmt: skip
            if fig is not None:
                written += save(fig, folder, f"qualitative_ablation_{name}_{model}_{test}")
    return written
