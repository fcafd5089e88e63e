"""Re-implemented fusion networks, by name, and models given as import paths.

``build("seafusion")`` makes a registered model; a YAML block is either
``{type: seafusion, ...kwargs}`` or
``{class: my_package.my_module:MyNet, kwargs: {...}, recipe: {...}}``.
:func:`check_block` validates a block's form without importing or building
anything (what loading ``experiments.yaml`` does); :func:`from_spec` resolves
it, builds the model once and checks its interface (what planning a run does).
Every model takes ``(ir, vis_y)`` as ``(N, 1, H, W)`` in [0, 1] and returns the
fused luminance of the same shape in [0, 1]; its class carries a
:class:`~baselines.recipe.Recipe`.

Two optional hooks, found by name (``hasattr``), let a network take part in
more than one forward pass of training:

- ``set_phase(name: str) -> None``: called with the recipe phase's name before
  each training step of that phase, before validating (the phase of the step
  validated) and before fusing the test sets (the last phase). A network with
  several phases (CDDFuse: ``reconstruction``, then ``fusion``) changes its
  forward pass here; one without the method has a single forward pass.
- ``aux: dict``: an attribute the forward pass fills with extra outputs
  (features, a gating loss). The objective passes it to each recipe term whose
  ``needs_aux`` is true (``term(fused, ir, vis, aux)``); other terms never see it.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from baselines.cddfuse import CDDFuse
from baselines.densefuse import DenseFuseE2E
from baselines.pmgi import PMGI
from baselines.recipe import Phase, Recipe
from baselines.seafusion import SeAFusion
from baselines.swinfusion import SwinFusion
from baselines.tcmoa import TCMoA
from baselines.u2fusion import U2Fusion
from benchmark.registry import Registry, check_kwargs

MODELS: Registry[type[nn.Module]] = Registry("model", {
    "seafusion": SeAFusion,
    "u2fusion": U2Fusion,
    "pmgi": PMGI,
    "densefuse_e2e": DenseFuseE2E,
    "cddfuse": CDDFuse,
    "swinfusion": SwinFusion,
    "tcmoa": TCMoA,
})  # fmt: skip


def names() -> list[str]:
    """Registered model names."""
    return MODELS.list()


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; an unknown name or keyword lists the valid ones."""
    return MODELS.build(name, **kwargs)


def _split_class_path(path: str) -> tuple[str, str]:
    module_name, sep, attr = str(path).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"class: '{path}' is not of the form 'package.module:ClassName'")
    return module_name, attr


def import_class(path: str) -> type[nn.Module]:
    """Resolve ``package.module:ClassName``, saying which part fails."""
    module_name, attr = _split_class_path(path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"class: cannot import module '{module_name}' of '{path}': {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"class: module '{module_name}' has no attribute '{attr}' (from '{path}')")
        obj = getattr(obj, part)
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise ValueError(f"class: '{path}' is not a torch.nn.Module subclass")
    return obj


@dataclass
class ModelSpec:
    """A model as the runner uses it: how to make it and how to train it."""

    name: str
    cls: type[nn.Module]
    kwargs: dict[str, Any]
    recipe: Recipe

    def build(self) -> nn.Module:
        return self.cls(**self.kwargs)


def _recipe_from(cls: type, block: dict[str, Any] | None, where: str) -> Recipe:
    base = getattr(cls, "recipe", None)
    if block is None:
        if not isinstance(base, Recipe):
            raise ValueError(f"{where}: {cls.__name__} has no 'recipe' attribute; give a 'recipe' block")
        return base
    if isinstance(base, Recipe):
        return base.with_overrides(block)
    try:
        phases = tuple(Phase(**p) for p in block["phases"])
        return Recipe(**{**block, "phases": phases})
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{where}.recipe: expected the fields of baselines.Recipe with 'phases' and "
                         f"'gradient_weight' and 'optimizer': {exc}") from None  # fmt: skip


def check_block(name: str, block: dict[str, Any]) -> None:
    """Validate a YAML model block's form without importing a class or building a model.

    A registered ``type`` must exist and take the given keywords; a ``class`` path must have the
    form ``package.module:ClassName``.
    """
    block = dict(block)
    where = f"models.{name}"
    block.pop("recipe", None)
    if "class" in block:
        _split_class_path(block.pop("class"))
        block.pop("kwargs", None)
        if block:
            raise ValueError(f"{where}: unknown key(s) {sorted(block)}; with 'class' allowed: class, kwargs, recipe")
    elif "type" in block:
        check_kwargs(MODELS.get(block.pop("type")), block, where)
    else:
        raise ValueError(f"{where}: expected 'type' (one of {', '.join(MODELS)}) or 'class' (package.module:Class)")


def from_spec(name: str, block: dict[str, Any], check: bool = True) -> ModelSpec:
    """Resolve a YAML model block and (``check``) build the model once and check its interface (see
    :func:`check_model`)."""
    check_block(name, block)
    block = dict(block)
    where = f"models.{name}"
    recipe_block = block.pop("recipe", None)
    if "class" in block:
        cls = import_class(block.pop("class"))
        kwargs = dict(block.pop("kwargs", {}) or {})
        check_kwargs(cls, kwargs, where)
    else:
        cls = MODELS.get(block.pop("type"))
        kwargs = block
    spec = ModelSpec(name, cls, kwargs, _recipe_from(cls, recipe_block, where))
    if check:
        check_model(spec.build(), where)
    return spec


def check_model(model: nn.Module, where: str = "model") -> None:
    """Check the interface: ``forward(ir, vis)`` returning (N, 1, H, W) for (N, 1, H, W) inputs."""
    params = [p for p in inspect.signature(model.forward).parameters.values()
              if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
    if len(params) != 2:
        raise ValueError(
            f"{where}: forward must take exactly two required arguments (ir, vis), "
            f"{type(model).__name__}.forward takes {[p.name for p in params]}"
        )
    x = torch.rand(2, 1, 33, 37, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(x, x)
    model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 1, 33, 37):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{where}: forward must return (N, 1, H, W) = (2, 1, 33, 37) for inputs of that shape, got {shape}")


__all__ = ["MODELS", "ModelSpec", "Phase", "Recipe", "build", "check_block", "check_model", "from_spec", "import_class", "names"]
