"""Paired infrared/visible images: discovery, reading and colour conversion.

A dataset is a folder holding ``ir/`` and ``vi/``; pairs are matched by file
stem, any of the extensions in :data:`IMAGE_EXTENSIONS`. Grey conversion
follows the ``cddfuse`` metric convention (``docs/metrics.md``): colour files
become ``round(0.299 R + 0.587 G + 0.114 B)`` (half to even), single-channel
files are used as they are, and values stay in 0..255. Networks instead get
the visible image as Y, Cb, Cr in [0, 1] (BT.601 full range, as JPEG), and
:func:`ycbcr_to_rgb` rebuilds a colour image from a fused Y.

Nothing is resized or skipped: every problem raises :class:`DataError` naming
the offending path.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GREY_WEIGHTS = (0.299, 0.587, 0.114)


class DataError(ValueError):
    """A dataset, split file or image that cannot be used as it is."""


def stems_identity(names: list[str]) -> dict[str, Any]:
    """What a set of images is, independent of where it lies: the number of pairs and a digest of their
    stems in order (``stems_sha256`` in a run's config)."""
    return {"images": len(names), "stems_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]}


DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data"  # inside the project; ignored by git


def data_root() -> Path:
    """Folder of the real datasets: ``$FUSION_DATA``, else ``data/`` inside the project."""
    return Path(os.environ.get("FUSION_DATA", str(DEFAULT_DATA)))


def dataset_folder(value: str) -> Path:
    """A ``--dataset`` argument: a folder as given, else a name under ``$FUSION_DATA`` (``VIFB``), as the runner
    resolves it."""
    given = Path(value)
    if given.is_dir() or given.is_absolute():
        return given
    under = data_root() / given
    if under.is_dir():
        return under
    raise DataError(f"--dataset {value}: no such folder here or under FUSION_DATA={data_root()}")


OS_METADATA = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # what file managers leave in folders


def is_metadata(path: Path) -> bool:
    """A hidden or operating-system metadata file (``.DS_Store``, macOS's ``._name`` forks, ``Thumbs.db``):
    never an image, skipped wherever images are listed."""
    return path.name.startswith(".") or path.name in OS_METADATA


def _not_an_image(path: Path) -> str | None:
    """Why ``path`` cannot be one of a folder's images, or None when it is an image file of a supported format."""
    if path.is_symlink() and not path.exists():
        return f"a symbolic link to nothing ({os.readlink(path)})"
    if path.is_dir():
        return "a folder"
    if not path.is_file():
        return "not a regular file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"'{path.suffix or '(no extension)'}' is not a supported image format ({', '.join(IMAGE_EXTENSIONS)})"
    return None


def list_images(folder: Path, problems: list[str] | None = None) -> dict[str, Path]:
    """Map stem -> path for the images directly inside ``folder``, hidden and OS metadata files skipped.

    Anything else there (a folder, a dangling link, a file of another format) is an error naming each entry;
    given ``problems``, the lines are appended there instead, for the caller to report with its own.
    """
    found: dict[str, Path] = {}
    stray: list[str] = []
    for path in sorted(folder.iterdir()):
        if is_metadata(path):
            continue
        why = _not_an_image(path)
        if why is not None:
            stray.append(f"{path}: {why}")
            continue
        if path.stem in found:
            raise DataError(
                f"{folder}: two images share the stem '{path.stem}' "
                f"({found[path.stem].name}, {path.name}); pairs are matched by stem"
            )
        found[path.stem] = path
    if problems is not None:
        problems += stray
    elif stray:
        raise listing(f"{folder}: {len(stray)} entries that are not images:", stray)
    return found


def read_split(path: str | Path) -> list[str]:
    """Read a split file: one image file name (or stem) per line.

    Blank lines and lines starting with ``#`` are ignored. Returns the stems,
    in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    stems: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            stems.append(Path(line).stem)
    if not stems:
        raise DataError(f"split file {path} lists no images")
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise DataError(f"split file {path} lists these images more than once: {repeated}")
    return stems


def listing(header: str, lines: Sequence[str]) -> DataError:
    """One error that lists several problems, an indented line each."""
    return DataError("\n".join([header, *(f"  {line}" for line in lines)]))


def check_partners(ir_files: dict[str, Path], vi_files: dict[str, Path], ir_dir: Path, vi_dir: Path, where: str,
                   problems: list[str] | None = None) -> None:  # fmt: skip
    """Every infrared stem has a visible partner and the reverse; else an error listing each lonely file (given
    ``problems``, the lines are appended there instead)."""
    lines = [f"{ir_files[s]} has no partner in {vi_dir}" for s in sorted(set(ir_files) - set(vi_files))]
    lines += [f"{vi_files[s]} has no partner in {ir_dir}" for s in sorted(set(vi_files) - set(ir_files))]
    if problems is not None:
        problems += lines
    elif lines:
        raise listing(f"unpaired images in {where}:", lines)


ORIENTATION = 0x0112  # the EXIF tag


def _refuse_rotation(orientation: int | None, path: Path) -> None:
    """An EXIF Orientation other than 1 (upright) is refused: OpenCV's reader (the Python toolkits') turns the
    image upright, MATLAB's ``imread`` and PIL do not, so its grey values depend on the toolkit."""
    if orientation not in (None, 1):
        raise DataError(f"{path}: EXIF Orientation is {orientation} (stored rotated or mirrored); the toolkits "
                        "disagree on whether to apply it, so the harness refuses it: save the image upright "
                        "without the tag (for example with PIL.ImageOps.exif_transpose)")  # fmt: skip


def read_rgb_or_grey(path: str | Path) -> np.ndarray:
    """Read an 8-bit image as uint8: (H, W) for grey files, (H, W, 3) for colour.

    Palette images are expanded to RGB; an alpha channel is accepted only when
    fully opaque. Other modes (16-bit, CMYK, ...) are rejected.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            orientation = img.getexif().get(ORIENTATION, 1)
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                mode = img.mode
            arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    _refuse_rotation(orientation, path)
    if mode in ("LA", "RGBA"):
        if arr[..., -1].min() != 255:
            raise DataError(f"{path}: image has a transparent alpha channel; expected an opaque image")
        arr = arr[..., :-1]
        mode = mode[:-1]
        if mode == "L":
            arr = arr[..., 0]
    if mode not in ("L", "RGB"):
        raise DataError(f"{path}: unsupported image mode '{mode}'; expected 8-bit grey or RGB")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def to_grey(arr: np.ndarray) -> np.ndarray:
    """Grey levels of the metric convention as float64 in 0..255.

    ``round(0.299 R + 0.587 G + 0.114 B)`` with half to even for colour,
    unchanged for a single channel.
    """
    if arr.ndim == 2:
        return arr.astype(np.float64)
    rgb = arr.astype(np.float64)
    grey = GREY_WEIGHTS[0] * rgb[..., 0] + GREY_WEIGHTS[1] * rgb[..., 1] + GREY_WEIGHTS[2] * rgb[..., 2]
    return np.round(grey)


def read_grey(path: str | Path) -> np.ndarray:
    """Read an image and convert it to convention grey (float64, 0..255)."""
    return to_grey(read_rgb_or_grey(path))


def rgb_to_ycbcr(arr: np.ndarray) -> np.ndarray:
    """Convert uint8 RGB (H, W, 3) or grey (H, W) to float32 Y, Cb, Cr in [0, 1], shape (3, H, W).

    BT.601 full range (JPEG): ``Y = 0.299 R + 0.587 G + 0.114 B``,
    ``Cb = 0.5 + (B - Y) / 1.772``, ``Cr = 0.5 + (R - Y) / 1.402``.
    A grey image gets Cb = Cr = 0.5.
    """
    if arr.ndim == 2:
        y = arr.astype(np.float64) / 255.0
        chroma = np.full_like(y, 0.5)
        return np.stack([y, chroma, chroma]).astype(np.float32)
    rgb = arr.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b
    cb = 0.5 + (b - y) / 1.772
    cr = 0.5 + (r - y) / 1.402
    return np.stack([y, cb, cr]).astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`: (3, H, W) in [0, 1] -> uint8 RGB (H, W, 3), rounded and clipped."""
    y, cb, cr = (np.asarray(c, dtype=np.float64) for c in ycbcr)
    r = y + 1.402 * (cr - 0.5)
    b = y + 1.772 * (cb - 0.5)
    g = (y - GREY_WEIGHTS[0] * r - GREY_WEIGHTS[2] * b) / GREY_WEIGHTS[1]
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Pair:
    """One registered infrared/visible pair."""

    name: str
    ir: Path
    vi: Path


@dataclass
class Sample:
    """A loaded pair: the decoded files (uint8, grey or colour) for the metric conventions, ``cddfuse``
    grey for the networks' infrared input, visible YCbCr for networks."""

    name: str
    ir_grey: np.ndarray
    vi_grey: np.ndarray
    vi_ycbcr: np.ndarray
    ir_raw: np.ndarray
    vi_raw: np.ndarray
    files: tuple[Path, Path] | None = None  # (infrared, visible) when read from files

    def where(self) -> str:
        """The pair's files, or its name for a generated pair, for messages."""
        return f"{self.files[0]} and {self.files[1]}" if self.files else f"pair '{self.name}'"

    @property
    def ir_unit(self) -> np.ndarray:
        """Infrared in [0, 1] as float32 (H, W), the network input."""
        return (self.ir_grey / 255.0).astype(np.float32)


class PairedDataset:
    """Infrared/visible pairs under ``root/ir`` and ``root/vi``, optionally restricted to a split.

    Args:
        root: the dataset folder.
        split: optional split file (one file name per line).
        name: display name; defaults to the folder name.
    """

    def __init__(self, root: str | Path, split: str | Path | None = None, name: str | None = None):
        self.root = Path(root)
        self.name = name or self.root.name
        ir_dir, vi_dir = self.root / "ir", self.root / "vi"
        if not self.root.is_dir():
            raise DataError(f"dataset folder not found: {self.root}")
        for sub in (ir_dir, vi_dir):
            if not sub.is_dir():
                raise DataError(f"dataset folder {self.root} has no '{sub.name}/' subfolder (expected ir/ and vi/)")
        if ir_dir.resolve() == vi_dir.resolve() or os.path.samefile(ir_dir, vi_dir):
            raise DataError(f"{ir_dir} and {vi_dir} are the same folder; infrared and visible must be separate")
        stray: list[str] = []
        ir_files, vi_files = list_images(ir_dir, stray), list_images(vi_dir, stray)
        if stray:
            raise listing(f"{self.root}: {len(stray)} entries of ir/ and vi/ are not images:", stray)
        check_partners(ir_files, vi_files, ir_dir, vi_dir, str(self.root))
        stems = sorted(ir_files)
        if split is not None:
            wanted = read_split(split)
            missing = [s for s in wanted if s not in ir_files]
            if missing:
                raise DataError(f"split file {split} names images not found in {ir_dir}: {missing}")
            stems = wanted
        if not stems:
            raise DataError(f"no image pairs in {self.root} (extensions {', '.join(IMAGE_EXTENSIONS)})")
        self.split = Path(split) if split is not None else None
        self.pairs = [Pair(s, ir_files[s], vi_files[s]) for s in stems]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        return self.load(self.pairs[index])

    def names(self) -> list[str]:
        """Pair names (file stems) in dataset order."""
        return [p.name for p in self.pairs]

    def pixels(self) -> int:
        """The number of pixels of all infrared images, from their headers (nothing is decoded)."""
        total = 0
        for pair in self.pairs:
            try:
                with Image.open(pair.ir) as img:
                    total += img.size[0] * img.size[1]
            except (OSError, SyntaxError, ValueError) as exc:
                raise DataError(f"cannot read image {pair.ir}: {exc}") from exc
        return total

    @staticmethod
    def load(pair: Pair) -> Sample:
        """Read one pair, checking that both images have the same size."""
        ir, vi = read_pair(pair.ir, pair.vi)
        return Sample(pair.name, to_grey(ir), to_grey(vi), rgb_to_ycbcr(vi), ir, vi, (pair.ir, pair.vi))


def read_pair(ir_path: Path, vi_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both images of a pair as decoded (:func:`read_rgb_or_grey`); a size mismatch names both files."""
    ir, vi = read_rgb_or_grey(ir_path), read_rgb_or_grey(vi_path)
    if ir.shape[:2] != vi.shape[:2]:
        raise DataError(
            f"size mismatch: {ir_path} is {ir.shape[1]}x{ir.shape[0]} but "
            f"{vi_path} is {vi.shape[1]}x{vi.shape[0]} (width x height); nothing is resized"
        )
    return ir, vi


def png_bytes(array: np.ndarray) -> bytes:
    """An 8-bit grey (H, W) or RGB (H, W, 3) array encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def carve(stems: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Split a list of image stems into ``(rest, held_out)``, both in the list's order.

    The held-out part is the ``round(fraction * n)`` stems with the smallest SHA-256 digests of their names:
    it depends on the names alone, so it is the same on every machine and for any order of the list.
    """
    if not 0 < fraction < 1:
        raise DataError(f"fraction: expected a number between 0 and 1, got {fraction!r}")
    count = round(fraction * len(stems))
    held = set(sorted(stems, key=lambda s: hashlib.sha256(s.encode()).hexdigest())[:count])
    return [s for s in stems if s not in held], [s for s in stems if s in held]
