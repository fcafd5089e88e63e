"""Bad input as real datasets and users bring it: each case gets a clear answer naming the file, key or value
(OS metadata, stray entries, EXIF orientation, tiny images, non-finite network output, an unwritable results
folder, evaluate's methods and names, drift's methods, data check's names and manifest)."""

from __future__ import annotations

import csv
import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.cli import main as cli_main
from benchmark.cli import run as run_main
from benchmark.data import DataError, PairedDataset, read_rgb_or_grey
from benchmark.scoring import NonFiniteOutput, fuse_sample
from tests.conftest import write_image

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(39)


def pairs(root: Path, names: list[str], shape: tuple[int, int] = (40, 48)) -> Path:
    for name in names:
        write_image(root / "ir" / f"{name}.png", RNG.integers(0, 256, shape))
        write_image(root / "vi" / f"{name}.png", RNG.integers(0, 256, (*shape, 3)))
    return root


def fused_folder(folder: Path, names: list[str], shape: tuple[int, int] = (40, 48)) -> Path:
    for name in names:
        write_image(folder / f"{name}.png", RNG.integers(0, 256, shape))
    return folder


def lines_of(stream: str) -> list[str]:
    return stream.replace("\r", "\n").split("\n")


def test_hidden_and_os_metadata_files_are_skipped(tmp_path: Path) -> None:
    root = pairs(tmp_path / "ds", ["a", "b"])
    for sub in ("ir", "vi"):
        (root / sub / "._a.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # a macOS resource fork, not a PNG
        (root / sub / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (root / sub / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    assert PairedDataset(root).names() == ["a", "b"]


def test_every_stray_entry_of_an_image_folder_is_named_in_one_error(tmp_path: Path) -> None:
    root = pairs(tmp_path / "ds", ["a"])
    (root / "ir" / "c.png").mkdir()
    (root / "ir" / "d.png").symlink_to(tmp_path / "gone.png")
    for sub in ("ir", "vi"):
        Image.fromarray(RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / sub / "e.webp")
    (root / "vi" / "notes.txt").write_text("scene notes")
    with pytest.raises(DataError) as caught:
        PairedDataset(root)
    text = str(caught.value)
    assert f"{root}: 5 entries of ir/ and vi/ are not images" in text
    assert f"{root / 'ir' / 'c.png'}: a folder" in text
    assert f"{root / 'ir' / 'd.png'}: a symbolic link to nothing ({tmp_path / 'gone.png'})" in text
    assert f"{root / 'ir' / 'e.webp'}: '.webp' is not a supported image format" in text
    assert f"{root / 'vi' / 'notes.txt'}: '.txt' is not a supported image format" in text


@pytest.mark.parametrize("orientation, refused", [(1, False), (6, True), (3, True)])
def test_exif_orientation_other_than_upright_is_refused_naming_the_file(tmp_path: Path, orientation: int,
                                                                         refused: bool) -> None:  # fmt: skip
    path = tmp_path / "FLIR_00006.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path, exif=exif)
    if not refused:
        assert read_rgb_or_grey(path).shape == (40, 48, 3)
        return
    with pytest.raises(DataError, match=rf"^{path}: EXIF Orientation is {orientation} "):
        read_rgb_or_grey(path)


def test_a_one_pixel_image_is_an_error_naming_its_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = pairs(tmp_path / "ds", ["a"], shape=(1, 1))
    fused = fused_folder(tmp_path / "Mine", ["a"], shape=(1, 1))
    assert cli_main(["evaluate", "--dataset", str(root), "--fused", str(fused), "--metrics", "SSIM"]) == 2
    err = capsys.readouterr().err
    line = next(x for x in lines_of(err) if x.startswith("error: "))
    assert f"{fused / 'a.png'}" in line and "SSIM needs images of at least 7 x 7 pixels" in line
    assert "Traceback" not in err


class _NaNNet(torch.nn.Module):
    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        out = ir.clone()
        out[..., :2, :3] = float("nan")
        out[..., -1, -1] = float("inf")
        return out


def test_non_finite_network_output_is_an_error_naming_the_image(tmp_path: Path) -> None:
    sample = PairedDataset(pairs(tmp_path / "ds", ["scene"]))[0]
    with pytest.raises(NonFiniteOutput, match="^scene: the network's output has 7 NaN or infinite values of 1920"):
        fuse_sample(_NaNNet(), sample, "cpu")


def test_an_unwritable_results_folder_is_a_one_line_error(tmp_path: Path, monkeypatch,
                                                          capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    results = tmp_path / "results"
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args, **kwargs) -> None:
        if results in (self, *self.parents):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    argv = ["--config", str(ROOT / "experiments.yaml"), "--profile", "smoke", "--results", str(results)]
    assert run_main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: cannot use {results / 'smoke'}: Read-only file system" in err
    assert "Traceback" not in err


def test_evaluate_never_hides_a_method_and_compares_on_shared_images(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    root = pairs(tmp_path / "ds", ["a", "b", "c"])
    full = fused_folder(tmp_path / "Full", ["a", "b", "c"])
    part = fused_folder(tmp_path / "Part", ["a", "c"])
    empty = tmp_path / "Empty"
    empty.mkdir()
    base = ["evaluate", "--dataset", str(root), "--metrics", "EN"]
    assert cli_main([*base, "--fused", str(full), "--fused", str(empty)]) == 2
    assert f"no fused image for 'a' in {empty}" in capsys.readouterr().err
    out_csv = tmp_path / "values.csv"
    assert cli_main([*base, "--allow-missing", "--fused", str(full), str(part), "--fused", str(empty),
                     "--out", str(out_csv)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    with open(out_csv, newline="") as fh:
        en = {(r["method"], r["image"]): float(r["EN"]) for r in csv.DictReader(fh)}
    assert sorted(en) == [("Full", "a"), ("Full", "b"), ("Full", "c"), ("Part", "a"), ("Part", "c")]
    empty_row = next(x for x in out.splitlines() if x.startswith("Empty"))
    assert empty_row.split()[:2] == ["Empty", "0"] and "no image scored" in empty_row
    assert "methods were scored on different images (Full 3, Part 2, Empty 0)" in out
    shared = next(x for x in out.splitlines() if x.startswith("Full") and x.split()[1] == "2")
    assert float(shared.split()[2]) == pytest.approx(round((en["Full", "a"] + en["Full", "c"]) / 2, 2), abs=1e-9)


def test_evaluate_names_folders_given_as_name_equals_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = pairs(tmp_path / "ds", ["a", "b"])
    one = fused_folder(tmp_path / "run1" / "fused" / "ds", ["a", "b"])
    two = fused_folder(tmp_path / "run2" / "fused" / "ds", ["a", "b"])
    base = ["evaluate", "--dataset", str(root), "--metrics", "EN"]
    assert cli_main([*base, "--fused", str(one), "--fused", str(two)]) == 2
    assert "two fused folders are both named 'ds'" in capsys.readouterr().err
    assert cli_main([*base, "--fused", f"magnitude={one}", f"damgl={two}"]) == 0
    methods = [x.split()[0] for x in capsys.readouterr().out.splitlines() if x.split()[:1] in (["magnitude"], ["damgl"])]
    assert methods == ["magnitude", "damgl"]
    assert cli_main([*base, "--fused", f"x={tmp_path / 'nowhere'}"]) == 2
    assert f"--fused x={tmp_path / 'nowhere'}: fused folder not found: {tmp_path / 'nowhere'}" in capsys.readouterr().err


def test_drift_keeps_every_fused_folder_and_needs_two(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = pairs(tmp_path / "ds", ["a", "b", "c"])
    one, two = fused_folder(tmp_path / "One", ["a", "b", "c"]), fused_folder(tmp_path / "Two", ["a", "b", "c"])
    base = ["drift", "--dataset", str(root), "--convention", "cddfuse,vifb", "--out"]
    assert cli_main([*base, str(tmp_path / "d1"), "--fused", str(one)]) == 2
    assert "drift compares methods: give at least two fused folders (got 1)" in capsys.readouterr().err
    assert cli_main([*base, str(tmp_path / "d2"), "--fused", str(one), "--fused", str(two)]) == 0
    with open(tmp_path / "d2" / "values.csv", newline="") as fh:
        assert {r["method"] for r in csv.DictReader(fh)} == {"One", "Two"}


def test_data_check_knows_vifb_and_writes_the_manifest_beside_the_data(tmp_path: Path, monkeypatch,
                                                                       capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    root = pairs(tmp_path / "VIFB", [f"scene{i:02d}" for i in range(21)])
    monkeypatch.chdir(tmp_path)
    assert cli_main(["data", "check", "VIFB", str(root)]) == 0
    assert (root / "manifest.csv").is_file() and not (tmp_path / "VIFB-manifest.csv").exists()
    assert f"manifest {root / 'manifest.csv'}" in capsys.readouterr().out
    elsewhere = tmp_path / "notes" / "vifb.csv"
    assert cli_main(["data", "check", "vifb", str(root), "--manifest", str(elsewhere)]) == 0
    assert elsewhere.read_bytes() == (root / "manifest.csv").read_bytes()
    shutil.rmtree(root / "vi")
    assert cli_main(["data", "check", "VIFB", str(root)]) == 2
