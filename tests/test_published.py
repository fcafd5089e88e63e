"""Published results: the shipped rows, comparisons by hand, errors, and the report's 'reproduced vs published'."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark import reports
from benchmark.cli import main as cli_main
from benchmark.cli import run as run_main
from benchmark.config import load_config
from benchmark.data import PairedDataset, stems_identity
from benchmark.evaluate import evaluate_folders
from benchmark.published import PUBLISHED_FILE, PublishedError, compare_gains, compare_means, load_published
from tests.conftest import need, real_data

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments.yaml"


def test_shipped_rows_hold_cddfuse_readme_numbers() -> None:
    rows = load_published()
    tno, road = rows["cddfuse_readme_tno"], rows["cddfuse_readme_roadscene"]
    assert dict(tno.values) == {"EN": 7.12, "SD": 46.0, "SF": 13.15, "MI": 2.19, "SCD": 1.76, "VIF": 0.77, "Qabf": 0.54,
                                "SSIM": 1.03}  # fmt: skip
    assert list(road.values.values()) == [7.44, 54.67, 16.36, 2.3, 1.81, 0.69, 0.52, 0.98]
    assert (tno.images, road.images, tno.convention, tno.decimals, tno.half_unit) == (25, 50, "cddfuse", 2, 0.005)
    gains = rows["damgl_tcmoa_msrs"]
    assert (gains.base, gains.arm, gains.percent, gains.stems_sha256) == ("signed_sum", "damgl", (0.4, 2.3), None)
    assert list(gains.values) == ["EN", "MI", "SD", "SCD", "VIF", "Qabf"]


@pytest.mark.parametrize("key, dataset", [("cddfuse_readme_tno", "tno"), ("cddfuse_readme_roadscene", "roadscene_test")])
def test_shipped_rows_name_the_images_the_datasets_hold(key: str, dataset: str) -> None:
    need(real_data() / "TNO")
    identity = load_config(EXPERIMENTS).datasets[dataset].identity()
    row = load_published()[key]
    assert row.applies_to("cddfuse", identity, "cddfuse")
    assert not row.applies_to("cddfuse", identity, "vifb") and not row.applies_to("seafusion", identity, "cddfuse")


def test_compare_means_by_hand() -> None:
    row = load_published()["cddfuse_readme_tno"]
    out = compare_means(row, {"EN": [7.0, 7.2], "SD": [45.0, 45.99], "MI": [2.5], "PSNR": [60.0]}).set_index("metric")
    assert list(out.index) == ["EN", "SD", "MI"]  # published order; PSNR has no published value
    assert out.loc["EN", "mean"] == pytest.approx(7.1) and out.loc["EN", "diff"] == pytest.approx(-0.02)
    assert out.loc["EN", "std"] == pytest.approx(0.1414213562) and out.loc["EN", "within"]
    assert out.loc["EN", "diff_in_sd"] == pytest.approx(-0.02 / 0.1414213562)
    assert out.loc["SD", "within"] is False  # 46.0 printed at 2 decimals: 45.99 + 0.005 = 45.995 falls short ...
    assert compare_means(row, {"SD": [45.0, 45.996]}).within.iloc[0]  # ... 45.996 + 0.005 reaches it
    assert out.loc["MI", "within"] is None and math.isnan(out.loc["MI", "std"])  # one seed: no spread


def test_compare_gains_by_hand() -> None:
    row = load_published()["damgl_tcmoa_msrs"]
    base = {"model": "m", "test": "t", "arm": "damgl", "base": "signed_sum", "runs": "healthy", "seeds": 6, "base_mean": 2.0}
    comparisons = pd.DataFrame([{**base, "metric": "EN", "diff": 0.02, "t_lo": 0.01, "t_hi": 0.03},
                                {**base, "metric": "VIF", "diff": -0.04, "t_lo": -0.06, "t_hi": -0.02},
                                {**base, "metric": "SSIM", "diff": 0.5, "t_lo": 0.4, "t_hi": 0.6},
                                {**base, "metric": "EN", "runs": "all", "diff": 9.0, "t_lo": 9.0, "t_hi": 9.0}])  # fmt: skip
    out = compare_gains(row, comparisons).set_index("metric")
    assert list(out.index) == ["EN", "VIF"]  # SSIM is not among the published metrics; 'all' runs are not used
    assert out.loc["EN", "percent"] == pytest.approx(1.0) and out.loc["EN", "percent_lo"] == pytest.approx(0.5)
    assert out.loc["EN", "overlaps"] and not out.loc["VIF", "overlaps"]


def test_bad_published_file_names_the_row_and_key(tmp_path: Path) -> None:
    good = yaml.safe_load(PUBLISHED_FILE.read_text())
    cases = [({"kind": "table"}, "x.kind: expected one of ['means', 'gains']"),
             ({**good["cddfuse_readme_tno"], "value": 1}, "unknown ['value']"),
             ({**good["cddfuse_readme_tno"], "values": {"EM": 7.0}}, "unknown metric(s) ['EM']"),
             ({**good["cddfuse_readme_tno"], "decimals": -1}, "x.decimals: expected a non-negative integer")]  # fmt: skip
    for block, message in cases:
        path = tmp_path / "published.yaml"
        path.write_text(yaml.safe_dump({"x": block}))
        with pytest.raises(PublishedError) as err:
            load_published(path)
        assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.slow
def test_report_sets_the_published_row_beside_the_reproduced_one(tmp_path: Path, tiny_dataset: Path) -> None:
    raw = yaml.safe_load(EXPERIMENTS.read_text())
    raw["datasets"]["folder_test"] = {"path": str(tiny_dataset)}
    raw["profiles"]["smoke"]["test"] = ["folder_test"]
    raw["profiles"]["smoke"]["seeds"] = [1, 2]
    config = tmp_path / "experiments.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert run_main(["--config", str(config), "--profile", "smoke", "--results", str(tmp_path / "results")]) == 0
    identity = load_config(config).datasets["folder_test"].identity()
    row = {"kind": "means", "method": "Tiny", "model_type": "examples.tiny_fusion:TinyFusion",
           "test_set": {"name": "three pairs", **identity}, "convention": "cddfuse", "decimals": 2,
           "source": "a test", "values": {"EN": 5.5, "SD": 1000.0}}  # fmt: skip
    other = {**row, "test_set": {**row["test_set"], "stems_sha256": "0" * 16}}  # other images: never matched
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump({"tiny_row": row, "other_images": other, "vifb_row": {**row, "convention": "vifb"}}))
    study = tmp_path / "results" / "smoke"
    reports.build_report(study, figures=False, published=published)
    summary = (study / "summary.md").read_text()
    assert "## Reproduced vs published" in summary and "(row 'tiny_row' of the published file)" in summary
    assert "other_images" not in summary and "vifb_row" not in summary
    frame = pd.read_csv(study / "tables" / "published_tiny_row_tiny_folder_test.csv")
    main = pd.read_csv(study / "tables" / "main_folder_test.csv").set_index("arm")
    for arm in ("magnitude", "damgl"):
        en = frame[(frame.arm == arm) & (frame.metric == "EN")].iloc[0]
        assert en["mean"] == pytest.approx(main.loc[arm, "EN_mean"]) and en["diff"] == pytest.approx(en["mean"] - 5.5)
        sd = frame[(frame.arm == arm) & (frame.metric == "SD")].iloc[0]
        assert not sd["within"]  # uniform noise in 0-255 has an SD near 74, far from 1000
    md = (study / "tables" / "published_tiny_row_tiny_folder_test.md").read_text()
    assert "| published |  |  | 5.5 | 1000 |" in md and "†" in md


def test_evaluate_compares_a_folder_with_a_published_row(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    fused = tmp_path / "ir_copy"
    shutil.copytree(tiny_dataset / "ir", fused)
    result = evaluate_folders(PairedDataset(tiny_dataset), [fused], ["EN", "SD"], progress=False)
    en, sd = (float(np.nanmean(result.values("ir_copy", m))) for m in ("EN", "SD"))
    row = {"kind": "means", "method": "IR copy", "model_type": "none", "convention": "cddfuse", "decimals": 2,
           "test_set": {"name": "three pairs", **stems_identity(PairedDataset(tiny_dataset).names())},
           "source": "a test", "values": {"EN": round(en, 2), "SD": round(sd, 2) + 0.01}}  # fmt: skip
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump({"copy": row, "other": {**row, "test_set": {**row["test_set"], "images": 4}}}))
    base = ["evaluate", "--dataset", str(tiny_dataset), "--fused", str(fused), "--metrics", "EN,SD",
            "--published-file", str(published)]  # fmt: skip
    assert cli_main([*base, "--published", "copy"]) == 0
    out = capsys.readouterr().out
    assert f"EN {en:.4f} vs {round(en, 2):g} ({en - round(en, 2):+.4f}, as printed)" in out
    assert "ir_copy: 1 of 2 metrics round to the published value" in out
    assert cli_main([*base, "--published", "other"]) == 2
    assert "--published other: it describes three pairs (4 pairs" in capsys.readouterr().err
    assert cli_main([*base, "--published", "copy", "--convention", "vifb"]) == 2
    assert "computed under the cddfuse convention; add it to --convention" in capsys.readouterr().err
    assert cli_main([*base, "--published", "nope"]) == 2
    assert "no published means row of that name; rows: copy, other" in capsys.readouterr().err
