"""The README's custom-network recipe is a valid experiments block."""

from pathlib import Path

import yaml

from benchmark.config import parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_recipe_loads_and_builds() -> None:
    text = (ROOT / "README.md").read_text()
    block = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    block["models"]["mynet"]["class"] = "examples.tiny_fusion:TinyFusion"  # the README's class stands for yours
    block["models"]["mynet"]["kwargs"] = {"width": 4}
    raw = yaml.safe_load((ROOT / "experiments.yaml").read_text())
    raw["models"].update(block["models"])
    raw["profiles"], raw["default_profile"] = block["profiles"], "mine"
    cfg = parse_config(raw, ROOT)
    spec = cfg.model("mynet")
    assert spec.recipe.gradient_weight == 10.0 and spec.recipe.patch_size == 128 and spec.recipe.batch_size == 8
    assert cfg.profile("mine").arms.keys() == {"magnitude", "damgl"}
