"""``python -m benchmark data``: check a dataset folder against what its publishers released, record a
manifest of its files, and prepare a released layout as the harness's ``ir/`` + ``vi/`` folders.

The facts about each public dataset (who released it, its folders per split, pair counts, image size)
live in :data:`RELEASES`, the one table the rest of the harness reads. Nothing is resized, re-encoded or
skipped: ``prepare`` copies files byte for byte, and a file that does not fit (no partner, another
size, a stray file, an unreadable image) is an error that names it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.data.pairs import DataError, check_partners, list_images, listing, read_pair, read_split
from benchmark.store import atomic_write_text, csv_text, sha256

SPLITS = Path(__file__).resolve().parents[1] / "splits"
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ["split", "modality", "file", "width", "height", "channels", "bytes", "sha256"]


@dataclass(frozen=True)
class Release:
    """What the publishers of a dataset released.

    Attributes:
        name: the dataset's usual name.
        source: who released it and where.
        folders: split -> (infrared folder, visible folder), relative to the released root.
        pairs: split -> number of pairs.
        size: (width, height) of every image, or None where sizes vary.
        lists: split list name -> committed list file (under ``benchmark/splits``) that ``prepare``
            writes beside the pairs, for test selections that papers use but the release lacks.
    """

    name: str
    source: str
    folders: dict[str, tuple[str, str]]
    pairs: dict[str, int]
    size: tuple[int, int] | None
    lists: dict[str, str] = field(default_factory=dict)

    def prepared(self, root: Path, split: str) -> Path:
        """Where a split lives in the prepared layout: ``root/<split>`` when the release has several."""
        return root / split if len(self.folders) > 1 else root


RELEASES: dict[str, Release] = {r.name.lower(): r for r in (
    Release("MSRS", "Tang et al., Information Fusion 2022; github.com/Linfeng-Tang/MSRS",
            {"train": ("train/ir", "train/vi"), "test": ("test/ir", "test/vi")}, {"train": 1083, "test": 361},
            (640, 480)),
    Release("FMB", "Liu et al., ICCV 2023 (SegMiF); github.com/JinyuanLiu-CV/SegMiF",
            {"train": ("train/Infrared", "train/Visible"), "test": ("test/Infrared", "test/Visible")},
            {"train": 1220, "test": 280}, (800, 600)),
    Release("M3FD", "Liu et al., CVPR 2022 (TarDAL), its fusion subset M3FD_Fusion; github.com/JinyuanLiu-CV/TarDAL",
            {"all": ("Ir", "Vis")}, {"all": 300}, (1024, 768)),
    Release("LLVIP", "Jia et al., ICCV Workshops 2021; github.com/bupt-ai-cz/LLVIP",
            {"train": ("infrared/train", "visible/train"), "test": ("infrared/test", "visible/test")},
            {"train": 12025, "test": 3463}, (1280, 1024)),
    Release("TNO", "the 25-pair selection of the TNO Image Fusion Dataset (Toet) that CDDFuse tests on; "
            "github.com/Zhaozixiang1228/MMIF-CDDFuse, test_img/TNO", {"all": ("ir", "vi")}, {"all": 25}, None),
    Release("RoadScene", "Xu et al., AAAI 2020; github.com/hanna-xu/RoadScene", {"all": ("cropinfrared", "crop_LR_visible")},
            {"all": 221}, None, {"test": "roadscene_test.txt", "train": "roadscene_train.txt"}),
    Release("VIFB", "Zhang et al., CVPR Workshops 2020; github.com/xingchenzhang/VIFB, input/", {"all": ("input/IR", "input/VI")},
            {"all": 21}, None),
)}  # fmt: skip


def get_release(name: str) -> Release:
    """The release called ``name`` (any case); the error lists the known ones."""
    try:
        return RELEASES[name.lower()]
    except KeyError:
        known = ", ".join(r.name for r in RELEASES.values())
        raise DataError(f"unknown dataset '{name}'; known: {known}") from None


def release_for(path: str) -> tuple[Release, str] | None:
    """The release and split a dataset path names by the prepared layout (``MSRS/test``, ``TNO``), if any."""
    parts = Path(path).parts
    if not parts or parts[0].lower() not in RELEASES:
        return None
    release = RELEASES[parts[0].lower()]
    if len(parts) == 1 and len(release.folders) == 1:
        return release, next(iter(release.folders))
    if len(parts) == 2 and parts[1] in release.folders and len(release.folders) > 1:
        return release, parts[1]
    return None


def fetch_hint(path: str, root: Path) -> str:
    """How to obtain a missing dataset folder: the ``data prepare`` command for a known release."""
    known = release_for(path)
    if known is None:
        return "put a folder with ir/ and vi/ there (python -m benchmark data list shows the releases it can prepare)"
    release, _ = known
    return (f"download {release.name} ({release.source}), then run: python -m benchmark data prepare {release.name} "
            f"<the downloaded folder> {root / release.name}")  # fmt: skip


@dataclass(frozen=True)
class Split:
    """One split's pairs as found on disk: (stem, infrared file, visible file) in name order."""

    name: str
    pairs: list[tuple[str, Path, Path]]


def locate(release: Release, root: Path, split: str) -> tuple[Path, Path]:
    """The (infrared, visible) folders of ``split`` under ``root``: the prepared layout, else the released one."""
    prepared = release.prepared(root, split)
    released = tuple(root / f for f in release.folders[split])
    layouts = {(prepared / "ir", prepared / "vi"): "prepared", released: "as released"}
    for ir_dir, vi_dir in layouts:
        if ir_dir.is_dir() and vi_dir.is_dir():
            return ir_dir, vi_dir
    expected = " or ".join(f"{a} and {b} ({kind})" for (a, b), kind in layouts.items())
    raise DataError(f"{root}: no {release.name} {split} split here; expected {expected}")


def _report(problems: list[str], what: str) -> None:
    """Raise one error listing every problem found (nothing to raise when there is none)."""
    if problems:
        raise listing(f"{what}: {len(problems)} problem(s):", problems)


def scan(release: Release, root: Path, splits: Sequence[str] | None = None,
         problems: list[str] | None = None) -> list[Split]:  # fmt: skip
    """Every pair of the chosen splits, checked for partners and for the released pair count.

    Every problem of every split is collected before one error lists them all (or, given ``problems``, they
    are appended there for the caller to report with its own)."""
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    chosen = list(splits) if splits else list(release.folders)
    unknown = [s for s in chosen if s not in release.folders]
    if unknown:
        raise DataError(f"{release.name} has no split {unknown[0]!r}; its splits: {', '.join(release.folders)}")
    found, mine = [], [] if problems is None else problems
    for split in chosen:
        try:
            ir_dir, vi_dir = locate(release, root, split)
        except DataError as exc:
            mine.append(str(exc))
            continue
        ir, vi = list_images(ir_dir, mine), list_images(vi_dir, mine)
        if len(ir) != release.pairs[split]:
            mine.append(f"{ir_dir}: {len(ir)} pairs, but {release.name} {split} was released with "
                        f"{release.pairs[split]} ({release.source})")  # fmt: skip
        check_partners(ir, vi, ir_dir, vi_dir, str(root), mine)
        found.append(Split(split, [(s, ir[s], vi[s]) for s in sorted(set(ir) & set(vi))]))
    if problems is None:
        _report(mine, f"{root} ({release.name})")
    return found


def check(release: Release, root: Path, splits: Sequence[str] | None = None, progress: bool = False) -> list[list[str]]:
    """Verify a folder (prepared or as released) and return its manifest rows.

    Every image is decoded; infrared and visible partners must have the same size, and where the release
    has one size, every image must have it. Every problem (a missing partner, a pair count other than the
    release's, a stray file, an unreadable or wrongly sized image) is found in one pass and listed in one
    error. Rows: split, modality, file (relative to ``root``), width, height, channels, bytes, SHA-256.
    """
    problems: list[str] = []
    found = scan(release, root, splits, problems)
    rows = _verify(release, root, found, progress, problems)
    _report(problems, f"{root} ({release.name})")
    return rows


def _verify(release: Release, root: Path, found: list[Split], progress: bool,
            problems: list[str] | None = None) -> list[list[str]]:  # fmt: skip
    """Manifest rows of every pair; with ``problems``, a pair that fails is recorded there and skipped."""
    from tqdm import tqdm

    rows = []
    with tqdm(total=sum(len(s.pairs) for s in found), desc=f"check {release.name}", unit="pair", disable=not progress) as bar:
        for split in found:
            for _, ir_path, vi_path in split.pairs:
                try:
                    rows += pair_rows(split.name, ir_path, vi_path, root, release.size, release.name)
                except DataError as exc:
                    if problems is None:
                        raise
                    problems.append(str(exc))
                bar.update()
    return rows


def pair_rows(split: str, ir_path: Path, vi_path: Path, root: Path, size: tuple[int, int] | None = None,
              name: str = "") -> list[list[str]]:  # fmt: skip
    """The two manifest rows of a pair, decoding both images; partners must share a size, and ``size``
    (width, height), where given, is the only one allowed."""
    rows = []
    for modality, path, arr in zip(("ir", "vi"), (ir_path, vi_path), read_pair(ir_path, vi_path)):
        h, w = arr.shape[:2]
        if size is not None and (w, h) != size:
            raise DataError(f"{path}: {w} x {h} (width x height), but every {name} image is {size[0]} x {size[1]}")
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        rows.append([split, modality, path.relative_to(root).as_posix(), w, h, channels, path.stat().st_size, sha256(path)])
    return rows


def manifest_text(rows: Sequence[Sequence[object]]) -> str:
    """The manifest CSV (``\\n`` line ends)."""
    return csv_text(MANIFEST_COLUMNS, rows, lineterminator="\n")


def prepare(release: Release, source: Path, dest: Path, progress: bool = False) -> list[list[str]]:
    """Copy a release (every split) into ``dest`` as ``ir/`` + ``vi/`` folders, per split when it has several.

    The source is checked in full first. Files keep their names and bytes; ``dest`` also receives one list
    file per split (``<split>.txt``), the release's committed test selections, and ``manifest.csv``. The
    copy is written beside ``dest`` and renamed into place at the end, so a half-prepared folder never
    looks complete; an existing ``dest`` is never written over. Returns the manifest rows of ``dest``.
    """
    if dest.exists():
        raise DataError(f"{dest} exists; prepare writes a new folder and never over an existing one")
    found = scan(release, source)
    stems = {stem for split in found for stem, _, _ in split.pairs}
    lists = {name: read_split(SPLITS / file) for name, file in release.lists.items()}
    for name, listed in lists.items():
        missing = [s for s in listed if s not in stems]
        if missing:
            raise DataError(f"{source}: {len(missing)} images of the {name} selection "
                            f"{SPLITS / release.lists[name]} are missing, the first {missing[0]}")  # fmt: skip
    rows = _verify(release, source, found, progress)
    lists |= {split.name: [stem for stem, _, _ in split.pairs] for split in found}
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for split in found:
            target = release.prepared(partial, split.name)
            for _, ir_path, vi_path in split.pairs:
                for sub, path in (("ir", ir_path), ("vi", vi_path)):
                    (target / sub).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target / sub / path.name)
        for name, listed in lists.items():
            atomic_write_text(partial / f"{name}.txt", "".join(f"{s}\n" for s in listed))
        out = [[r[0], r[1], (release.prepared(Path(), r[0]) / r[1] / Path(r[2]).name).as_posix(), *r[3:]] for r in rows]
        atomic_write_text(partial / MANIFEST, manifest_text(out))
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out
