"""``python -m benchmark data``: releases checked and prepared from small synthetic folders laid out as
each publisher released them; every misfit is an error naming its file."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.data import DataError, PairedDataset, read_split
from benchmark.data import releases as D
from tests.conftest import write_image

RNG = np.random.default_rng(3)


def small(name: str, pairs: int = 2) -> D.Release:
    """The named release with a few pairs of 12 x 8 per split (its real folder layout, no test selections)."""
    release = D.get_release(name)
    return dataclasses.replace(release, pairs={s: pairs for s in release.folders}, size=(12, 8), lists={})


def released(root: Path, release: D.Release, ext: str = ".png", stems: list[str] | None = None) -> Path:
    """A folder in the release's own layout: grey infrared, colour visible images, same names."""
    for split, (ir, vi) in release.folders.items():
        names = stems or [f"{split}{i:03d}" for i in range(release.pairs[split])]
        w, h = release.size or (12, 8)
        for stem in names:
            write_image(root / ir / f"{stem}{ext}", RNG.integers(0, 256, (h, w)))
            write_image(root / vi / f"{stem}{ext}", RNG.integers(0, 256, (h, w, 3)))
    return root


@pytest.mark.parametrize("name", list(D.RELEASES))
def test_prepare_turns_each_released_layout_into_ir_and_vi(tmp_path: Path, name: str) -> None:
    release = small(name)
    src = released(tmp_path / "src", release)
    rows = D.prepare(release, src, tmp_path / "out")
    splits = list(release.folders)
    assert len(rows) == 4 * len(splits)  # two pairs, two files each, per split
    for split in splits:
        folder = tmp_path / "out" / split if len(splits) > 1 else tmp_path / "out"
        dataset = PairedDataset(folder)
        assert dataset.names() == [f"{split}000", f"{split}001"]
        assert read_split(tmp_path / "out" / f"{split}.txt") == dataset.names()
        ir_src = src / release.folders[split][0] / f"{split}000.png"
        assert (folder / "ir" / f"{split}000.png").read_bytes() == ir_src.read_bytes()  # copied, not re-encoded
    manifest = (tmp_path / "out" / D.MANIFEST).read_text().splitlines()
    assert manifest[0] == ",".join(D.MANIFEST_COLUMNS) and len(manifest) == 1 + len(rows)
    assert D.check(release, tmp_path / "out") == [[r[0], r[1], r[2], *r[3:]] for r in rows]  # prepared folders check too
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_manifest_rows_hold_sizes_and_digests(tmp_path: Path) -> None:
    release = small("M3FD", pairs=1)
    src = released(tmp_path / "src", release)
    rows = D.check(release, src)
    ir = src / "Ir" / "all000.png"
    assert rows[0] == ["all", "ir", "Ir/all000.png", 12, 8, 1, ir.stat().st_size, hashlib.sha256(ir.read_bytes()).hexdigest()]
    assert rows[1][:6] == ["all", "vi", "Vis/all000.png", 12, 8, 3]


def test_the_real_release_facts() -> None:
    msrs, fmb, llvip = (D.get_release(n) for n in ("msrs", "FMB", "LLVIP"))
    assert (msrs.pairs, msrs.size) == ({"train": 1083, "test": 361}, (640, 480))
    assert (fmb.pairs, fmb.size) == ({"train": 1220, "test": 280}, (800, 600))
    assert sum(llvip.pairs.values()) == 15488
    roadscene = D.get_release("RoadScene")
    test, train = (read_split(D.SPLITS / roadscene.lists[k]) for k in ("test", "train"))
    assert (len(test), len(train), len(set(test) | set(train))) == (50, 171, 221)
    with pytest.raises(DataError, match="unknown dataset 'MSRX'; known: MSRS, FMB, M3FD, LLVIP, TNO, RoadScene"):
        D.get_release("MSRX")


def test_roadscene_gets_the_papers_test_selection(tmp_path: Path) -> None:
    release = D.get_release("RoadScene")
    stems = sorted(read_split(D.SPLITS / "roadscene_test.txt") + read_split(D.SPLITS / "roadscene_train.txt"))
    src = released(tmp_path / "src", release, ".jpg", stems)
    D.prepare(release, src, tmp_path / "RoadScene")
    assert read_split(tmp_path / "RoadScene" / "test.txt") == read_split(D.SPLITS / "roadscene_test.txt")
    assert len(PairedDataset(tmp_path / "RoadScene", tmp_path / "RoadScene" / "train.txt")) == 171


def test_a_missing_partner_is_named(tmp_path: Path) -> None:
    release = small("FMB")
    src = released(tmp_path / "src", release)
    (src / "test" / "Visible" / "test001.png").unlink()
    with pytest.raises(DataError, match=r"test/Infrared/test001.png has no partner in .*test/Visible"):
        D.check(release, src)


def test_a_size_mismatch_is_named(tmp_path: Path) -> None:
    release = dataclasses.replace(small("TNO"), size=None)
    src = released(tmp_path / "src", release)
    write_image(src / "vi" / "all001.png", RNG.integers(0, 256, (8, 10)))
    with pytest.raises(DataError, match=r"size mismatch: .*ir/all001.png is 12x8 but .*vi/all001.png is 10x8"):
        D.check(release, src)
    fixed = small("TNO")  # a release with one size rejects another size even when the partners agree
    write_image(src / "ir" / "all001.png", RNG.integers(0, 256, (8, 10)))
    with pytest.raises(DataError, match=r"ir/all001.png: 10 x 8 \(width x height\), but every TNO image is 12 x 8"):
        D.check(fixed, src)


def test_an_extra_file_or_folder_is_named(tmp_path: Path) -> None:
    release = small("MSRS")
    src = released(tmp_path / "src", release)
    (src / "train" / "ir" / "Thumbs.db").write_bytes(b"x")  # OS metadata: skipped
    assert len(D.check(release, src)) == 8  # 2 splits x 2 pairs x 2 files
    (src / "train" / "ir" / "notes.txt").write_bytes(b"x")
    with pytest.raises(DataError, match=r"train/ir/notes.txt: '.txt' is not a supported image format"):
        D.check(release, src)
    (src / "train" / "ir" / "notes.txt").unlink()
    (src / "test" / "vi" / "extra").mkdir()
    with pytest.raises(DataError, match=r"test/vi/extra: a folder"):
        D.check(release, src)


def test_a_wrong_pair_count_says_what_was_released(tmp_path: Path) -> None:
    src = released(tmp_path / "src", small("LLVIP", pairs=3))
    with pytest.raises(DataError, match=r"infrared/train: 3 pairs, but LLVIP train was released with 2 "):
        D.check(small("LLVIP"), src)
    assert len(D.check(small("LLVIP", pairs=3), src, ["test"])) == 6  # one split alone


def test_a_missing_split_or_folder_says_which_layouts_were_looked_for(tmp_path: Path) -> None:
    src = released(tmp_path / "src", small("M3FD"))
    with pytest.raises(DataError, match=r"no MSRS train split here; expected .*train/ir and .*train/vi"):
        D.check(small("MSRS"), src)
    with pytest.raises(DataError, match="M3FD has no split 'test'; its splits: all"):
        D.check(small("M3FD"), src, ["test"])


def test_prepare_never_writes_over_a_folder_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    release = small("M3FD")
    src = released(tmp_path / "src", release)
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="out exists; prepare writes a new folder"):
        D.prepare(release, src, tmp_path / "out")
    write_image(src / "Vis" / "all001.png", RNG.integers(0, 256, (8, 10, 3)))
    with pytest.raises(DataError, match="size mismatch: .*Ir/all001.png is 12x8"):
        D.prepare(release, src, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_data_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "list"]) == 0
    assert "MSRS: train 1083, test 361 pairs, 640 x 480" in capsys.readouterr().out
    src = released(tmp_path / "src", D.get_release("TNO"))
    assert main(["data", "check", "TNO", str(src), "--manifest", str(tmp_path / "m.csv")]) == 0
    assert "TNO 25 pairs, as many as released" in capsys.readouterr().out
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 51
    assert main(["data", "prepare", "tno", str(src), str(tmp_path / "TNO")]) == 0
    assert main(["data", "prepare", "tno", str(src), str(tmp_path / "TNO")]) == 2
    assert "exists; prepare writes a new folder" in capsys.readouterr().err


def test_check_lists_every_problem_in_one_pass(tmp_path: Path, capsys) -> None:
    """An MSRS-layout folder with 3 training pairs, a test image without its partner, a stray file and an
    image of the wrong size: one error names each of them."""
    release = D.get_release("MSRS")
    root = tmp_path / "MSRS"
    for split, count in (("train", 3), ("test", 2)):
        for i in range(count):
            write_image(root / split / "ir" / f"{i:05d}.png", RNG.integers(0, 256, (480, 640)))
            write_image(root / split / "vi" / f"{i:05d}.png", RNG.integers(0, 256, (480, 640, 3)))
    (root / "test" / "vi" / "00001.png").unlink()
    (root / "train" / "ir" / "notes.txt").write_text("stray")
    write_image(root / "train" / "vi" / "00002.png", RNG.integers(0, 256, (48, 64, 3)))
    with pytest.raises(DataError) as caught:
        D.check(release, root)
    text = str(caught.value)
    assert "5 problem(s)" in text
    assert "3 pairs, but MSRS train was released with 1083" in text and "2 pairs, but MSRS test was released with 361" in text
    assert f"{root / 'test' / 'ir' / '00001.png'} has no partner in {root / 'test' / 'vi'}" in text
    assert f"{root / 'train' / 'ir' / 'notes.txt'}: '.txt' is not a supported image format" in text
    assert "00002.png is 64x48 (width x height)" in text
    assert main(["data", "check", "MSRS", str(root)]) == 2
    assert "has no partner" in capsys.readouterr().err
