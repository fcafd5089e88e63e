"""Provenance: which code, on which versions, wrote a file (a run's ``env.json``, a drift report's).

The commit is this checkout's, with ``-dirty`` when its code differs from the commit; the versions are those
of Python, the platform and the packages that compute the numbers.
"""

from __future__ import annotations

import importlib
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"  # the default results root: a study's folder is RESULTS / <profile>


def git_commit(root: Path = ROOT) -> str:
    """The checkout's commit, with ``-dirty`` when tracked or untracked-not-ignored files differ, outside
    ``results/``: a study's own outputs (committed ones included) are not the code that made them."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)results"], cwd=root,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions(*packages: str) -> dict[str, str]:
    """``python``, ``platform`` and each named package's ``__version__``, in that order."""
    info = {"python": sys.version.split()[0], "platform": platform.platform()}
    info.update({name: importlib.import_module(name).__version__ for name in packages})
    return info
