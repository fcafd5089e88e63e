"""Training to convergence: epoch budgets, validation during training, plateau stopping, best-checkpoint choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark.config import ConfigError, load_config
from benchmark.fuse import fuse_run
from benchmark.plan import plan
from benchmark.reports.stats import collapsed_validations
from benchmark.runner import main
from benchmark.store import RunDir
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
    assert "| tiny | DAMGL | 1 of 1 seeds | 15 | 5 |" in table


def test_select_best_fuses_the_recorded_best_checkpoint(tmp_path: Path) -> None:
    stop = ["--set", "profiles.smoke.stop={criterion: Qabf+SSIM, patience: 3}"]
    assert main(args(tmp_path, *stop)) == 0
    run = RunDir(run_dir(tmp_path))
    done = json.loads(run.done.read_text())
    assert done["selected"] == "best" and done["best_step"] is not None
    cfg = load_config(EXPERIMENTS, [v for k, v in zip(VALIDATED[::2], VALIDATED[1::2]) if k == "--set"] + [stop[1]])
    spec = next(r for r in plan(cfg, cfg.profile("smoke")) if r.arm == "damgl")
    model = cfg.model("tiny").build()
    model.load_state_dict(torch.load(run.best, weights_only=True))
    again = RunDir(tmp_path / "again")
    fuse_run(model, spec, cfg, again, "cpu", progress=False)
    assert again.metrics.read_bytes() == run.metrics.read_bytes()


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
        (["profiles.smoke.stop={criterion: Qabf+intensity, patience: 2}", "profiles.smoke.val={dataset: synthetic_test, every: 5}"],
         "mixes metrics and objective parts"),
        (["profiles.smoke.stop={criterion: Qabf, patience: 2}"], r"stop: needs 'val'"),
        (["profiles.smoke.val={dataset: synthetic_small_test, every: 5}"], "is also a training or test set"),
        (["profiles.smoke.select=best"], "select: best needs 'stop'"),
    ],
)  # fmt: skip
def test_validation_settings_are_checked(change: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(EXPERIMENTS, change)
