"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    test_cmd = next(line for line in readme.splitlines() if "pytest" in line and line.startswith("pip install"))
    assert test_cmd in ci_lines, f"README test command {test_cmd!r} is not a line of .ci/run"
