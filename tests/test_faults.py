"""Fault injection: interrupts, broken state on disk, bad images, concurrent runners, failing writes.

Each case does the fault for real (signals go to a runner in a subprocess) and then checks that the
same command repairs or resumes the study to exactly the numbers of an uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark import store
from benchmark.cli import run as main
from tests.conftest import write_image

pytestmark = pytest.mark.slow  # trains studies; python -m pytest -m "not slow" leaves them out

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments.yaml"
RUNS = ("tiny__magnitude__synthetic_small__s0", "tiny__damgl__synthetic_small__s0")
# long enough to be interrupted mid-training and mid-fusing: 300 steps, 40 test images
LONGER = ["--set", "profiles.smoke.steps=300", "--set", "profiles.smoke.checkpoint_every=50",
          "--set", "datasets.synthetic_small_test.synthetic.count=40", "--no-figures"]  # fmt: skip


def args(results: Path, *extra: str) -> list[str]:
    return ["--config", str(EXPERIMENTS), "--profile", "smoke", "--results", str(results), *LONGER, *extra]


def metrics(results: Path) -> dict[str, bytes]:
    return {run: (results / "smoke" / "runs" / run / "metrics.csv").read_bytes() for run in RUNS}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Per-image metrics of the uninterrupted study."""
    results = tmp_path_factory.mktemp("uninterrupted")
    assert main(args(results)) == 0
    return metrics(results)


def screen(text: str) -> list[str]:
    """What a terminal shows after ``text``: carriage returns go back to the line start, escape sequences
    are dropped, and what is written over a line replaces it."""
    lines, col = [[]], 0
    for ch in re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text):
        if ch == "\n":
            lines.append([])
            col = 0
        elif ch == "\r":
            col = 0
        else:
            line = lines[-1]
            line[col:col + 1] = [ch]
            col += 1
    return ["".join(line).rstrip() for line in lines if "".join(line).strip()]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until ``path`` exists while ``proc`` runs; the limit is generous for a loaded 2-core machine,
    where one runner start (torch import, compiled kernels) has taken over a minute."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the runner ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.005)


POINTS = {  # where to stop: the file whose appearance marks the point, and a random extra delay
    "training": (f"runs/{RUNS[0]}/checkpoints/last.pt", 0.4),
    "fusing": (f"runs/{RUNS[0]}/fused_rgb/synthetic_small_test/syn12_005.png", 0.0),
    "second run": (f"runs/{RUNS[1]}/config.yaml", 0.3),
}


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_the_same_command_resumes_exactly(reference: dict[str, bytes], tmp_path: Path,
                                                                   point: str, signum: int) -> None:  # fmt: skip
    marker, delay = POINTS[point]
    proc = subprocess.Popen([sys.executable, "run_all.py", *args(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(tmp_path / "smoke" / marker, proc)
    time.sleep(random.Random(f"{point}{signum}").uniform(0, delay))
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, (out, err)
    assert "Traceback" not in err
    last = screen(err)[-1]
    assert re.fullmatch(rf"interrupted \({name}\): tiny__\w+__synthetic_small__s0 stopped .*; "
                        "run the same command to resume it", last), last  # fmt: skip
    runs = tmp_path / "smoke" / "runs"
    assert not list(runs.glob("*/lock")) and not list(runs.rglob(".*.tmp"))
    stopped = next(r for r in RUNS if r in last)
    assert not (runs / stopped / "done.json").exists()
    assert main(args(tmp_path)) == 0  # the same command
    assert metrics(tmp_path) == reference
    for run in RUNS:
        log = (runs / run / "train_log.csv").read_text().splitlines()[1:]
        steps = [int(row.split(",")[0]) for row in log]
        assert steps == [1, *range(2, 301, 2)]  # step 1 (the initial weights), then every 2nd step once, none lost or repeated
        seconds = [float(row.split(",")[-1]) for row in log]
        assert seconds == sorted(seconds)  # wall-clock time keeps counting across the resume
        done = json.loads((runs / run / "done.json").read_text())
        assert done["seconds"] >= seconds[-1]


def test_a_stopped_pool_starts_no_further_run(tmp_path: Path) -> None:
    """SIGTERM to a runner with 2 workers and 4 runs: the two training runs (magnitude, seeds 0 and 1) stop
    at a checkpoint and the two queued ones never train (a worker's stop request outlives its run)."""
    extra = ("--workers", "2", "--set", "profiles.smoke.seeds=[0,1]")
    proc = subprocess.Popen([sys.executable, "run_all.py", *args(tmp_path, *extra)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(tmp_path / "smoke" / "runs" / RUNS[0] / "checkpoints" / "last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, (out, err)
    runs = tmp_path / "smoke" / "runs"
    assert not list(runs.glob("*/done.json")) and not list(runs.glob("*/lock"))
    assert not list(runs.glob("tiny__damgl__*/checkpoints/last.pt"))  # the queued DAMGL runs took no step
    assert main(args(tmp_path, *extra)) == 0 and len(list(runs.glob("*/done.json"))) == 4


def finished_copy(tmp_path: Path) -> Path:
    assert main(args(tmp_path)) == 0
    return tmp_path / "smoke" / "runs" / RUNS[1]


def unfinish(run: Path) -> None:
    """Make a finished run look as if it was killed after its last checkpoint."""
    for name in ("done.json", "metrics.csv"):
        (run / name).unlink()


def test_truncated_checkpoint_falls_back_to_the_previous_one(reference, tmp_path: Path, capsys) -> None:
    run = finished_copy(tmp_path)
    unfinish(run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert main(args(tmp_path)) == 0
    err = capsys.readouterr().err
    assert f"warning: {last} does not match its digest last.pt.sha256 (truncated or corrupted)" in err
    assert f"{RUNS[1]}: resuming from previous.pt at step 250" in err
    assert metrics(tmp_path) == reference


def test_no_readable_checkpoint_restarts_from_scratch(reference, tmp_path: Path, capsys) -> None:
    run = finished_copy(tmp_path)
    unfinish(run)
    (run / "checkpoints" / "last.pt").write_bytes(b"\x00" * 100)  # garbage that matches no digest
    (run / "checkpoints" / "previous.pt.sha256").unlink()  # a file without a digest is tried as it is
    (run / "checkpoints" / "previous.pt").write_bytes(b"not a checkpoint")
    assert main(args(tmp_path)) == 0
    err = capsys.readouterr().err
    assert "previous.pt cannot be loaded (UnpicklingError" in err
    assert f"{RUNS[1]}: no readable checkpoint left; restarting from scratch" in err
    assert metrics(tmp_path) == reference


def test_done_without_its_metrics_is_repaired(reference, tmp_path: Path, capsys) -> None:
    run = finished_copy(tmp_path)
    (run / "metrics.csv").unlink()
    assert main(args(tmp_path)) == 0
    assert f"{RUNS[1]}: {run / 'done.json'} exists but metrics.csv is missing; repairing the run" in capsys.readouterr().err
    assert metrics(tmp_path) == reference
    (run / "metrics.csv").write_text("test,image,EN\n")  # edited by hand after the run
    assert main(args(tmp_path)) == 0
    assert "does not match metrics.csv or another metrics file it recorded (changed after the run finished); repairing" in capsys.readouterr().err
    assert metrics(tmp_path) == reference


def folder_experiments(tmp_path: Path) -> tuple[Path, Path]:
    """An experiments file whose smoke profile tests on a real folder of four pairs."""
    rng = np.random.default_rng(0)
    data = tmp_path / "pairs"
    for i in range(1, 5):
        write_image(data / "ir" / f"0{i}.png", rng.integers(0, 256, (64, 80)))
        write_image(data / "vi" / f"0{i}.png", rng.integers(0, 256, (64, 80, 3)))
    raw = yaml.safe_load(EXPERIMENTS.read_text())
    raw["datasets"]["pairs"] = {"path": str(data)}
    raw["profiles"]["smoke"]["test"] = ["pairs"]
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, data


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "resized"])
def test_a_bad_test_image_is_named_before_any_training(tmp_path: Path, capsys, damage: str) -> None:
    config, data = folder_experiments(tmp_path)
    bad = data / "vi" / "02.png"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:200])
    elif damage == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
    else:
        write_image(bad, np.zeros((64, 81, 3)))
    results = tmp_path / "r"
    assert main(["--config", str(config), "--profile", "smoke", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    expected = {"truncated": f"cannot read image {bad}", "corrupt": f"cannot read image {bad}",
                "resized": f"size mismatch: {data / 'ir' / '02.png'} is 80x64 but {bad} is 81x64"}[damage]  # fmt: skip
    assert f"error: {expected}" in err
    assert not (results / "smoke" / "runs").exists()  # nothing trained, no checkpoint written


def test_a_study_records_its_files_and_refuses_data_that_changed_under_it(tmp_path: Path, capsys) -> None:
    config, data = folder_experiments(tmp_path)
    results = tmp_path / "r"
    cli = ["--config", str(config), "--profile", "smoke", "--results", str(results), "--set", "profiles.smoke.steps=2"]
    assert main(cli) == 0
    manifest = results / "smoke" / "data" / "pairs.csv"
    rows = manifest.read_text().splitlines()
    ir = data / "ir" / "01.png"
    assert rows[0] == "split,modality,file,width,height,channels,bytes,sha256" and len(rows) == 9
    assert rows[1] == f"pairs,ir,ir/01.png,80,64,1,{ir.stat().st_size},{store.sha256(ir)}"
    assert main(cli) == 0  # the same files: the manifest stands
    write_image(data / "vi" / "03.png", np.full((64, 80, 3), 7))
    assert main(cli) == 2
    err = capsys.readouterr().err
    assert f"error: {manifest}: the files of dataset 'pairs' differ from those this study first ran on (1 files, the first vi/03.png)" in err
    assert manifest.read_text().splitlines() == rows


def test_two_runners_on_one_folder_train_each_run_once(reference, tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "run_all.py", *args(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    lines = [line for out, _ in outputs for line in out.splitlines() if line.startswith(("trained", "done", "locked"))]
    for run in RUNS:
        assert sum(line.split() == ["trained", run] for line in lines) == 1, lines
    assert metrics(tmp_path) == reference
    summary = (tmp_path / "smoke" / "summary.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in summary[1:]] == list(RUNS)
    assert json.loads((tmp_path / "smoke" / "study.json").read_text())["profile"] == "smoke"


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")])
def test_a_failing_write_names_the_path_and_leaves_nothing_that_looks_complete(tmp_path: Path, monkeypatch, capsys,
                                                                               code: int, words: str) -> None:  # fmt: skip
    real_open = os.open

    def failing_open(path, flags, *rest):
        if "metrics.csv" in str(path):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *rest)

    monkeypatch.setattr(store.os, "open", failing_open)
    assert main(args(tmp_path)) == 2
    run = tmp_path / "smoke" / "runs" / RUNS[0]
    assert f"error: cannot write {run / 'metrics.csv'}: {words}" in capsys.readouterr().err
    assert not (run / "metrics.csv").exists() and not (run / "done.json").exists()
    assert not list(run.glob(".*.tmp")) and not (run / "lock").exists()


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc to find the job's process")
def test_a_preempted_slurm_job_requeues_and_resumes_exactly(tmp_path: Path) -> None:
    """One second into training the job gets submitit's warning signal (SIGUSR2, as submitit's local executor
    sends it) before any periodic checkpoint: it stops after its current step with a checkpoint there,
    submitit requeues it, and it resumes from that step to the uninterrupted numbers (before, it restarted
    from its last periodic checkpoint, here from scratch)."""
    submitit = pytest.importorskip("submitit")
    from benchmark.config import load_config
    from benchmark.launch import execute, set_threads
    from benchmark.plan import plan
    from benchmark.slurm import SlurmJob

    overrides = ["profiles.smoke.steps=1500", "profiles.smoke.checkpoint_every=1000"]
    cfg = load_config(EXPERIMENTS, overrides)
    run = plan(cfg, cfg.profile("smoke"))[1]
    set_threads(run.config["threads"])
    assert execute(run, tmp_path / "uninterrupted", "cpu", progress=False).status == "trained"
    executor = submitit.LocalExecutor(folder=str(tmp_path / "jobs"), max_num_timeout=3)
    executor.update_parameters(timeout_min=10)
    job = executor.submit(SlurmJob(), (run, str(tmp_path / "slurm"), "cpu"))
    started = tmp_path / "slurm" / "runs" / run.run_id / "env.json"  # written as training starts
    deadline = time.monotonic() + 120
    while not started.exists():
        assert time.monotonic() < deadline and job.state != "FINISHED", "the job never started its run"
        time.sleep(0.01)
    time.sleep(1.0)
    (task,) = children(job._process.pid)  # the controller's one task
    os.kill(task, signal.SIGUSR2)
    assert job.result().status == "trained"
    assert "Requeued job" in job.stdout()
    done = json.loads((tmp_path / "slurm" / "runs" / run.run_id / "done.json").read_text())
    (resumed,) = done["resumed_from"]
    assert 0 < resumed < 1000  # the step it reached when signalled (no periodic checkpoint was written yet)
    ours, theirs = (tmp_path / where / "runs" / run.run_id / "metrics.csv" for where in ("slurm", "uninterrupted"))
    assert ours.read_bytes() == theirs.read_bytes()
