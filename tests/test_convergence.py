"""Training to convergence: epoch budgets, validation during training, plateau stopping, selection rules."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmark import selection
from benchmark.cli import run as main
from benchmark.config import ConfigError, load_config
from benchmark.plan import plan
from benchmark.reports.stats import collapsed_validations
from benchmark.selection import Plateau, first_gain
from benchmark.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments.yaml"
VALIDATED = ["--set", "profiles.smoke.steps=null", "--set", "profiles.smoke.epochs=4",  # 10 steps an epoch: 40 steps
             "--set", "profiles.smoke.val={dataset: synthetic_test, every: 5}", "--set", "profiles.smoke.select=best",
             "--no-figures"]  # fmt: skip


def args(results: Path, *extra: str) -> list[str]:
    return ["--config", str(EXPERIMENTS), "--profile", "smoke", "--results", str(results), *VALIDATED, *extra]


def run_dir(results: Path, arm: str = "damgl") -> Path:
    return results / "smoke" / "runs" / f"tiny__{arm}__synthetic_small__s0"


def test_a_forced_plateau_stops_the_run_and_is_recorded(tmp_path: Path) -> None:
    stop = ["--set", "profiles.smoke.stop={criterion: Qabf+SSIM, patience: 2}", "--set", "profiles.smoke.lr=1.0e-12"]
    assert main(args(tmp_path, *stop)) == 0  # a learning rate of 1e-12 leaves the validation criterion flat
    run = run_dir(tmp_path)
    rows = run.joinpath("val_log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,criterion,Qabf,SSIM" and [r.split(",")[0] for r in rows[1:]] == ["5", "10", "15"]
    assert len({r.split(",")[2] for r in rows[1:]}) == 1  # the same criterion at every validation
    done = json.loads(run.joinpath("done.json").read_text())
    assert done["plateau"] is True and done["stopped_at"] == 15 and done["steps"] == 15 and done["best_step"] == 5
    log = run.joinpath("train_log.csv").read_text().splitlines()
    assert int(log[-1].split(",")[0]) == 14  # logged every 2 steps: training ended at step 15
    table = (tmp_path / "smoke" / "tables" / "convergence.md").read_text()
    assert "| tiny | DAMGL | 1 of 1 seeds | 15 | 5 | 5 |" in table


IDENTITY = ["--set", "datasets.val_copy={synthetic: {count: 2, height: 64, width: 80, seed: 12}}",  # the test images
            "--set", "profiles.smoke.val={dataset: val_copy, every: 1}", "--set", "profiles.smoke.steps=12",
            "--set", "profiles.smoke.stop={criterion: Qabf+SSIM, patience: 4, min_delta: 0.5}",
            "--set", "profiles.smoke.seeds=[0, 1]", "--no-figures"]  # fmt: skip


def test_the_scored_network_is_the_best_validations(tmp_path: Path) -> None:
    """Validation images equal to the test images: each run's test means of Qabf and SSIM are its best
    validation row, although the criterion climbs by less than min_delta (0.5) after the first validation, so
    the old rule (best.pt replaced only on a gain above min_delta) scored the first validation's network."""
    common = ["--config", str(EXPERIMENTS), "--profile", "smoke", *IDENTITY]
    assert main([*common, "--results", str(tmp_path), "--set", "profiles.smoke.select=[best, last, plateau]"]) == 0
    firsts = 0
    for run in sorted((tmp_path / "smoke" / "runs").iterdir()):
        val, done = pd.read_csv(run / "val_log.csv"), json.loads((run / "done.json").read_text())
        best = val.iloc[int(val.criterion.to_numpy().argmax())]
        assert done["selected"] == "best" and done["scored_step"] == best.step == done["best_step"]
        test = pd.read_csv(run / "metrics.csv")
        assert abs(test.Qabf.mean() - best.Qabf) < 1e-9 and abs(test.SSIM.mean() - best.SSIM) < 1e-9
        last = pd.read_csv(run / "select" / "last" / "metrics.csv")  # the last validation is the last step
        assert abs(last.Qabf.mean() - val.Qabf.iloc[-1]) < 1e-9 and done["select"]["last"] == val.step.iloc[-1]
        assert done["select"]["plateau"] == val.step.iloc[0]  # nothing beat the first by 0.5: the reference stays
        assert first_gain(val.step.tolist(), val.criterion.tolist(), True, 0.5) == val.step.iloc[0]
        firsts += best.step != val.step.iloc[0]
    assert firsts >= 1  # at least one run whose best validation is not its first: the old rule would have failed
    table = (tmp_path / "smoke" / "tables" / "sensitivity.md").read_text()
    assert table.count("| tiny | synthetic test | DAMGL |") == 6  # every primary metric under all three rules
    assert "| best (primary) | last | plateau | conclusions |" in table
    runs = pd.read_csv(tmp_path / "smoke" / "tables" / "runs.csv")  # one row a run, read back from its done.json
    arms = json.loads((tmp_path / "smoke" / "study.json").read_text())["arms"]
    assert list(zip(runs.arm, runs.seed)) == sorted(zip(runs.arm, runs.seed), key=lambda k: (list(arms).index(k[0]), k[1]))
    assert len(runs) == len(list((tmp_path / "smoke" / "runs").iterdir())) == 2 * len(set(runs.arm))
    for r in runs.itertuples():
        done = json.loads((tmp_path / "smoke" / "runs" / r.run_id / "done.json").read_text())
        assert [r.step_best, r.step_last, r.step_plateau] == [done["select"][k] for k in ("best", "last", "plateau")]
        assert r.seconds == done["seconds"] and r.gradient_scale == 1.0


def test_keep_weights_selected_keeps_only_what_a_rule_picks(tmp_path: Path) -> None:
    common = ["--config", str(EXPERIMENTS), "--profile", "smoke", *IDENTITY, "--only", "loss=damgl,seed=0"]
    assert main([*common, "--results", str(tmp_path / "all"), "--set", "profiles.smoke.select=[best, last]"]) == 0
    assert main([*common, "--results", str(tmp_path / "kept"), "--set", "profiles.smoke.select=[best, last]",
                 "--set", "profiles.smoke.keep_weights=selected"]) == 0  # fmt: skip
    everything, kept = (tmp_path / name / "smoke" / "runs" / "tiny__damgl__synthetic_small__s0" for name in ("all", "kept"))
    done = json.loads((kept / "done.json").read_text())
    assert sorted(p.name for p in (everything / "checkpoints" / "val").glob("*.pt")) == [f"{s}.pt" for s in range(1, 6)]
    assert {int(p.stem) for p in (kept / "checkpoints" / "val").glob("*.pt")} == set(done["select"].values())
    assert (kept / "metrics.csv").read_bytes() == (everything / "metrics.csv").read_bytes()


@pytest.mark.parametrize(
    "values,best,plateau,old",
    [
        ([1.00, 1.004, 1.008, 1.012, 1.016, 1.015], 5, 4, 1),  # climbs by 0.004 < min_delta: the old rule kept step 1
        ([1.0, 1.2, 1.1, 1.2, 1.3, 1.25], 5, 5, 5),  # ties go to the earliest; a gain above 0.01 moves every rule
        ([1.0, float("nan"), 0.5, 0.9], 1, 1, 1),  # a collapse or NaN is never best
    ],
)  # fmt: skip
def test_selection_rules_on_hand_made_histories(values: list[float], best: int, plateau: int, old: int) -> None:
    steps = list(range(1, len(values) + 1))
    rule = Plateau(patience=3, min_delta=0.01)
    assert selection.pick("best", steps, values, True, rule) == best
    assert selection.pick("plateau", steps, values, True, rule) == plateau
    assert selection.pick("last", steps, values, True, rule) == len(values)
    assert first_gain(steps, values, True, 0.01) == old
    lower = [-v for v in values]  # an objective part: lower is better, the same picks
    assert selection.pick("best", steps, lower, False, rule) == best and first_gain(steps, lower, False, 0.01) == old


def test_the_plateau_rule_stops_where_patience_runs_out() -> None:
    values = [1.0, 1.2, 1.201, 1.205, 1.209, 1.5]  # three validations within 0.01 of 1.2: reached at the fifth
    assert selection.walk(values, True, Plateau(3, 0.01)) == selection.Walk(reference=1, reached=4)
    assert selection.pick("plateau", [10, 20, 30, 40, 50, 60], values, True, Plateau(3, 0.01)) == 20
    assert selection.walk(values, True, Plateau(4, 0.01)).reached is None  # 1.5 came in time


def test_resume_after_a_kill_gives_the_same_validation_log_and_metrics(tmp_path: Path, monkeypatch) -> None:
    stop = ["--set", "profiles.smoke.stop={criterion: Qabf+SSIM, patience: 100}", "--only", "loss=damgl"]
    assert main(args(tmp_path / "whole", *stop)) == 0
    real_step, calls = Trainer.train_step, {"n": 0}

    def crash(self, ir, vis):
        calls["n"] += 1
        if calls["n"] == 28:  # after the validation at step 25 and the checkpoint at step 20
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, ir, vis)

    monkeypatch.setattr(Trainer, "train_step", crash)
    with pytest.raises(KeyboardInterrupt):
        main(args(tmp_path / "killed", *stop))
    assert [r.split(",")[0] for r in run_dir(tmp_path / "killed").joinpath("val_log.csv").read_text().splitlines()[1:]] == [
        "5", "10", "15", "20", "25"]  # fmt: skip
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(args(tmp_path / "killed", *stop)) == 0
    for name in ("val_log.csv", "metrics.csv"):
        assert run_dir(tmp_path / "killed").joinpath(name).read_bytes() == run_dir(tmp_path / "whole").joinpath(name).read_bytes()
    picked = [{k: v for k, v in json.loads(run_dir(tmp_path / r).joinpath("done.json").read_text()).items()
               if k in ("select", "scored_step", "best_step", "plateau", "stopped_at")} for r in ("killed", "whole")]  # fmt: skip
    assert picked[0] == picked[1] and picked[0]["select"] == {"best": picked[0]["best_step"]}


def test_runs_short_of_their_plateau_are_labelled_and_validation_is_timed(tmp_path: Path) -> None:
    stop = ["--set", "profiles.smoke.stop={criterion: Qabf+SSIM, patience: 100}"]  # never reached in 40 steps
    assert main([a for a in args(tmp_path, *stop) if a != "--no-figures"]) == 0
    tables = tmp_path / "smoke" / "tables"
    assert "| tiny | DAMGL | 0 of 1 seeds | 40 |" in (tables / "convergence.md").read_text()
    paired = (tables / "paired_synthetic_small_test.md").read_text()
    assert "| tiny | DAMGL | 1; 2 short of plateau |" in paired and "'k short of plateau'" in paired
    done = json.loads(run_dir(tmp_path).joinpath("done.json").read_text())
    assert 0 < done["val_seconds"] < done["seconds"]
    added = 100 * done["val_seconds"] / (done["seconds"] - done["val_seconds"])
    frame = (tables / "convergence.csv").read_text().splitlines()
    assert frame[0].endswith(",validation_added_pct")
    assert abs(float(frame[2].split(",")[-1]) - added) < 1e-6 * added  # the damgl row, mean over its one run
    assert (tmp_path / "smoke" / "figures" / "validation_curves.png").stat().st_size > 10_000


def test_a_collapsed_validation_falls_below_half_the_best_before_it() -> None:
    # best before each: -, 1.0, 1.2, 1.2, 1.2, 1.3, 1.3; half of it: 0.6 then 0.65
    criterion = [1.0, 1.2, 0.59, 0.61, 1.3, 0.64, float("nan")]
    assert collapsed_validations(criterion) == [2, 5, 6]
    assert collapsed_validations([0.01, 0.02, 0.03]) == []  # a low start is not a collapse
    assert collapsed_validations([float("nan"), 0.5, 0.2]) == [2]  # nothing before the first number


def test_validation_defaults_to_once_an_epoch() -> None:
    cfg = load_config(EXPERIMENTS, ["profiles.smoke.steps=null", "profiles.smoke.epochs=3",
                                    "profiles.smoke.val={dataset: synthetic_test}"])  # fmt: skip
    runs = plan(cfg, cfg.profile("smoke"))
    # 4 images of 64 x 80 in patches of 2 x 32 x 32: 10 steps an epoch
    assert {r.config["steps_per_epoch"] for r in runs} == {10.0} and {r.config["val"]["every"] for r in runs} == {10}


def test_fixed_budget_comparisons_say_convergence_is_unknown(tmp_path: Path) -> None:
    assert main(["--config", str(EXPERIMENTS), "--profile", "smoke", "--results", str(tmp_path), "--no-figures"]) == 0
    paired = (tmp_path / "smoke" / "tables" / "paired_synthetic_small_test.md").read_text()
    assert "trained for a fixed budget without validation: whether they had converged is not known" in paired
    assert not (tmp_path / "smoke" / "tables" / "convergence.md").exists()


@pytest.mark.parametrize(
    "change,message",
    [
        (["profiles.smoke.stop={criterion: gradient, patience: 2}", "profiles.smoke.val={dataset: synthetic_test, every: 5}"],
         "stop.criterion: 'gradient' depends on the arm"),
        (["profiles.smoke.plateau={criterion: SSIM, patience: 2}",
          "profiles.smoke.val={dataset: synthetic_test, every: 5, criterion: Qabf}"], "the criterion is given twice and differs"),
        (["profiles.smoke.plateau={patience: 2}", "profiles.smoke.stop={criterion: Qabf, patience: 2}",
          "profiles.smoke.val={dataset: synthetic_test}"], "give 'stop' .* or 'plateau'"),
        (["profiles.smoke.select=[best, plateau]", "profiles.smoke.val={dataset: synthetic_test}"],
         r"select\[1\]: plateau needs 'stop' or 'plateau'"),
        (["profiles.smoke.select=[best, best]", "profiles.smoke.val={dataset: synthetic_test}"], "distinct rules"),
        (["profiles.smoke.select=bset", "profiles.smoke.val={dataset: synthetic_test}"], "did you mean 'best'"),
        (["profiles.smoke.keep_weights=some"], "keep_weights: 'some' is not one of"),
        (["profiles.smoke.stop={criterion: Qabf+intensity, patience: 2}", "profiles.smoke.val={dataset: synthetic_test, every: 5}"],
         "mixes metrics and objective parts"),
        (["profiles.smoke.stop={criterion: Qabf, patience: 2}"], r"stop: needs 'val'"),
        (["profiles.smoke.val={dataset: synthetic_small_test, every: 5}"], "is also a training or test set"),
        (["profiles.smoke.select=best"], "select: best needs 'val'"),
    ],
)  # fmt: skip
def test_validation_settings_are_checked(change: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(EXPERIMENTS, change)
