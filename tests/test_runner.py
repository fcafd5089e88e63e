"""The runner: config validation, the smoke profile, skip/resume/lock, failures and launchers."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from baselines import build as baselines_build
from benchmark import interrupts, slurm
from benchmark.cli import run as main
from benchmark.config import ConfigError, load_config
from benchmark.launch import execute
from benchmark.metrics import metric_names
from benchmark.plan import plan
from benchmark.reports import format_summary
from benchmark.store import ResultsFolder, RunDir, RunLock, Study
from benchmark.train import Trainer
from tests.conftest import need, real_data

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments.yaml"


def smoke_args(results: Path, *extra: str) -> list[str]:
    return ["--config", str(EXPERIMENTS), "--profile", "smoke", "--results", str(results), *extra]


def metrics_of(results: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in sorted((results / "smoke" / "runs").glob("*/metrics.csv"))}


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("smoke")
    assert main(smoke_args(results)) == 0
    return results


def test_smoke_profile_writes_complete_runs(smoke_results: Path) -> None:
    runs = sorted((smoke_results / "smoke" / "runs").iterdir())
    assert [r.name for r in runs] == ["tiny__damgl__synthetic_small__s0", "tiny__magnitude__synthetic_small__s0"]
    for run in runs:
        config = yaml.safe_load((run / "config.yaml").read_text())
        done = json.loads((run / "done.json").read_text())
        assert config["config_hash"] == done["config_hash"] and done["steps"] == 6
        assert config["arm"]["type"] in ("magnitude", "damgl") and config["seed"] == 0
        env = json.loads((run / "env.json").read_text())
        assert {"torch", "git_commit", "device", "seed"} <= set(env)
        log = (run / "train_log.csv").read_text().splitlines()
        assert log[0] == "step,phase,lr,loss,intensity,gradient,seconds" and len(log) == 5  # steps 1, 2, 4, 6
        assert len(list((run / "fused" / "synthetic_small_test").glob("*.png"))) == 2
        assert len(list((run / "fused_rgb" / "synthetic_small_test").glob("*.png"))) == 2
        assert (run / "metrics.csv").read_text().startswith("test,image,EN,SD,SF,AG,MI,SCD,VIF,Qabf,SSIM,CC,PSNR,MSE")
    summary = (smoke_results / "smoke" / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and summary[0].startswith("run_id,model,arm,seed,test,EN")
    assert summary[0].endswith(",MSE,nan_values")


def test_summary_counts_and_flags_nan_values() -> None:
    rows = []
    for seed, cc in ((0, [0.5, float("nan"), float("nan")]), (1, [0.7, 0.7, 0.7])):
        for image, value in zip("abc", cc):
            rows.append({"run_id": f"m__a__t__s{seed}", "model": "m", "arm": "a", "seed": seed, "test": "t",
                         "image": image, **{n: 1.0 for n in metric_names()}, "CC": value})  # fmt: skip
    spec = {"arms": {"a": {}}, "grids": {"a": {"models": ["m"], "seeds": [0, 1], "test": ["t"]}}}
    text = format_summary(Study(ResultsFolder("unused"), spec, pd.DataFrame(rows), {}))
    header, line = text.splitlines()[:2]
    assert line.split()[header.split().index("CC")] == "0.60*" and line.split()[header.split().index("SCD")] == "1.00"
    assert "* m__a__t__s0 on t: NaN values excluded from the means (CC:2)" in text
    assert line.split()[header.split().index("health")] == "nan:1/2"  # seed 0: most images have a NaN


def test_the_terminal_summary_flags_each_arms_unhealthy_seeds() -> None:
    rows = []
    for arm, seed, ssim in (("a", 0, 0.8), ("a", 1, 0.8), ("b", 0, -0.83), ("b", 1, 0.8)):  # b seed 0: inverted
        for image in "abc":
            rows.append({"run_id": f"m__{arm}__t__s{seed}", "model": "m", "arm": arm, "seed": seed, "test": "t",
                         "image": image, **{n: 20.0 for n in metric_names()}, "SSIM": ssim, "CC": 0.5})  # fmt: skip
    grid = {"models": ["m"], "seeds": [0, 1], "test": ["t"]}
    spec = {"arms": {"a": {}, "b": {}}, "grids": {"a": grid, "b": grid}}
    lines = format_summary(Study(ResultsFolder("unused"), spec, pd.DataFrame(rows), {})).splitlines()
    column = lines[0].split().index("health")
    assert [x.split()[column] for x in lines[1:3]] == ["ok", "inverted:1/2"]
    assert lines[3].startswith("health: runs whose fused images are not usable fusions")


def test_rerun_skips_completed_runs(smoke_results: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = next((smoke_results / "smoke" / "runs").glob("*/checkpoints/last.pt"))
    before = ckpt.stat().st_mtime_ns
    assert main(smoke_args(smoke_results)) == 0
    out = capsys.readouterr().out
    assert out.count("done     tiny__") == 2 and "trained" not in out
    assert ckpt.stat().st_mtime_ns == before
    assert main(smoke_args(smoke_results, "--dry-run")) == 0
    assert capsys.readouterr().out.count("done     tiny__") == 2


def test_interrupted_run_resumes_to_the_same_metrics(smoke_results: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    real_step = Trainer.train_step
    calls = {"n": 0}

    def crash_after_four(self, ir, vis):
        calls["n"] += 1
        if calls["n"] == 5:  # the checkpoint at step 3 exists; step 4 was done but not saved
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, ir, vis)

    monkeypatch.setattr(Trainer, "train_step", crash_after_four)
    with pytest.raises(KeyboardInterrupt):
        main(smoke_args(tmp_path, "--only", "loss=damgl"))
    run = RunDir(tmp_path / "smoke" / "runs" / "tiny__damgl__synthetic_small__s0")
    assert run.ckpt.is_file() and not run.done.is_file() and not run.lock.exists()
    assert torch.load(run.ckpt, weights_only=False)["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(smoke_args(tmp_path, "--only", "loss=damgl")) == 0
    assert metrics_of(tmp_path)["tiny__damgl__synthetic_small__s0"] == metrics_of(smoke_results)["tiny__damgl__synthetic_small__s0"]
    assert len(run.log.read_text().splitlines()) == 5  # no duplicated log rows after the resume
    assert "tiny__damgl__synthetic_small__s0: resuming from last.pt at step 3" in capsys.readouterr().err
    assert json.loads(run.done.read_text())["resumed_from"] == [3]  # done.json records the resume


def test_changed_config_is_never_reused(smoke_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "copy"
    shutil.copytree(smoke_results, results)
    assert main(smoke_args(results, "--set", "profiles.smoke.steps=7")) == 2
    assert "holds a run with a different configuration" in capsys.readouterr().err


def test_lock_keeps_a_second_process_off(tmp_path: Path) -> None:
    cfg = load_config(EXPERIMENTS)
    run = plan(cfg, cfg.profile("smoke"))[0]
    run_dir = RunDir(tmp_path / "runs" / run.run_id)
    run_dir.root.mkdir(parents=True)
    holder = RunLock(run_dir.lock)
    assert holder.acquire()
    try:
        outcome = execute(run, tmp_path, "cpu", progress=False)
        assert outcome.status == "locked"
    finally:
        holder.release()
    run_dir.lock.write_text("somewhere-else-entirely:1")  # another host's lock is respected
    assert execute(run, tmp_path, "cpu", progress=False).status == "locked"
    run_dir.lock.write_text(f"{__import__('socket').gethostname()}:999999999")  # a dead process's lock is taken over
    assert execute(run, tmp_path, "cpu", progress=False).status == "trained"


def test_after_a_stop_request_finished_runs_stay_done_and_unstarted_ones_stop(smoke_results: Path, tmp_path: Path,
                                                                           monkeypatch) -> None:  # fmt: skip
    cfg = load_config(EXPERIMENTS)
    monkeypatch.setattr(interrupts, "_requested", [signal.SIGTERM])
    for run in plan(cfg, cfg.profile("smoke")):
        assert execute(run, smoke_results / "smoke", "cpu", progress=False).status == "done"
        with pytest.raises(interrupts.Interrupted, match=f"{run.run_id} stopped before it started"):
            execute(run, tmp_path, "cpu", progress=False)
    assert not list(tmp_path.iterdir())  # nothing written for the runs that never started


class ExplodingNet(torch.nn.Module):
    """Returns NaN from its third training call on."""

    from examples.tiny_fusion import TinyFusion

    recipe = TinyFusion.recipe

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls = 0

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        out = (ir + vis) / 2 * self.scale
        return out * float("nan") if self.calls >= 3 else out


def write_experiments(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(EXPERIMENTS.read_text())
    change(raw)
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_nan_run_is_recorded_as_failed_while_the_others_complete(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def change(raw):
        raw["models"]["boom"] = {"class": "tests.test_runner:ExplodingNet"}
        raw["profiles"]["smoke"]["models"] = ["boom", "tiny"]
        raw["profiles"]["smoke"]["losses"] = ["damgl"]

    config = write_experiments(tmp_path, change)
    assert main(["--config", str(config), "--profile", "smoke", "--results", str(tmp_path / "r")]) == 1
    runs = tmp_path / "r" / "smoke" / "runs"
    failed = json.loads((runs / "boom__damgl__synthetic_small__s0" / "failed.json").read_text())
    assert "loss is nan at step 2" in failed["error"]
    assert (runs / "tiny__damgl__synthetic_small__s0" / "done.json").is_file()
    assert "failed: boom__damgl__synthetic_small__s0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda r: r["profiles"]["smoke"].update(step=3), r"profiles.smoke.step: unknown key \(did you mean 'steps'\?\)"),
        (lambda r: r["profiles"]["smoke"].update(models=["tiny", "seafuison"]),
         r"profiles.smoke.models\[1\]: unknown model 'seafuison' \(did you mean 'seafusion'\?\)"),
        (lambda r: r["profiles"]["smoke"].update(losses=["damgll"]), r"profiles.smoke.losses\[0\]: unknown loss arm 'damgll'"),
        (lambda r: r["losses"]["damgl"].update(sign="maybe"), r"losses.damgl: sign: expected true or false"),
        (lambda r: r["losses"]["damgl"].update(scales=[1, 0]), r"losses.damgl: scales: every ratio must be"),
        (lambda r: r["losses"].update(grad={"type": "gradient_magic"}), r"losses.grad.type: unknown gradient loss 'gradient_magic'"),
        (lambda r: r["models"].update(bad={"type": "unetfusion"}), r"unknown model 'unetfusion'"),
        (lambda r: r["ablations"]["axis"].update(fixed={}), r"ablations.axis.vary.axis\[1\]: sign: true has no meaning"),
        (lambda r: r["profiles"]["smoke"].update(device="tpu"), r"profiles.smoke.device: 'tpu' is not one of"),
        (lambda r: r["datasets"]["synthetic_small"].update(path="x"), r"datasets.synthetic_small: give exactly one of"),
    ],
)  # fmt: skip
def test_wrong_yaml_stops_before_training_naming_the_key(tmp_path: Path, change, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_experiments(tmp_path, change))


def test_missing_dataset_folder_stops_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def change(raw):
        raw["datasets"]["gone"] = {"path": str(tmp_path / "not_here")}
        raw["profiles"]["smoke"]["test"] = ["gone"]

    rc = main(["--config", str(write_experiments(tmp_path, change)), "--profile", "smoke", "--results", str(tmp_path / "r")])
    assert rc == 2
    assert f"datasets.gone.path: dataset folder not found: {tmp_path / 'not_here'}" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_paper_dry_run_lists_the_runs_and_what_is_missing_with_the_fix(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FUSION_DATA", str(tmp_path / "data"))
    assert main(["--profile", "paper", "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    runs = [line.split()[1] for line in out.splitlines() if line.startswith("todo")]
    assert runs == [f"tcmoa_large__{arm}__msrs_train__s{s}" for arm in ("signed_sum", "damgl") for s in range(6)]
    assert "tcmoa_large: 44205 steps of 3 patches of 224 x 224 = 20 epochs of msrs_train (1083 pairs)" in out
    assert "tested on msrs_test, fmb_test; primary metrics EN, MI, SD, SCD, VIF, Qabf" in out
    if not torch.cuda.is_available():  # a CPU step says nothing of a GPU's
        assert "time: not estimated: the profile trains on cuda, which is not here" in out
    data = tmp_path / "data"
    for key, release in (("msrs_train", "MSRS"), ("msrs_test", "MSRS"), ("fmb_test", "FMB")):
        assert (f"datasets.{key}.path: dataset folder not found: {data / release / key.split('_')[1]}" in out
                and f"python -m benchmark data prepare {release} <the downloaded folder> {data / release}" in out), key
    assert ("models.tcmoa_large.backbone_checkpoint: checkpoints/mae_visualize_vit_large_ganloss.pth not found; download "
            "https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth to that path") in out
    assert main(["--profile", "paper", "--results", str(tmp_path / "r")]) == 2  # a real run stops, naming all four
    err = capsys.readouterr().err
    assert err.count("not found") == 4 and not (tmp_path / "r").exists()


def test_dry_run_estimates_the_duration_from_timed_steps(smoke_results: Path, capsys, monkeypatch) -> None:
    import benchmark.train as training

    spec = load_config(EXPERIMENTS).model("tiny")
    measured = training.time_step(spec.build(), spec.recipe, {"type": "damgl"}, 2, 32, "cpu", steps=2)
    assert 0 < measured < 60
    monkeypatch.setattr(training, "time_step", lambda *a, **k: 0.5)  # the arithmetic, with a known step time
    assert main(smoke_args(smoke_results, "--dry-run", "--timing-steps", "1", "--set", "profiles.smoke.steps=12000")) == 0
    out = capsys.readouterr().out
    assert "time (one training step timed on cpu with " in out and "median of 1 after 3 warm-up steps" in out
    assert "  tiny: 0.5 s a step -> 1.7 h a run, 3.3 h for its 2 study runs on one worker\n" in out  # 6000 s and 12000 s
    assert main(smoke_args(smoke_results, "--dry-run", "--timing-steps", "0")) == 0
    assert "time (" not in capsys.readouterr().out


def test_set_overrides_and_errors() -> None:
    cfg = load_config(EXPERIMENTS, ["profiles.smoke.steps=4", "losses.damgl.scales=[1, 0.5]"])
    assert cfg.profile("smoke").steps == 4 and cfg.losses["damgl"]["scales"] == [1, 0.5]
    with pytest.raises(ConfigError, match=r"--set profiles.smok.steps: 'profiles.smok' does not exist \(did you mean 'smoke'\?\)"):
        load_config(EXPERIMENTS, ["profiles.smok.steps=4"])
    with pytest.raises(ConfigError, match="unknown profile 'smok'"):
        load_config(EXPERIMENTS).profile("smok")


def test_ablation_arms_and_run_ids() -> None:
    cfg = load_config(EXPERIMENTS)
    arms = cfg.ablations["scales"]
    assert list(arms) == ["scales:scales=1.0", "scales:scales=1.0,0.5", "scales:scales=1.0,0.5,0.25",
                          "scales:scales=1.0,0.5,0.25,0.125"]  # fmt: skip
    assert cfg.ablations["axis"]["axis:axis=magnitude"] == {"type": "damgl", "scales": [1.0, 0.5, 0.25], "sign": False,
                                                            "axis": "magnitude"}  # fmt: skip
    runs = plan(cfg, cfg.profile("smoke"))
    assert [r.run_id for r in runs] == ["tiny__magnitude__synthetic_small__s0", "tiny__damgl__synthetic_small__s0"]
    assert runs[0].config_hash != runs[1].config_hash and len(runs[0].config_hash) == 16


@pytest.mark.slow
def test_parallel_workers_and_submitit_local_executor(smoke_results: Path, tmp_path: Path) -> None:
    assert main(smoke_args(tmp_path / "w", "--workers", "2")) == 0
    assert metrics_of(tmp_path / "w") == metrics_of(smoke_results)
    submitit = pytest.importorskip("submitit")
    cfg = load_config(EXPERIMENTS)
    profile = cfg.profile("smoke")
    runs = plan(cfg, profile)
    executor = submitit.LocalExecutor(folder=str(tmp_path / "jobs"))
    results = tmp_path / "s" / "smoke"
    outcomes = slurm.launch_slurm(runs, profile, results, "cpu", executor=executor, poll_s=0.2)
    assert [o.status for o in outcomes] == ["trained", "trained"]
    assert metrics_of(tmp_path / "s") == metrics_of(smoke_results)
    for where in (smoke_results / "smoke", tmp_path / "w" / "smoke", results):  # one thread each, as the config says
        assert [json.loads((d / "env.json").read_text())["torch_threads"] for d in sorted((where / "runs").iterdir())] == [1, 1]


def test_ablation_arms_reuse_equal_runs_and_use_their_grid() -> None:
    need(real_data() / "RoadScene")  # planning real-cpu lists its datasets
    cfg = load_config(EXPERIMENTS)
    profile = cfg.profile("real-cpu")
    assert profile.ablation_arms["scales"]["1.0,0.5,0.25"] == "damgl"  # same loss as the main DAMGL arm
    assert profile.ablation_arms["sign"] == {"true": "damgl", "false": "sign:sign=false"}
    assert profile.ablation_arms["axis"]["xy"] == "sign:sign=false"  # axis: xy is the default, so the same loss
    assert profile.grid("sign:sign=false") == (["seafusion"], [0], ["roadscene_test"])
    assert profile.grid("damgl") == (["seafusion", "pmgi", "densefuse"], [0, 1, 2], ["roadscene_test", "tno", "vifb"])
    runs = plan(cfg, profile)
    ablation_only = [r for r in runs if r.arm not in profile.loss_arms]
    assert len(runs) == 3 * 4 * 3 + len(ablation_only) and len(ablation_only) == 5
    assert {r.model for r in ablation_only} == {"seafusion"}
    assert all(list(r.config["test"]) == ["roadscene_test"] for r in ablation_only)
    with pytest.raises(ConfigError, match=r"profiles.real-cpu.ablation_on.models\[0\]: unknown profile model 'u2fusion'"):
        load_config(EXPERIMENTS, ["profiles.real-cpu.ablation_on.models=[u2fusion]"])


def test_balance_initial_starts_the_gradient_term_at_the_base_arms_share(tmp_path: Path) -> None:
    assert main(smoke_args(tmp_path, "--set", "profiles.smoke.ablations=[balance]", "--set", "profiles.smoke.log_every=1",
                           "--no-figures")) == 0  # fmt: skip
    runs = tmp_path / "smoke" / "runs"

    def first_parts(arm: str) -> tuple[float, float]:
        """(gradient part, total) of the first logged step, computed before the first update."""
        row = (runs / f"tiny__{arm}__synthetic_small__s0" / "train_log.csv").read_text().splitlines()[1].split(",")
        return float(row[5]), float(row[3])

    (g_base, t_base), (g_plain, _), (g_balanced, t_balanced) = (
        first_parts(arm) for arm in ("magnitude", "damgl", "balance-balance=initial"))  # fmt: skip
    assert abs(g_balanced / t_balanced - g_base / t_base) <= 0.01 * g_base / t_base  # equal shares within 1%
    assert g_balanced == pytest.approx(g_base, rel=1e-5)  # the same weighted term
    assert abs(g_plain - g_base) > 0.1 * g_base  # without balancing, DAMGL's term starts elsewhere
    config = yaml.safe_load((runs / "tiny__balance-balance=initial__synthetic_small__s0" / "config.yaml").read_text())
    assert config["arm"]["balance"] == "initial" and config["base_arm"] == {"type": "magnitude"}
    with pytest.raises(ConfigError, match=r"losses.damgl.balance: 'start' is not one of \['none', 'initial'\]"):
        load_config(EXPERIMENTS, ["losses.damgl.balance=start"])


def test_budget_in_epochs_and_the_paper_schedule(tmp_path: Path) -> None:
    """One epoch is as many patch pixels as the training set has: 4 images of 64 x 80 at batch 2 of 32 x 32."""
    with pytest.raises(ConfigError, match="give the budget as exactly one of 'steps' or 'epochs'"):
        load_config(EXPERIMENTS, ["profiles.smoke.steps=null"])
    raw = yaml.safe_load(EXPERIMENTS.read_text())
    del raw["profiles"]["smoke"]["steps"]
    raw["profiles"]["smoke"]["epochs"] = 1.5
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "e.yaml")
    run = plan(cfg, cfg.profile("smoke"))[0]
    per_epoch = 4 * 64 * 80 / (2 * 32 * 32)  # 10 steps
    assert run.config["steps_per_epoch"] == per_epoch and run.config["steps"] == 15 and run.config["epochs"] == 1.5
    assert run.config["schedule"] == "paper"
    with pytest.raises(ConfigError, match="give the budget as exactly one of 'steps' or 'epochs'"):
        load_config(EXPERIMENTS, ["profiles.smoke.epochs=2"])
    with pytest.raises(ConfigError, match=r"profiles.smoke.schedule: 'squeezed' is not one of \['paper', 'compressed'\]"):
        load_config(EXPERIMENTS, ["profiles.smoke.schedule=squeezed"])


def test_the_paper_schedule_decays_at_real_epochs_and_compressed_squeezes() -> None:
    from baselines import MODELS

    recipe = MODELS["cddfuse"].recipe  # phases of 40 and 80 epochs, lr halved every 20 epochs
    model = baselines_build("cddfuse")
    paper = Trainer(model, recipe, {"type": "damgl"}, steps=100, steps_per_epoch=10.0)
    assert paper.phase_end == [100, 100]  # 40 epochs are 400 steps: a 100-step run never leaves phase one
    squeezed = Trainer(model, recipe, {"type": "damgl"}, steps=120)
    assert squeezed.phase_end == [40, 120] and squeezed.steps_per_epoch == 1.0


def test_a_study_writing_its_own_results_does_not_make_the_code_dirty(tmp_path: Path) -> None:
    import subprocess

    from benchmark.provenance import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "results" / "study" / "runs").mkdir(parents=True)
    (tmp_path / "results" / "study" / "study.json").write_text("{}")  # untracked, not ignored: a study's outputs
    assert git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "-dirty"
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "new_model.py").write_text("")  # untracked code counts
    assert git_commit(tmp_path) == head + "-dirty"


def test_set_threads_holds_after_the_compiled_kernels_start() -> None:
    """A worker's thread count holds through a validation (a forward pass, then the first scoring, which
    starts Numba's thread pool); pinning torch alone, as before, ended with Numba's default (two here)."""
    code = ("import numpy as np, torch\n"
            "from baselines import build\n"
            "from benchmark import launch\n"
            "from benchmark.metrics import evaluate\n"
            "launch.set_threads(1)\n"
            "with torch.no_grad():\n"
            "    build('pmgi')(torch.rand(1, 1, 96, 128), torch.rand(1, 1, 96, 128))\n"
            "a, b, f = (np.random.default_rng(k).integers(0, 256, (96, 128)).astype(np.float64) for k in range(3))\n"
            "evaluate(f, a, b)\n"
            "print(torch.get_num_threads())\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1"]


def test_every_run_has_a_hashed_thread_count_that_no_launcher_changes() -> None:
    """Without ``threads:`` a run computes with one thread (it followed the launcher: the process default, the
    cores divided among the workers, Slurm's cpus_per_task); the count is in every config and its hash."""
    plain = load_config(EXPERIMENTS)
    two = load_config(EXPERIMENTS, ["profiles.smoke.threads=2"])
    run, two_run = plan(plain, plain.profile("smoke"))[0], plan(two, two.profile("smoke"))[0]
    assert run.config["threads"] == 1 and two_run.config["threads"] == 2
    assert two_run.config_hash != run.config_hash
    with pytest.raises(ConfigError, match=r"profiles\.smoke\.threads: expected a positive integer, got 0"):
        load_config(EXPERIMENTS, ["profiles.smoke.threads=0"]).profile("smoke")


@pytest.mark.slow
def test_an_edit_of_the_experiments_file_during_a_study_changes_no_run(tmp_path: Path) -> None:
    """Three runs in a pool of two; once the first two have started, the file's tiny model is widened from 8
    to 16 channels. Every run trains the model block it was planned with (width 8): workers never reload it."""
    config = tmp_path / "experiments.yaml"
    config.write_text(EXPERIMENTS.read_text().replace("seeds: [0]\n    train: synthetic_small\n",
                                                      "seeds: [0, 1, 2]\n    train: synthetic_small\n", 1))  # fmt: skip
    argv = [sys.executable, str(ROOT / "run_all.py"), "--config", str(config), "--profile", "smoke", "--only", "loss=damgl",
            "--results", str(tmp_path / "r"), "--workers", "2", "--no-figures", "--set", "profiles.smoke.steps=400",
            "--set", "profiles.smoke.checkpoint_every=400"]  # fmt: skip
    runs = tmp_path / "r" / "smoke" / "runs"
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 300
        while len(list(runs.glob("*/config.yaml"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(list(runs.glob("*/config.yaml"))) == 2 and not (runs / "tiny__damgl__synthetic_small__s2").exists()
        config.write_text(config.read_text().replace("kwargs: {width: 8}", "kwargs: {width: 16}"))
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    for seed in (0, 1, 2):
        run = runs / f"tiny__damgl__synthetic_small__s{seed}"
        assert yaml.safe_load((run / "config.yaml").read_text())["model"]["kwargs"] == {"width": 8}
        state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]
        assert {tuple(v.shape)[0] for k, v in state.items() if k.endswith("weight") and v.ndim == 4} <= {8, 1}, seed


def test_a_model_that_fails_to_build_blocks_only_its_own_runs(tmp_path: Path, capsys) -> None:
    broken = ["--set", "models.broken={class: 'examples.tiny_fusion:TinyFusion', kwargs: {width: -3}}",
              "--set", "profiles.smoke.models=[tiny, broken]"]  # fmt: skip
    assert main(smoke_args(tmp_path, *broken, "--only", "model=tiny", "--dry-run", "--timing-steps", "0")) == 0
    assert main(smoke_args(tmp_path, *broken, "--dry-run", "--timing-steps", "0")) == 2
    err = capsys.readouterr().err
    assert "error: models.broken" in err and "Traceback" not in err


def test_a_profile_reuses_the_finished_runs_of_equal_hash_of_another(smoke_results: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    """``reuse: [smoke]``: a run that profile finished with the same config hash is copied (not its
    checkpoints), saying so, and only the others train; the dry run says which."""
    raw = yaml.safe_load(EXPERIMENTS.read_text())
    raw["profiles"]["smoke-more"] = {**raw["profiles"]["smoke"], "seeds": [0, 1], "reuse": ["smoke"]}
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(yaml.safe_dump(raw, sort_keys=False))
    results = tmp_path / "results"
    shutil.copytree(smoke_results / "smoke", results / "smoke")
    args = ["--config", str(experiments), "--profile", "smoke-more", "--results", str(results), "--no-figures"]
    assert main([*args, "--dry-run"]) == 0
    states = {line.split()[1]: line.split()[0] for line in capsys.readouterr().out.splitlines() if "__s" in line}
    assert states == {"tiny__magnitude__synthetic_small__s0": "reuse", "tiny__damgl__synthetic_small__s0": "reuse",
                      "tiny__magnitude__synthetic_small__s1": "todo", "tiny__damgl__synthetic_small__s1": "todo"}  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr()
    assert out.err.count("reused from") == 2 and out.out.count("trained ") == 2
    for arm in ("magnitude", "damgl"):
        mine, theirs = results / "smoke-more" / "runs" / f"tiny__{arm}__synthetic_small__s0", results / "smoke" / "runs" / f"tiny__{arm}__synthetic_small__s0"
        assert [(mine / f).read_bytes() for f in ("metrics.csv", "train_log.csv", "done.json")] == \
               [(theirs / f).read_bytes() for f in ("metrics.csv", "train_log.csv", "done.json")]  # fmt: skip
        assert not (mine / "checkpoints").exists() and (theirs / "checkpoints").exists()
    raw["profiles"]["smoke-more"]["steps"] = 7  # another budget: another hash, nothing to reuse
    experiments.write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copytree(smoke_results / "smoke", tmp_path / "other" / "smoke")
    assert main([*args[:4], "--results", str(tmp_path / "other"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("todo ") == 4 and "reuse " not in out
    raw["profiles"]["smoke-more"]["reuse"] = ["smoke-more"]
    experiments.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match=r"profiles\.smoke-more\.reuse\[0\]: unknown other profile 'smoke-more'"):
        load_config(experiments)


def test_an_in_process_launch_computes_with_the_run_threads_and_restores_the_callers(tmp_path: Path) -> None:
    import numba

    from benchmark.launch import launch, set_threads

    cfg = load_config(EXPERIMENTS)
    runs = plan(cfg, cfg.profile("smoke"))[:1]
    before = torch.get_num_threads(), numba.get_num_threads()
    set_threads(2)
    try:
        assert [o.status for o in launch(runs, tmp_path, "cpu", workers=1)] == ["trained"]
        assert (torch.get_num_threads(), numba.get_num_threads()) == (2, min(2, numba.config.NUMBA_NUM_THREADS))
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
    assert json.loads((tmp_path / "runs" / runs[0].run_id / "env.json").read_text())["torch_threads"] == 1
