"""One name -> object table for models, gradient losses, objective terms and metric conventions.

A :class:`Registry` is a plain mapping filled by explicit ``register`` calls (no
file scanning, no import side effects). ``build(name, **kwargs)`` checks the
keyword arguments against the constructor's signature, and every unknown name
or key fails with the valid choices and a did-you-mean suggestion.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def suggest(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    hint = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def check_kwargs(target: Any, kwargs: Mapping[str, Any], where: str) -> None:
    """Fail naming the first keyword that ``target`` (a class or function) does not accept."""
    func = target.__init__ if inspect.isclass(target) else target
    params = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p != "self"]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown key '{unknown[0]}'{suggest(unknown[0], allowed)}; allowed: {', '.join(allowed) or 'none'}")


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` is used in messages: ``unknown model 'x'``).

    Args:
        kind: what an entry is, e.g. ``"model"``.
        entries: initial ``name -> entry`` pairs, in listing order.
    """

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a taken name is an error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} name '{name}' is already taken")
        self._entries[name] = entry
        return entry

    def extended(self, entries: Mapping[str, T]) -> Registry[T]:
        """A new registry holding these entries and ``entries`` (a taken name is an error)."""
        out = Registry(self.kind, self._entries)
        for name, entry in entries.items():
            out.register(name, entry)
        return out

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name lists the valid ones."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} '{name}'{suggest(name, self.list())}; valid: {', '.join(self._entries)}")
        return self._entries[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the entry (a class or factory) with ``kwargs``, after checking their names."""
        entry = self.get(name)
        check_kwargs(entry, kwargs, name)
        return entry(**kwargs)  # type: ignore[operator]

    def list(self) -> list[str]:
        """Registered names in registration order."""
        return [*self._entries]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in registration order."""
        return list(self._entries.items())

    def values(self) -> list[T]:
        """Entries in registration order."""
        return list(self._entries.values())
