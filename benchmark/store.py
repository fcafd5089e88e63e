"""The run store: the one module that knows the layout of a results folder and the format of its files.

A profile's results folder ``<results>/<profile>/`` holds::

    study.json                 what the study plans (arms, ablation groups, grids), written before training
    summary.csv                one row per finished run and test set (image means, NaN counts)
    summary.md, tables/, figures/, examples/      the report
    report.lock                held while a process reads the runs and writes the report
    slurm/                     submitit's job files; queue.csv: what the harness did to the study's Slurm
                               tasks (a task cancelled, a task that ended without its run's result)
    runs/<run-id>/             one run, ``<model>__<arm>__<train>__s<seed>``:
        config.yaml            the resolved config, its hash, and where the data was read from
        env.json               versions, git commit, device, seed
        train_log.csv          step, phase, lr, loss, each objective part, seconds
        val_log.csv            step, epoch, the stopping criterion and what it sums, at each validation
        checkpoints/last.pt    everything needed to resume exactly, with last.pt.sha256; the
                               checkpoint before it is kept as previous.pt
        checkpoints/val/<step>.pt     the weights validated at that step, with their digest (every
                               validation's, or with ``keep_weights: selected`` those a rule selects)
        fused/<test>/<image>.png      fused 8-bit Y of the primary selection rule's network
        fused_rgb/<test>/<image>.png  colour image rebuilt with the visible Cb/Cr
        metrics.csv            per-image metric values of the primary rule's network
        select/<rule>/         fused/, fused_rgb/ and metrics.csv of each further selection rule
        done.json              written last: the run is complete (the step each rule scored, the
                               digest of every metrics.csv)
        failed.json            instead of done.json: why the run failed
        lock                   held by the process working on the run

Every file is written through a temporary file and a rename, readable by others
(mode 0666 less the umask, 0644 under the usual 022), so no reader ever sees a
half-written file; a failed write (a full disk, a read-only folder) raises
:class:`StoreError` naming the path and leaves nothing behind. :func:`load_study`
reads a folder back for the reports.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:
    import pandas as pd

STUDY, SUMMARY_CSV, SUMMARY_MD, WRITE_UP = "study.json", "summary.csv", "summary.md", "README.md"
RUNS, TABLES, FIGURES, EXAMPLES, SLURM, DATA = "runs", "tables", "figures", "examples", "slurm", "data"
SLURM_QUEUE = "queue.csv"
CONFIG, ENV, TRAIN_LOG, VAL_LOG, METRICS, DONE, FAILED, LOCK = (
    "config.yaml", "env.json", "train_log.csv", "val_log.csv", "metrics.csv", "done.json", "failed.json", "lock")  # fmt: skip
CHECKPOINT, PREVIOUS = (Path("checkpoints") / name for name in ("last.pt", "previous.pt"))
VAL_WEIGHTS, SELECT = Path("checkpoints") / "val", "select"
DIGEST_SUFFIX, REPORT_LOCK, REPORT_STAGING = ".sha256", "report.lock", ".report-staging"
FUSED, FUSED_RGB = "fused", "fused_rgb"
# what a study compares with, and its primary metric family (the DAMGL paper's six), unless it says otherwise
DEFAULT_BASE_ARM, DEFAULT_PRIMARY_METRICS = "magnitude", ("EN", "MI", "SD", "SCD", "VIF", "Qabf")


class StoreError(ValueError):
    """A results folder or run directory that cannot be read as the store writes it."""


# ------------------------------------------------------------------ atomic files


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file gets mode 0666 less the umask (0644 under umask 022), as a plain ``open`` would.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text, newlines as given."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]], lineterminator: str = "\r\n") -> str:
    """CSV text of a header and rows (cells as given)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=lineterminator)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def sha256(path: Path) -> str:
    """Hex digest of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------ names


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,-]+", "-", text).strip("-")


def run_id(model: str, arm: str, train: str, seed: int, scale: float = 1.0) -> str:
    """The readable name of a run's directory: ``<model>__<arm>__<train>__s<seed>``, the arm followed by
    ``-x<scale>`` where its gradient weight is scaled (``pmgi__damgl-x0.5__roadscene_fit__s100``)."""
    arm = _slug(arm) + (f"-x{scale:g}" if scale != 1 else "")
    return "__".join([_slug(model), arm, _slug(train), f"s{seed}"])


def image_file(stem: str) -> str:
    """File name of a fused image."""
    return f"{stem}.png"


# ------------------------------------------------------------------------ locks


class RunLock:
    """An exclusive lock file holding ``host:pid``; a lock left by a dead process on this host is taken over."""

    def __init__(self, path: Path):
        self.path, self.held = path, False

    def acquire(self) -> bool:
        me = f"{socket.gethostname()}:{os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
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


# -------------------------------------------------------------------- one run


class RunDir:
    """One run directory: its paths and the reading and writing of its files."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / CONFIG
        self.env = self.root / ENV
        self.log = self.root / TRAIN_LOG
        self.val_log = self.root / VAL_LOG
        self.val_weights_dir = self.root / VAL_WEIGHTS
        self.ckpt = self.root / CHECKPOINT
        self.previous = self.root / PREVIOUS
        self.metrics = self.root / METRICS
        self.done = self.root / DONE
        self.failed = self.root / FAILED
        self.lock = self.root / LOCK

    # -- state
    def stored_hash(self) -> str | None:
        """The config hash recorded in ``config.yaml``, or ``None`` for a new directory."""
        if not self.config.is_file():
            return None
        return (yaml.safe_load(self.config.read_text()) or {}).get("config_hash")

    def is_done(self, config_hash: str) -> bool:
        """Whether ``done.json`` marks this config as complete and ``metrics.csv`` is the file it recorded."""
        if not self.done.is_file():
            return False
        try:
            done = json.loads(self.done.read_text())
        except ValueError:
            return False
        if done.get("config_hash") != config_hash or not self.metrics.is_file():
            return False
        digest = sha256(self.metrics)
        if done.get("metrics_sha256", digest) != digest:
            return False
        others = {rule: self.rule_dir(rule).metrics for rule in done.get("rule_metrics_sha256", {})}
        return all(path.is_file() and sha256(path) == done["rule_metrics_sha256"][rule] for rule, path in others.items())

    def adopt(self, other: RunDir) -> None:
        """Make this run, whose directory does not exist yet, a copy of ``other``: a finished run of the same
        config in another results folder. Everything but its checkpoints and lock is copied beside the new
        directory and renamed into place, so the copy appears whole or not at all."""
        if self.root.exists():
            raise StoreError(f"{self.root} exists; a finished run is copied only into a new run directory")
        staging = self.root.with_name(f".{self.root.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copytree(other.root, staging, ignore=shutil.ignore_patterns(CHECKPOINT.parent.name, LOCK))
            os.replace(staging, self.root)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise StoreError(f"cannot copy {other.root} to {self.root}: {exc.strerror or exc}") from exc

    def state(self, config_hash: str) -> str:
        """``done``, ``partial`` (a checkpoint to resume from) or ``todo``."""
        if self.is_done(config_hash):
            return "done"
        return "partial" if self.ckpt.is_file() or self.previous.is_file() else "todo"

    def done_but_broken(self, config_hash: str) -> str | None:
        """Why a ``done.json`` of this config does not stand (``metrics.csv`` missing or changed), else ``None``."""
        if not self.done.is_file() or self.is_done(config_hash):
            return None
        try:
            done = json.loads(self.done.read_text())
        except (OSError, ValueError) as exc:
            return f"{self.done} is unreadable ({exc})"
        if done.get("config_hash") != config_hash:
            return None
        for path in [self.metrics, *(self.rule_dir(r).metrics for r in done.get("rule_metrics_sha256", {}))]:
            if not path.is_file():
                return f"{self.done} exists but {path.relative_to(self.root)} is missing"
        return f"{self.done} does not match {self.metrics.name} or another metrics file it recorded (changed after the run finished)"

    # -- writing
    def write_config(self, run_id: str, config_hash: str, config: dict[str, Any], data_paths: dict[str, Any]) -> None:
        """``config.yaml``: id, hash, the resolved config, then where each dataset was read from (not hashed)."""
        body = {"run_id": run_id, "config_hash": config_hash, **config, "data_paths": data_paths}
        atomic_write_text(self.config, yaml.safe_dump(body, sort_keys=False))

    def write_env(self, env: dict[str, Any]) -> None:
        write_json(self.env, env)

    def write_log(self, parts: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """``train_log.csv`` with columns step, phase, lr, loss, each part, seconds."""
        atomic_write_text(self.log, csv_text(["step", "phase", "lr", "loss", *parts, "seconds"], rows))

    def read_log(self, upto: int) -> list[list[str]]:
        """Logged rows up to and including step ``upto`` (none for a new run)."""
        if not self.log.is_file():
            return []
        with open(self.log, newline="") as fh:
            rows = list(csv.reader(fh))
        return [r for r in rows[1:] if int(r[0]) <= upto]

    def write_val_log(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """``val_log.csv`` with columns step, epoch, criterion, then the quantities it sums."""
        atomic_write_text(self.val_log, csv_text(["step", "epoch", "criterion", *columns], rows))

    def read_val_log(self, upto: int) -> list[list[str]]:
        """Validation rows up to and including step ``upto``."""
        if not self.val_log.is_file():
            return []
        with open(self.val_log, newline="") as fh:
            return [r for r in list(csv.reader(fh))[1:] if int(r[0]) <= upto]

    def rule_dir(self, rule: str) -> RunDir:
        """Where a further selection rule's fused images and ``metrics.csv`` go (``select/<rule>/``)."""
        return RunDir(self.root / SELECT / rule)

    def _val_weights(self, step: int) -> Path:
        return self.val_weights_dir / f"{step}.pt"

    def save_val_weights(self, step: int, data: bytes) -> None:
        """Write the weights validated at ``step`` and their digest."""
        _write_with_digest(self._val_weights(step), data)

    def val_weights(self, step: int) -> bytes:
        """The weights validated at ``step``.

        Raises:
            StoreError: the file is missing or does not match its digest.
        """
        path = self._val_weights(step)
        if not path.is_file():
            raise StoreError(f"{path}: the weights validated at step {step} are missing")
        data = path.read_bytes()
        if not _matches_digest(path, data):
            raise StoreError(f"{path} does not match its digest {_digest_path(path).name} (truncated or corrupted)")
        return data

    def drop_val_weights(self, keep: set[int] | None = None) -> None:
        """Remove the validated weights of every step not in ``keep`` (all of them for ``None``)."""
        if not self.val_weights_dir.is_dir():
            return
        for path in self.val_weights_dir.glob("*.pt"):
            if keep is None or int(path.stem) not in keep:
                path.unlink(missing_ok=True)
                _digest_path(path).unlink(missing_ok=True)

    def save_checkpoint(self, data: bytes) -> None:
        """Write ``last.pt`` and its digest, keeping the checkpoint it replaces as ``previous.pt``."""
        if self.ckpt.is_file():
            os.replace(self.ckpt, self.previous)
            digest = _digest_path(self.ckpt)
            if digest.is_file():
                os.replace(digest, _digest_path(self.previous))
        _write_with_digest(self.ckpt, data)

    def checkpoints(self) -> Iterator[tuple[Path, bytes | None, str]]:
        """``(path, bytes, problem)`` for ``last.pt`` then ``previous.pt`` where they exist; the bytes are
        ``None`` when the file does not match its recorded digest (truncated or corrupted), with the problem
        in words. A checkpoint without a digest (written before its digest was) is given as it is."""
        for path in (self.ckpt, self.previous):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if _digest_path(path).is_file() and not _matches_digest(path, data):
                yield path, None, f"{path} does not match its digest {_digest_path(path).name} (truncated or corrupted)"
            else:
                yield path, data, ""

    def drop_checkpoints(self) -> None:
        """Remove every checkpoint (a run that restarts from scratch)."""
        for path in (self.ckpt, self.previous):
            path.unlink(missing_ok=True)
            _digest_path(path).unlink(missing_ok=True)
        self.drop_val_weights()

    def fused(self, test: str, stem: str, colour: bool = False) -> Path:
        """Path of a fused image (8-bit Y, or the colour rebuild)."""
        return self.root / (FUSED_RGB if colour else FUSED) / test / image_file(stem)

    def write_metrics(self, names: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
        """``metrics.csv``: test, image, then each metric at full precision (``repr``)."""
        body = [[r["test"], r["image"], *(repr(float(r[m])) for m in names)] for r in rows]
        atomic_write_text(self.metrics, csv_text(["test", "image", *names], body))

    def copy_metrics(self, other: RunDir) -> None:
        """``metrics.csv`` as another selection rule's folder holds it (a rule that picked the same network)."""
        atomic_write_bytes(self.metrics, other.metrics.read_bytes())

    def write_done(self, run_id: str, config_hash: str, steps: int, seconds: float, finished: str,
                   rules: Sequence[str] = (), **training: Any) -> None:  # fmt: skip
        """``done.json``, last: the run is complete; it records the digest of ``metrics.csv`` and of each
        further selection rule's (``rules``), and what ``training`` says of how it ended (plateau, the step
        each rule scored)."""
        others = {rule: sha256(self.rule_dir(rule).metrics) for rule in rules}
        write_json(self.done, {"run_id": run_id, "config_hash": config_hash, "steps": steps, "seconds": seconds,
                               "finished": finished, "metrics_sha256": sha256(self.metrics),
                               **({"rule_metrics_sha256": others} if others else {}), **training})  # fmt: skip

    def write_failed(self, run_id: str, config_hash: str, error: str, step: int) -> None:
        write_json(self.failed, {"run_id": run_id, "config_hash": config_hash, "error": error, "step": step})

    # -- reading
    def read_config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config.read_text())

    def read_json(self, which: str) -> dict[str, Any]:
        """``env``, ``done`` or ``failed`` as a dict."""
        return json.loads(getattr(self, which).read_text())

    def read_metrics(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_csv(self.metrics, dtype={"test": str, "image": str})

    def read_log_frame(self) -> pd.DataFrame | None:
        import pandas as pd

        return pd.read_csv(self.log) if self.log.is_file() else None

    def read_val_frame(self) -> pd.DataFrame | None:
        import pandas as pd

        return pd.read_csv(self.val_log) if self.val_log.is_file() else None


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def _matches_digest(path: Path, data: bytes) -> bool:
    """Whether ``data`` (the bytes of ``path``) match the digest written beside it; ``False`` without one."""
    digest = _digest_path(path)
    return digest.is_file() and digest.read_text().strip() == hashlib.sha256(data).hexdigest()


def _write_with_digest(path: Path, data: bytes) -> None:
    """Write ``data`` and then its SHA-256 digest beside it (a file without its digest is still whole)."""
    atomic_write_bytes(path, data)
    atomic_write_text(_digest_path(path), hashlib.sha256(data).hexdigest() + "\n")


def dataset_source(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Where a run read dataset ``name``: ``{"synthetic": {...}}`` or ``{"path": ..., "split": ...}``.

    Runs written before the config recorded ``data_paths`` kept the paths inside the
    ``train`` / ``test`` entries; both forms are read.
    """
    if "data_paths" in config:
        return config["data_paths"][name]
    entry = config["train"] if config["train"].get("name") == name else config["test"][name]
    return {k: v for k, v in entry.items() if k != "name"}


# ------------------------------------------------------------ a results folder


class ResultsFolder:
    """A profile's results folder ``<results>/<profile>/``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.study = self.root / STUDY
        self.summary_csv = self.root / SUMMARY_CSV
        self.summary_md = self.root / SUMMARY_MD
        self.write_up = self.root / WRITE_UP  # written by hand; the report refreshes only the tables it quotes
        self.tables = self.root / TABLES
        self.figures = self.root / FIGURES
        self.examples = self.root / EXAMPLES
        self.slurm = self.root / SLURM

    def run(self, run_id: str) -> RunDir:
        return RunDir(self.root / RUNS / run_id)

    def staged(self) -> ResultsFolder:
        """This folder with its report files (``summary.csv``, ``summary.md``, ``tables/``, ``figures/``) in an
        empty staging folder, where a report is built before :meth:`publish` puts it in place; runs and
        examples stay where they are."""
        staging = self.root / REPORT_STAGING
        shutil.rmtree(staging, ignore_errors=True)  # a report killed before it published
        staging.mkdir(parents=True)
        out = ResultsFolder(self.root)
        out.summary_csv, out.summary_md = staging / SUMMARY_CSV, staging / SUMMARY_MD
        out.tables, out.figures = staging / TABLES, staging / FIGURES
        return out

    def publish(self, staged: ResultsFolder) -> None:
        """Replace every report file with the staged report's: no table or figure of an earlier report survives
        beside a newer one (a comparison that can no longer be made loses its tables). Only renames, the
        summary last, so a reader or a kill sees the old report or the new one, file by file."""
        trash = self.root / f"{REPORT_STAGING}-old"
        shutil.rmtree(trash, ignore_errors=True)
        trash.mkdir()
        for old, new in ((self.tables, staged.tables), (self.figures, staged.figures)):
            if old.exists():
                os.replace(old, trash / old.name)
            if new.exists():
                os.replace(new, old)
        for old, new in ((self.summary_csv, staged.summary_csv), (self.summary_md, staged.summary_md)):
            if new.exists():
                os.replace(new, old)
            elif old.exists():
                os.replace(old, trash / old.name)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(staged.summary_md.parent, ignore_errors=True)

    def write_manifest(self, dataset: str, text: str) -> Path:
        """Record which files a dataset held when the study first ran: ``data/<dataset>.csv``.

        Raises:
            StoreError: the recorded manifest differs (files added, removed or changed since), naming the
                first file that differs, so runs on other images are never mixed into one study.
        """
        path = self.root / DATA / f"{dataset}.csv"
        if path.is_file():
            old = path.read_text()
            if old != text:
                changed = sorted({line.split(",")[2] for line in set(old.splitlines()) ^ set(text.splitlines())})
                raise StoreError(f"{path}: the files of dataset '{dataset}' differ from those this study first ran on "
                                 f"({len(changed)} files, the first {changed[0]}); restore them or use a new --results folder")  # fmt: skip
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        return path

    @contextlib.contextmanager
    def report_lock(self) -> Iterator[None]:
        """Hold the folder's report lock: processes sharing the folder read the runs and write the
        summary and report one at a time, so the last writer has seen every run finished before it.
        The folder must exist."""
        with open(self.root / REPORT_LOCK, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def write_study(self, spec: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.study, spec)

    def note_slurm(self, job_id: str, run_id: str, event: str) -> None:
        """Add a line to ``slurm/queue.csv``: when, which Slurm task and run, and what happened to it."""
        path = self.slurm / SLURM_QUEUE
        rows = list(csv.reader(io.StringIO(path.read_text())))[1:] if path.is_file() else []
        rows.append([time.strftime("%Y-%m-%d %H:%M:%S"), job_id, run_id, event])
        atomic_write_text(path, csv_text(["time", "job", "run", "event"], rows))

    def example(self, test: str, name: str) -> Path:
        """An example image kept for the figures: ``examples/<test>/<name>.png``."""
        return self.examples / test / f"{name}.png"


@dataclass
class Study:
    """A results folder: the study description and the per-image values of its finished runs."""

    folder: ResultsFolder
    spec: dict[str, Any]
    values: pd.DataFrame  # run_id, model, arm, seed, test, image, *metrics
    runs: dict[str, dict[str, Any]]  # run id -> {"config", "env", "done", "log", "val"}
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rule_values: dict[str, pd.DataFrame] = field(default_factory=dict)  # further selection rule -> its values

    @property
    def rules(self) -> list[str]:
        """The selection rules the study declares, the primary one first (``last`` for studies without)."""
        return list(self.spec.get("select") or ["last"])

    def values_of(self, rule: str) -> pd.DataFrame:
        """The per-image values of the networks ``rule`` selected (the primary rule's are :attr:`values`)."""
        return self.values if rule == self.rules[0] else self.rule_values[rule]

    @property
    def root(self) -> Path:
        return self.folder.root

    def run_id_of(self, model: str, arm: str, seed: int) -> str:
        """The run directory of a planned run (see :func:`planned_run_id`)."""
        return planned_run_id(self.spec, model, arm, seed)

    def tests(self, arms: Sequence[str]) -> list[str]:
        """Test sets in planned order that hold values of any of ``arms``."""
        present = set(self.values.loc[self.values.arm.isin(arms), "test"])
        planned = [t for a in arms for t in self.spec["grids"][a]["test"]]
        return list(dict.fromkeys(t for t in planned if t in present))

    def ablation_grid(self, arms: Sequence[str]) -> dict[str, list] | None:
        """Models, seeds and test sets of an ablation: those of its first ablation-only arm (not one of the
        study's loss arms), or ``None`` when every setting is a loss arm (the study's own grid applies)."""
        own = [a for a in arms if a not in self.spec["loss_arms"]]
        return self.spec["grids"][own[0]] if own else None


def planned_run_id(spec: dict[str, Any], model: str, arm: str, seed: int) -> str:
    """The run directory of a run a ``study.json`` plans: its arm at the gradient scale tuning selected for it
    (1 where none was)."""
    return run_id(model, arm, spec["train"], seed, spec.get("scales", {}).get(arm, {}).get(model, 1.0))


def load_study(root: str | Path) -> Study:
    """Read ``study.json`` and the finished runs it plans; missing and failed runs are listed, not hidden."""
    folder = ResultsFolder(root)
    if not folder.study.is_file():
        raise StoreError(f"{folder.study}: not found; run the profile first (python run_all.py --profile NAME)")
    spec = {"base_arm": DEFAULT_BASE_ARM, "primary_metrics": list(DEFAULT_PRIMARY_METRICS), "labels": {},
            **json.loads(folder.study.read_text())}  # older study.json files lack the three  # fmt: skip
    frames, runs, missing, failed, by_rule = [], {}, [], {}, {}
    for arm, grid in spec["grids"].items():
        for model in grid["models"]:
            for seed in grid["seeds"]:
                rid = planned_run_id(spec, model, arm, seed)
                run = folder.run(rid)
                if run.failed.is_file():
                    failed[rid] = run.read_json("failed").get("error", "").splitlines()[0]
                    continue
                if not run.done.is_file():
                    missing.append(rid)
                    continue
                config = run.read_config()
                if run.read_json("done").get("config_hash") != config.get("config_hash"):
                    raise StoreError(f"{run.root}: done.json and config.yaml disagree on the config hash")
                if not run.is_done(config["config_hash"]):  # metrics.csv missing or not the file done.json recorded
                    missing.append(rid)
                    continue
                done = run.read_json("done")
                frames.append(_with_run(run.read_metrics(), rid, model, arm, seed))
                for rule in done.get("rule_metrics_sha256", {}):
                    by_rule.setdefault(rule, []).append(_with_run(run.rule_dir(rule).read_metrics(), rid, model, arm, seed))
                runs[rid] = {"config": config, "env": run.read_json("env"), "done": done,
                             "log": run.read_log_frame(), "val": run.read_val_frame()}  # fmt: skip
    if not frames:
        raise StoreError(f"{folder.root}: no completed runs yet ({len(missing)} planned, {len(failed)} failed)")
    import pandas as pd

    rule_values = {rule: pd.concat(f, ignore_index=True) for rule, f in by_rule.items()}
    return Study(folder, spec, pd.concat(frames, ignore_index=True), runs, missing, failed, rule_values)


def _with_run(table: pd.DataFrame, rid: str, model: str, arm: str, seed: int) -> pd.DataFrame:
    """A run's ``metrics.csv`` rows with its id, model, arm and seed in front."""
    for column, value in (("seed", seed), ("arm", arm), ("model", model), ("run_id", rid)):
        table.insert(0, column, value)
    return table


def read_image_array(path: Path) -> np.ndarray:
    """An example or fused image as float64 in [0, 1]."""
    from PIL import Image

    return np.asarray(Image.open(path), dtype=np.float64) / 255
