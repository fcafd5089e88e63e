"""Selection rules: which validated network a run is scored with, as a pure function of its validation history.

A run validates every ``val.every`` steps and keeps the weights it validated
(through the run store). Which of them is scored is decided afterwards, from
``val_log.csv`` alone, by one or more rules:

- ``best``: the validation with the best criterion among all validations up to where training ended
  (ties to the earliest; a criterion that is not a number is never best);
- ``last``: the last validation, which is the last step trained (a run validates at its last step);
- ``plateau``: the plateau rule's pick: the reference validation of the plateau rule at the point where
  ``patience`` validations in a row failed to beat it by more than ``min_delta`` (or at the end, if that
  never happened). A run with ``stop`` ends training there; a run without it trains on, and this rule
  says what early stopping would have scored.

Stopping and selection are separate: ``stop`` only ends training. :func:`first_gain` is the rule of runs
written before this module (``best.pt`` replaced only when a validation beat the maximum of all earlier
ones by more than ``min_delta``); the reports use it to say which network such a run scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

RULES = ("best", "last", "plateau")


@dataclass(frozen=True)
class Plateau:
    """The plateau rule: ``patience`` validations in a row without beating the reference by more than
    ``min_delta``."""

    patience: int
    min_delta: float = 0.0


@dataclass(frozen=True)
class Walk:
    """Where the plateau rule stands after a validation history: the reference validation's position and
    the position at which the plateau was reached (``None``: not reached)."""

    reference: int | None
    reached: int | None


def _gain(value: float, than: float, higher: bool) -> float:
    return value - than if higher else than - value


def walk(values: Sequence[float], higher: bool, plateau: Plateau) -> Walk:
    """Follow the plateau rule over ``values`` (criterion per validation, in order) until it is reached.

    The first number becomes the reference; a later value that beats it by more than ``min_delta`` replaces
    it; any other value (NaN included) counts towards ``patience``, and a replacement resets the count.
    """
    reference, bad = None, 0
    for i, value in enumerate(values):
        if not math.isnan(value) and (reference is None or _gain(value, values[reference], higher) > plateau.min_delta):
            reference, bad = i, 0
        else:
            bad += 1
        if bad >= plateau.patience:
            return Walk(reference, i)
    return Walk(reference, None)


def best_index(values: Sequence[float], higher: bool) -> int | None:
    """Position of the best number in ``values`` (ties to the earliest); ``None`` when there is none."""
    best = None
    for i, value in enumerate(values):
        if not math.isnan(value) and (best is None or _gain(value, values[best], higher) > 0):
            best = i
    return best


def pick(rule: str, steps: Sequence[int], values: Sequence[float], higher: bool, plateau: Plateau | None = None) -> int:
    """The step whose network ``rule`` scores, from a run's validation history (``steps``, ``values``).

    A history without a number gives its last step for every rule (nothing better is known).

    Raises:
        ValueError: an unknown rule, an empty history, or ``plateau`` without its settings.
    """
    if rule not in RULES:
        raise ValueError(f"select: '{rule}' is not one of {list(RULES)}")
    if not steps:
        raise ValueError("select: the run has no validation to select from")
    if rule == "last":
        return int(steps[-1])
    if rule == "best":
        i = best_index(values, higher)
    else:
        if plateau is None:
            raise ValueError("select: plateau needs the plateau's patience and min_delta (profile key 'plateau' or 'stop')")
        i = walk(values, higher, plateau).reference
    return int(steps[-1 if i is None else i])


def picks(rules: Sequence[str], steps: Sequence[int], values: Sequence[float], higher: bool,
          plateau: Plateau | None = None) -> dict[str, int]:  # fmt: skip
    """``{rule: step}`` for every rule, in the given order."""
    return {rule: pick(rule, steps, values, higher, plateau) for rule in rules}


def criterion_of(config: dict[str, Any]) -> tuple[str, float]:
    """A run config's validation criterion and ``min_delta``; runs written before the criterion moved into
    ``val`` kept both in their ``stop`` block."""
    old = config.get("stop") if isinstance(config.get("stop"), dict) else {}
    criterion = config.get("val", {}).get("criterion") or old.get("criterion", "Qabf+SSIM")
    return str(criterion), float((config.get("plateau") or old).get("min_delta", 0.0))


def first_gain(steps: Sequence[int], values: Sequence[float], higher: bool, min_delta: float) -> int:
    """The step of the network that runs written before separate selection scored under ``select: best``:
    ``best.pt`` was written at a validation that beat the best of all earlier ones by more than
    ``min_delta`` (always at the first validation)."""
    chosen, best = 0, None
    for i, value in enumerate(values):
        if best is None or _gain(value, best, higher) > min_delta:
            chosen = i
        if not math.isnan(value):
            best = value if best is None else (max if higher else min)(best, value)
    return int(steps[chosen])
