"""Seed-level inference: hand-computed sign-flip p-values, Holm, t intervals, exact power, the crossed seed x image
interval, run health."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from benchmark.metrics import evaluate
from benchmark.reports import significance as I


def test_sign_flip_p_by_hand() -> None:
    assert I.sign_flip_p([0.1, 0.2, 0.3]) == 0.25  # only all-plus and all-minus are as extreme: 2 of 8
    assert I.sign_flip_p([0.0045, -0.0040, 0.0090]) == 0.5  # PMGI Qabf per seed in the first study: 4 of 8
    assert I.sign_flip_p([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]) == pytest.approx(2 / 64)
    assert I.sign_flip_p([1.0, -1.0]) == 1.0 and I.sign_flip_p([0.0, 0.0]) == 1.0
    # 1, 2, 3, 4 (sum 10): flipping a subset S gives 10 - 2 sum(S), as extreme only for S empty or all: 2 of 16
    assert I.sign_flip_p([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2 / 16)
    # 3, 1, 1 (sum 5): flipping one 1 gives 3, both give 1, the 3 gives -1: only ++ + and --- reach 5
    assert I.sign_flip_p([3.0, 1.0, 1.0]) == pytest.approx(2 / 8)
    # 2, 2, 0 (sum 4): the zero's sign does not matter, so 4 of 8 patterns reach |4|
    assert I.sign_flip_p([2.0, 2.0, 0.0]) == pytest.approx(4 / 8)
    assert math.isnan(I.sign_flip_p([]))


def test_smallest_p_and_seeds_to_resolve() -> None:
    assert I.smallest_p(3) == 0.25 and I.smallest_p(5) == 0.0625 and I.smallest_p(6) == 0.03125
    assert I.seeds_to_resolve() == 6 and I.seeds_to_resolve(0.01) == 8


def test_holm_on_a_known_vector() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert I.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = I.holm([0.5, math.nan, 0.01])
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert I.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_t_test_p_by_hand() -> None:
    # 1, 2, 3: mean 2, sd 1, t = 2 sqrt(3); with 2 degrees of freedom the two-sided p is 1 - |t| / sqrt(t^2 + 2)
    assert I.t_test_p([1.0, 2.0, 3.0]) == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-12)
    assert I.t_test_p([-1.0, -2.0, -3.0]) == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-12)
    assert I.t_test_p([0.5] * 4) == 0.0 and I.t_test_p([0.0, 0.0]) == 1.0 and math.isnan(I.t_test_p([1.0]))
    d = [0.012, -0.004, 0.020, 0.007, 0.015, 0.001]
    assert I.t_test_p(d) == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-12)  # independent cross-check


def test_family_holm_counts_untested_members() -> None:
    # the untested 0.2 enters as 1.0: sorted 0.01, 0.02, 1.0 times 3, 2, 1 -> 0.03, 0.04; it comes back NaN
    out = I.family_holm([0.01, 0.2, 0.02], [True, False, True])
    assert out[0] == pytest.approx(0.03) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    # a planned family of 5 with two members not run yet: 0.01 x 5, 0.02 x 4
    assert I.family_holm([0.01, 0.02], [True, True], size=5) == pytest.approx([0.05, 0.08])


def test_interim_holm_bounds_the_complete_family_from_above() -> None:
    # members tested later may take any p; the tested members' adjusted p never rises when they do
    rng = np.random.default_rng(7)
    for _ in range(200):
        size = int(rng.integers(2, 40))
        tested = int(rng.integers(1, size + 1))
        p = rng.uniform(0, 1, size) ** 3  # many small values, so the orders interleave
        interim = I.family_holm(p[:tested].tolist(), [True] * tested, size=size)
        complete = I.holm(p.tolist())[:tested]
        assert all(c <= i + 1e-15 for c, i in zip(complete, interim))
    # by hand: interim 0.001 x 36 = 0.036; a later member with 0.0005 moves it to 35 x 0.001 = 0.035
    assert I.family_holm([0.001], [True], size=36) == pytest.approx([0.036])
    assert I.holm([0.001, 0.0005] + [1.0] * 34)[0] == pytest.approx(0.035)


def _power_by_integration(effect: float, n: int, alpha: float) -> float:
    """The paired t test's power by numerical integration over the variance estimate: T = (Z + effect sqrt(n)) /
    sqrt(V / df) with V chi-square on df = n - 1 degrees of freedom."""
    df, nc, c = n - 1, effect * math.sqrt(n), stats.t.ppf(1 - alpha / 2, n - 1)

    def given(v: float) -> float:
        scale = c * math.sqrt(v / df)
        return (stats.norm.sf(scale - nc) + stats.norm.cdf(-scale - nc)) * stats.chi2.pdf(v, df)

    return integrate.quad(given, 0, math.inf, limit=200)[0]


def test_t_interval_against_its_formula() -> None:
    d = np.array([0.2, 0.5, 0.3, 0.6])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert I.t_interval(d) == pytest.approx((d.mean() - half, d.mean() + half))
    assert all(math.isnan(x) for x in I.t_interval([1.0]))


@pytest.mark.parametrize("n,alpha", [(6, 0.05), (6, 0.05 / 18), (6, 0.05 / 36), (3, 0.05), (12, 0.05 / 36)])
def test_minimal_detectable_difference_is_exact(n: int, alpha: float) -> None:
    mdd = I.minimal_detectable(2.0, n, alpha)
    assert _power_by_integration(mdd / 2.0, n, alpha) == pytest.approx(0.8, rel=1e-3)
    by_hand = optimize.brentq(lambda e: _power_by_integration(e, n, alpha) - 0.8, 0.01, 50)
    assert mdd == pytest.approx(2.0 * by_hand, rel=1e-3)


def test_the_old_approximation_overstated_power() -> None:
    # (t(1 - alpha/2) + t(power)) sd / sqrt(n) at 6 seeds and 0.05/36 has only about 72% power
    approx = (stats.t.ppf(1 - 0.05 / 72, 5) + stats.t.ppf(0.8, 5)) / math.sqrt(6)
    assert 0.70 < I.t_power(approx, 6, 0.05 / 36) < 0.74
    assert I.minimal_detectable(1.0, 6, 0.05) == pytest.approx(1.0070 * (stats.t.ppf(0.975, 5) + stats.t.ppf(0.8, 5))
                                                               / math.sqrt(6), rel=1e-3)  # 0.7% at 0.05  # fmt: skip
    needed = I.seeds_needed(0.5, 1.0)
    assert I.t_power(0.5, needed) >= 0.8 > I.t_power(0.5, needed - 1)
    assert I.seeds_needed(1.0, 0.0) == 6 and I.seeds_needed(0.0, 1.0) is None


@pytest.mark.parametrize("effect,alpha", [(0.05, 0.05), (0.3, 0.05 / 36), (1.7, 0.05 / 144), (1.2, 0.05), (9.0, 0.05 / 36)])
def test_seeds_needed_is_the_first_count_that_reaches_the_power(effect: float, alpha: float) -> None:
    needed = I.seeds_needed(effect, 1.0, alpha)
    if needed is None:  # 0.05 SDs: more than 1000 seeds
        assert I.t_power(effect, 1000, alpha) < 0.8
    else:
        assert I.t_power(effect, needed, alpha) >= 0.8 and (needed == 6 or I.t_power(effect, needed - 1, alpha) < 0.8)
    assert (needed is None) == (effect == 0.05) and (needed == 6) == (effect == 9.0)


def test_crossed_interval_by_hand() -> None:
    # seed effects (+1, -1), image effects (+2, 0, -2), no residual: the mean squares by hand
    d = 0.5 + np.array([[1.0], [-1.0]]) + np.array([[2.0, 0.0, -2.0]])
    out = I.crossed_interval(d)
    assert out["var_resid"] == pytest.approx(0.0, abs=1e-12)
    assert out["var_seed"] == pytest.approx(3 * 2 / 1 / 3) and out["var_image"] == pytest.approx(2 * 8 / 2 / 2)
    variance = out["var_seed"] / 2 + out["var_image"] / 3  # 1 + 4/3
    df = variance**2 / ((1.0 / 1) ** 2 / 1 + (4 / 3) ** 2 / 2)  # Satterthwaite with the two mean squares
    half = stats.t.ppf(0.975, df) * math.sqrt(variance)
    assert (out["lo"], out["hi"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert math.isnan(I.crossed_interval(d[:1])["lo"])  # one seed: no interval


@pytest.mark.parametrize("sd_seed,sd_image,sd_resid,images",
                         [(1.0, 1.0, 1.0, 50), (0.5, 2.0, 1.0, 25), (1.0, 0.2, 1.0, 21), (2.0, 0.1, 0.5, 25)])  # fmt: skip
def test_crossed_interval_covers_at_its_nominal_level(sd_seed: float, sd_image: float, sd_resid: float, images: int) -> None:
    """Seeds and images drawn from known variance components, 6 seeds: the 95% interval covers the true
    difference in 93-97% of 3000 draws."""
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(3000):
        d = (0.3 + rng.normal(0, sd_seed, (6, 1)) + rng.normal(0, sd_image, (1, images))
             + rng.normal(0, sd_resid, (6, images)))  # fmt: skip
        out = I.crossed_interval(d)
        covered += out["lo"] <= 0.3 <= out["hi"]
    assert abs(covered / 3000 - 0.95) <= 0.02


def health_of(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> str:
    return I.image_health(evaluate(fused, ir, vis, ["SD", "SSIM", "CC"]))


def test_health_classes_on_hand_made_images() -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    vis = np.clip(128 + 60 * np.sin(x / 6) + rng.normal(0, 5, (64, 64)), 0, 255).round()
    ir = np.clip(0.8 * vis + 20 + rng.normal(0, 5, (64, 64)), 0, 255).round()
    assert health_of(np.round((ir + vis) / 2), ir, vis) == "ok"
    assert health_of(255 - vis, ir, vis) == "inverted"  # an inverted copy of a source
    assert health_of(np.full((64, 64), 90.0), ir, vis) == "collapsed"
    assert I.run_health(["ok", "inverted", "inverted"]) == "inverted"
    assert I.run_health(["ok", "ok", "inverted", "collapsed"]) == "ok"  # failures not most of the images
    assert I.run_health(["collapsed", "collapsed", "inverted", "ok", "ok"]) == "collapsed"


def test_health_table_marks_a_failed_run_nan() -> None:
    values = pd.DataFrame([{"run_id": "m__a__t__s0", "SD": 10.0, "SSIM": 0.5, "CC": 0.4}])
    planned = [("m", "a", 0, "m__a__t__s0"), ("m", "a", 1, "m__a__t__s1"), ("m", "a", 2, "m__a__t__s2")]
    table = I.health_table(values, {"m__a__t__s1": "loss is nan at step 2"}, planned)
    assert table.health.tolist() == ["ok", "nan"]  # the unfinished seed 2 is left out


def test_percent_only_away_from_zero() -> None:
    assert I.percent_is_meaningful([0.8, 0.82, 0.85])
    assert not I.percent_is_meaningful([-0.2, 0.26, 0.53])  # the collapsed-magnitude SSIM of the first study
    assert not I.percent_is_meaningful([0.1, 0.5, 0.9])  # mean 0.5 within four standard deviations (0.4) of zero


def seed_frame(differences: dict[int, float], images: int = 4) -> pd.DataFrame:
    rows = []
    for seed, d in differences.items():
        for arm, shift in (("base", 0.0), ("new", d)):
            for i in range(images):
                rows.append({"run_id": f"m__{arm}__t__s{seed}", "model": "m", "arm": arm, "seed": seed, "test": "t",
                             "image": f"i{i}", "EN": 5.0 + i + shift, "SD": 30.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_seed_comparisons_use_seeds_as_the_unit() -> None:
    frame = seed_frame({0: 0.1, 1: 0.2, 2: 0.3})
    healthy = set(frame.run_id) - {"m__new__t__s2"}
    table = I.seed_comparisons(frame, ["EN", "SD"], healthy, "base", ["EN"])
    row = table[(table.metric == "EN") & (table.runs == "all")].iloc[0]
    assert row.seeds == 3 and row["diff"] == pytest.approx(0.2) and row.p_signflip == 0.25
    assert not row.tested and math.isnan(row.p_holm) and not row.survives_holm and row.smallest_p == 0.25
    assert row.family_size == 1  # untested with 3 seeds, yet a member of its family
    assert row.images_win_rate == 1.0  # every image better: a description of these networks, not a test
    healthy_row = table[(table.metric == "EN") & (table.runs == "healthy")].iloc[0]
    assert healthy_row.seeds == 2 and healthy_row["diff"] == pytest.approx(0.15)
    assert table[table.metric == "SD"].family.unique().tolist() == ["exploratory"]
    assert math.isnan(table[table.metric == "SD"].p_holm.iloc[0])


def test_six_seeds_are_tested_with_the_t_test_and_adjusted_over_the_family() -> None:
    diffs = {0: 0.10, 1: 0.25, 2: 0.15, 3: 0.30, 4: 0.05, 5: 0.20}
    frame = seed_frame(diffs)
    table = I.seed_comparisons(frame, ["EN", "SD"], set(frame.run_id), "base", ["EN", "SD"])
    rows = table[table.runs == "all"].set_index("metric")
    en, sd = rows.loc["EN"], rows.loc["SD"]
    d = list(diffs.values())
    assert en.tested and en.seeds == 6 and en.family_size == 2
    assert en.p_t == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-9)
    assert en.p_signflip == pytest.approx(2 / 64)  # all six positive: only the all-plus and all-minus patterns
    assert sd.p_t == 1.0  # SD is identical in both arms
    # Holm over the two: the smaller p times 2, the larger times 1, kept monotone
    assert en.p_holm == pytest.approx(2 * en.p_t) and sd.p_holm == 1.0 and en.survives_holm
    assert en.p_holm_signflip == pytest.approx(2 * 2 / 64) and not en.survives_holm_signflip  # 0.0625: the floor
    assert en.mdd_holm == pytest.approx(I.minimal_detectable(float(np.std(d, ddof=1)), 6, 0.025))
    assert en.mdd_holm > en.mdd  # the family's level is stricter than a single test's
    planned = I.seed_comparisons(frame, ["EN", "SD"], set(frame.run_id), "base", ["EN", "SD"], planned={"new": 6})
    en6 = planned[(planned.runs == "all") & (planned.metric == "EN")].iloc[0]
    assert en6.family_size == 6 and en6.p_holm == pytest.approx(min(1.0, 6 * en.p_t))  # 4 planned members not run yet


def test_seed_table_states_what_the_exact_test_cannot_reach() -> None:
    from benchmark.reports.tables import seed_markup

    frame = seed_frame({s: 0.1 + 0.05 * s for s in range(6)})
    table = I.seed_comparisons(frame, ["EN", "SD"], set(frame.run_id), "base", ["EN", "SD"])
    text = seed_markup(table[table.runs == "all"], ["EN", "SD"], "t", "primary", {}).markdown()
    # 2 comparisons x 2/64 = 0.0625: the exact test needs 7 seeds (2 x 2/128 < 0.05) in a family of 2
    assert "cannot fall below 0.062" in text and "it needs 7 seeds" in text
    assert "**+0.2250 [" in text  # EN improves in every seed: the t test's Holm p survives, so it is bold
    assert "sign-flip 0.031, Holm sign-flip 0.062" in text


def test_seed_table_marks_a_significant_worsening_in_italic() -> None:
    from benchmark.reports.tables import seed_markup

    frame = seed_frame({s: -(0.2 + 0.002 * s) for s in range(6)})  # EN (higher is better) falls in every seed
    table = I.seed_comparisons(frame, ["EN", "SD"], set(frame.run_id), "base", ["EN", "SD"])
    markup = seed_markup(table[table.runs == "all"], ["EN", "SD"], "t", "primary", {})
    assert "| *-0.2050 [" in markup.markdown() and "**-0.2050" not in markup.markdown()
    assert "p<0.001, Holm <0.001;" in markup.markdown()  # 2 x p below 0.001 keeps its '<'
    assert r"\textit{-0.2050 [" in markup.latex()


def test_p_values_are_never_rounded_onto_the_threshold() -> None:
    from benchmark.reports.tables import format_p

    assert format_p(0.0495) == "p=0.0495" and format_p(0.0504) == "p=0.0504"  # both would print 0.050
    assert format_p(0.05) == "p=0.050" and format_p(0.028) == "p=0.028" and format_p(0.0004) == "p<0.001"
    assert format_p(0.04999996) == "p=0.04999996"  # as many digits as it takes to fall short of 0.050


def test_arms_with_the_same_seed_share_initial_weights_and_patches(tmp_path, monkeypatch) -> None:
    """The pairing behind every seed-level comparison: only the gradient loss differs between two arms' runs."""
    import torch

    from benchmark.config import load_config
    from benchmark.plan import plan
    from benchmark.store import RunDir
    from benchmark.train import Trainer, train_run

    seen = {}
    real_step = Trainer.train_step

    def record(self, ir, vis):  # the weights and the batch of each run's first step
        seen.setdefault(self.objectives[0].recipe["gradient"]["type"],
                        ({k: v.clone() for k, v in self.model.state_dict().items()}, (ir, vis)))  # fmt: skip
        return real_step(self, ir, vis)

    monkeypatch.setattr(Trainer, "train_step", record)
    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments.yaml")
    for run in plan(cfg, cfg.profile("smoke")):
        train_run(run, RunDir(tmp_path / run.run_id), "cpu", progress=False)
    (w_mag, batch_mag), (w_dam, batch_dam) = seen["magnitude"], seen["damgl"]
    assert w_mag.keys() == w_dam.keys() and all(torch.equal(w_mag[k], w_dam[k]) for k in w_mag)
    assert all(torch.equal(a, b) for a, b in zip(batch_mag, batch_dam))
