"""Strict configuration: a key given twice in one mapping is an error naming the key, its path and both lines;
--set names where a misplaced key belongs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.config import ConfigError, apply_overrides, load_config

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


def test_set_of_a_profile_key_at_the_top_says_where_it_belongs() -> None:
    raw = yaml.safe_load(EXPERIMENTS.read_text())
    with pytest.raises(ConfigError, match=r"--set steps=5: 'steps' is a key of a profile; write --set "
                       r"profiles.<name>.steps=5 \(profiles: smoke, quick, "):  # fmt: skip
        apply_overrides(raw, ["steps=5"])
    with pytest.raises(ConfigError, match=r"--set profiles.smok.steps: 'profiles.smok' does not exist \(did you mean 'smoke'\?\)"):
        apply_overrides(raw, ["profiles.smok.steps=5"])
    assert apply_overrides(raw, ["profiles.smoke.steps=5"])["profiles"]["smoke"]["steps"] == 5
