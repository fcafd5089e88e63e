"""The launch stage: run planned runs in this process or in a pool of processes (Slurm: :mod:`benchmark.slurm`).

:func:`execute` makes one run complete: it skips a finished run, refuses a run
directory whose stored config hash differs, takes the run's lock, trains
(:mod:`benchmark.train`), fuses and scores (:mod:`benchmark.fuse`), and writes
``done.json`` last (or ``failed.json``), all through the run store.
"""

from __future__ import annotations

import contextlib
import io
import socket
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from benchmark import interrupts
from benchmark.config import ConfigError
from benchmark.console import say
from benchmark.data import DataError
from benchmark.fuse import fuse_run
from benchmark.plan import RunSpec
from benchmark.provenance import git_commit, versions
from benchmark.store import ResultsFolder, RunDir, RunLock, StoreError
from benchmark.train import train_run


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


def environment(device: str, seed: int, packed_with: list[str] | None = None) -> dict[str, Any]:
    """Versions, commit, device and seed of a run (and the runs it trained with, when packed)."""
    info: dict[str, Any] = {
        **versions("torch", "numpy", "numba", "piq"),
        "host": socket.gethostname(),
        "git_commit": git_commit(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "seed": seed,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    if packed_with:
        info["packed_with"] = list(packed_with)
    return info


def _finish(run: RunSpec, run_dir: RunDir, device: str,
            trained: tuple[Any, str | None, float, dict[str, Any]], progress: bool = True) -> RunOutcome:  # fmt: skip
    """After training: ``failed.json`` for a NaN loss, else fuse and score the test sets with the network of
    each selection rule and write ``done.json`` last (with the wall-clock seconds of the whole run, training
    counted across resumes).

    The primary rule's network fills ``fused/`` and ``metrics.csv``; each further rule's its own folder of the
    store, and a rule that picks a step already scored reuses those scores. A run without validation scores
    its last step's network.
    """
    trainer, error, seconds_trained, ending = trained
    if error is not None:
        run_dir.write_failed(run.run_id, run.config_hash, error, trainer.step)
        return RunOutcome(run.run_id, "failed", error, seconds_trained)
    start = time.perf_counter()
    picks: dict[str, int] = ending.get("select", {})
    scored: dict[int, RunDir] = {}
    for rule, step in picks.items() or [("last", None)]:
        target = run_dir if rule == ending.get("selected", rule) else run_dir.rule_dir(rule)
        if step in scored:
            target.copy_metrics(scored[step])
            continue
        if step is not None:
            weights = run_dir.val_weights(step)
            trainer.model.load_state_dict(torch.load(io.BytesIO(weights), map_location=trainer.device, weights_only=True))
        fuse_run(trainer.model, run, target, device, progress)
        scored[step] = target
    seconds = seconds_trained + time.perf_counter() - start
    run_dir.write_done(run.run_id, run.config_hash, trainer.step, seconds, time.strftime("%Y-%m-%d %H:%M:%S"),
                       [r for r in picks if r != ending.get("selected")], **ending)  # fmt: skip
    return RunOutcome(run.run_id, "trained", "", seconds)


def train_and_fuse(run: RunSpec, run_dir: RunDir, device: str, progress: bool = True) -> RunOutcome:
    """Train (or resume) one run, then fuse and score its test sets; writes ``done.json`` last."""
    return _finish(run, run_dir, device, train_run(run, run_dir, device, progress), progress)


def _claim(run: RunSpec, results: Path, device: str,
           packed_with: list[str] | None = None) -> RunOutcome | tuple[RunDir, RunLock]:  # fmt: skip
    """Make a run ready to train: its outcome if it is finished or locked, else its directory (config and
    env written, a broken ``done.json`` or an old ``failed.json`` removed) and its lock, held.

    A ``done.json`` whose ``metrics.csv`` is missing or changed does not count: the run is repaired (resumed
    from its checkpoint, fused and scored again), saying so.
    """
    run_dir = ResultsFolder(results).run(run.run_id)
    if run_dir.is_done(run.config_hash):  # finished runs are reported as done even after a stop request
        return RunOutcome(run.run_id, "done")
    interrupts.check(run.run_id, "before it started")
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
    if run_dir.is_done(run.config_hash):
        lock.release()
        return RunOutcome(run.run_id, "done")
    broken = run_dir.done_but_broken(run.config_hash)
    if broken:
        say(f"{run.run_id}: {broken}; repairing the run")
        run_dir.done.unlink()
    run_dir.failed.unlink(missing_ok=True)
    if stored is None:  # the gradient scale is recorded even at 1, where it is left out of the hash
        run_dir.write_config(run.run_id, run.config_hash, {**run.config, "gradient_scale": run.config.get("gradient_scale", 1.0)},
                             run.data_paths)  # fmt: skip
    run_dir.write_env(environment(device, run.seed, packed_with))
    return run_dir, lock


def execute(run: RunSpec, results: Path, device: str, progress: bool = True) -> RunOutcome:
    """Run one run in this process, honouring completion, config hash and lock (see :func:`_claim`)."""
    claimed = _claim(run, results, device)
    if isinstance(claimed, RunOutcome):
        return claimed
    run_dir, lock = claimed
    try:
        return train_and_fuse(run, run_dir, device, progress)
    finally:
        lock.release()


def execute_pack(runs: list[RunSpec], results: Path, device: str, progress: bool = True) -> list[RunOutcome]:
    """Train several runs of one model together in this process (:mod:`benchmark.pack`), then fuse and score
    each; every run is claimed, logged, checkpointed and finished as :func:`execute` does it alone."""
    from benchmark.pack import NotPackable, train_packed

    outcomes: dict[str, RunOutcome] = {}
    ready: list[tuple[RunSpec, RunDir, RunLock]] = []
    try:
        for run in runs:
            claimed = _claim(run, results, device, [r.run_id for r in runs if r is not run])
            if isinstance(claimed, RunOutcome):
                outcomes[run.run_id] = claimed
            else:
                ready.append((run, *claimed))
        try:
            trained = train_packed([r for r, _, _ in ready], [d for _, d, _ in ready], device, progress) if ready else []
        except NotPackable as exc:
            say(f"{exc}; its {len(ready)} runs train one by one")
            trained = [train_run(run, run_dir, device, progress) for run, run_dir, _ in ready]
        for (run, run_dir, _), result in zip(ready, trained):
            outcomes[run.run_id] = _finish(run, run_dir, device, result, progress)
    finally:
        for _, _, lock in ready:
            lock.release()
    return [outcomes[r.run_id] for r in runs]


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch (and oneDNN) and in the compiled metric kernels.

    Numba starts its thread pool on first use. Started late, by a run's first validation after torch had
    trained, it reset the OpenMP thread count that torch and oneDNN use to Numba's default: runs trained
    with one thread until their first validation and with two after it (several times slower with two runs
    on two cores, and with other sums). Setting Numba's count starts the pool here, before any torch work;
    torch's count is set after it.
    """
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(n)


@contextlib.contextmanager
def threads_for(n: int) -> Iterator[None]:
    """:func:`set_threads` for the block, then the caller's counts again (an in-process launch leaves the
    process as it found it)."""
    import numba

    before = torch.get_num_threads(), numba.get_num_threads()
    set_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before[1])
        torch.set_num_threads(before[0])


def run_worker(args: tuple[RunSpec, str, str]) -> RunOutcome:
    """Run one run in a fresh process (parallel workers, Slurm jobs). The run carries everything it was planned
    with (model block, data sources, budget, threads, hash): the experiments file is never read again, so an
    edit made while a study runs changes no run. A stop request ends the run at a safe point with the outcome
    ``interrupted``.
    """
    run, results, device = args
    set_threads(run.config["threads"])
    try:
        return execute(run, Path(results), device, progress=False)
    except interrupts.Interrupted as exc:
        return RunOutcome(run.run_id, "interrupted", str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the grid
        return RunOutcome(run.run_id, "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


def pack_groups(runs: list[RunSpec], size: int) -> list[list[RunSpec]]:
    """Runs in plan order, grouped into packs of at most ``size`` runs that share a model, batch and patch
    size (their arms and seeds may differ); ``size`` 1: one run a group."""
    groups: list[list[RunSpec]] = []
    open_group: dict[tuple, list[RunSpec]] = {}
    for run in runs:
        key = (run.model, run.config["batch_size"], run.config["patch_size"])
        group = open_group.get(key)
        if group is None or len(group) >= size:
            group = open_group[key] = []
            groups.append(group)
        group.append(run)
    return groups


def _pack_worker(args: tuple[list[RunSpec], str, str]) -> list[RunOutcome]:
    """:func:`run_worker` for a pack of runs (:func:`execute_pack`)."""
    runs, results, device = args
    set_threads(runs[0].config["threads"])  # a pack's runs share their profile, so their thread count
    try:
        return execute_pack(runs, Path(results), device, progress=False)
    except interrupts.Interrupted as exc:
        return [RunOutcome(run.run_id, "interrupted", str(exc)) for run in runs]
    except Exception as exc:  # noqa: BLE001 - one broken pack must not stop the grid
        return [RunOutcome(run.run_id, "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}") for run in runs]


def launch(runs: list[RunSpec], results: Path, device: str, workers: int, pack: int = 1) -> list[RunOutcome]:
    """Run the grid on this machine: in this process or in ``workers`` processes; with ``pack`` > 1, runs of
    one model train in packs of that many (:mod:`benchmark.pack`). Each run computes with its config's
    ``threads``, whichever way it is launched, so its numbers do not depend on the launcher."""
    groups = pack_groups(runs, pack)
    if workers <= 1:
        outcomes = []
        for group in groups:
            try:
                with threads_for(group[0].config["threads"]):
                    done = [execute(group[0], results, device)] if len(group) == 1 else execute_pack(group, results, device)
            except (ConfigError, DataError, StoreError, interrupts.Interrupted):
                raise
            except Exception as exc:  # noqa: BLE001
                done = [RunOutcome(run.run_id, "failed", f"{type(exc).__name__}: {exc}") for run in group]
            outcomes += done
            for o in done:
                print(o.line())
        return outcomes
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=interrupts.stop_on_signals) as pool:
        futures = [pool.submit(run_worker, (g[0], str(results), device)) if len(g) == 1 else
                   pool.submit(_pack_worker, (g, str(results), device)) for g in groups]  # fmt: skip
        outcomes = []
        for future in futures:
            if not future.cancelled():
                result = future.result()
                outcomes += result if isinstance(result, list) else [result]
            if interrupts.requested() is not None:  # a stop request: start no further run
                for later in futures:
                    later.cancel()
    for o in outcomes:
        print(o.line())
    return outcomes
