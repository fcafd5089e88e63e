"""Gradient losses and fusion-objective terms, by name.

``build("damgl", scales=[1, 0.5], sign=False)`` makes a loss from a YAML block
``{type: damgl, scales: [1, 0.5], sign: false}``; :data:`LOSSES` lists the
gradient losses and :data:`losses.fusion.TERMS` the other terms. The losses
come from :mod:`losses.gradient`, written for speed; :mod:`losses.reference`
holds the plain form of each (same names and switches), which defines what they
compute.
:class:`Sobel` is the project's one Sobel helper.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from losses.fusion import ALL, TERMS, FusionObjective, build_from
from losses.gradient import DAMGL, LOSSES, Sobel


def names() -> list[str]:
    """Every buildable name: gradient losses, then the other terms."""
    return ALL.list()


def resolved(block: dict[str, Any]) -> dict[str, Any]:
    """A loss block with every unset keyword at its default, so equal losses compare equal."""
    cls = ALL.get(block["type"])
    params = inspect.signature(cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    out = {"type": block["type"], **defaults, **{k: v for k, v in block.items() if k != "type"}}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a gradient loss or objective term by name; errors name the key and the allowed values."""
    return build_from(ALL, name, kwargs)


__all__ = ["ALL", "DAMGL", "LOSSES", "TERMS", "FusionObjective", "Sobel", "build", "names", "resolved"]
