"""``python -m benchmark``: the command-line entry point."""

from benchmark.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
