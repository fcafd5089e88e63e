"""Messages for the person at the terminal: written through tqdm, so a progress bar never swallows them."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tqdm import tqdm


def say(text: str) -> None:
    """Print ``text`` on its own line on stderr, above any active progress bar."""
    tqdm.write(text, file=sys.stderr)


def os_error(exc: OSError) -> str:
    """An operating-system error as one line naming the file: ``cannot use PATH: Read-only file system``."""
    where = exc.filename if exc.filename is not None else "a file"
    return f"cannot use {where}: {exc.strerror or exc}"


def split_names(values: Sequence[str] | None) -> list[str] | None:
    """Names given as ``--metrics EN SD`` or ``--metrics EN,SD`` alike (``None`` for none)."""
    if not values:
        return None
    return [name for value in values for name in value.split(",") if name]
