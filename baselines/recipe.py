"""Training recipes: what each model's paper trained it with, expressed with ``losses`` components."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields, replace
from typing import Any

from torch import nn

from losses import FusionObjective
from losses.fusion import GRADIENT_SLOT

OUTPUT_NORMALISATIONS = ("none", "clamp", "image_minmax", "batch_minmax")


@dataclass(frozen=True)
class Phase:
    """One training phase.

    Attributes:
        name: shown in logs.
        objective: recipe parts ``{part: {type, weight, ...}}`` (see ``losses.fusion``).
        epochs: share of the training budget, in the paper's epochs (the runner scales them).
        swap_gradient: whether the benchmark's gradient arm replaces this phase's ``gradient`` part.
        trainable: module-name prefixes trained in this phase (empty: all).
    """

    name: str
    objective: dict[str, dict[str, Any]]
    epochs: float = 1.0
    swap_gradient: bool = True
    trainable: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A model's published training recipe.

    Attributes:
        phases: one or more :class:`Phase`.
        gradient_weight: weight of the ``gradient`` part when a compared gradient loss fills it; the
            same in every arm of a comparison (for models whose own term is not a Sobel loss, a
            benchmark choice stated in the model's docstring).
        optimizer: ``{"type": "adam" | "adamw", "lr": ..., **kwargs}``.
        schedule: ``{"type": "constant"}`` or ``{"type": "step", "every_epochs": k, "gamma": g}``.
        patch_size: training crop side in pixels (``None``: whole images, as the paper).
        batch_size: the paper's batch size.
        grad_clip: gradient-norm clipping, or ``None``.
        output_normalisation: what the release applied before saving fused images (one of
            :data:`OUTPUT_NORMALISATIONS`); recorded, applied only if a run asks for it.
        notes: where the recipe departs from or goes beyond the paper.
        terms: the model's own objective terms by name (``{"pmgi_intensity": PMGIIntensityLoss}``),
            available to this recipe's phases only.
    """

    phases: tuple[Phase, ...]
    gradient_weight: float
    optimizer: dict[str, Any]
    schedule: dict[str, Any] = field(default_factory=lambda: {"type": "constant"})
    patch_size: int | None = None
    batch_size: int = 8
    grad_clip: float | None = None
    output_normalisation: str = "clamp"
    notes: str = ""
    terms: dict[str, type[nn.Module]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.output_normalisation not in OUTPUT_NORMALISATIONS:
            raise ValueError(
                f"output_normalisation: '{self.output_normalisation}' is not one of {list(OUTPUT_NORMALISATIONS)}"
            )
        if not self.phases:
            raise ValueError("phases: a recipe needs at least one phase")

    def objective(self, phase: int = 0, gradient: dict[str, Any] | None = None, scale: float = 1.0) -> FusionObjective:
        """The phase's objective; ``gradient`` (a loss block without weight) fills the gradient slot with the
        recipe's ``gradient_weight`` times ``scale`` (1 unless an arm is balanced, see ``benchmark.train``)."""
        p = self.phases[phase]
        parts = copy.deepcopy(p.objective)
        if gradient is not None and p.swap_gradient:
            if "weight" in gradient:
                raise ValueError("the gradient arm must not set 'weight': the recipe's gradient_weight is used")
            parts[GRADIENT_SLOT] = {**gradient, "weight": self.gradient_weight * scale}
        return FusionObjective(parts, self.terms)

    def with_overrides(self, overrides: dict[str, Any]) -> Recipe:
        """A copy with top-level fields replaced (from YAML); unknown keys are an error naming them."""
        valid = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"recipe: unknown key(s) {unknown}; allowed: {sorted(valid)}")
        values = dict(overrides)
        if "phases" in values:
            values["phases"] = tuple(p if isinstance(p, Phase) else Phase(**p) for p in values["phases"])
        return replace(self, **values)
