"""Fusion objectives built from recipes, swapping the gradient slot, and model-specific terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from baselines.recipe import Phase, Recipe
from losses import FusionObjective, build
from losses.fusion import TERMS

SEAFUSION = {"intensity": {"type": "max_l1", "weight": 1}, "gradient": {"type": "magnitude", "weight": 10}}


def batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(2, 1, 24, 28, generator=g) for _ in range(3))


def test_parts_are_weighted_terms() -> None:
    f, a, b = batch()
    total, parts = FusionObjective({**SEAFUSION, "ssim": {"type": "ssim", "weight": 0.5}})(f, a, b)
    assert parts["intensity"].item() == pytest.approx(F.l1_loss(f, torch.maximum(a, b)).item())
    assert parts["gradient"].item() == pytest.approx(10 * build("magnitude")(f, a, b).item())
    assert 0 < parts["ssim"].item() < 0.5 * 2
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()))


def test_swapping_gradient_keeps_weight_and_other_terms() -> None:
    f, a, b = batch(1)
    recipe = Recipe((Phase("fusion", SEAFUSION), Phase("frozen", SEAFUSION, swap_gradient=False)), gradient_weight=10.0,
                    optimizer={"type": "adam", "lr": 1e-3})  # fmt: skip
    base = recipe.objective(0)
    swapped = recipe.objective(0, {"type": "damgl", "scales": [1, 0.5]})
    assert swapped.recipe["gradient"] == {"type": "damgl", "scales": [1, 0.5], "weight": 10}
    assert swapped.recipe["intensity"] == base.recipe["intensity"]
    _, p_base = base(f, a, b)
    _, p_new = swapped(f, a, b)
    assert p_new["intensity"].item() == p_base["intensity"].item()
    assert p_new["gradient"].item() == pytest.approx(10 * build("damgl", scales=[1, 0.5])(f, a, b).item())
    assert base.recipe["gradient"]["type"] == "magnitude"  # the original is untouched
    with pytest.raises(ValueError, match="must not set 'weight'"):
        recipe.objective(0, {"type": "damgl", "weight": 1})
    assert recipe.objective(1, {"type": "damgl"}).recipe == SEAFUSION  # a phase that keeps its own term


def test_recipe_errors_name_the_part() -> None:
    with pytest.raises(ValueError, match=r"recipe.gradient: type: unknown loss 'dmgl'"):
        FusionObjective({"gradient": {"type": "dmgl", "weight": 10}})
    with pytest.raises(ValueError, match=r"recipe.gradient: damgl: unknown key 'sgn'"):
        FusionObjective({"gradient": {"type": "damgl", "sgn": False}})
    with pytest.raises(ValueError, match=r"recipe.intensity.weight: expected a non-negative number"):
        FusionObjective({"intensity": {"type": "max_l1", "weight": -1}})
    with pytest.raises(ValueError, match=r"recipe.ssim: expected a block with 'type'"):
        FusionObjective({"ssim": 0.5})


def test_model_specific_term_receives_aux() -> None:
    class AuxPenalty(torch.nn.Module):
        needs_aux = True

        def forward(self, fused, ir, vis, aux):
            return aux["penalty"]

    name = "test_aux_penalty"
    f, a, b = batch(2)
    total, parts = FusionObjective({**SEAFUSION, "extra": {"type": name, "weight": 3}}, terms={name: AuxPenalty})(
        f, a, b, {"penalty": torch.tensor(2.0)}
    )
    assert parts["extra"].item() == 6.0
    assert name not in TERMS  # registered for that objective only, not globally
    with pytest.raises(ValueError, match="already taken"):
        FusionObjective(SEAFUSION, terms={"damgl": AuxPenalty})
    with pytest.raises(ValueError, match=f"recipe.extra: type: unknown loss '{name}'"):
        FusionObjective({**SEAFUSION, "extra": {"type": name, "weight": 3}})
