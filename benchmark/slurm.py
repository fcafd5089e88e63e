"""The launch stage on a Slurm cluster: the runs as one job array through submitit.

A job is one run (:func:`benchmark.launch.execute` in the job's process). Slurm
stops a job with a signal: SIGTERM when it is requeued (``scontrol requeue``, a
node failure, preemption with ``PreemptMode=REQUEUE``), cancelled or out of
time, and submitit's warning signal (SIGUSR2, ``signal_delay_s`` before the time
limit). Inside a job either signal ends the run after its current training step
with a checkpoint, or between two fused images: after SIGTERM the job exits
without a result, so a requeued task resumes from the step it reached and a
cancelled one leaves a resumable run; after the warning signal submitit requeues
the task itself, as it always did.

The submitting process waits for each task's result, reading the queue with
``squeue`` (which works on clusters without accounting). When it returns, no
task of the study is queued or running: a task that Slurm requeued after its
run had finished is cancelled, and on a stop request (Ctrl-C) every task is
cancelled, so each stops at a safe point. What it did is written to
``slurm/queue.csv`` of the results folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmark import interrupts
from benchmark.config import ConfigError, Profile
from benchmark.console import say
from benchmark.launch import RunOutcome, run_worker
from benchmark.plan import RunSpec
from benchmark.store import ResultsFolder

LEAVE_S = 300  # seconds to wait for the study's tasks to leave the queue once every run has its outcome
# the states of a task that is still in the queue or on a node (squeue's long names)
LIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
        "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}  # fmt: skip
# of those, the states of a task waiting to start (again), not on a node
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"}


def warning_signal() -> int:
    """The signal submitit asks Slurm to send before the time limit (``SUBMITIT_PREEMPT_SIGNAL``, default USR2)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return int(getattr(signal, f"SIG{name}"))


class SlurmJob:
    """A run as a submitit job. SIGTERM and the warning signal stop the run at a safe point with a
    checkpoint (see the module's docstring); the requeued task resumes it and gives the numbers an
    uninterrupted run would have given."""

    def __call__(self, args: tuple[RunSpec, str, str]) -> RunOutcome:
        warn = warning_signal()
        submitit_handler = signal.getsignal(warn)  # checkpoint (below) and requeue, installed by submitit
        interrupts.stop_on_signals(signal.SIGTERM, warn)
        outcome = run_worker(args)
        if outcome.status != "interrupted":
            return outcome  # a stop request after the run finished changes nothing: its result stands
        signum = interrupts.requested() or signal.SIGTERM
        print(outcome.message, flush=True)
        if signum == warn and callable(submitit_handler):
            submitit_handler(signum, None)  # requeues the task and exits
        raise SystemExit(128 + signum)  # no result: Slurm requeues the task or has ended it for good

    def checkpoint(self, args: tuple[RunSpec, str, str]) -> Any:
        """What submitit resubmits after its warning signal: the same job with the same arguments (the run
        resumes from its own checkpoint)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, args)


def launch_slurm(runs: list[RunSpec], profile: Profile, results: Path, device: str, pack: int = 1,
                 executor: Any = None, poll_s: float = 2.0) -> list[RunOutcome]:  # fmt: skip
    """Submit the runs as one Slurm job array through submitit, wait for every task, and leave none behind.

    Resources come from the profile's ``slurm`` block (submitit's parameter names: ``timeout_min``,
    ``slurm_partition``, ``slurm_account``, ``slurm_qos``, ``gpus_per_node``, ``cpus_per_task``,
    ``mem_gb``, ``slurm_array_parallelism``, ``slurm_signal_delay_s``); ``cpus_per_task`` defaults to the
    runs' ``threads``. ``executor`` lets tests pass submitit's local executor.
    """
    if pack > 1:
        raise ConfigError("--pack: packs run with the local launcher; under Slurm each run is its own array task")
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install -e '.[slurm]'") from None
    if not runs:
        return []
    folder = ResultsFolder(results)
    if executor is None:
        executor = submitit.AutoExecutor(folder=str(folder.slurm))
    executor.update_parameters(**{"cpus_per_task": runs[0].config["threads"], **profile.slurm})
    with executor.batch():  # one job array: each task resumes its own run
        jobs = [executor.submit(SlurmJob(), (run, str(results), device)) for run in runs]
    return collect(jobs, runs, folder, poll_s)


def collect(jobs: list[Any], runs: list[RunSpec], folder: ResultsFolder, poll_s: float = 2.0) -> list[RunOutcome]:
    """Wait for the jobs of ``runs`` (submitit jobs, in the same order) and return the runs' outcomes; on a
    stop request cancel them all and wait for them to stop. Afterwards cancel any task still queued or
    running (Slurm requeued it after its run finished), so none is left behind."""
    outcomes: dict[int, RunOutcome] = {}
    cancelled: set[int] = set()
    gone: set[int] = set()  # tasks seen out of the queue without a result, concluded a poll later (a late result)
    while len(outcomes) < len(jobs):
        if interrupts.requested() is not None and not cancelled:
            for i, job in enumerate(jobs):
                if i not in outcomes:
                    job.cancel(check=False)
                    cancelled.add(i)
                    folder.note_slurm(job.job_id, runs[i].run_id, "cancelled on a stop request")
        live = queue(jobs)
        for i, job in enumerate(jobs):
            if i in outcomes:
                continue
            if job.paths.result_pickle.exists():
                outcomes[i] = _result(job, runs[i])
            elif not _ended(job, live):
                gone.discard(i)  # in the queue (again, when Slurm requeued it)
            elif i not in gone:
                gone.add(i)
            else:
                why = "was cancelled on a stop request" if i in cancelled else "ended without finishing its run"
                outcomes[i] = RunOutcome(runs[i].run_id, "interrupted", f"Slurm job {job.job_id} {why}; its checkpoint "
                                         "is kept: run the same command to resume it")  # fmt: skip
                if i not in cancelled:
                    folder.note_slurm(job.job_id, runs[i].run_id, "ended without a result; the run is resumable")
        if len(outcomes) < len(jobs):
            time.sleep(poll_s)
    _leave_none(jobs, runs, folder, poll_s)
    result = [outcomes[i] for i in range(len(jobs))]
    for o in result:
        print(o.line())
    return result


def _result(job: Any, run: RunSpec) -> RunOutcome:
    """The outcome a task returned, or a failure naming submitit's error."""
    try:
        return job.result()
    except Exception as exc:  # noqa: BLE001 - a job that raised outside the run (submitit's own errors)
        return RunOutcome(run.run_id, "failed", f"Slurm job {job.job_id}: {type(exc).__name__}: {exc}")


def _is_slurm(job: Any) -> bool:
    return type(job).__name__ == "SlurmJob"  # submitit's; its local executor's jobs watch their own processes


def queue(jobs: list[Any]) -> dict[str, str]:
    """The state of each of these Slurm tasks still in the queue or on a node, by job id (``123_4``)."""
    arrays = sorted({str(j.job_id).split("_")[0] for j in jobs if _is_slurm(j)})
    if not arrays:
        return {}
    done = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i %T", "--jobs", ",".join(arrays)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if done.returncode != 0:  # every job id left the controller's memory: nothing of them is queued
        if "Invalid job id" in done.stderr:
            return {}
        raise RuntimeError(f"squeue failed ({done.returncode}): {done.stderr.strip()}")
    states = dict(line.split()[:2] for line in done.stdout.splitlines() if line.strip())
    return {job: state for job, state in states.items() if state in LIVE}


def _ended(job: Any, live: dict[str, str]) -> bool:
    return str(job.job_id) not in live if _is_slurm(job) else job.done()


def _leave_none(jobs: list[Any], runs: list[RunSpec], folder: ResultsFolder, poll_s: float) -> None:
    """Once every run has its outcome, wait for the study's tasks to leave the queue: a task still running
    (exiting after its result) is waited for, a task queued to start again (Slurm requeued it after its
    run had finished) is cancelled and noted."""
    deadline = time.monotonic() + LEAVE_S
    noted: set[str] = set()
    while (left := queue(jobs)) and time.monotonic() < deadline:
        for job, run in zip(jobs, runs):
            state = left.get(str(job.job_id))
            if state in QUEUED and job.job_id not in noted:
                noted.add(job.job_id)
                job.cancel(check=False)
                folder.note_slurm(job.job_id, run.run_id, f"cancelled: queued again ({state}) after its run had its "
                                                          "outcome (requeued by Slurm)")  # fmt: skip
                say(f"cancelled Slurm job {job.job_id} ({run.run_id}): requeued after its run had finished")
        time.sleep(poll_s)
    for job_id, state in left.items():
        say(f"warning: Slurm task {job_id} is still {state} {LEAVE_S} s after its run had its outcome; see squeue")
