"""The Slurm launcher on a real one-node cluster (:mod:`tests.slurm_cluster`): requeue as clusters do it,
nothing left in the queue, the same numbers as on this machine. Skipped, saying why, without ``slurm-wlm``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmark.cli import run as main
from benchmark.config import load_config
from benchmark.plan import plan
from benchmark.store import ResultsFolder
from tests.slurm_cluster import OneNodeCluster, unavailable

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments.yaml"
# two runs long enough that neither finishes within the cluster's kill wait, with no periodic checkpoint
OVERRIDES = ["profiles.smoke.steps=6000", "profiles.smoke.checkpoint_every=100000"]
LONG = ["--profile", "smoke", "--set", OVERRIDES[0], "--set", OVERRIDES[1], "--no-figures"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneNodeCluster]:
    why = unavailable()
    if why:
        pytest.skip(why)
    pytest.importorskip("submitit")
    one = OneNodeCluster(tmp_path_factory.mktemp("slurm"))
    one.start()
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(one.conf)
    try:
        yield one
    finally:
        if before is None:
            os.environ.pop("SLURM_CONF")
        else:
            os.environ["SLURM_CONF"] = before
        one.stop()


def _wait(what: str, ready, timeout_s: float = 120) -> None:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def _state(cluster: OneNodeCluster, job: str) -> str:
    return dict(line.split() for line in cluster.squeue()).get(job, "")


def _metrics(results: Path) -> dict[str, bytes]:
    return {d.name: (d / "metrics.csv").read_bytes() for d in sorted((results / "smoke" / "runs").iterdir())}


@pytest.mark.slow
def test_a_requeued_task_resumes_from_its_step_with_the_local_numbers_and_none_stays_queued(
        cluster: OneNodeCluster, tmp_path: Path) -> None:  # fmt: skip
    """Five seconds into training one task is requeued as an administrator, a node failure or preemption does
    it (``scontrol requeue``: SIGTERM, then SIGKILL after the kill wait). The task checkpoints at once, so the
    requeued task resumes from a step above 0 (it would restart from scratch without that), the study ends
    with exit 0, and both runs' per-image metrics equal those of the same study run on this machine."""
    cfg = load_config(EXPERIMENTS, OVERRIDES)
    runs = plan(cfg, cfg.profile("smoke"))
    first = ResultsFolder(tmp_path / "slurm" / "smoke").run(runs[0].run_id)
    command = [sys.executable, "run_all.py", *LONG, "--launcher", "slurm", "--results", str(tmp_path / "slurm")]
    study = subprocess.Popen(command, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait("the first run trains", lambda: first.root.joinpath("env.json").exists())
        time.sleep(5)
        (task,) = [line.split()[0] for line in cluster.squeue() if line.split()[0].endswith("_0")]
        subprocess.run(["scontrol", "requeue", task], env=cluster.env, check=True)
        _wait("the task is queued again", lambda: _state(cluster, task) == "PENDING", 60)
        # a requeued task waits about two minutes before it may start again; let it start now
        subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], env=cluster.env, check=True)
        out, _ = study.communicate(timeout=400)
    finally:
        study.kill()
    assert study.returncode == 0, out[-3000:]
    resumed = json.loads(first.done.read_text())["resumed_from"]
    assert len(resumed) == 1 and resumed[0] > 0, resumed
    assert cluster.squeue() == []
    assert main([*LONG, "--workers", "2", "--results", str(tmp_path / "local")]) == 0
    assert _metrics(tmp_path / "slurm") == _metrics(tmp_path / "local")


@pytest.mark.slow
def test_a_task_requeued_after_its_run_finished_is_cancelled_and_noted(cluster: OneNodeCluster, tmp_path: Path) -> None:
    """Slurm may requeue a task whose run has finished (its result is written): waiting for the study does
    not end with that task queued, to start again later; it is cancelled and ``slurm/queue.csv`` says so."""
    import submitit

    from benchmark.slurm import SlurmJob, collect

    cfg = load_config(EXPERIMENTS)
    runs = plan(cfg, cfg.profile("smoke"))
    folder = ResultsFolder(tmp_path / "smoke")
    executor = submitit.AutoExecutor(folder=str(folder.slurm))
    executor.update_parameters(timeout_min=10, cpus_per_task=1)
    with executor.batch():
        jobs = [executor.submit(SlurmJob(), (run, str(folder.root), "cpu")) for run in runs]
    _wait("both tasks return", lambda: all(j.paths.result_pickle.exists() for j in jobs))
    _wait("both tasks leave the node", lambda: cluster.squeue() == [])
    subprocess.run(["scontrol", "requeue", jobs[1].job_id], env=cluster.env, check=True)
    assert _state(cluster, jobs[1].job_id) == "PENDING"
    outcomes = collect(jobs, runs, folder, poll_s=0.2)
    assert [o.status for o in outcomes] == ["trained", "trained"]
    assert cluster.squeue() == []
    lines = (folder.slurm / "queue.csv").read_text().splitlines()
    assert lines[0] == "time,job,run,event" and len(lines) == 2
    assert lines[1].split(",")[1:3] == [jobs[1].job_id, runs[1].run_id]
    assert "cancelled: queued again (PENDING) after its run had its outcome" in lines[1]


@pytest.mark.slow
def test_a_stopped_study_cancels_its_tasks_which_leave_resumable_runs(cluster: OneNodeCluster, tmp_path: Path) -> None:
    """SIGTERM to the command (as Ctrl-C) while both tasks train: it cancels both, each stops at a step
    with a checkpoint, the command exits 143 with none of its tasks left in the queue, and the same command
    then resumes both runs from the steps they reached."""
    cfg = load_config(EXPERIMENTS, OVERRIDES)
    runs = [ResultsFolder(tmp_path / "smoke").run(r.run_id) for r in plan(cfg, cfg.profile("smoke"))]
    command = [sys.executable, "run_all.py", *LONG, "--launcher", "slurm", "--results", str(tmp_path)]
    study = subprocess.Popen(command, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait("both runs train", lambda: all(r.root.joinpath("env.json").exists() for r in runs))
        time.sleep(5)
        study.send_signal(signal.SIGTERM)
        out, _ = study.communicate(timeout=120)
    finally:
        study.kill()
    assert study.returncode == 143, out[-3000:]
    assert cluster.squeue() == []
    events = (tmp_path / "smoke" / "slurm" / "queue.csv").read_text().splitlines()[1:]
    assert [e.split(",")[2:] for e in events] == [[r.root.name, "cancelled on a stop request"] for r in runs]
    assert all((r.root / "checkpoints" / "last.pt").exists() and not r.done.exists() for r in runs)
    again = subprocess.run(command, cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:]
    for r in runs:
        (resumed,) = json.loads(r.done.read_text())["resumed_from"]
        assert 0 < resumed < 6000
    assert cluster.squeue() == []
