"""The paper's one command, rehearsed end to end on synthetic MSRS/FMB-layout folders: the ``paper`` and
``paper-cnn`` profiles of experiments.yaml with only the budget, seeds, device and sizes overridden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from baselines.tcmoa import TCMoA
from benchmark.cli import run as main
from benchmark.config import load_config
from tests.conftest import write_image

pytestmark = pytest.mark.slow  # trains studies; python -m pytest -m "not slow" leaves them out

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments.yaml"


def data_root(root: Path) -> Path:
    """MSRS train (3 pairs), MSRS test, FMB test, TNO and RoadScene (2 pairs each) of 224 x 232 noise."""
    rng = np.random.default_rng(5)
    for folder, count in (("MSRS/train", 3), ("MSRS/test", 2), ("FMB/test", 2), ("TNO", 2), ("RoadScene", 2)):
        for i in range(count):
            write_image(root / folder / "ir" / f"{i:05d}.png", rng.integers(0, 256, (224, 232)))
            write_image(root / folder / "vi" / f"{i:05d}.png", rng.integers(0, 256, (224, 232, 3)))
    (root / "RoadScene" / "test.txt").write_text("00000\n00001\n")
    return root


def test_every_shipped_profile_compares_against_an_arm_it_has() -> None:
    cfg = load_config(EXPERIMENTS)
    for name, profile in cfg.profiles.items():
        assert profile.base_arm in profile.arms, name
    assert cfg.profile("paper").base_arm == "signed_sum"


def test_the_paper_command_makes_the_papers_comparison(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FUSION_DATA", str(data_root(tmp_path / "data")))
    backbone = TCMoA(size="tiny").state_dict()
    checkpoint = tmp_path / "mae_random.pth"  # random weights under MAE's key names
    torch.save({"model": {k: backbone[k] for k in TCMoA(size="tiny").backbone_keys()}}, checkpoint)
    published = yaml.safe_load((ROOT / "benchmark" / "published.yaml").read_text())["damgl_tcmoa_msrs"]
    published["test_set"]["images"] = 2  # the rehearsal's MSRS test folder
    (tmp_path / "published.yaml").write_text(yaml.safe_dump({"damgl_tcmoa_msrs": published}))
    overrides = ["profiles.paper.epochs=0.1", "profiles.paper.seeds=[0, 1]", "profiles.paper.checkpoint_every=2",
                 "models.tcmoa_large.size=tiny", f"models.tcmoa_large.backbone_checkpoint={checkpoint}"]  # fmt: skip
    argv = ["--profile", "paper", "--device", "cpu", "--results", str(tmp_path / "r"), "--no-figures",
            "--published", str(tmp_path / "published.yaml")] + [a for o in overrides for a in ("--set", o)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    tables = tmp_path / "r" / "paper" / "tables"
    assert len(list((tmp_path / "r" / "paper" / "runs").glob("*/done.json"))) == 4
    for stem in ("paired_msrs_test", "paired_fmb_test", "main_msrs_test", "main_fmb_test",
                 "published_damgl_tcmoa_msrs_tcmoa_large_msrs_test"):  # fmt: skip
        assert (tables / f"{stem}.md").is_file(), stem
    paired = (tables / "paired_msrs_test.md").read_text()
    assert "each arm against signed_sum" in paired and "| TC-MoA (ViT-L) | DAMGL | 2 |" in paired
    assert "paper-style tables (mean ± std over seeds of each arm, EN, MI, SD, SCD, VIF, Qabf" in out
    assert str(tables / "main_msrs_test.md") in out and str(tables / "main_fmb_test.md") in out
    assert "| published |  | +0.4 to +2.3% |" in out  # the paper's range beside the reproduced change
    assert "seeds: 2 per compared arm, fewer than the 6 a test needs, so no comparison is tested" in out


def test_the_cnn_paper_profile_rehearses_too(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FUSION_DATA", str(data_root(tmp_path / "data")))
    overrides = ["profiles.paper-cnn.steps=2", "profiles.paper-cnn.seeds=[0, 1]", "profiles.paper-cnn.checkpoint_every=2",
                 "profiles.paper-cnn.patch_size=32"]  # fmt: skip
    argv = ["--profile", "paper-cnn", "--device", "cpu", "--results", str(tmp_path / "r"), "--no-figures",
            "--only", "model=pmgi,loss=magnitude,loss=damgl"] + [a for o in overrides for a in ("--set", o)]  # fmt: skip
    assert main(argv) == 0
    tables = tmp_path / "r" / "paper-cnn" / "tables"
    for test in ("msrs_test", "fmb_test", "tno", "roadscene_test"):
        assert (tables / f"main_{test}.md").is_file() and (tables / f"paired_{test}.md").is_file(), test
    assert "seeds: 2 per compared arm" in capsys.readouterr().out
