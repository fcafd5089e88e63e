"""The README's commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    test_cmd = next(line for line in readme.splitlines() if "pytest" in line and line.startswith("pip install"))
    assert test_cmd in ci_lines, f"README test command {test_cmd!r} is not a line of .ci/run"


def test_the_console_script_runs_the_cli() -> None:
    import shutil
    import subprocess
    from importlib.metadata import entry_points

    import pytest

    found = [e for e in entry_points(group="console_scripts") if e.name == "damgl-bench"]
    if not found or shutil.which("damgl-bench") is None:
        pytest.skip("damgl-bench is not installed here (pip install -e . installs it)")
    assert found[0].value == "benchmark.cli:console"
    out = subprocess.run(["damgl-bench", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "evaluate" in out.stdout and "report" in out.stdout
