"""Messages for the person at the terminal: written through tqdm, so a progress bar never swallows them."""

from __future__ import annotations

import sys

from tqdm import tqdm


def say(text: str) -> None:
    """Print ``text`` on its own line on stderr, above any active progress bar."""
    tqdm.write(text, file=sys.stderr)
