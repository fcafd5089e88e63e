"""Runs a profile: trains every run, fuses the test sets, scores them, and summarises.

Run store: ``<results>/<profile>/runs/<run-id>/`` holds ``config.yaml`` (the
resolved config with its hash), ``env.json``, ``train_log.csv``,
``checkpoints/last.pt``, ``fused/<test>/<image>.png`` (8-bit Y) and
``fused_rgb/<test>/<image>.png``, ``metrics.csv``, and last ``done.json``
(or ``failed.json``). Rerunning skips completed runs, resumes interrupted ones
from their last checkpoint, and refuses to reuse a directory whose stored
config hash differs. A lock file keeps two processes off one run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm import tqdm

from benchmark.config import Config, ConfigError, Profile, RunSpec, load_config
from benchmark.data import DataError, ycbcr_to_rgb
from benchmark.evaluate import atomic_write_text
from benchmark.metrics import evaluate, metric_names
from benchmark.training import NonFiniteLoss, PatchSampler, StepLog, Trainer

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunOutcome:
    """What happened to one run."""

    run_id: str
    status: str  # "done" (already complete), "trained", "failed", "locked"
    message: str = ""
    seconds: float = 0.0


# ----------------------------------------------------------------- small helpers


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return device


def git_commit() -> str:
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


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


class RunLock:
    """An exclusive lock file holding ``host:pid``; a lock left by a dead process on this host is taken over."""

    def __init__(self, path: Path):
        self.path, self.held = path, False

    def acquire(self) -> bool:
        me = f"{socket.gethostname()}:{os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self.held = True
            return True
        return False

    def _stale(self) -> bool:
        try:
            host, _, pid = self.path.read_text().partition(":")
        except OSError:
            return False
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def normalise(y: torch.Tensor, mode: str) -> torch.Tensor:
    """Output normalisation before saving: ``clamp``, ``image_minmax`` / ``batch_minmax`` (per image here)."""
    if mode in ("clamp", "none"):
        return y.clamp(0, 1)
    lo, hi = y.amin(dim=(-2, -1), keepdim=True), y.amax(dim=(-2, -1), keepdim=True)
    return ((y - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def load_training_images(dataset) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, ir, vis_y) float32 arrays in [0, 1] for every training pair."""
    out = []
    for i in range(len(dataset)):
        s = dataset[i]
        out.append((s.name, s.ir_unit, s.vi_ycbcr[0]))
    return out


# ------------------------------------------------------------------- one run


class RunDir:
    """Paths of one run directory."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / "config.yaml"
        self.env = root / "env.json"
        self.log = root / "train_log.csv"
        self.ckpt = root / "checkpoints" / "last.pt"
        self.metrics = root / "metrics.csv"
        self.done = root / "done.json"
        self.failed = root / "failed.json"
        self.lock = root / "lock"

    def stored_hash(self) -> str | None:
        if not self.config.is_file():
            return None
        return (yaml.safe_load(self.config.read_text()) or {}).get("config_hash")

    def is_done(self, config_hash: str) -> bool:
        if not self.done.is_file():
            return False
        return json.loads(self.done.read_text()).get("config_hash") == config_hash


def _log_header(parts: Sequence[str]) -> list[str]:
    return ["step", "phase", "lr", "loss", *parts, "seconds"]


def _read_log(path: Path, upto: int) -> list[list[str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return [r for r in rows[1:] if int(r[0]) <= upto]


def train_run(run: RunSpec, cfg: Config, run_dir: RunDir, device: str, progress: bool = True) -> tuple[Trainer, str | None]:
    """Train (or resume) one run with logging and checkpoints; returns the trainer and an error for a NaN loss."""
    c = run.config
    spec = cfg.models[run.model]
    torch.manual_seed(run.seed)
    np.random.seed(run.seed)
    model = spec.build()
    gradient = {k: v for k, v in c["arm"].items() if k != "name"}
    trainer = Trainer(model, spec.recipe, gradient, c["steps"], device=device, lr=c["lr"])
    train_set = cfg.datasets[c["train"]["name"]].open()
    sampler = PatchSampler(load_training_images(train_set), c["patch_size"], c["batch_size"], seed=run.seed)
    parts = list(dict.fromkeys(p for objective in trainer.objectives for p in objective.terms))
    rows: list[list[str]] = []
    if run_dir.ckpt.is_file():
        trainer.load_state_dict(torch.load(run_dir.ckpt, weights_only=False), sampler)
        rows = _read_log(run_dir.log, trainer.step)

    def write_log() -> None:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(_log_header(parts))
        writer.writerows(rows)
        atomic_write_text(run_dir.log, out.getvalue())

    bar = tqdm(total=c["steps"], initial=trainer.step, desc=run.run_id, unit="step", disable=not progress, leave=False)
    started = time.perf_counter()

    def on_step(log: StepLog) -> None:
        bar.update()
        if log.step % run.log_every == 0 or log.step == c["steps"]:
            rows.append([str(log.step), log.phase, repr(log.lr), repr(log.loss),
                         *(repr(log.parts.get(p, float("nan"))) for p in parts),
                         f"{time.perf_counter() - started:.3f}"])  # fmt: skip
            bar.set_postfix({"loss": f"{log.loss:.4f}", **{p: f"{v:.3f}" for p, v in log.parts.items()}})
        if log.step % c["checkpoint_every"] == 0 or log.step == c["steps"]:
            atomic_save(trainer.state_dict(sampler), run_dir.ckpt)
            write_log()

    run_dir.ckpt.parent.mkdir(parents=True, exist_ok=True)
    try:
        trainer.run(sampler, on_step=on_step)
    except NonFiniteLoss as exc:
        write_log()
        return trainer, str(exc)
    finally:
        bar.close()
    return trainer, None


def train_and_evaluate(run: RunSpec, cfg: Config, run_dir: RunDir, device: str, progress: bool = True) -> RunOutcome:
    """Train (or resume) one run, then fuse and score its test sets; writes ``done.json`` last."""
    start = time.perf_counter()
    trainer, error = train_run(run, cfg, run_dir, device, progress)
    if error is not None:
        write_json(run_dir.failed, {"run_id": run.run_id, "config_hash": run.config_hash, "error": error,
                                    "step": trainer.step})  # fmt: skip
        return RunOutcome(run.run_id, "failed", error, time.perf_counter() - start)
    metrics_rows = evaluate_run(trainer.model, run, cfg, run_dir, device)
    means, nan_counts = {}, {}
    for test in run.config["test"]:
        values = {m: np.array([r[m] for r in metrics_rows if r["test"] == test], dtype=float) for m in metric_names()}
        means[test] = {m: float(np.nanmean(v)) if (~np.isnan(v)).any() else float("nan") for m, v in values.items()}
        nan_counts[test] = {m: int(np.isnan(v).sum()) for m, v in values.items() if np.isnan(v).any()}
    write_json(run_dir.done, {"run_id": run.run_id, "config_hash": run.config_hash, "steps": trainer.step,
                              "seconds": time.perf_counter() - start, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "means": means, "nan_counts": nan_counts})  # fmt: skip
    return RunOutcome(run.run_id, "trained", "", time.perf_counter() - start)


def evaluate_run(model: torch.nn.Module, run: RunSpec, cfg: Config, run_dir: RunDir, device: str) -> list[dict[str, Any]]:
    """Fuse every test image at full resolution, save 8-bit Y and colour PNGs, score, write ``metrics.csv``."""
    model.eval()
    if hasattr(model, "set_phase"):
        model.set_phase(cfg.models[run.model].recipe.phases[-1].name)
    names = metric_names()
    rows: list[dict[str, Any]] = []
    for test in run.config["test"]:
        dataset = cfg.datasets[test].open()
        for sub in ("fused", "fused_rgb"):
            (run_dir.root / sub / test).mkdir(parents=True, exist_ok=True)
        for i in range(len(dataset)):
            s = dataset[i]
            ir = torch.from_numpy(s.ir_unit)[None, None].to(device)
            vis = torch.from_numpy(s.vi_ycbcr[0])[None, None].to(device)
            with torch.no_grad():  # float32 even on CUDA: bf16 would move saved grey levels by up to one
                y = model(ir, vis).float()
            y = normalise(y, run.config["normalisation"])[0, 0].cpu().numpy()
            y8 = np.round(y * 255).astype(np.uint8)
            Image.fromarray(y8).save(run_dir.root / "fused" / test / f"{s.name}.png")
            rgb = ycbcr_to_rgb(np.stack([y8 / 255.0, s.vi_ycbcr[1], s.vi_ycbcr[2]]))
            Image.fromarray(rgb).save(run_dir.root / "fused_rgb" / test / f"{s.name}.png")
            values = evaluate(y8.astype(np.float64), s.ir_grey, s.vi_grey)
            rows.append({"test": test, "image": s.name, **values})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["test", "image", *names])
    for r in rows:
        writer.writerow([r["test"], r["image"], *(repr(float(r[m])) for m in names)])
    atomic_write_text(run_dir.metrics, out.getvalue())
    return rows


def execute(run: RunSpec, cfg: Config, results: Path, device: str, progress: bool = True) -> RunOutcome:
    """Run one run in this process, honouring completion, config hash and lock."""
    run_dir = RunDir(results / "runs" / run.run_id)
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
        run_dir.failed.unlink(missing_ok=True)
        if stored is None:
            atomic_write_text(run_dir.config, yaml.safe_dump({"run_id": run.run_id, "config_hash": run.config_hash,
                                                              **run.config}, sort_keys=False))  # fmt: skip
        write_json(run_dir.env, environment(device, run.seed))
        return train_and_evaluate(run, cfg, run_dir, device, progress)
    finally:
        lock.release()


# ----------------------------------------------------------------- launchers


def _worker(args: tuple[RunSpec, str, str, str, int, list[str]]) -> RunOutcome:
    """Run one run in a fresh process (parallel workers, Slurm jobs): reload the config, then execute."""
    run, config_path, results, device, threads, overrides = args
    torch.set_num_threads(threads)
    cfg = load_config(config_path, overrides)
    try:
        return execute(run, cfg, Path(results), device, progress=False)
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the grid
        return RunOutcome(run.run_id, "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


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
            except (ConfigError, DataError):
                raise
            except Exception as exc:  # noqa: BLE001
                outcomes.append(RunOutcome(run.run_id, "failed", f"{type(exc).__name__}: {exc}"))
            print(f"{outcomes[-1].status:8s} {run.run_id} {outcomes[-1].message}".rstrip())
        return outcomes
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [(run, config_path, str(results), device, threads, overrides) for run in runs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        outcomes = list(pool.map(_worker, jobs))
    for o in outcomes:
        print(f"{o.status:8s} {o.run_id} {o.message.splitlines()[0] if o.message else ''}".rstrip())
    return outcomes


def launch_slurm(runs: list[RunSpec], profile: Profile, config_path: str, results: Path, device: str,
                 overrides: list[str], executor: Any = None) -> list[RunOutcome]:  # fmt: skip
    """Submit each run as a job through submitit and wait for them.

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
        executor = submitit.AutoExecutor(folder=str(results / "slurm"))
    executor.update_parameters(**resources)
    threads = int(resources.get("cpus_per_task", 1))
    jobs = [executor.submit(_worker, (run, config_path, str(results), device, threads, overrides)) for run in runs]
    outcomes = [job.result() for job in jobs]
    for o in outcomes:
        print(f"{o.status:8s} {o.run_id} {o.message.splitlines()[0] if o.message else ''}".rstrip())
    return outcomes


# ------------------------------------------------------------------- summary


def summarise(runs: list[RunSpec], results: Path) -> list[dict[str, Any]]:
    """``summary.csv``: one row per completed run and test set with the mean of each metric.

    A mean excludes NaN values; the ``nan_values`` column counts them (``CC:2;SCD:1``).
    """
    rows = []
    for run in runs:
        run_dir = RunDir(results / "runs" / run.run_id)
        if not run_dir.is_done(run.config_hash):
            continue
        done = json.loads(run_dir.done.read_text())
        for test, values in done["means"].items():
            nans = done.get("nan_counts", {}).get(test, {})
            rows.append({"run_id": run.run_id, "model": run.model, "arm": run.arm, "seed": run.seed, "test": test,
                         "nan_values": ";".join(f"{m}:{n}" for m, n in nans.items()), **values})  # fmt: skip
    names = metric_names()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run_id", "model", "arm", "seed", "test", *names, "nan_values"])
    for r in rows:
        writer.writerow([r["run_id"], r["model"], r["arm"], r["seed"], r["test"], *(repr(r[m]) for m in names), r["nan_values"]])
    atomic_write_text(results / "summary.csv", out.getvalue())
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """Means over seeds per (test, model, arm), two decimals; ``*`` marks means that exclude NaN values."""
    names = metric_names()
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["test"], r["model"], r["arm"]), []).append(r)
    header = ["test", "model", "arm", "seeds", *names]
    body, notes = [], []
    for (t, m, a), g in groups.items():
        cells = [t, m, a, str(len(g))]
        flagged = {item.split(":")[0] for r in g for item in r["nan_values"].split(";") if item}
        for n in names:
            vals = np.array([r[n] for r in g], dtype=float)
            cells.append(("nan" if np.isnan(vals).all() else f"{np.nanmean(vals):.2f}") + ("*" if n in flagged else ""))
        body.append(cells)
    for r in rows:
        if r["nan_values"]:
            notes.append(f"* {r['run_id']} on {r['test']}: NaN values excluded from the means ({r['nan_values']})")
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *body]]
    return "\n".join(lines + notes)


# ---------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_all.py", description="Train, fuse and score the runs of a profile.")
    parser.add_argument("--config", default=str(ROOT / "experiments.yaml"), help="experiments file")
    parser.add_argument("--profile", help="profile name (default: the file's default_profile)")
    parser.add_argument("--only", help="filter runs, e.g. model=seafusion,loss=damgl")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a config field")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and which are done")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="overrides the profile's device")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--launcher", default="local", choices=["local", "slurm"])
    parser.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    return parser


def _filter(runs: list[RunSpec], only: str | None) -> list[RunSpec]:
    if not only:
        return runs
    keys = {"model": "model", "loss": "arm", "arm": "arm", "seed": "seed"}
    wanted: dict[str, set[str]] = {}
    for item in only.split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise ConfigError(f"--only: expected key=value with key in {sorted(keys)}, got '{item}'")
        wanted.setdefault(keys[key], set()).add(value)
    return [r for r in runs if all(str(getattr(r, k)) in v for k, v in wanted.items())]


def main(argv: Sequence[str] | None = None) -> int:
    """``run_all.py`` / ``python -m benchmark run``."""
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        profile = cfg.profile(args.profile)
        runs = _filter(cfg.plan(profile), args.only)
        results = Path(args.results) / profile.name
        if args.dry_run:
            for run in runs:
                run_dir = RunDir(results / "runs" / run.run_id)
                state = "done" if run_dir.is_done(run.config_hash) else ("partial" if run_dir.ckpt.is_file() else "todo")
                print(f"{state:8s} {run.run_id}  (config {run.config_hash})")
            print(f"{len(runs)} runs in profile '{profile.name}' -> {results}")
            return 0
        device = resolve_device(args.device or profile.device)
        print(f"profile '{profile.name}': {len(runs)} runs on {device} -> {results}")
        results.mkdir(parents=True, exist_ok=True)
        write_json(results / "study.json", profile.study())
        outcomes = launch(runs, cfg, profile, args.config, results, device, args.workers, args.launcher, args.set)
        rows = summarise(runs, results)
        if rows:
            print(format_summary(rows))
            from benchmark.reports import build_report

            build_report(results)
            print(f"tables and figures: {results / 'summary.md'} (rebuild with python -m benchmark report --results {results})")
        failed = [o for o in outcomes if o.status == "failed"]
        for o in failed:
            print(f"failed: {o.run_id}: {o.message.splitlines()[0] if o.message else ''}", file=sys.stderr)
        return 1 if failed else 0
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
