"""The launch stage: run planned runs in this process, in a pool of processes, or as Slurm jobs.

:func:`execute` makes one run complete: it skips a finished run, refuses a run
directory whose stored config hash differs, takes the run's lock, trains
(:mod:`benchmark.train`), fuses and scores (:mod:`benchmark.fuse`), and writes
``done.json`` last (or ``failed.json``), all through the run store.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark import interrupts
from benchmark.config import Config, ConfigError, Profile, load_config
from benchmark.console import say
from benchmark.data import DataError
from benchmark.fuse import fuse_run
from benchmark.plan import RunSpec
from benchmark.store import ResultsFolder, RunDir, RunLock, StoreError
from benchmark.train import train_run

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunOutcome:
    """What happened to one run."""

    run_id: str
    status: str  # "done" (already complete), "trained", "failed", "locked", "interrupted"
    message: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        """``status run-id first line of the message``."""
        return f"{self.status:8s} {self.run_id} {self.message.splitlines()[0] if self.message else ''}".rstrip()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return device


def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` when tracked or untracked-not-ignored files differ."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: str, seed: int) -> dict[str, Any]:
    """Versions, commit, device and seed of a run."""
    import numba
    import piq

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "piq": piq.__version__,
        "git_commit": git_commit(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "seed": seed,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def train_and_fuse(run: RunSpec, cfg: Config, run_dir: RunDir, device: str, progress: bool = True) -> RunOutcome:
    """Train (or resume) one run, then fuse and score its test sets; writes ``done.json`` last.

    ``done.json`` records the wall-clock seconds of the whole run, training counted across resumes.
    """
    trainer, error, trained, ending = train_run(run, cfg, run_dir, device, progress)
    if error is not None:
        run_dir.write_failed(run.run_id, run.config_hash, error, trainer.step)
        return RunOutcome(run.run_id, "failed", error, trained)
    start = time.perf_counter()
    if ending.get("selected") == "best":  # the weights of the best validation, not the last step's
        trainer.model.load_state_dict(torch.load(run_dir.best, map_location=trainer.device, weights_only=True))
    fuse_run(trainer.model, run, cfg, run_dir, device, progress)
    seconds = trained + time.perf_counter() - start
    run_dir.write_done(run.run_id, run.config_hash, trainer.step, seconds, time.strftime("%Y-%m-%d %H:%M:%S"),
                       **ending)  # fmt: skip
    return RunOutcome(run.run_id, "trained", "", seconds)


def execute(run: RunSpec, cfg: Config, results: Path, device: str, progress: bool = True) -> RunOutcome:
    """Run one run in this process, honouring completion, config hash and lock.

    A ``done.json`` whose ``metrics.csv`` is missing or changed does not count: the run is repaired (resumed
    from its checkpoint, fused and scored again), saying so.
    """
    interrupts.check(run.run_id, "before it started")
    run_dir = ResultsFolder(results).run(run.run_id)
    if run_dir.is_done(run.config_hash):
        return RunOutcome(run.run_id, "done")
    stored = run_dir.stored_hash()
    if stored is not None and stored != run.config_hash:
        raise ConfigError(
            f"{run_dir.root} holds a run with a different configuration (hash {stored}, now {run.config_hash}); "
            "it is never reused or overwritten: choose another --results folder or delete that run"
        )
    run_dir.root.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir.lock)
    if not lock.acquire():
        return RunOutcome(run.run_id, "locked", f"another process holds {run_dir.lock}")
    try:
        if run_dir.is_done(run.config_hash):
            return RunOutcome(run.run_id, "done")
        broken = run_dir.done_but_broken(run.config_hash)
        if broken:
            say(f"{run.run_id}: {broken}; repairing the run")
            run_dir.done.unlink()
        run_dir.failed.unlink(missing_ok=True)
        if stored is None:
            run_dir.write_config(run.run_id, run.config_hash, run.config, run.data_paths)
        run_dir.write_env(environment(device, run.seed))
        return train_and_fuse(run, cfg, run_dir, device, progress)
    finally:
        lock.release()


def _worker(args: tuple[RunSpec, str, str, str, int, list[str]]) -> RunOutcome:
    """Run one run in a fresh process (parallel workers, Slurm jobs): reload the config, then execute.

    A stop request ends the run at a safe point with the outcome ``interrupted``.
    """
    run, config_path, results, device, threads, overrides = args
    torch.set_num_threads(threads)
    try:
        return execute(run, load_config(config_path, overrides), Path(results), device, progress=False)
    except interrupts.Interrupted as exc:
        return RunOutcome(run.run_id, "interrupted", str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the grid
        return RunOutcome(run.run_id, "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


class SlurmJob:
    """A run as a submitit job; on preemption or timeout submitit requeues it and it resumes from its
    last checkpoint, giving the numbers an uninterrupted run would have given."""

    def __call__(self, args: tuple[RunSpec, str, str, str, int, list[str]]) -> RunOutcome:
        return _worker(args)

    def checkpoint(self, args: tuple[RunSpec, str, str, str, int, list[str]]) -> Any:
        """What submitit resubmits after a preemption signal: the same job with the same arguments."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, args)


def launch(runs: list[RunSpec], cfg: Config, profile: Profile, config_path: str, results: Path, device: str,
           workers: int, launcher: str, overrides: list[str]) -> list[RunOutcome]:  # fmt: skip
    """Run the grid: sequentially, in ``workers`` processes, or as Slurm jobs through submitit."""
    if launcher == "slurm":
        return launch_slurm(runs, profile, config_path, results, device, overrides)
    if workers <= 1:
        outcomes = []
        for run in runs:
            try:
                outcomes.append(execute(run, cfg, results, device))
            except (ConfigError, DataError, StoreError, interrupts.Interrupted):
                raise
            except Exception as exc:  # noqa: BLE001
                outcomes.append(RunOutcome(run.run_id, "failed", f"{type(exc).__name__}: {exc}"))
            print(outcomes[-1].line())
        return outcomes
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [(run, config_path, str(results), device, threads, overrides) for run in runs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=interrupts.stop_on_signals) as pool:
        futures = [pool.submit(_worker, job) for job in jobs]
        outcomes = []
        for future in futures:
            if not future.cancelled():
                outcomes.append(future.result())
            if interrupts.requested() is not None:  # a stop request: start no further run
                for later in futures:
                    later.cancel()
    for o in outcomes:
        print(o.line())
    return outcomes


def launch_slurm(runs: list[RunSpec], profile: Profile, config_path: str, results: Path, device: str,
                 overrides: list[str], executor: Any = None) -> list[RunOutcome]:  # fmt: skip
    """Submit the runs as one Slurm job array through submitit and wait for them.

    Resources come from the profile's ``slurm`` block (submitit's parameter names, e.g.
    ``timeout_min``, ``slurm_partition``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``).
    ``executor`` lets tests pass submitit's local executor.
    """
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install -e '.[slurm]'") from None
    resources = dict(profile.slurm)
    if executor is None:
        executor = submitit.AutoExecutor(folder=str(ResultsFolder(results).slurm))
    executor.update_parameters(**resources)
    threads = int(resources.get("cpus_per_task", 1))
    with executor.batch():  # one job array: each task resumes its own run, and is requeued on preemption
        jobs = [executor.submit(SlurmJob(), (run, config_path, str(results), device, threads, overrides)) for run in runs]
    outcomes = [job.result() for job in jobs]
    for o in outcomes:
        print(o.line())
    return outcomes
