"""Reports: statistics with known answers, table markup, LaTeX structure, figures and byte-for-byte reruns."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark import reports
from benchmark.cli import run as run_main
from benchmark.reports import ablated_loss, significance, stats, tables
from benchmark.reports import figures as plots
from benchmark.store import StoreError, Study, load_study
from tests.conftest import need, real_data

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments.yaml"


def test_paired_statistics_by_hand() -> None:
    base = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    arm = base + np.array([0.1, 0.2, 0.3, 0.4, 0.5])  # all five differences positive, distinct ranks
    out = stats.paired(arm, base, higher_is_better=True)
    assert out["change_pct"] == pytest.approx(0.3 / 3.0 * 100)
    assert out["win_rate"] == 1.0 and out["pairs"] == 5
    assert out["p_value"] == pytest.approx(2 / 2**5)  # exact two-sided signed-rank test: 2 of 32 sign patterns
    lower = stats.paired(arm, base, higher_is_better=False)  # for MSE-like metrics the same data is a loss
    assert lower["win_rate"] == 0.0 and lower["p_value"] == pytest.approx(0.0625)
    ties = stats.paired(np.array([1.0, 2.0, np.nan, 4.0]), np.array([1.0, 1.0, 3.0, 5.0]), True)
    assert ties["pairs"] == 3 and ties["win_rate"] == pytest.approx((0.5 + 1 + 0) / 3)  # NaN pair dropped, tie half
    same = stats.paired(base, base, True)
    assert same["p_value"] == 1.0 and same["change_pct"] == 0.0


def test_seed_means_then_spread_over_seeds_with_nan_counted() -> None:
    rows = []
    for seed, values in ((0, [1.0, 3.0]), (1, [2.0, np.nan]), (2, [4.0, 6.0])):
        for image, v in zip(("a", "b"), values):
            rows.append({"model": "m", "arm": "x", "seed": seed, "test": "t", "image": image, "EN": v})
    out = stats.summarise_arms(pd.DataFrame(rows), ["EN"]).iloc[0]
    per_seed = [2.0, 2.0, 5.0]  # seed 1's mean excludes its NaN
    assert out["EN_mean"] == pytest.approx(np.mean(per_seed))
    assert out["EN_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert out["EN_nan"] == 1 and out["seeds"] == 3


def test_ranks_follow_the_metric_direction_and_ties() -> None:
    assert stats.ranks([1.0, 3.0, 2.0], higher_is_better=True) == [2, 0, 1]
    assert stats.ranks([1.0, 3.0, 2.0], higher_is_better=False) == [0, 2, 1]
    assert stats.ranks([2.0, 2.0, math.nan], True) == [0, 0, 3]  # NaN below every mark


def summary_frame() -> pd.DataFrame:
    rows = []
    for model, arms in (("m1", {"magnitude": (6.0, 10.0), "damgl": (7.0, 12.0), "axis_max": (6.5, 9.0)}),
                        ("m2", {"magnitude": (5.0, 8.0), "damgl": (4.0, 7.0)})):  # fmt: skip
        for arm, (en, mse) in arms.items():
            rows.append({"model": model, "arm": arm, "test": "t", "seeds": 3, "EN_mean": en, "EN_std": 0.1, "EN_nan": 0,
                         "MSE_mean": mse, "MSE_std": 1.0, "MSE_nan": 2 if (model, arm) == ("m2", "damgl") else 0})  # fmt: skip
    return pd.DataFrame(rows)


def test_main_table_marks_best_bold_and_second_underlined_per_model_block() -> None:
    table = tables.main_table(summary_frame(), ["EN", "MSE"], "T")
    assert table.header == ["model", "arm", "seeds", "EN ↑", "MSE ↓"]
    md = table.markdown().splitlines()
    assert "| m1 | magnitude | 3 | 6.000 ± 0.100 | <u>10.0 ± 1.0</u> |" in md  # EN third; MSE second lowest
    assert "| m1 | damgl | 3 | **7.000 ± 0.100** | 12.0 ± 1.0 |" in md
    assert "| m1 | axis_max | 3 | <u>6.500 ± 0.100</u> | **9.0 ± 1.0** |" in md
    assert "| m2 | damgl | 3 | <u>4.000 ± 0.100</u> | **7.0 ± 1.0†** |" in md  # a new block ranks on its own
    assert "† m2 / damgl / MSE: 2 NaN value(s) excluded from the mean" in md
    tex = table.latex()
    assert r"\textbf{7.000 $\pm$ 0.100}" in tex and r"\underline{6.500 $\pm$ 0.100}" in tex
    assert r"EN $\uparrow$" in tex and r"MSE $\downarrow$" in tex and r"axis\_max" in tex
    assert tex.count(r"\midrule") == 2  # after the header and between the two model blocks
    one_seed = tables.main_table(summary_frame().assign(seeds=1), ["EN"], "T").markdown()
    assert "| m1 | damgl | 1 | **7.000** |" in one_seed and "one seed: the mean alone" in one_seed


def latex_is_well_formed(tex: str) -> bool:
    """Balanced braces (ignoring escaped ones) and matching begin/end environments."""
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(env)
        elif not stack or stack.pop() != env:
            return False
    return depth == 0 and not stack and tex.startswith("\\documentclass") and "\\usepackage{booktabs}" in tex


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smoke profile with two seeds and the sign ablation, 60 steps so that every run is healthy: seconds on a CPU."""
    results = tmp_path_factory.mktemp("report")
    args = ["--config", str(EXPERIMENTS), "--profile", "smoke", "--results", str(results), "--set", "profiles.smoke.steps=60",
            "--set", "profiles.smoke.seeds=[0, 1]", "--set", "profiles.smoke.ablations=[sign]"]  # fmt: skip
    assert run_main(args) == 0
    return results / "smoke"


def test_report_writes_tables_summary_and_figures(smoke_study: Path) -> None:
    files = reports.build_report(smoke_study)
    names = {p.relative_to(smoke_study).as_posix() for p in files}
    for stem in ("main_synthetic_small_test", "paired_synthetic_small_test", "power_synthetic_small_test", "health",
                 "ablation_sign_synthetic_small_test", "paired_ablation_sign_synthetic_small_test"):  # fmt: skip
        for ext in ("csv", "md", "tex"):
            assert (smoke_study / "tables" / f"{stem}.{ext}").is_file()
        assert latex_is_well_formed((smoke_study / "tables" / f"{stem}.tex").read_text())
    for fig in ("forest_synthetic_small_test", "training_curves", "qualitative_tiny_synthetic_small_test",
                "qualitative_ablation_sign_tiny_synthetic_small_test",
                "direction_tiny_synthetic_small_test"):  # fmt: skip
        assert {f"figures/{fig}.png", f"figures/{fig}.pdf"} <= names
    summary = (smoke_study / "summary.md").read_text()
    assert "- runs: 6 of 6 complete, 0 failed, 0 missing" in summary and "## Ablation: sign" in summary
    paired = pd.read_csv(smoke_study / "tables" / "paired_synthetic_small_test.csv")
    assert set(paired.arm) == {"damgl"} and set(paired.seeds) == {2} and set(paired.runs) == {"all", "healthy"}
    assert len(paired) == 2 * 12 and set(paired[paired.family == "primary"].metric) == {"EN", "MI", "SD", "SCD", "VIF", "Qabf"}
    ablation_pairs = pd.read_csv(smoke_study / "tables" / "paired_ablation_sign_synthetic_small_test.csv")
    assert list(dict.fromkeys(ablation_pairs.arm)) == ["sign=true", "sign=false"]  # each setting against magnitude
    assert "| tiny | magnitude | 0 / 2 | none |" in (smoke_study / "tables" / "health.md").read_text()
    main = pd.read_csv(smoke_study / "tables" / "main_synthetic_small_test.csv")
    assert list(main.arm) == ["magnitude", "damgl"] and set(main.seeds) == {2}  # ablation-only arm not in the main table
    ablation = (smoke_study / "tables" / "ablation_sign_synthetic_small_test.md").read_text()
    assert "| tiny | sign=true | 2 |" in ablation and "| tiny | sign=false | 1 of 2 |" in ablation  # seed 1 inverted
    assert "Ablation 'sign' on synthetic test (base: DAMGL), healthy seeds" in ablation


def test_ablation_title_names_the_loss_its_arms_vary() -> None:
    arms = {"s:sign=false": {"type": "damgl", "sign": False}, "damgl": {"type": "damgl"},
            "m:balance=initial": {"type": "magnitude"}, "mix:type=signed_sum": {"type": "signed_sum"}}  # fmt: skip
    spec = {"labels": {"damgl": "DAMGL"}, "arms": arms}
    assert ablated_loss(spec, ["s:sign=false", "damgl"]) == " (base: DAMGL)"
    assert ablated_loss(spec, ["m:balance=initial"]) == " (base: magnitude)"  # no label: the type's own name
    assert ablated_loss(spec, ["damgl", "mix:type=signed_sum"]) == ""  # the switch is the loss type itself


def test_every_table_names_an_ablation_only_arm_as_its_ablation_does() -> None:
    spec = {"loss_arms": ["magnitude", "damgl"], "labels": {"magnitude": "|g|", "axis:axis=magnitude": "|grad|"},
            "ablations": {"sign": {"true": "damgl", "false": "sign:sign=false"},
                          "axis": {"xy": "sign:sign=false", "magnitude": "axis:axis=magnitude"},
                          "scales": {"1.0": "scales:scales=1.0", "1": "scales:scales=1.0"}}}  # fmt: skip
    assert stats.display_labels(spec) == {
        "sign:sign=false": "sign=false",  # its first ablation's name (axis=xy lists the same arm)
        "scales:scales=1.0": "scales=1.0, scales=1",  # one arm under two values
        "magnitude": "|g|",
        "axis:axis=magnitude": "|grad|",  # a label the study declares wins
    }  # no name for damgl: a loss arm keeps its own (its id without a label), never an ablation's 'sign=true'
    tuning = (SETTLED / "tables" / "tuning.md").read_text()
    weights = (SETTLED / "tables" / "weights.md").read_text()
    for shown in ("sign=false", "single_scale=1.0"):  # the tuning table names the arms as the weights table does
        assert f"| PMGI | {shown} |" in tuning and f"| {shown} (x" in weights
    assert "sign:sign=false" not in tuning


def test_an_ablation_uses_the_grid_of_its_ablation_only_arm_wherever_its_default_is_listed() -> None:
    main = {"models": ["pmgi", "densefuse"], "seeds": [0, 1], "test": ["tno"]}
    own = {"models": ["pmgi"], "seeds": [0], "test": ["tno"]}  # ablation_on
    spec = {"loss_arms": ["magnitude", "damgl"], "grids": {"magnitude": main, "damgl": main, "sign:sign=false": own}}
    study = Study(folder=None, spec=spec, values=pd.DataFrame(), runs={})
    assert study.ablation_grid(["damgl", "sign:sign=false"]) == own  # the default listed first (sign: true, false)
    assert study.ablation_grid(["sign:sign=false", "damgl"]) == own
    assert study.ablation_grid(["magnitude", "damgl"]) is None  # every setting is a loss arm: the study's grid


def test_ablation_settings_are_tested_against_the_ablation_default(smoke_study: Path) -> None:
    reports.build_report(smoke_study, figures=False)
    within = pd.read_csv(smoke_study / "tables" / "paired_ablation_sign_vs_damgl_synthetic_small_test.csv")
    assert set(within.arm) == {"sign=false"} and set(within.base) == {"sign=true"}  # the switch, not the loss family
    assert set(within[within.family == "primary"].family_size) == {6}  # 1 model x 1 test set x 6 primary metrics
    runs = smoke_study / "runs"
    for metric in ("EN", "SD", "Qabf"):  # by hand: mean over seeds of the difference of the per-seed image means
        d = [pd.read_csv(runs / f"tiny__sign-sign=false__synthetic_small__s{s}" / "metrics.csv")[metric].mean()
             - pd.read_csv(runs / f"tiny__damgl__synthetic_small__s{s}" / "metrics.csv")[metric].mean() for s in (0, 1)]
        row = within[(within.runs == "all") & (within.metric == metric)].iloc[0]
        assert row["seeds"] == 2 and row["diff"] == pytest.approx(np.mean(d), rel=1e-12), metric
    assert (smoke_study / "tables" / "power_ablation_sign_vs_damgl_synthetic_small_test.md").is_file()


def test_figures_have_the_expected_panels(smoke_study: Path) -> None:
    study = load_study(smoke_study)
    arms = ["magnitude", "damgl"]
    forest = plots.forest_figure(study, "synthetic_small_test", arms, "magnitude", set(study.values.run_id), {})
    assert len(forest.axes) == 12  # one panel per metric and model
    seed = plots.median_seed(study, "tiny", arms, set(study.values.run_id))
    assert seed in (0, 1)  # of two seeds, the lower-ranked middle one
    images = plots.collect_examples(study, "tiny", "synthetic_small_test", arms, seed)
    assert images == ["syn12_000", "syn12_001"]
    grid = plots.qualitative_figure(study, "tiny", "synthetic_small_test", arms, images, seed)
    assert len(grid.axes) == 2 * 4 and all(len(ax.child_axes) == 1 for ax in grid.axes)  # 2 images x 4, each zoomed
    assert [ax.get_title() for ax in grid.axes[:4]] == ["infrared", "visible", *(f"{a} (seed {seed})" for a in arms)]
    assert grid._suptitle.get_text().startswith("tiny on synthetic_small_test")
    for ax in grid.axes:  # the inset never covers the box it zooms into
        (box,) = ax.patches
        x0, y0 = ax.transData.transform((box.get_x(), box.get_y() + box.get_height()))
        x1, y1 = ax.transData.transform((box.get_x() + box.get_width(), box.get_y()))
        inset = ax.child_axes[0].get_position().transformed(ax.figure.transFigure)
        assert x1 <= inset.x0 or inset.x1 <= x0 or y1 <= inset.y0 or inset.y1 <= y0
    direction = plots.direction_figure(study, "tiny", "synthetic_small_test", arms, images[0], seed)
    assert len(direction.axes) == 2 * 2 + 1  # map and histogram per arm, one colour bar


def test_example_panels_show_one_seed_for_every_arm_where_one_is_kept(smoke_study: Path, tmp_path: Path) -> None:
    shutil.copytree(smoke_study, tmp_path / "copy", ignore=shutil.ignore_patterns("examples"))
    study, arms, test = load_study(tmp_path / "copy"), ["magnitude", "damgl"], "synthetic_small_test"
    for seed in (0, 1):
        images = plots.collect_examples(study, "tiny", test, arms, seed)
    kept = study.folder.examples / test
    assert plots.shown_seeds(study, test, images[0], "tiny", arms, 1) == {"magnitude": 1, "damgl": 1}
    (kept / f"{plots.fused_example(images[0], 'tiny', 'damgl', 1)}.png").unlink()
    assert plots.shown_seeds(study, test, images[0], "tiny", arms, 1) == {"magnitude": 0, "damgl": 0}  # still paired
    (kept / f"{plots.fused_example(images[0], 'tiny', 'magnitude', 0)}.png").unlink()
    assert plots.shown_seeds(study, test, images[0], "tiny", arms, 1) == {"magnitude": 1, "damgl": 0}  # none shared
    titles = [ax.get_title() for ax in plots.direction_figure(study, "tiny", test, arms, images[0], 1).axes[:2]]
    assert [t.splitlines()[0] for t in titles] == ["magnitude (seed 1)", "damgl (seed 0)"]


def test_training_figure_draws_seeds_that_stopped_at_different_steps_up_to_the_earliest_stop(smoke_study: Path) -> None:
    study = load_study(smoke_study)
    runs = [r for r in study.runs.values() if r["config"]["arm"]["name"] == "damgl" and r["log"] is not None]
    assert len(runs) == 2 and len(runs[0]["log"]) > 2
    short = len(runs[0]["log"]) - 2
    runs[0]["log"] = runs[0]["log"].iloc[:short]  # as if this seed had stopped on its plateau earlier
    fig = plots.training_figure(study, ["damgl"], {})
    (line,) = fig.axes[0].lines[-1:]
    assert len(line.get_xdata()) == short


def test_direction_error_by_hand() -> None:
    ramp = np.tile(np.linspace(0, 1, 16), (16, 1))  # gradient along +x everywhere inside
    flat = np.zeros_like(ramp)
    angle, mask = plots.direction_error(ramp, ramp, flat)
    assert mask.any() and np.allclose(angle[mask], 0.0)
    angle, mask = plots.direction_error(1 - ramp, ramp, flat)  # reversed edge direction
    inside = mask.copy()
    inside[[0, -1], :] = inside[:, [0, -1]] = False
    assert np.allclose(angle[inside], 180.0)


@pytest.mark.slow
def test_rerun_regenerates_tables_byte_for_byte_without_runs_images(smoke_study: Path, tmp_path: Path) -> None:
    reports.build_report(smoke_study)
    copy = tmp_path / "copy"
    shutil.copytree(smoke_study, copy, ignore=shutil.ignore_patterns("fused", "fused_rgb", "checkpoints", "tables",
                                                                      "summary.md", "figures"))  # fmt: skip
    files = reports.build_report(copy)
    for path in (smoke_study / "tables").iterdir():
        assert (copy / "tables" / path.name).read_bytes() == path.read_bytes(), path.name
    summary = (smoke_study / "summary.md").read_text()
    assert (copy / "summary.md").read_text() == summary
    assert any(p.name == "qualitative_tiny_synthetic_small_test.png" for p in files)  # drawn from examples/


def test_report_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"study.json: not found"):
        reports.build_report(tmp_path)
    assert subprocess.run(["python", "-m", "benchmark", "report", "--results", str(tmp_path)],
                          capture_output=True, text=True).returncode == 2  # fmt: skip


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(smoke_study: Path, tmp_path: Path) -> None:
    reports.build_report(smoke_study, figures=False)
    tex = tmp_path / "t.tex"
    tex.write_text((smoke_study / "tables" / "main_synthetic_small_test.tex").read_text())
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", tex.name], cwd=tmp_path, capture_output=True)
    assert done.returncode == 0, done.stdout[-2000:]


COMMITTED = Path(__file__).resolve().parents[1] / "results" / "real-cpu"
CONVERGED = COMMITTED.parent / "converged"
SETTLED = COMMITTED.parent / "settled"


STUDIES = sorted(p for p in COMMITTED.parent.iterdir() if (p / "study.json").is_file())


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES, ids=[p.name for p in STUDIES])
def test_committed_study_tables_regenerate_byte_for_byte(study: Path, tmp_path: Path) -> None:
    copy = tmp_path / study.name
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns("tables", "figures", "summary.md", "summary.csv"))
    reports.build_report(copy, figures=False)
    committed = sorted(p.name for p in (study / "tables").iterdir())
    assert committed == sorted(p.name for p in (copy / "tables").iterdir())
    for name in [*committed, "../summary.csv"]:
        assert (copy / "tables" / name).read_bytes() == (study / "tables" / name).read_bytes(), name


def test_the_converged_study_runs_from_clean_commits_and_says_where_each_run_stopped() -> None:
    runs = sorted((CONVERGED / "runs").glob("*/done.json"))
    if not runs:
        pytest.skip("no finished run of the converged study is committed yet")
    for done in runs:
        env = json.loads((done.parent / "env.json").read_text())
        assert len(env["git_commit"]) == 40, done.parent.name  # a clean commit: no -dirty suffix
        ending = json.loads(done.read_text())
        assert isinstance(ending["plateau"], bool) and ending["selected"] == "best", done.parent.name
    table = pd.read_csv(CONVERGED / "tables" / "convergence.csv")
    assert int(table.seeds.sum()) == len(runs)  # every finished run is counted as reaching its plateau or not
    collapsed = set()  # recomputed from each run's validation log with pandas' running maximum
    for done in runs:
        config, val = yaml.safe_load((done.parent / "config.yaml").read_text()), pd.read_csv(done.parent / "val_log.csv")
        low = val.criterion < 0.5 * val.criterion.cummax().shift()
        collapsed |= {(config["model"]["name"], config["arm"]["name"], f"seed {config['seed']} at step {s}")
                      for s in val.step[low]}  # fmt: skip
    listed = {(r.model, r.arm, c) for r in table.itertuples() if r.collapsed != "none" for c in r.collapsed.split("; ")}
    assert listed == collapsed


@pytest.mark.skipif(not (CONVERGED / "study.json").is_file(), reason="no committed study under results/converged")
def test_one_test_carries_one_holm_p_and_power_is_exact() -> None:
    """Over every paired table of the committed study with the most tested comparisons (regenerated byte for
    byte by the test above): a test (model, test set, metric, base, run population, raw t p) has one Holm p
    wherever it is printed, and every MDD is the exact noncentral-t value at 0.05 and at 0.05 / family size."""
    frame = pd.concat([pd.read_csv(p) for p in (CONVERGED / "tables").glob("paired_*.csv")], ignore_index=True)
    primary = frame[frame.family == "primary"]
    assert primary.groupby(["model", "test", "metric", "base_id", "runs", "p_t"]).p_holm.nunique().max() == 1
    assert primary.groupby(["model", "test", "metric", "base_id", "runs", "p_t"]).p_holm_study.nunique().max() == 1
    rows = primary.drop_duplicates(["model", "test", "metric", "arm_id", "base_id", "runs"])
    rows = rows[rows.seeds >= 2]
    assert len(rows) == 180 * 2  # the study's 180 primary tests, healthy and all runs
    for r in rows.itertuples():
        assert r.mdd == pytest.approx(significance.minimal_detectable(r.diff_sd, r.seeds), rel=0.01)
        assert r.mdd_holm == pytest.approx(significance.minimal_detectable(r.diff_sd, r.seeds, 0.05 / r.family_size), rel=0.01)
    pmgi_mi = primary[(primary.model == "pmgi") & (primary.metric == "MI") & (primary.arm == "damgl") & (primary.runs == "healthy")]
    assert sorted(round(v, 2) for v in pmgi_mi.drop_duplicates("test").mdd_holm) == [0.22, 0.4, 0.41]


@pytest.mark.skipif(not (CONVERGED / "study.json").is_file(), reason="no committed study under results/converged")
def test_the_converged_write_up_quotes_its_tables_as_committed_and_says_it_is_superseded() -> None:
    readme = (CONVERGED / "README.md").read_text()
    assert "Superseded: the comparisons below are not findings" in readme.split("\n\n")[1]
    tables = CONVERGED / "tables"
    quoted = ["health.md", "convergence.md", "loss_scale.md"] + [
        f"{kind}_{test}.md"
        for kind in ("paired", "power", "paired_ablation_balance", "paired_ablation_balance_vs_damgl",
                     "paired_ablation_single_scale_vs_damgl", "paired_ablation_sign_vs_damgl")
        for test in ("roadscene_test", "tno", "vifb")]  # fmt: skip
    for name in quoted:  # the study's write-up shows these tables as the report wrote them
        assert reports.quoted_table(tables / name).split("\n\n")[-1].rstrip("\n") in readme, name  # its rows


@pytest.mark.skipif(not (COMMITTED / "study.json").is_file(), reason="no committed study under results/real-cpu")
def test_committed_study_claims_nothing_three_seeds_cannot_support() -> None:
    tables = COMMITTED / "tables"
    for path in tables.glob("*.md"):
        for p in re.findall(r"p[=<](\d\.\d+)", path.read_text()):
            assert float(p) >= 0.25, (path.name, p)  # no seed-level p below what 3 seeds can give
    for path in tables.glob("paired_*.csv"):
        frame = pd.read_csv(path)
        assert not frame.survives_holm.any(), path.name
        assert (frame[frame.seeds >= 2].p_signflip >= 0.25).all()
    health = pd.read_csv(tables / "health.csv")
    failed = {(r.model, r.arm, r.seed) for r in health.itertuples() if r.health != "ok"}
    assert {("seafusion", "magnitude", 0), ("seafusion", "axis_max", 0), ("densefuse", "axis_max", 1)} <= failed


def test_a_study_scored_under_several_conventions_reports_each(tmp_path: Path) -> None:
    from PIL import Image

    from benchmark.config import load_config
    from benchmark.metrics import evaluate
    from benchmark.plan import plan

    args = ["--config", str(EXPERIMENTS), "--profile", "smoke", "--results", str(tmp_path), "--set",
            "profiles.smoke.conventions=[vifb, tang]", "--set", "profiles.smoke.seeds=[1, 2]"]  # fmt: skip
    assert run_main(args) == 0
    study = tmp_path / "smoke"
    run = study / "runs" / "tiny__damgl__synthetic_small__s1"
    values = pd.read_csv(run / "metrics.csv")
    assert [c for c in values.columns if c.startswith("vifb:")][:3] == ["vifb:EN", "vifb:SD", "vifb:SF"]
    assert "tang:Nabf" in values.columns and "SSIM" in values.columns  # the default convention keeps plain names
    cfg = load_config(EXPERIMENTS)
    sample = cfg.datasets["synthetic_small_test"].open()[0]
    fused = np.asarray(Image.open(run / "fused" / "synthetic_small_test" / f"{sample.name}.png"), dtype=np.float64)
    for convention in ("vifb", "tang"):  # the stored values are what the convention gives the saved image
        expected = evaluate(fused, sample.ir_raw, sample.vi_raw, convention=convention)
        row = values.iloc[0]
        for m, v in expected.items():
            assert row[f"{convention}:{m}"] == pytest.approx(v, rel=1e-12, nan_ok=True), (convention, m)
    for stem in ("main_synthetic_small_test_vifb", "paired_synthetic_small_test_tang", "power_synthetic_small_test_vifb"):
        assert latex_is_well_formed((study / "tables" / f"{stem}.tex").read_text())
    per_run = pd.read_csv(study / "summary.csv")
    assert per_run.loc[per_run.run_id == run.name, "vifb:EN"].iloc[0] == pytest.approx(values["vifb:EN"].mean())
    summary = (study / "summary.md").read_text()
    assert "## synthetic test, vifb convention" in summary and "; also `tang`," in summary
    paired = pd.read_csv(study / "tables" / "paired_synthetic_small_test_vifb.csv")
    assert set(paired[paired.family == "primary"].metric) == {"vifb:EN", "vifb:SD", "vifb:MI", "vifb:Qabf"}
    main = (study / "tables" / "main_synthetic_small_test_vifb.md").read_text()
    assert "vifb:Qcv ↓" in main and "vifb:Qcb ↑" in main  # each convention's own better direction
    plain = load_config(EXPERIMENTS, ["profiles.smoke.seeds=[1, 2]"])
    with_more = load_config(EXPERIMENTS, ["profiles.smoke.seeds=[1, 2]", "profiles.smoke.conventions=[vifb]"])
    assert "conventions" not in plan(plain, plain.profile("smoke"))[0].config  # older runs keep their hash
    assert plan(with_more, with_more.profile("smoke"))[0].config["conventions"] == ["vifb"]


@pytest.mark.slow
@pytest.mark.parametrize("figures", [True, False])
def test_a_report_leaves_no_table_or_figure_of_an_earlier_one(smoke_study: Path, tmp_path: Path, figures: bool) -> None:
    """One run's metrics.csv deleted: the DAMGL comparisons can no longer be made, and no table or figure that
    showed them survives, with or without figures; the summary says which run is missing."""
    copy = tmp_path / "smoke"
    shutil.copytree(smoke_study, copy)
    reports.build_report(copy, figures=True)
    assert (copy / "tables" / "paired_synthetic_small_test.md").is_file() and (copy / "figures" / "forest_synthetic_small_test.png").is_file()
    (copy / "runs" / "tiny__damgl__synthetic_small__s1" / "metrics.csv").unlink()
    (copy / "runs" / "tiny__damgl__synthetic_small__s0" / "metrics.csv").unlink()
    files = reports.build_report(copy, figures=figures)
    left = {p.name for p in (copy / "tables").iterdir()} | {p.name for p in (copy / "figures").glob("*")}
    assert not [n for n in left if n.startswith(("paired_synthetic", "power_synthetic", "forest_", "crossed_synthetic"))]
    assert figures or not (copy / "figures").exists()  # no figure of the old report beside the new tables
    assert "- missing: tiny__damgl__synthetic_small__s0" in (copy / "summary.md").read_text()
    assert all(p.is_file() for p in files) and not list(copy.glob(".report-staging*"))


@pytest.mark.skipif(not (COMMITTED.parent / "capped" / "study.json").is_file(), reason="no committed capped study")
def test_the_committed_capped_runs_hash_as_the_code_plans_them_now() -> None:
    """A study running from an earlier commit is finished and reported by the current code: every committed
    run of capped has the config hash that today's plan gives it (the hash covers the dataset identities,
    so this needs the data)."""
    from benchmark.config import load_config
    from benchmark.plan import plan

    need(real_data() / "RoadScene")
    cfg = load_config(COMMITTED.parents[1] / "experiments.yaml")
    planned = {r.run_id: r.config_hash for r in plan(cfg, cfg.profile("capped"))}
    runs = sorted((COMMITTED.parent / "capped" / "runs").glob("*/config.yaml"))
    assert runs
    for path in runs:
        assert yaml.safe_load(path.read_text())["config_hash"] == planned[path.parent.name], path.parent.name
    # stage 3 (profile settled) reuses these runs where tuning selects the recipe's weight: same hashes
    settled = cfg.profile("settled")
    at_one = {arm: {"pmgi": 1.0} for arm in settled.tune["arms"]}
    stage3 = {r.run_id: r.config_hash for r in plan(cfg, settled, scales=at_one) if r.stage == "study"}
    assert len(stage3) == 24 and all(planned[rid] == h for rid, h in stage3.items())
    # stage 2 trains in capped (tune.apply: false) and settled copies its 48 trials: same run ids and hashes
    trials = {r.run_id: r.config_hash for r in plan(cfg, cfg.profile("capped")) if r.stage == "tune"}
    assert len(trials) == 48 and trials == {r.run_id: r.config_hash for r in plan(cfg, settled) if r.stage == "tune"}


@pytest.mark.parametrize("name", ["capped", "settled"])
def test_every_run_of_a_settling_study_trained_to_its_cap_from_a_clean_commit_and_scored_its_best_validation(
        name: str) -> None:  # fmt: skip
    """Each finished run (study seeds and tuning trials alike) comes from a clean commit, trained every step of
    its budget (no early stop), keeps its validation log, and records as scored step the first step with the
    highest validation criterion (Qabf + SSIM: higher is better). capped holds both models at three arms of
    six or more seeds."""
    folder = COMMITTED.parent / name
    runs = sorted((folder / "runs").glob("*/done.json"))
    if not runs:
        pytest.skip(f"no finished run under results/{name}")
    tuning_seeds = set(json.loads((folder / "study.json").read_text()).get("tune", {}).get("seeds", []))
    seeds: dict[tuple[str, str], set[int]] = {}  # the study's seeds of each model and arm, tuning trials left out
    for path in runs:
        run, done = path.parent, json.loads(path.read_text())
        config = yaml.safe_load((run / "config.yaml").read_text())
        commit = json.loads((run / "env.json").read_text())["git_commit"]
        assert re.fullmatch(r"[0-9a-f]{40}", commit), f"{run.name}: commit {commit}"  # no '-dirty' suffix
        assert done["stopped_at"] == done["steps"] == config["steps"], run.name
        assert config["val"]["criterion"] == "Qabf+SSIM", run.name
        val = pd.read_csv(run / "val_log.csv")
        first_best = int(val.step.iloc[int(val.criterion.to_numpy().argmax())])  # argmax: the earliest of ties
        assert done["scored_step"] == done["select"]["best"] == first_best, run.name
        if config["seed"] not in tuning_seeds:
            seeds.setdefault((config["model"]["name"], config["arm"]["name"]), set()).add(config["seed"])
    if name == "capped":
        arms = {model: sum(len(s) >= 6 for (m, _), s in seeds.items() if m == model) for model, _ in seeds}
        assert arms == {"pmgi": 4 + 1, "densefuse": 3}  # magnitude, DAMGL, signed_sum and both PMGI ablations


def test_the_study_wide_family_counts_every_planned_test_before_its_runs_exist() -> None:
    """results/capped plans 144 primary tests (DAMGL and signed_sum against magnitude, 36 each; each of two PMGI
    ablation settings against magnitude and against DAMGL, 18 each); with only some arms' seeds finished, the
    study-wide Holm still adjusts over all 144, the untested at p = 1, so it can only stay or fall later."""
    study = load_study(CONVERGED.parent / "capped")
    primary = study.spec["primary_metrics"]
    assert reports._planned_tests(study, primary) == 36 + 36 + 2 * (18 + 18)
    # real-cpu: 3 main arms x 54, SeAFusion on RoadScene test: 3 scales settings and sign=false against magnitude
    # and DAMGL (8 x 6), axis=magnitude against magnitude (6); sign=false, listed by two ablations, counts once
    real_cpu = load_study(CONVERGED.parent / "real-cpu")
    assert reports._planned_tests(real_cpu, real_cpu.spec["primary_metrics"]) == 3 * 54 + 8 * 6 + 6
    # every paired table: the main arms' and each ablation setting's against magnitude and against DAMGL; an
    # ablation table repeats its default's rows against magnitude, one test that must count once
    frame = pd.concat([pd.read_csv(path) for path in sorted((CONVERGED.parent / "capped" / "tables").glob("paired_*.csv"))],
                      ignore_index=True)  # fmt: skip
    tested = frame[(frame.runs == "healthy") & (frame.family == "primary") & frame.tested.astype(bool)]
    tested = tested.drop_duplicates(["model", "test", "arm_id", "base_id", "metric"])
    expected = significance.family_holm(tested.p_t.tolist(), [True] * len(tested), 144)
    assert tested.p_holm_study.tolist() == pytest.approx(expected, rel=1e-9)
    assert len(tested) >= 36 and (tested.p_holm_study >= tested.p_holm - 1e-12).all()  # a larger family, never a smaller p
    survivors = tested[tested.p_holm_study < 0.05]  # can only grow as the study's other tests come in
    assert ("pmgi", "damgl", "roadscene_test", "Qabf") in set(zip(survivors.model, survivors.arm_id, survivors.test, survivors.metric))


@pytest.mark.parametrize(
    "seeds,start",
    [
        ([6, 6, 1], "seeds: 1-6 per compared arm; 2 primary comparisons have 6 or more and are tested (paired t over "
                    "seeds, Holm over families of up to 36), 1 has fewer and is not"),
        ([6, 6, 6], "seeds: 6 per compared arm; every comparison is tested (paired t over seeds, Holm over its family of 36)"),
        ([2, 2, 1], "seeds: 1 per compared arm, fewer than the 6 a test needs, so no comparison is tested"),
    ],
)  # fmt: skip
def test_the_closing_line_says_which_comparisons_are_tested(tmp_path: Path, seeds: list[int], start: str) -> None:
    """A study part of whose arms have six seeds says how many comparisons are tested, not that none is."""
    rows = [{"runs": "all", "family": "primary", "seeds": s, "family_size": 36, "tested": s >= 6} for s in seeds]
    paired = tmp_path / "paired_tno.csv"
    pd.DataFrame(rows).to_csv(paired, index=False)
    study = Study(type("Folder", (), {"tables": tmp_path})(), {"grids": {}, "arms": {}}, pd.DataFrame(), {}, [], {}, {})
    (line,) = reports.closing_lines(study, [paired])
    assert line.startswith(start)


def test_agreement_of_conclusions_made_several_ways_by_hand() -> None:
    """'agree' needs every way tested; two tested ways that conclude differently 'differ' whatever the rest."""
    rows = {"agree": ("none", "none"), "differ": ("improvement", "none"), "not tested": ("not tested", "not tested"),
            "incomplete": ("none", "not tested"), "incomplete, one side not run": ("worsening", None),
            "not tested, one side not run": ("not tested", None)}  # fmt: skip
    frame = pd.DataFrame(list(rows.values()), columns=["conclusion_best", "conclusion_last"])
    assert reports._agreement(frame, ["best", "last"]) == [k.split(",")[0] for k in rows]
    three = pd.DataFrame([("improvement", "not tested", "worsening")], columns=["conclusion_a", "conclusion_b", "conclusion_c"])
    assert reports._agreement(three, ["a", "b", "c"]) == ["differ"]


@pytest.mark.parametrize("study", STUDIES, ids=[p.name for p in STUDIES])
def test_committed_sensitivity_tables_call_agreed_only_what_every_rule_tested(study: Path) -> None:
    path = study / "tables" / "sensitivity.csv"
    if not path.is_file():
        pytest.skip(f"{study.name} compares no arms under several rules")
    frame = pd.read_csv(path)
    rules = [c.removeprefix("p_holm_") for c in frame.columns if c.startswith("p_holm_")]
    tested = frame[[f"p_holm_{r}" for r in rules]].notna().all(axis=1)
    assert (frame.conclusions[~tested] != "agree").all() and (frame.conclusions[tested] != "incomplete").all()
    assert set(frame.conclusions[tested]) <= {"agree", "differ"}


INTERVAL = re.compile(r"[+-]\d+\.\d+ \[[+-]\d+\.\d+, [+-]\d+\.\d+\]")
HOLM = re.compile(r"Holm (?:p )?(<0\.001|\d\.\d+)")


@pytest.mark.parametrize("name", ["capped", "settled"])
def test_the_write_up_quotes_its_intervals_and_holm_p_values_from_its_tables(name: str) -> None:
    """Each interval and Holm p in a settling study's write-up is printed, as written there, in one of its
    tables (a sentence quotes the report, never a number rounded or copied by hand)."""
    folder = COMMITTED.parent / name
    if not (folder / "README.md").is_file():
        pytest.skip(f"no write-up under results/{name}")
    readme = " ".join((folder / "README.md").read_text().split())  # a quote may wrap across lines
    tables = "\n".join(p.read_text() for p in (folder / "tables").glob("*.md"))
    intervals, holm = INTERVAL.findall(readme), HOLM.findall(readme)
    assert intervals and holm
    assert [i for i in intervals if i not in tables] == []
    printed = set(HOLM.findall(tables))
    assert [p for p in holm if p not in printed] == []
    for quote in reports.QUOTE.finditer((folder / "README.md").read_text()):  # quoted tables are the current ones
        assert quote["body"] == reports.quoted_table(folder / "tables" / quote["name"]), quote["name"]


def test_report_refreshes_the_tables_a_write_up_quotes_and_nothing_else(smoke_study: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    from benchmark.cli import main

    copy = tmp_path / "smoke"
    shutil.copytree(smoke_study, copy)
    prose = "The sentence the author wrote stays as written, | pipes and all.\n"
    stale = "**Run health: failed runs out of seeds**\n\n| model | arm | failed / seeds | failed runs |\n| old | row |\n"
    write_up = copy / "README.md"
    write_up.write_text(f"# smoke\n\n{prose}\n<!-- quote: tables/health.md -->\n{stale}<!-- end quote -->\n\n{prose}")
    assert main(["report", "--results", str(copy), "--no-figures"]) == 0
    assert f"write-up: {write_up} quotes 1 tables" in capsys.readouterr().out
    health = (copy / "tables" / "health.md").read_text().split("\n\n")
    assert health[1].startswith("| model | arm |")  # the title, a blank line, the table, a blank line, the notes
    expected = f"# smoke\n\n{prose}\n<!-- quote: tables/health.md -->\n{health[0]}\n\n{health[1]}\n<!-- end quote -->\n\n{prose}"
    assert write_up.read_text() == expected
    write_up.write_text(expected.replace("tables/health.md", "tables/no_such_table.md"))
    assert main(["report", "--results", str(copy), "--no-figures"]) == 2
    assert f"{write_up}: quotes tables/no_such_table.md, which this report did not write" in capsys.readouterr().err
    assert "no_such_table" in write_up.read_text()  # left as it was
