"""Equal-budget tuning: every arm trained at every gradient scale on the tuning seeds, validated and never
tested, the best mean validation criterion selecting each arm's scale for the study's seeds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.cli import run as main
from benchmark.config import ConfigError, load_config
from benchmark.plan import plan
from benchmark.reports import build_report
from benchmark.reports import figures as plots
from benchmark.reports.tables import budget_markup
from benchmark.tuning import budget_table, expected_best, start_vs_base

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments.yaml"
TUNED = ["--set", "datasets.held_out={synthetic: {count: 2, height: 64, width: 80, seed: 21}}",
         "--set", "profiles.smoke.val={dataset: held_out, every: 2}", "--set", "profiles.smoke.select=best",
         "--set", "profiles.smoke.tune={gradient_scale: [0.5, 1, 2], seeds: [100, 101]}",
         "--set", "profiles.smoke.seeds=[0, 1]"]  # fmt: skip


def test_tuning_selects_each_arms_scale_on_validation_and_trains_the_seeds_there(tmp_path: Path) -> None:
    assert main(["--config", str(EXPERIMENTS), "--profile", "smoke", "--results", str(tmp_path), "--no-figures", *TUNED]) == 0
    root = tmp_path / "smoke"
    tuning = [r for r in (root / "runs").iterdir() if r.name.endswith(("s100", "s101"))]
    assert len(tuning) == 12  # 2 arms x 3 scales x 2 tuning seeds
    for run in tuning:
        assert len(pd.read_csv(run / "val_log.csv")) == 3  # validated at steps 2, 4 and 6
        assert pd.read_csv(run / "metrics.csv").empty  # never scored on a test image
    table = pd.read_csv(root / "tables" / "tuning.csv")
    assert list(table.columns) == ["model", "arm", "gradient_scale", "seeds", "criterion_mean", "criterion_sd",
                                   "start_vs_base", "selected"]  # fmt: skip
    chosen = {}

    def first_term(arm: str, scale: float, seed: int) -> float:
        suffix = "" if scale == 1 else f"-x{scale:g}"
        return float(pd.read_csv(root / "runs" / f"tiny__{arm}{suffix}__synthetic_small__s{seed}" / "train_log.csv").gradient.iloc[0])

    for arm, g in table.groupby("arm"):
        assert g.selected.sum() == 1 and g.loc[g.selected, "criterion_mean"].iloc[0] == g.criterion_mean.max()
        chosen[arm] = float(g.loc[g.selected, "gradient_scale"].iloc[0])
        by_hand, ratios = [], []  # each trial's criterion at its best validation, averaged over the tuning seeds
        for scale in (0.5, 1.0, 2.0):
            suffix = "" if scale == 1 else f"-x{scale:g}"
            best = [pd.read_csv(root / "runs" / f"tiny__{arm}{suffix}__synthetic_small__s{s}" / "val_log.csv").criterion.max()
                    for s in (100, 101)]  # fmt: skip
            by_hand.append(sum(best) / 2)
            ratios.append(sum(first_term(arm, scale, s) / first_term("magnitude", 1.0, s) for s in (100, 101)) / 2)
        assert g.criterion_mean.tolist() == pytest.approx(by_hand, rel=1e-12)
        assert g.start_vs_base.tolist() == pytest.approx(ratios, rel=1e-12)
    # the same initial weights and first batch for a seed: the base arm's term starts at exactly its scale
    assert table[table.arm == "magnitude"].start_vs_base.tolist() == [0.5, 1.0, 2.0]
    assert table[table.arm == "damgl"].start_vs_base.iloc[1] > 1  # DAMGL's term starts larger at the same weight
    for arm, scale in chosen.items():
        for seed in (0, 1):
            suffix = "" if scale == 1 else f"-x{scale:g}"
            config = yaml.safe_load((root / "runs" / f"tiny__{arm}{suffix}__synthetic_small__s{seed}" / "config.yaml").read_text())
            assert config["gradient_scale"] == scale and (root / "runs" / f"tiny__{arm}{suffix}__synthetic_small__s{seed}" / "done.json").is_file()
    assert "tuned, equal budget of 6 trials per arm" in (root / "tables" / "paired_synthetic_small_test.md").read_text()
    each = pd.read_csv(root / "tables" / "trials.csv")  # the values the tuning table averages, each traced to its run
    assert len(each) == 12 and set(each.run_id) == {r.name for r in tuning}
    for r in each.itertuples():
        done, val = json.loads((root / "runs" / r.run_id / "done.json").read_text()), pd.read_csv(root / "runs" / r.run_id / "val_log.csv")
        assert r.scored_step == done["scored_step"] and r.seconds == pytest.approx(done["seconds"], rel=1e-12)
        assert r.value == pytest.approx(val.criterion[val.step == r.scored_step].iloc[0], rel=1e-12)


def test_tuning_not_applied_reports_the_trials_and_a_profile_that_applies_it_reuses_them(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    """``apply: false``: the trials train beside the study's runs, which stay at the recipe's weight, and are
    reported (tuning table, no "tuned" caption); a profile with the same block applied and ``reuse:`` copies the
    trials and the runs at scale 1 and trains only the arms tuned away from it: the study at both weights."""
    cfg = load_config(EXPERIMENTS, TUNED[1::2])
    raw = cfg.raw
    block = raw["profiles"]["smoke"]["tune"]
    raw["profiles"]["smoke"]["tune"] = {**block, "apply": False}
    raw["profiles"]["smoke-tuned"] = {**raw["profiles"]["smoke"], "tune": block, "reuse": ["smoke"]}
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(yaml.safe_dump(raw, sort_keys=False))
    args = ["--config", str(experiments), "--results", str(tmp_path), "--no-figures"]
    assert main([*args, "--profile", "smoke"]) == 0
    root = tmp_path / "smoke"
    runs = sorted(r.name for r in (root / "runs").iterdir())
    assert len(runs) == 12 + 4 and not [r for r in runs if "-x" in r and not r.endswith(("s100", "s101"))]
    assert "scales" not in json.loads((root / "study.json").read_text())
    table = pd.read_csv(root / "tables" / "tuning.csv")
    assert len(table) == 6 and table.selected.sum() == 2
    assert "not applied here" in (root / "summary.md").read_text()
    commit = json.loads((root / "runs" / "tiny__damgl-x2__synthetic_small__s100" / "env.json").read_text())["git_commit"]
    assert f"The 12 trials were trained from commit(s) {commit} (" in (root / "summary.md").read_text()
    assert "tuned" not in (root / "tables" / "paired_synthetic_small_test.md").read_text()
    capsys.readouterr()
    assert main([*args, "--profile", "smoke-tuned"]) == 0
    out = capsys.readouterr()
    chosen = {r.arm: float(r.gradient_scale) for r in table[table.selected].itertuples()}
    at_one = sum(scale == 1 for scale in chosen.values())
    assert out.err.count("reused from") == 12 + 2 * at_one and out.out.count("trained ") == 2 * (2 - at_one)
    spec = json.loads((tmp_path / "smoke-tuned" / "study.json").read_text())
    assert spec["scales"] == {arm: {"tiny": scale} for arm, scale in chosen.items()}
    assert pd.read_csv(tmp_path / "smoke-tuned" / "tables" / "tuning.csv").equals(table)
    # the comparison at both weights: each side is the paired table of its own profile
    weights = pd.read_csv(tmp_path / "smoke-tuned" / "tables" / "weights.csv")
    assert len(weights) == 6 and set(weights.arm) == {"damgl"}  # damgl against magnitude, 6 primary metrics
    assert set(weights.arm_scale) == {chosen["damgl"]} and set(weights.base_scale) == {chosen["magnitude"]}
    for tag, profile in (("recipe", "smoke"), ("tuned", "smoke-tuned")):
        paired = pd.read_csv(tmp_path / profile / "tables" / "paired_synthetic_small_test.csv")
        paired = paired[(paired.runs == "healthy") & (paired.family == "primary")].set_index("metric")
        assert weights.set_index("metric")[f"diff_{tag}"].to_dict() == pytest.approx(paired["diff"].to_dict(), rel=1e-12)
    assert "## Recipe weight and tuned weights" in (tmp_path / "smoke-tuned" / "summary.md").read_text()
    # a tuned side with no comparison yet (its DAMGL runs not finished): the recipe side is still shown
    partial = tmp_path / "partial" / "smoke-tuned"
    shutil.copytree(tmp_path / "smoke-tuned", partial)
    shutil.copytree(root, partial.parent / "smoke")
    for seed in (0, 1):
        shutil.rmtree(partial / "runs" / f"tiny__damgl-x2__synthetic_small__s{seed}")
    build_report(partial, figures=False)
    shown = pd.read_csv(partial / "tables" / "weights.csv")
    assert shown.diff_tuned.isna().all() and shown.diff_recipe.tolist() == weights.diff_recipe.tolist()
    assert set(shown.conclusions) == set(weights.conclusions) == {"not tested"}  # 2 seeds a side: neither is tested
    assert (partial / "tables" / "weights.md").read_text().count("| no runs yet |") == 6
    # the recipe-weight profile while its trials still run: the finished ones are shown, nothing is selected
    running = tmp_path / "running" / "smoke"
    shutil.copytree(root, running)
    for rid in ("tiny__damgl-x2__synthetic_small__s101", "tiny__magnitude-x0.5__synthetic_small__s100"):
        (running / "runs" / rid / "done.json").unlink()
    build_report(running, figures=False)
    shown = pd.read_csv(running / "tables" / "tuning.csv")
    assert not shown.selected.any() and sorted(shown.seeds) == [1, 1, 2, 2, 2, 2]
    by_scale = table.set_index(["arm", "gradient_scale"]).criterion_mean
    kept = shown[shown.seeds == 2].set_index(["arm", "gradient_scale"]).criterion_mean
    assert kept.to_dict() == by_scale[kept.index].to_dict()  # a finished scale's mean is the complete tuning's
    assert not (running / "tables" / "tuning_budget.csv").exists()
    assert len(pd.read_csv(running / "tables" / "trials.csv")) == 10
    assert "Tuning, incomplete: 10 of 12 trials finished, no scale selected yet" in (running / "summary.md").read_text()
    for rid in (r for r in runs if r.endswith(("s100", "s101"))):
        (running / "runs" / rid / "done.json").unlink(missing_ok=True)
    build_report(running, figures=False)
    assert "none of the 12 trials has finished" in (running / "summary.md").read_text()
    assert not (running / "tables" / "tuning.csv").exists() and not (running / "tables" / "trials.csv").exists()


def test_scale_one_keeps_the_recipe_weights_hash() -> None:
    plain = load_config(EXPERIMENTS, [v for k, v in zip(TUNED[::2], TUNED[1::2]) if "tune=" not in v])
    tuned = load_config(EXPERIMENTS, TUNED[1::2])
    before = {r.run_id: r.config_hash for r in plan(plain, plain.profile("smoke"))}
    after = plan(tuned, tuned.profile("smoke"), scales={"magnitude": {"tiny": 1.0}, "damgl": {"tiny": 2.0}})
    study = {r.run_id: r.config_hash for r in after if r.stage == "study"}
    assert study["tiny__magnitude__synthetic_small__s0"] == before["tiny__magnitude__synthetic_small__s0"]
    assert "tiny__damgl-x2__synthetic_small__s0" in study and study["tiny__damgl-x2__synthetic_small__s0"] not in before.values()
    assert sum(r.stage == "tune" for r in after) == 12


def test_expected_best_by_hand() -> None:
    # 1, 2, 3 drawn twice with replacement: the best is 3 with 5/9, 2 with 3/9, 1 with 1/9
    assert expected_best([3.0, 1.0, 2.0]) == pytest.approx([2.0, 22 / 9, 1 * 1 / 27 + 2 * 7 / 27 + 3 * 19 / 27])
    assert expected_best([3.0, 1.0, 2.0], higher=False)[1] == pytest.approx(14 / 9)


def test_budget_markup_rows_each_arm_with_labels_and_four_decimals() -> None:
    """The markdown of tuning_budget: one row per model and arm, its labels, a column per number of trials; the CSV
    (the frame) keeps the full precision."""
    done = pd.DataFrame([{"model": "tiny", "arm": a, "value": v, "higher": True}
                         for a, v in [("magnitude", 3.0), ("magnitude", 1.0), ("magnitude", 2.0),
                                      ("damgl", 1.0), ("damgl", 2.0), ("damgl", 2.0)]])  # fmt: skip
    table = budget_markup(budget_table(done), {"tiny": "Tiny", "damgl": "DAMGL"})
    assert table.header == ["model", "arm", "1", "2", "3"]
    assert table.rows == [["Tiny", "magnitude", "2.0000", "2.4444", "2.6667"], ["Tiny", "DAMGL", "1.6667", "1.8889", "1.9630"]]
    assert table.blocks == [0]


def test_start_vs_base_by_hand() -> None:
    """Each trial's first gradient term over the base arm's at scale 1 on the same seed; NaN where that trial is
    missing or first logged another step (another number of updates: not the same weights)."""
    rows = [("magnitude", 1.0, 100, 2.0, 1), ("magnitude", 1.0, 101, 4.0, 1), ("magnitude", 2.0, 100, 4.0, 1),
            ("damgl", 0.5, 100, 3.0, 1), ("damgl", 0.5, 101, 6.0, 20), ("damgl", 0.5, 102, 5.0, 1)]  # fmt: skip
    done = pd.DataFrame([{"model": "tiny", "arm": a, "gradient_scale": s, "seed": seed, "start_term": t, "start_step": k}
                         for a, s, seed, t, k in rows])  # fmt: skip
    ratio = start_vs_base(done, "magnitude")
    assert ratio[:4].tolist() == [1.0, 1.0, 2.0, 1.5] and np.isnan(ratio[4:]).all()
    assert np.isnan(start_vs_base(done, None)).all()


def test_tuning_figure_draws_the_finished_trials_and_the_budget_curve_once_all_have_finished() -> None:
    """Criterion against scale: one line through each arm's means over the tuning seeds and a dot per trial;
    while trials are missing, that panel alone, titled with how many have finished."""
    rows = [("magnitude", 0.5, 100, 1.0, 1.0), ("magnitude", 0.5, 101, 3.0, 2.0), ("magnitude", 1.0, 100, 2.0, 2.0),
            ("magnitude", 1.0, 101, 2.5, 4.0), ("damgl", 0.5, 100, 1.5, 3.0), ("damgl", 0.5, 101, 0.5, 10.0)]  # fmt: skip
    done = pd.DataFrame([{"model": "tiny", "arm": a, "gradient_scale": s, "seed": seed, "value": v, "higher": True,
                          "start_term": t, "start_step": 1} for a, s, seed, v, t in rows])  # fmt: skip
    done = done.assign(start_vs_base=start_vs_base(done, "magnitude"))  # as trials() adds it
    partial = plots.tuning_figure(done, None, 8, {}, "magnitude")
    assert len(partial.axes) == 2  # against the scale, and against the term's start over magnitude's at x1
    for ax in partial.axes:
        means = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
        assert [list(line.get_ydata()) for line in means] == [[2.0, 2.25], [1.0]]  # magnitude, then damgl
        assert sum(len(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "o") == 6
    means = [list(line.get_xdata()) for line in partial.axes[1].get_lines() if line.get_linestyle() == "-"]
    assert means == [[0.5, 1.0], [(3.0 / 2.0 + 10.0 / 4.0) / 2]]  # each seed over magnitude x1 on that seed
    assert "incomplete (6 of 8 trials finished" in partial._suptitle.get_text()
    budget = budget_table(done)
    complete = plots.tuning_figure(done, budget, 6, {}, "magnitude")
    assert len(complete.axes) == 3 and "incomplete" not in complete._suptitle.get_text()
    curves = [list(line.get_ydata()) for line in complete.axes[2].get_lines()]
    assert curves == [budget[budget.arm == arm].expected_best.tolist() for arm in ("magnitude", "damgl")]


@pytest.mark.parametrize(
    "change,message",
    [
        (["profiles.smoke.tune={gradient_scale: [1, 2], seeds: [100]}"], "tune: needs 'val'"),
        (["profiles.smoke.tune={gradient_scale: [1, 2], seeds: [0]}", "profiles.smoke.val={dataset: synthetic_test}"],
         "disjoint from the profile's seeds"),
        (["profiles.smoke.tune={gradient_scale: [1, -2], seeds: [100]}", "profiles.smoke.val={dataset: synthetic_test}"],
         "distinct positive numbers"),
        (["profiles.smoke.tune={gradient_scale: [1, 2], seeds: [100], arms: [damgll]}",
          "profiles.smoke.val={dataset: synthetic_test}"], "did you mean 'damgl'"),
        (["profiles.smoke.tune={gradient_scale: [1, 2], seeds: [100], apply: 'no'}",
          "profiles.smoke.val={dataset: synthetic_test}"], r"tune\.apply: expected true or false, got 'no'"),
    ],
)  # fmt: skip
def test_tune_settings_are_checked(change: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(EXPERIMENTS, change)
