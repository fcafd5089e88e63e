"""Packs: runs of one model trained together give the losses they give alone; the run store sees no difference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.io import imread
from torch import nn

from baselines import Phase, Recipe
from benchmark.cli import run as run_main
from benchmark.config import load_config
from benchmark.launch import pack_groups
from benchmark.pack import NotPackable, Pack
from benchmark.plan import plan
from benchmark.train import Trainer

pytestmark = pytest.mark.slow  # trains studies; python -m pytest -m "not slow" leaves them out

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments.yaml"
ARMS = ({"type": "damgl", "scales": [1.0, 0.5, 0.25], "sign": True}, {"type": "magnitude"}, {"type": "signed_sum"})


def trainers(name: str, steps: int) -> list[Trainer]:
    """Three runs of a model: seeds 0, 1, 2 with three different gradient arms."""
    spec = load_config(EXPERIMENTS).model(name)
    out = []
    for seed, arm in enumerate(ARMS):
        torch.manual_seed(seed)
        out.append(Trainer(spec.build(), spec.recipe, arm, steps))
    return out


@pytest.fixture
def float64():
    """Training in float64: 20 steps of float32 training amplify the rounding of a batched (vmapped)
    convolution against a single one past any fixed tolerance on some CPUs (seen: 1.2e-5 on SeAFusion)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("name", ["pmgi", "densefuse", "seafusion"])
def test_a_packed_group_gives_the_losses_of_runs_trained_alone(name: str, float64) -> None:
    steps = 20
    g = torch.Generator().manual_seed(0)
    batches = [[(torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g)) for _ in ARMS]
               for _ in range(steps)]  # fmt: skip
    alone = [[t.train_step(*batches[i][k]).loss for i in range(steps)] for k, t in enumerate(trainers(name, steps))]
    group = trainers(name, steps)
    pack = Pack(group)
    packed = [[], [], []]
    for i in range(steps):
        for k, log in enumerate(pack.step(group, batches[i])):
            packed[k].append(log.loss)
    assert [t.step for t in group] == [steps] * 3
    for k in range(3):
        assert packed[k] == pytest.approx(alone[k], rel=1e-9), (name, k)
        assert packed[k][0] == pytest.approx(alone[k][0], rel=1e-12)  # the first step: rounding only
    assert len({round(x[-1], 3) for x in packed}) == 3  # three different runs, not one run three times


class _Noisy(nn.Module):
    recipe = Recipe(phases=(Phase("fusion", {"intensity": {"type": "max_l1", "weight": 1.0}}),), gradient_weight=1.0,
                    optimizer={"type": "adam", "lr": 1e-3}, patch_size=16, batch_size=2)  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.drop = nn.Conv2d(2, 1, 3, padding=1), nn.Dropout(0.5)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.drop(self.conv(torch.cat([ir, vis], 1))))


def test_models_that_cannot_be_packed_are_refused_with_the_reason() -> None:
    cdd = load_config(EXPERIMENTS).model("cddfuse")
    with pytest.raises(NotPackable, match="CDDFuse cannot be packed: its forward pass changes with the training phase"):
        Pack([Trainer(cdd.build(), cdd.recipe, {"type": "damgl"}, 2) for _ in range(2)])
    noisy = [Trainer(_Noisy(), _Noisy.recipe, None, 2) for _ in range(2)]
    batch = (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16))
    with pytest.raises(NotPackable, match="_Noisy cannot be packed: its forward pass draws random numbers"):
        Pack(noisy).step(noisy, [batch, batch])
    assert [t.step for t in noisy] == [0, 0]  # nothing was applied


def test_pack_groups_share_model_batch_and_patch_in_plan_order() -> None:
    cfg = load_config(EXPERIMENTS, ["profiles.quick.seeds=[0, 1, 2]"])
    runs = plan(cfg, cfg.profile("quick"))
    groups = pack_groups(runs, 4)
    assert [[r.run_id for r in g] for g in groups] == [
        [f"pmgi__{a}__synthetic_train__s{s}" for a, s in (("magnitude", 0), ("magnitude", 1), ("magnitude", 2), ("damgl", 0))],
        [f"pmgi__damgl__synthetic_train__s{s}" for s in (1, 2)],
        [f"densefuse__{a}__synthetic_train__s{s}" for a, s in (("magnitude", 0), ("magnitude", 1), ("magnitude", 2), ("damgl", 0))],
        [f"densefuse__damgl__synthetic_train__s{s}" for s in (1, 2)],
    ]  # fmt: skip
    assert [len(g) for g in pack_groups(runs, 1)] == [1] * 12


def test_a_packed_study_writes_what_lone_runs_write(tmp_path: Path) -> None:
    common = ["--config", str(EXPERIMENTS), "--profile", "smoke", "--set", "profiles.smoke.seeds=[0, 1]"]
    assert run_main([*common, "--results", str(tmp_path / "alone")]) == 0
    assert run_main([*common, "--results", str(tmp_path / "packed"), "--pack", "4"]) == 0
    for arm in ("magnitude", "damgl"):
        for seed in (0, 1):
            rid = f"tiny__{arm}__synthetic_small__s{seed}"
            one, many = (tmp_path / where / "smoke" / "runs" / rid for where in ("alone", "packed"))
            assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in many.iterdir())
            assert (one / "config.yaml").read_text() == (many / "config.yaml").read_text()
            partners = json.loads((many / "env.json").read_text())["packed_with"]
            assert rid not in partners and len(partners) == 3
            a, b = (pd.read_csv(d / "train_log.csv") for d in (one, many))
            assert list(a.step) == list(b.step) and b.loss.tolist() == pytest.approx(a.loss.tolist(), rel=1e-5)
            # The fused 8-bit images agree to one grey level, rarely off by one: the losses' float32 rounding
            # (above) can move a pixel across a rounding boundary, which moves a 64 x 80 image's EN by 3e-4.
            pngs = sorted(f.relative_to(one) for f in one.rglob("*.png"))
            assert pngs and pngs == sorted(f.relative_to(many) for f in many.rglob("*.png"))
            same = True
            for f in pngs:
                x, y = (imread(d / f).astype(int) for d in (one, many))
                assert np.abs(x - y).max() <= 1 and (x != y).mean() <= 1e-3, (rid, f)
                same = same and np.array_equal(x, y)
            m1, m2 = ((d / "metrics.csv").read_text() for d in (one, many))
            assert (m1 == m2) or not same, rid  # equal images score the same
    assert run_main([*common, "--results", str(tmp_path / "packed"), "--pack", "0"]) == 2
