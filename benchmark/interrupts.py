"""Stopping a study cleanly: SIGINT (Ctrl-C) and SIGTERM ask the current run to stop at a safe point.

While :func:`handling_stops` is active, the first SIGINT or SIGTERM only records
the request (and forwards it to worker processes); training checks it after each
step, writes a checkpoint there and raises :class:`Interrupted`, and fusing checks
it between images. The run's lock is released on the way out and the same
command resumes the run exactly. A second SIGINT stops at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator

_requested: list[int] = []


class Interrupted(Exception):
    """A run stopped on request, at a point from which the same command resumes it."""

    def __init__(self, signum: int, run_id: str, where: str):
        self.signum, self.run_id, self.where = signum, run_id, where
        super().__init__(f"interrupted ({signal.Signals(signum).name}): {run_id} stopped {where}; "
                         "run the same command to resume it")  # fmt: skip

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


_SAME_PRESS = 1.0  # seconds: a terminal's Ctrl-C reaches a worker twice (the group's and the forwarded one)
_first_at: list[float] = []


def _on_signal(signum: int, frame: object) -> None:
    if _requested and signum == signal.SIGINT and time.monotonic() - _first_at[0] > _SAME_PRESS:
        raise KeyboardInterrupt  # a second Ctrl-C: stop now
    if not _requested:
        _first_at[:] = [time.monotonic()]
    _requested.append(signum)
    for child in multiprocessing.active_children():
        with contextlib.suppress(OSError):
            os.kill(child.pid, signum)


@contextlib.contextmanager
def handling_stops() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into stop requests inside the block (main thread only)."""
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    _requested.clear()
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_on_signals(*signals: int) -> None:
    """Make ``signals`` (default SIGINT and SIGTERM) stop requests for the life of the process: the
    process-pool initializer, so that a run the pool starts after a stop request ends at its first check
    instead of training; a Slurm job adds its scheduler's warning signal."""
    for s in signals or (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _on_signal)


def requested() -> int | None:
    """The signal that asked for a stop, or ``None``."""
    return _requested[0] if _requested else None


def check(run_id: str, where: str) -> None:
    """Raise :class:`Interrupted` when a stop was requested."""
    if _requested:
        raise Interrupted(_requested[0], run_id, where)
