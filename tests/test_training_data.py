"""Synthetic pairs, the patch sampler and the learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data import DataError
from benchmark.data.synthetic import SyntheticDataset, make_pair
from benchmark.train import PatchSampler, lr_factor


def test_synthetic_pairs_are_deterministic_and_have_opposite_polarity_edges() -> None:
    ir1, vis1 = make_pair(5)
    ir2, vis2 = make_pair(5)
    assert np.array_equal(ir1, ir2) and np.array_equal(vis1, vis2)
    assert not np.array_equal(make_pair(6)[0], ir1)
    ds = SyntheticDataset(count=3, height=64, width=80, seed=1)
    s = ds[2]
    assert ds.names() == ["syn01_000", "syn01_001", "syn01_002"] and s.ir_grey.shape == (64, 80)
    # where infrared steps up, the visible image must somewhere step down at the same place
    gi = np.diff(s.ir_grey, axis=1)
    gv = np.diff(s.vi_grey, axis=1)
    strong = (np.abs(gi) > 20) & (np.abs(gv) > 10)
    assert (np.sign(gi[strong]) != np.sign(gv[strong])).any() and (np.sign(gi[strong]) == np.sign(gv[strong])).any()
    with pytest.raises(ValueError, match="sizes >= 32"):
        SyntheticDataset(height=16)


def test_patch_sampler_is_seeded_and_checks_sizes() -> None:
    img = np.random.default_rng(0).random((40, 50), dtype=np.float32)
    images = [("a", img, 1 - img)]
    a = PatchSampler(images, 16, 4, seed=3).next()
    b = PatchSampler(images, 16, 4, seed=3).next()
    assert a[0].shape == (4, 1, 16, 16) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.allclose(a[0] + a[1], 1)  # the same crop and flips for both modalities
    with pytest.raises(DataError, match="training image 'a' is 50x40, smaller than the 64-pixel patch"):
        PatchSampler(images, 64, 4, seed=0)


def test_step_schedule() -> None:
    step = {"type": "step", "every_epochs": 1, "gamma": 0.75}
    assert lr_factor(step, 0.5) == 1.0 and lr_factor(step, 1.0) == 0.75 and lr_factor(step, 2.2) == 0.75**2
    assert lr_factor({"type": "constant"}, 9) == 1.0
    with pytest.raises(ValueError, match="schedule.type: 'cosine' is not one of"):
        lr_factor({"type": "cosine"}, 1)
