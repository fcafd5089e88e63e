"""Run a study: ``python run_all.py [--profile P] [--only model=..,loss=..] [--set k=v] [--dry-run] ...``.

The same as ``damgl-bench run`` (``python -m benchmark run``); the arguments are in :mod:`benchmark.cli`.
"""

from benchmark.cli import run

if __name__ == "__main__":
    raise SystemExit(run())
