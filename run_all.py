"""Run a study: ``python run_all.py [--profile P] [--only model=..,loss=..] [--set k=v] [--dry-run] ...``.

Thin wrapper: the logic is in :mod:`benchmark.runner` (also ``python -m benchmark run``).
"""

from benchmark.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
