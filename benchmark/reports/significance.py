"""Inference with the trained network as the unit: seed-level paired tests, Holm's adjustment, power, run health.

Two arms that share a seed share the network's initial weights and the stream of
training patches (both are drawn from the seed alone: ``torch.manual_seed(seed)``
before the model is built, and the patch sampler's own generator seeded with
it), so a seed pairs two trainings that differ only in the gradient loss. For
one model, test set and metric, each seed gives one paired difference
``d_s = mean over images(arm, seed s) - mean over images(base, seed s)``; the
images only make that mean more precise. Everything here is computed over the
``d_s``.

The test behind a claim is the paired t test over seeds, the same model as the t interval the
tables print, Holm-adjusted over the primary family. The exact sign-flip p is reported beside it
as the check free of the t test's normality assumption; being discrete, it cannot fall below
``2 / 2^n``, and its Holm-adjusted value not below ``m * 2 / 2^n`` in a family of ``m``
comparisons (1.0 for 6 seeds and 36 comparisons), so at this study's seed counts it alone could
never carry a claim. No comparison is tested with fewer seeds than :func:`seeds_to_resolve`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import product

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
HEALTH_CLASSES = ("ok", "inverted", "collapsed", "nan")
COLLAPSED_SD = 1.0  # grey levels: an image with a smaller standard deviation is nearly constant


def sign_flip_p(d: Sequence[float]) -> float:
    """Exact two-sided sign-flip permutation p-value of the mean of paired differences.

    Under the null each difference is as likely negative as positive; the p-value is the share of
    the ``2^n`` sign patterns whose mean is at least as far from zero as the observed one. NaN for
    no differences; 1.0 when every difference is zero.
    """
    d = np.asarray(d, dtype=float)
    if not len(d):
        return math.nan
    signs = np.array(list(product((1.0, -1.0), repeat=len(d))))
    means = np.abs(signs @ d) / len(d)
    observed = abs(d.mean())
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def smallest_p(n: int) -> float:
    """The smallest two-sided sign-flip p-value ``n`` seeds can give: ``2 / 2^n``."""
    return 2.0 / 2**n


def seeds_to_resolve(alpha: float = ALPHA) -> int:
    """The fewest seeds whose sign-flip test can reach ``p < alpha`` (6 for 0.05)."""
    n = 1
    while smallest_p(n) >= alpha:
        n += 1
    return n


def t_test_p(d: Sequence[float]) -> float:
    """Two-sided p of the paired t test of the mean of ``d`` against zero (``n - 1`` degrees of freedom).

    NaN for fewer than two values; 0.0 when every difference is the same non-zero value, 1.0 when
    all are zero.
    """
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = d.mean() / (sd / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), len(d) - 1))


def t_interval(d: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student t interval of the mean of ``d`` (NaN bounds for fewer than two values)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def t_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Exact power of the two-sided paired t test over ``n`` seeds for a true mean difference of ``effect``
    seed-to-seed standard deviations: the noncentral t distribution with ``n - 1`` degrees of freedom and
    noncentrality ``effect * sqrt(n)`` beyond the critical value on either side."""
    df, nc = n - 1, effect * math.sqrt(n)
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, nc) + stats.nct.sf(critical, df, -nc))  # P(T < -c | nc) = P(T > c | -nc)


def minimal_detectable(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference a paired t test over ``n`` seeds detects with this power at level
    ``alpha``, exact (:func:`t_power`, solved for the effect)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    high = 1.0
    while t_power(high, n, alpha) < power:
        high *= 2
    effect = optimize.brentq(lambda e: t_power(e, n, alpha) - power, 0.0, high, xtol=1e-12, rtol=1e-12)
    return float(effect * sd)


def seeds_needed(diff: float, sd: float, alpha: float = ALPHA, power: float = POWER, most: int = 1000) -> int | None:
    """The fewest seeds (at least :func:`seeds_to_resolve`, the fewest a comparison is tested with) whose
    exact power to detect ``|diff|`` at ``alpha`` reaches ``power``; ``None`` beyond ``most`` or when the
    difference is zero. The power rises with the seeds, so a bisection finds the first that reaches it."""
    if not (math.isfinite(diff) and math.isfinite(sd)) or diff == 0:
        return None
    if sd == 0:
        return seeds_to_resolve()
    effect, low, high = abs(diff) / sd, seeds_to_resolve(), most
    if t_power(effect, high, alpha) < power:
        return None
    if t_power(effect, low, alpha) >= power:
        return low
    while high - low > 1:  # low falls short, high reaches the power
        middle = (low + high) // 2
        low, high = (low, middle) if t_power(effect, middle, alpha) >= power else (middle, high)
    return high


def family_holm(pvalues: Sequence[float], tested: Sequence[bool], size: int = 0) -> list[float]:
    """Holm over a whole family of ``max(size, len(pvalues))`` members, in which the untested ones (too
    few seeds, or no runs yet) count as ``p = 1``, the largest p they can take. Holm's adjusted p of a
    member never rises when another member's p falls, so once they are tested the adjusted p of the
    others can only stay or fall: an interim value bounds the final one from above, and a rejection
    stands. Untested members given here come back NaN."""
    padded = [p if ok else 1.0 for p, ok in zip(pvalues, tested)] + [1.0] * max(0, size - len(pvalues))
    adjusted = holm(padded)
    return [a if ok else math.nan for a, ok in zip(adjusted, tested)]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(pvalues, dtype=float)
    keep = np.flatnonzero(~np.isnan(p))
    out = np.full(len(p), math.nan)
    order = keep[np.argsort(p[keep], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out.tolist()


def crossed_interval(diff: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Interval of the mean paired difference that generalises to new seeds and new images of the same kind.

    ``diff`` is a (seeds, images) array of paired differences arm - base: the same test images are scored by
    every seed's network, so seeds and images are crossed, not nested. The model is
    ``d_si = mu + a_s + b_i + e_si`` with independent seed, image and residual effects; their variance
    components come from the two-way mean squares (negative estimates set to zero), the variance of the grand
    mean is ``var_seed / n + var_image / m + var_resid / (n m)``, and the interval is Student's t with
    Satterthwaite's degrees of freedom. Images with a NaN under any seed are left out. Its coverage is
    checked by simulation in the tests (within 2 points of the nominal level).

    Returns ``lo``, ``hi``, ``df``, ``var_seed``, ``var_image``, ``var_resid`` (NaN with fewer than two seeds
    or images).
    """
    d = np.asarray(diff, dtype=float)
    d = d[:, ~np.isnan(d).any(axis=0)] if d.size else d
    out = dict.fromkeys(("lo", "hi", "df", "var_seed", "var_image", "var_resid"), math.nan)
    if d.ndim != 2 or min(d.shape) < 2:
        return out
    n, m = d.shape
    grand, by_seed, by_image = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_seed = m * float(((by_seed - grand) ** 2).sum()) / (n - 1)
    ms_image = n * float(((by_image - grand) ** 2).sum()) / (m - 1)
    resid_df = (n - 1) * (m - 1)
    ms_resid = float(((d - by_seed[:, None] - by_image[None, :] + grand) ** 2).sum()) / resid_df
    var_seed, var_image = max(0.0, (ms_seed - ms_resid) / m), max(0.0, (ms_image - ms_resid) / n)
    # the variance of the mean as a sum of mean squares: coefficient and degrees of freedom of each
    terms = {"seed": (ms_seed / (n * m) if var_seed > 0 else 0.0, n - 1),
             "image": (ms_image / (n * m) if var_image > 0 else 0.0, m - 1),
             "resid": (ms_resid * (1 - (var_seed > 0) - (var_image > 0)) / (n * m), resid_df)}  # fmt: skip
    variance = sum(c for c, _ in terms.values())
    out.update(var_seed=var_seed, var_image=var_image, var_resid=ms_resid)
    if variance <= 0:
        out.update(lo=grand, hi=grand, df=math.inf)
        return out
    df = variance**2 / sum(c**2 / k for c, k in terms.values() if c)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(variance)
    out.update(lo=grand - half, hi=grand + half, df=df)
    return out


def image_health(values: Mapping[str, float]) -> str:
    """The health of one fused image from its metric values (``SD``, ``SSIM``, ``CC``).

    ``collapsed``: nearly constant (SD below :data:`COLLAPSED_SD` grey levels); ``nan``: a metric is NaN;
    ``inverted``: polarity flipped, the summed SSIM or the mean correlation with the sources below zero;
    else ``ok``.
    """
    if values["SD"] < COLLAPSED_SD:
        return "collapsed"
    if any(math.isnan(values[k]) for k in ("SD", "SSIM", "CC")):
        return "nan"
    if values["SSIM"] < 0 or values["CC"] < 0:
        return "inverted"
    return "ok"


def run_health(classes: Sequence[str]) -> str:
    """A run's health from its images' classes: the most frequent failure when failures are most images."""
    failures = [c for c in classes if c != "ok"]
    if len(failures) * 2 <= len(classes):
        return "ok"
    return max(HEALTH_CLASSES[1:], key=failures.count)


def percent_is_meaningful(base_seed_means: Sequence[float]) -> bool:
    """Whether a change in percent of the base mean means something: every seed's base mean has the same
    sign and the base mean is at least four seed-to-seed standard deviations from zero."""
    v = np.asarray(base_seed_means, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v) or not (np.all(v > 0) or np.all(v < 0)):
        return False
    return len(v) < 2 or abs(v.mean()) >= 4 * v.std(ddof=1)


def health_table(values, failed: Mapping[str, str], planned: Sequence[tuple[str, str, int, str]]):
    """Per planned run: its health. ``values`` are the finished runs' per-image values (with ``run_id``),
    ``failed`` maps failed run ids to their error, ``planned`` lists ``(model, arm, seed, run_id)``.

    A run that failed with a non-finite loss is ``nan``; a run that has not finished is left out.
    Returns a frame with model, arm, seed, run_id, health, failed_images, images.
    """
    import pandas as pd

    rows = []
    by_run = {rid: g for rid, g in values.groupby("run_id", sort=False)}
    for model, arm, seed, rid in planned:
        if rid in failed:
            rows.append({"model": model, "arm": arm, "seed": seed, "run_id": rid, "health": "nan",
                         "failed_images": math.nan, "images": 0})  # fmt: skip
        elif rid in by_run:
            classes = [image_health(r) for r in by_run[rid][["SD", "SSIM", "CC"]].to_dict("records")]
            rows.append({"model": model, "arm": arm, "seed": seed, "run_id": rid, "health": run_health(classes),
                         "failed_images": sum(c != "ok" for c in classes), "images": len(classes)})  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "arm", "seed", "run_id", "health", "failed_images", "images"])


def seed_comparisons(values, metrics: Sequence[str], healthy: set[str], base: str, primary: Sequence[str],
                     plateau: dict[str, bool | None] | None = None, planned: Mapping[str, int] | None = None):  # fmt: skip
    """Every arm against ``base`` per model, test set and metric, over the seeds both arms have.

    ``healthy`` holds the ids of healthy runs. Each comparison appears twice, over all runs
    (``runs = all``) and over the seeds where both runs are healthy (``runs = healthy``). Holm's
    adjustment of the t test's p (``p_holm``) and of the sign-flip p (``p_holm_signflip``) runs over
    the ``primary`` metrics x models x test sets, per arm and run population (``family_size``
    comparisons: those ``planned`` for the arm (arm -> the study's planned models x test sets x primary
    metrics) or those present if more, the ones without rows or with fewer seeds than a test needs
    counting as untested with p = 1, so that an interim adjusted p bounds the complete family's from
    above); ``mdd_holm`` and ``seeds_needed_holm`` give the power at that family's Bonferroni level ``0.05 / family_size``,
    the level Holm's first step applies. The other metrics are ``exploratory`` and left unadjusted. ``plateau`` (run id -> reached its
    validation plateau, ``None`` when it did not validate) gives each row ``unconverged``, the compared
    runs that stopped short of their plateau, and ``unvalidated``, those whose convergence is unknown.
    """
    import pandas as pd

    from benchmark.metrics import column_info
    from benchmark.reports.stats import paired, paired_images

    rows = []
    for (model, test), group in values.groupby(["model", "test"], sort=False):
        if base not in set(group.arm):
            continue
        for arm in [a for a in dict.fromkeys(group.arm) if a != base]:
            ours, theirs, _ = paired_images(group, arm, base, metrics)  # descriptive: these networks only
            described = {m: paired(ours[m].to_numpy(float), theirs[m].to_numpy(float), column_info(m).higher_is_better)
                         for m in metrics}  # fmt: skip
            a, b = group[group.arm == arm], group[group.arm == base]
            common = sorted(set(a.seed) & set(b.seed))
            for runs in ("all", "healthy"):
                seeds = [s for s in common if runs == "all" or
                         {a.run_id[a.seed == s].iloc[0], b.run_id[b.seed == s].iloc[0]} <= healthy]  # fmt: skip
                images = sorted(set(a.image[a.seed.isin(seeds)]) & set(b.image[b.seed.isin(seeds)]))
                reached = [(plateau or {}).get(r) for x in (a, b) for r in dict.fromkeys(x.run_id[x.seed.isin(seeds)])]
                grids = [x[x.seed.isin(seeds)].pivot_table(index="seed", columns="image", values=list(metrics),
                                                              dropna=False) for x in (a, b)]  # fmt: skip
                for m in metrics:
                    ga, gb = (g[m].reindex(index=seeds, columns=images).to_numpy(float) if seeds else np.empty((0, 0))
                              for g in grids)  # fmt: skip
                    with np.errstate(invalid="ignore"):
                        ma, mb = np.nanmean(ga, axis=1) if seeds else ga, np.nanmean(gb, axis=1) if seeds else gb
                    d = ma - mb
                    d = d[~np.isnan(d)]
                    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
                    lo, hi = t_interval(d)
                    crossed = crossed_interval(ga - gb) if len(seeds) > 1 else crossed_interval(np.empty((0, 0)))
                    diff = float(d.mean()) if len(d) else math.nan
                    needed = seeds_needed(diff, sd)
                    rows.append({
                        "model": model, "test": test, "arm": arm, "base": base, "metric": m,
                        "family": "primary" if m in primary else "exploratory", "runs": runs, "seeds": len(d),
                        "unconverged": reached.count(False), "unvalidated": reached.count(None),
                        "base_mean": float(np.nanmean(mb)) if len(d) else math.nan,
                        "arm_mean": float(np.nanmean(ma)) if len(d) else math.nan,
                        "diff": diff, "diff_sd": sd, "t_lo": lo, "t_hi": hi,
                        **{f"crossed_{k}": v for k, v in crossed.items()},
                        "p_t": t_test_p(d), "p_signflip": sign_flip_p(d) if len(d) > 1 else math.nan,
                        "smallest_p": smallest_p(len(d)) if len(d) else math.nan,
                        "mdd": minimal_detectable(sd, len(d)), "seeds_needed": math.nan if needed is None else needed,
                        "pct_change": diff / abs(float(np.nanmean(mb))) * 100
                        if len(d) and percent_is_meaningful(mb) else math.nan,
                        "images_win_rate": described[m]["win_rate"], "images_wilcoxon_p": described[m]["p_value"],
                    })  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["tested"] = table["seeds"] >= seeds_to_resolve()
    for column in ("family_size", "p_holm", "p_holm_signflip", "mdd_holm", "seeds_needed_holm"):
        table[column] = math.nan
    for (arm, _), idx in table[table.family == "primary"].groupby(["arm", "runs"]).groups.items():
        family, tested = table.loc[idx], table.loc[idx, "tested"].tolist()
        size = max(len(idx), (planned or {}).get(arm, 0))
        level = ALPHA / size
        table.loc[idx, "family_size"] = size
        table.loc[idx, "p_holm"] = family_holm(family["p_t"].tolist(), tested, size)
        table.loc[idx, "p_holm_signflip"] = family_holm(family["p_signflip"].tolist(), tested, size)
        table.loc[idx, "mdd_holm"] = [minimal_detectable(sd, n, level) for sd, n in zip(family.diff_sd, family.seeds)]
        needed = [seeds_needed(diff, sd, level) for diff, sd in zip(family["diff"], family.diff_sd)]
        table.loc[idx, "seeds_needed_holm"] = [math.nan if n is None else n for n in needed]
    table["survives_holm"] = table["p_holm"] < ALPHA
    table["survives_holm_signflip"] = table["p_holm_signflip"] < ALPHA
    return table
