"""Strict YAML: a key given twice in one mapping is an error naming the key, its path and both lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config import ConfigError, load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments.yaml"


def test_a_duplicate_key_in_a_profile_is_an_error(tmp_path: Path) -> None:
    text = EXPERIMENTS.read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  smoke:"))
    steps = next(i for i in range(at, len(lines)) if lines[i].strip().startswith("steps:"))
    edited = tmp_path / "e.yaml"
    edited.write_text("\n".join([*lines[: steps + 1], "    steps: 2", *lines[steps + 1 :]]) + "\n")
    with pytest.raises(ConfigError, match=rf"profiles\.smoke\.steps: duplicate key \(lines {steps + 1} and {steps + 2}\)"):
        load_config(edited)


def test_a_second_profile_block_of_the_same_name_is_an_error(tmp_path: Path) -> None:
    text = EXPERIMENTS.read_text().replace("default_profile: quick", "  smoke: {models: [tiny]}\ndefault_profile: quick")
    edited = tmp_path / "e.yaml"
    edited.write_text(text)
    with pytest.raises(ConfigError, match=r"profiles\.smoke: duplicate key \(lines \d+ and \d+\)"):
        load_config(edited)


def test_a_seed_listed_twice_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"profiles\.smoke\.seeds: seed 0 is listed twice"):
        load_config(EXPERIMENTS, ["profiles.smoke.seeds=[0, 1, 0]"])
