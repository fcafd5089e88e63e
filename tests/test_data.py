"""The paired-image data layer: discovery, conversion and every error it promises."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from benchmark.data import DataError, PairedDataset, read_grey, read_split, rgb_to_ycbcr, to_grey, ycbcr_to_rgb
from tests.conftest import need, real_data, write_image


def test_pairs_by_stem_any_extension(tmp_path: Path) -> None:
    write_image(tmp_path / "ds/ir/x1.png", np.zeros((4, 5)))
    write_image(tmp_path / "ds/vi/x1.jpg", np.zeros((4, 5, 3)))
    write_image(tmp_path / "ds/ir/x0.bmp", np.zeros((4, 5)))
    write_image(tmp_path / "ds/vi/x0.tif", np.zeros((4, 5)))
    ds = PairedDataset(tmp_path / "ds")
    assert ds.names() == ["x0", "x1"]
    assert ds[1].ir_grey.shape == (4, 5) and ds[1].vi_ycbcr.shape == (3, 4, 5)


def test_grey_conversion_rounds_half_to_even() -> None:
    # 0.299 * 1 + 0.587 * 0 + 0.114 * 2 = 0.527 -> 1; pick values landing on .5 exactly
    rgb = np.array([[[10, 10, 10], [0, 0, 0], [255, 255, 255], [1, 0, 0]]], dtype=np.uint8)
    grey = to_grey(rgb)
    assert grey.tolist() == [[10.0, 0.0, 255.0, 0.0]]
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    expected = np.round(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    assert np.array_equal(to_grey(rgb), expected)
    grey_img = rng.integers(0, 256, (5, 6)).astype(np.uint8)
    assert np.array_equal(to_grey(grey_img), grey_img.astype(float))
    assert np.array_equal(to_grey(np.stack([grey_img] * 3, -1)), grey_img.astype(float))


def test_ycbcr_round_trip() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    ycc = rgb_to_ycbcr(rgb)
    assert ycc.dtype == np.float32 and ycc.shape == (3, 20, 30)
    assert ycc.min() >= 0 and ycc.max() <= 1
    assert np.array_equal(ycbcr_to_rgb(ycc), rgb)
    grey = rng.integers(0, 256, (4, 4)).astype(np.uint8)
    assert np.allclose(rgb_to_ycbcr(grey)[1:], 0.5)


def test_split_file(tiny_dataset: Path, tmp_path: Path) -> None:
    split = tmp_path / "test.txt"
    split.write_text("c.jpg\n\n# comment\na.png\n")
    assert PairedDataset(tiny_dataset, split).names() == ["c", "a"]


def test_error_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"dataset folder not found: {tmp_path / 'nope'}"):
        PairedDataset(tmp_path / "nope")
    (tmp_path / "half" / "ir").mkdir(parents=True)
    with pytest.raises(DataError, match="has no 'vi/' subfolder"):
        PairedDataset(tmp_path / "half")


def test_error_no_pairs(tmp_path: Path) -> None:
    (tmp_path / "empty" / "ir").mkdir(parents=True)
    (tmp_path / "empty" / "vi").mkdir()
    (tmp_path / "empty" / "ir" / ".DS_Store").write_bytes(b"Bud1")  # metadata only
    with pytest.raises(DataError, match=f"no image pairs in {tmp_path / 'empty'}"):
        PairedDataset(tmp_path / "empty")
    (tmp_path / "empty" / "ir" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=f"{tmp_path / 'empty' / 'ir' / 'notes.txt'}: '.txt' is not a supported"):
        PairedDataset(tmp_path / "empty")


def test_error_unpaired_lists_all(tiny_dataset: Path) -> None:
    (tiny_dataset / "vi" / "a.png").unlink()
    write_image(tiny_dataset / "vi" / "zz.png", np.zeros((40, 48)))
    with pytest.raises(DataError) as err:
        PairedDataset(tiny_dataset)
    text = str(err.value)
    assert f"{tiny_dataset / 'ir' / 'a.png'} has no partner in {tiny_dataset / 'vi'}" in text
    assert f"{tiny_dataset / 'vi' / 'zz.png'} has no partner in {tiny_dataset / 'ir'}" in text


def test_error_size_mismatch(tiny_dataset: Path) -> None:
    write_image(tiny_dataset / "vi" / "b.png", np.zeros((41, 48, 3)))
    ds = PairedDataset(tiny_dataset)
    with pytest.raises(DataError, match=r"size mismatch: .*ir/b.png is 48x40 but .*vi/b.png is 48x41"):
        ds[1]


def test_error_unreadable_and_truncated(tiny_dataset: Path) -> None:
    (tiny_dataset / "ir" / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*ir/a.png"):
        PairedDataset(tiny_dataset)[0]
    path = tiny_dataset / "ir" / "b.png"
    write_image(path, np.random.default_rng(0).integers(0, 256, (40, 48)))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"cannot read image .*ir/b.png"):
        read_grey(path)


def test_error_same_folder(tmp_path: Path) -> None:
    root = tmp_path / "same"
    write_image(root / "images" / "a.png", np.zeros((4, 4)))
    os.symlink(root / "images", root / "ir")
    os.symlink(root / "images", root / "vi")
    with pytest.raises(DataError, match="are the same folder"):
        PairedDataset(root)


def test_error_split_problems(tiny_dataset: Path, tmp_path: Path) -> None:
    split = tmp_path / "s.txt"
    split.write_text("a.png\nmissing.png\n")
    with pytest.raises(DataError, match=rf"split file {split} names images not found in .*: \['missing'\]"):
        PairedDataset(tiny_dataset, split)
    split.write_text("a.png\na.jpg\n")
    with pytest.raises(DataError, match=r"lists these images more than once: \['a'\]"):
        PairedDataset(tiny_dataset, split)
    with pytest.raises(DataError, match="split file not found"):
        PairedDataset(tiny_dataset, tmp_path / "none.txt")


def test_error_duplicate_stem(tiny_dataset: Path) -> None:
    write_image(tiny_dataset / "ir" / "a.jpg", np.zeros((40, 48)))
    with pytest.raises(DataError, match="two images share the stem 'a'"):
        PairedDataset(tiny_dataset)


def test_error_transparent_image(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 10
    path = write_image(tmp_path / "t.png", rgba)
    with pytest.raises(DataError, match="transparent alpha channel"):
        read_grey(path)


def test_real_datasets_and_standard_split() -> None:
    road = need(real_data() / "RoadScene")
    assert len(PairedDataset(road)) == 221
    assert len(PairedDataset(road, road / "test.txt")) == 50
    assert len(PairedDataset(road, road / "train.txt")) == 171
    assert len(PairedDataset(need(real_data() / "TNO"))) == 25
    vifb = PairedDataset(need(real_data() / "VIFB"))
    assert len(vifb) == 21
    sample = vifb[0]
    assert sample.ir_grey.shape == sample.vi_grey.shape == sample.vi_ycbcr.shape[1:]


def test_carve_is_deterministic_order_free_and_disjoint() -> None:
    from benchmark.data import carve

    stems = [f"img{i:03d}" for i in range(40)]
    rest, held = carve(stems, 0.1)
    assert len(held) == 4 and len(rest) == 36 and not set(rest) & set(held) and sorted(rest + held) == stems
    assert rest == sorted(rest) and held == sorted(held)  # each part keeps the list's order
    rest2, held2 = carve(list(reversed(stems)), 0.1)
    assert set(held2) == set(held)  # the held-out stems depend on the names only
    with pytest.raises(DataError, match="fraction: expected a number between 0 and 1"):
        carve(stems, 1.0)


def test_committed_validation_split_of_roadscene(tmp_path: Path) -> None:
    root = need(real_data() / "RoadScene")
    splits = Path(__file__).resolve().parents[1] / "benchmark" / "splits"
    train, test = set(read_split(root / "train.txt")), set(read_split(root / "test.txt"))
    fit, val = read_split(splits / "roadscene_fit.txt"), read_split(splits / "roadscene_val.txt")
    assert len(val) == 17 and set(fit) | set(val) == train and not set(fit) & set(val) and not set(val) & test
    from benchmark.cli import main

    assert main(["split", "--list", str(root / "train.txt"), "--fraction", "0.1", "--rest", str(tmp_path / "fit.txt"),
                 "--held-out", str(tmp_path / "val.txt")]) == 0  # fmt: skip
    assert read_split(tmp_path / "val.txt") == val and read_split(tmp_path / "fit.txt") == fit  # the same rule again
