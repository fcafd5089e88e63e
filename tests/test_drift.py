"""``python -m benchmark drift``: rankings and their agreement, hand-checked, and the committed VIFB
drift report rebuilt byte for byte from its per-image values."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmark import drift

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "drift-vifb"


def test_rankings_follow_each_conventions_better_direction() -> None:
    # Method b has the highest EN under cddfuse, the lowest under tang: the two rankings are reversed.
    en = {"cddfuse": [1.0, 3.0, 5.0, 4.0], "tang": [3.0, 3.0, 1.0, 2.0]}
    values = pd.DataFrame({"method": ["a", "a", "b", "c"], "image": ["1", "2", "1", "1"]})
    for conv in en:
        for name in drift.shared_metrics(["cddfuse", "tang"]):
            values[f"{conv}:{name}"] = en[conv] if name == "EN" else [1.0, 2.0, 3.0, 4.0]
    means = drift.method_means(values, ["cddfuse", "tang"])
    cdd = means[(means.convention == "cddfuse") & (means.metric == "EN")].set_index("method")
    assert cdd["mean"].to_dict() == {"a": 2.0, "b": 5.0, "c": 4.0}
    assert cdd["rank"].to_dict() == {"a": 3, "b": 1, "c": 2}
    agree = drift.agreement(means).set_index("metric")
    assert agree.loc["EN", "spearman"] == pytest.approx(-1.0)
    assert agree.loc["EN", "kendall"] == pytest.approx(-1.0)
    assert (agree.loc["EN", "best_a"], agree.loc["EN", "best_b"], agree.loc["EN", "best_changes"]) == ("b", "a", True)


def test_shared_metrics_are_names_two_conventions_define() -> None:
    shared = drift.shared_metrics(["cddfuse", "vifb", "tang"])
    assert shared[:6] == ["EN", "SD", "SF", "AG", "MI", "SCD"]
    assert "SSIM" in shared and "Nabf" not in shared and "Qcb" not in shared
    assert drift.shared_metrics(["vifb", "tang"]).count("SSIM") == 0  # tang leaves its SSIM out


def test_committed_vifb_drift_report_regenerates_byte_for_byte(tmp_path: Path) -> None:
    values = pd.read_csv(COMMITTED / drift.VALUES)
    files = drift.build(values, ["cddfuse", "vifb", "tang"], "VIFB", tmp_path)
    for f in files:
        assert f.read_bytes() == (COMMITTED / f.name).read_bytes(), f.name


def test_committed_vifb_drift_shows_the_ssim_disagreement() -> None:
    agree = pd.read_csv(COMMITTED / drift.AGREEMENT).set_index(["metric", "convention_a", "convention_b"])
    ssim = agree.loc[("SSIM", "cddfuse", "vifb")]
    assert ssim.methods == 25 and 0.45 < ssim.spearman < 0.5
    assert (ssim.best_a, ssim.best_b) == ("IFCNN", "DLF")
    for metric in ("EN", "SF", "AG", "MI", "Qabf"):
        assert agree.loc[(metric, "cddfuse", "vifb")].spearman > 0.99, metric


def test_committed_drift_records_what_scored_it() -> None:
    env = json.loads((Path(__file__).resolve().parents[1] / "results" / "drift-vifb" / "env.json").read_text())
    assert env["command"].startswith("python -m benchmark drift --dataset VIFB --fused ")
    assert len(env["git_commit"]) == 40 and not env["git_commit"].endswith("-dirty")  # a clean commit of the code
    assert {"python", "numpy", "scipy", "numba", "platform"} <= set(env)
