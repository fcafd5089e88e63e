"""``python -m benchmark evaluate``: matching, CSV output, the means table and its errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.data import PairedDataset
from benchmark.evaluate import evaluate_folders, format_markdown_means, format_means
from benchmark.metrics import evaluate
from tests.conftest import need, real_data, write_image


def make_fused(tiny_dataset: Path, tmp_path: Path, name: str, kind: str = "mean") -> Path:
    out = tmp_path / name
    ds = PairedDataset(tiny_dataset)
    for i, pair in enumerate(ds.pairs):
        s = ds[i]
        img = np.round((s.ir_grey + s.vi_grey) / 2) if kind == "mean" else np.full_like(s.ir_grey, 128)
        write_image(out / f"{pair.name}.{'png' if i % 2 else 'bmp'}", img)
    return out


def test_csv_rows_match_metrics(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fused = make_fused(tiny_dataset, tmp_path, "Mean")
    const = make_fused(tiny_dataset, tmp_path, "Const", "const")
    out = tmp_path / "scores.csv"
    rc = main(["evaluate", "--dataset", str(tiny_dataset), "--fused", str(fused), "--fused", str(const),
               "--metrics", "EN,CC", "SSIM", "--out", str(out)])  # fmt: skip
    assert rc == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["method", "image", "EN", "CC", "SSIM"]
    assert [(r["method"], r["image"]) for r in rows] == [("Mean", "a"), ("Mean", "b"), ("Mean", "c"),
                                                         ("Const", "a"), ("Const", "b"), ("Const", "c")]  # fmt: skip
    s = PairedDataset(tiny_dataset)[0]
    expect = evaluate(np.round((s.ir_grey + s.vi_grey) / 2), s.ir_grey, s.vi_grey, ["EN", "CC", "SSIM"])
    assert float(rows[0]["EN"]) == expect["EN"] and float(rows[0]["SSIM"]) == expect["SSIM"]  # full precision
    assert math.isnan(float(rows[3]["CC"]))
    printed = capsys.readouterr().out
    assert "* Const CC: 3 of 3 values are NaN and excluded from the mean" in printed
    const_line = next(line for line in printed.splitlines() if line.startswith("Const"))
    assert "nan*" in const_line.split()


def test_several_conventions_give_one_column_block_each(tiny_dataset: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    fused = make_fused(tiny_dataset, tmp_path, "Mean")
    out = tmp_path / "scores.csv"
    rc = main(["evaluate", "--dataset", str(tiny_dataset), "--fused", str(fused), "--convention", "cddfuse,vifb,tang",
               "--metrics", "SSIM,MI,Nabf", "--out", str(out)])  # fmt: skip
    assert rc == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["method", "image", "cddfuse:MI", "cddfuse:SSIM", "vifb:MI", "vifb:SSIM", "tang:MI", "tang:Nabf"]
    ds = PairedDataset(tiny_dataset)
    s = ds[0]
    img = np.round((s.ir_grey + s.vi_grey) / 2)
    for conv in ("cddfuse", "vifb", "tang"):
        expect = evaluate(img, s.ir_raw, s.vi_raw, ["MI"], conv)["MI"]
        assert float(rows[0][f"{conv}:MI"]) == expect
    assert rows[0]["cddfuse:MI"] != rows[0]["tang:MI"]  # nats against bits: the same name, other code
    assert main(["evaluate", "--dataset", str(tiny_dataset), "--fused", str(fused), "--convention", "vifb,tang",
                 "--metrics", "Qcb,Foo"]) == 2  # fmt: skip
    assert "unknown metric(s) ['Foo'] in conventions vifb, tang" in capsys.readouterr().err


@pytest.mark.parametrize("convention", ["vifb", "tang"])
def test_speed_metrics_times_every_metric_of_a_convention(tiny_dataset: Path, convention: str,
                                                         capsys: pytest.CaptureFixture) -> None:
    import torch

    from benchmark.metrics import get_convention

    threads = torch.get_num_threads()
    assert main(["speed", "metrics", "--dataset", str(tiny_dataset), "--convention", convention,
                 "--repeat", "1", "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"convention {convention}: 3 pairs of ds (48 x 40 first), 1 threads" in out
    assert "over 3 evaluations" in out and "images per second" in out
    per_metric = out.split("per metric (median ms, shared intermediates counted where first used): ")[1]
    assert [part.rsplit(" ", 1)[0] for part in per_metric.strip().split(", ")] == get_convention(convention).names()
    assert torch.get_num_threads() == threads  # the timing's thread count does not leak into the process


def test_speed_gpu_runs_its_path_on_the_cpu_with_the_loss_check(monkeypatch, capsys: pytest.CaptureFixture) -> None:
    import torch

    from benchmark import speed

    if torch.cuda.is_available():
        pytest.skip("this test checks the CPU form of the check; on a GPU machine run python -m benchmark speed gpu")
    monkeypatch.setenv("FUSION_DATA", "/nonexistent")  # the synthetic test set stands in for TNO
    args = ["speed", "gpu", "--models", "pmgi,densefuse", "--steps", "1", "--images", "1", "--threads", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "gpu check on CPU (1 threads; no CUDA here, a smaller check): 1 timed training steps per model" in out
    for name in ("pmgi", "densefuse"):  # the same weights and batch on the same device: the same loss, exactly
        line = next(x for x in out.splitlines() if x.strip().startswith(name))
        assert "batch 2 of 64 x 64" in line and line.endswith("(relative 0.0e+00)")
    assert "fuse and score, pmgi on 1 pairs of synthetic_test" in out
    assert "loss agreement: largest relative difference 0.0e+00, within 0.02" in out
    monkeypatch.setattr(speed, "AGREEMENT", -1.0)  # any difference fails the check: exit status 1
    assert main(args[:4] + ["--steps", "1", "--images", "1"]) == 1
    assert "OUTSIDE" in capsys.readouterr().out


def test_missing_fused_image(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fused = make_fused(tiny_dataset, tmp_path, "M")
    (fused / "c.bmp").unlink()
    rc = main(["evaluate", "--dataset", str(tiny_dataset), "--fused", str(fused), "--metrics", "EN"])
    assert rc == 2
    assert f"no fused image for 'c' in {fused}" in capsys.readouterr().err
    rc = main(["evaluate", "--dataset", str(tiny_dataset), "--fused", str(fused), "--metrics", "EN", "--allow-missing"])
    assert rc == 0
    assert f"skipped: M c: no fused image for 'c' in {fused}" in capsys.readouterr().out


def test_fused_size_mismatch(tiny_dataset: Path, tmp_path: Path) -> None:
    fused = make_fused(tiny_dataset, tmp_path, "M")
    write_image(fused / "b.png", np.zeros((40, 47)))
    ds = PairedDataset(tiny_dataset)
    with pytest.raises(ValueError, match=r"b.png is 47x40 but its sources are 48x40 .*nothing is resized"):
        evaluate_folders(ds, [fused], ["EN"], progress=False)
    result = evaluate_folders(ds, [fused], ["EN"], allow_missing=True, progress=False)
    assert [(m, i) for m, i, _ in result.skipped] == [("M", "b")]
    assert len(result.rows) == 2


def test_bad_arguments(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fused = make_fused(tiny_dataset, tmp_path, "M")
    assert main(["evaluate", "--dataset", str(tiny_dataset), "--fused", str(tmp_path / "nowhere")]) == 2
    assert "fused folder not found" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", str(tiny_dataset), "--fused", str(fused), "--metrics", "XYZ"]) == 2
    assert "unknown metric(s) ['XYZ']; valid: EN, SD" in capsys.readouterr().err


def test_markdown_table(tiny_dataset: Path, tmp_path: Path) -> None:
    fused = make_fused(tiny_dataset, tmp_path, "M")
    result = evaluate_folders(PairedDataset(tiny_dataset), [fused], ["EN", "SD"], progress=False)
    md = format_markdown_means(result).splitlines()
    assert md[0] == "| method | n | EN ↑ | SD ↑ |" and md[1] == "|---|---:|---:|---:|"  # the better direction
    en, sd = result.values("M", "EN").mean(), result.values("M", "SD").mean()
    assert md[2] == f"| M | 3 | {en:.3f} | {sd:.2f} |"  # each metric's decimals, from its metadata
    assert format_means(result).splitlines()[2].split() == ["M", "3", f"{en:.3f}", f"{sd:.2f}"]


def test_the_means_table_fits_the_terminal_width(tiny_dataset: Path, tmp_path: Path) -> None:
    fused = make_fused(tiny_dataset, tmp_path, "Mean")
    result = evaluate_folders(PairedDataset(tiny_dataset), [fused], convention=["cddfuse", "vifb", "tang"], progress=False)
    lines = format_means(result, width=80).splitlines()
    assert max(map(len, lines)) <= 80
    headers = [x.split() for x in lines if x.startswith("method")]
    assert len(headers) > 1 and all(h[:2] == ["method", "n"] for h in headers)  # method and n in every block
    shown = [h for header in headers for h in header[2:] if h not in ("↑", "↓")]
    assert shown == result.metrics  # every column once, in order


@pytest.mark.calibration
def test_vifb_published_outputs_all_methods() -> None:
    vifb = need(real_data() / "VIFB")
    methods = sorted(p for p in (vifb / "fused").iterdir() if p.is_dir())
    assert len(methods) == 25
    result = evaluate_folders(PairedDataset(vifb), methods, ["EN", "SD"], progress=False)
    assert len(result.rows) == 25 * 21 and not result.skipped
