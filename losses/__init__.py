"""Gradient losses and fusion-objective terms, by name.

``build("damgl", scales=[1, 0.5], sign=False)`` makes a loss from a YAML block
``{type: damgl, scales: [1, 0.5], sign: false}``; :data:`LOSSES` lists the
gradient losses and :data:`losses.fusion.TERMS` the other terms.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from torch import nn

from losses.fusion import TERMS, FusionObjective, register_term
from losses.gradient import DAMGL, AxisMaxGradLoss, MagnitudeGradLoss, SignedSumGradLoss

LOSSES: dict[str, type[nn.Module]] = {
    "magnitude": MagnitudeGradLoss,
    "axis_max": AxisMaxGradLoss,
    "signed_sum": SignedSumGradLoss,
    "damgl": DAMGL,
}


def names() -> list[str]:
    """Every buildable name: gradient losses, then the other terms."""
    return [*LOSSES, *TERMS]


def resolved(block: dict[str, Any]) -> dict[str, Any]:
    """A loss block with every unset keyword at its default, so equal losses compare equal."""
    cls = LOSSES.get(block["type"]) or TERMS[block["type"]]
    params = inspect.signature(cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    out = {"type": block["type"], **defaults, **{k: v for k, v in block.items() if k != "type"}}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a gradient loss or objective term by name; errors name the key and the allowed values."""
    cls = LOSSES.get(name) or TERMS.get(name)
    if cls is None:
        hint = difflib.get_close_matches(str(name), names(), n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ValueError(f"type: unknown loss '{name}'{extra}; valid: {', '.join(names())}")
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], allowed, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ValueError(f"{name}: unknown key '{unknown[0]}'{extra}; allowed: {', '.join(allowed) or 'none'}")
    return cls(**kwargs)


__all__ = ["LOSSES", "TERMS", "DAMGL", "FusionObjective", "build", "names", "register_term", "resolved"]
