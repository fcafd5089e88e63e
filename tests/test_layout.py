"""The layout: one run store, cheap and path-free configuration, run filters that cannot silently select
nothing, readable output files, and the evaluate command's dataset names."""

from __future__ import annotations

import ast
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import baselines
from benchmark import store
from benchmark.cli import main as cli_main
from benchmark.cli import run as main
from benchmark.config import ConfigError, load_config
from benchmark.plan import plan, select
from tests.conftest import write_image

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments.yaml"


def smoke(results: Path, *extra: str) -> list[str]:
    return ["--config", str(EXPERIMENTS), "--profile", "smoke", "--results", str(results), *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished smoke study (two runs)."""
    results = tmp_path_factory.mktemp("layout")
    assert main(smoke(results)) == 0
    return results


def test_only_with_a_value_no_run_has_fails_and_leaves_the_summary(finished: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    results = tmp_path / "copy"
    shutil.copytree(finished, results)
    summary = (results / "smoke" / "summary.csv").read_bytes()
    assert main(smoke(results, "--only", "loss=damg")) == 2
    err = capsys.readouterr().err
    assert "--only loss=damg: no planned run has loss 'damg' (did you mean 'damgl'?); planned: magnitude, damgl" in err
    assert main(smoke(results, "--only", "model=tinyy")) == 2
    assert "no planned run has model 'tinyy' (did you mean 'tiny'?)" in capsys.readouterr().err
    assert main(smoke(results, "--only", "modle=tiny")) == 2
    assert "--only: expected key=value with key in" in capsys.readouterr().err
    assert (results / "smoke" / "summary.csv").read_bytes() == summary


def test_select_keeps_only_matching_runs() -> None:
    runs = plan(load_config(EXPERIMENTS), load_config(EXPERIMENTS).profile("smoke"))
    assert [r.arm for r in select(runs, "loss=damgl")] == ["damgl"]
    assert [r.arm for r in select(runs, "loss=damgl,loss=magnitude,seed=0")] == ["magnitude", "damgl"]
    with pytest.raises(ConfigError, match="no planned run has seed '1'"):
        select(runs, "seed=1")


def test_summary_always_describes_every_finished_run(tmp_path: Path) -> None:
    assert main(smoke(tmp_path, "--only", "loss=damgl")) == 0
    assert main(smoke(tmp_path, "--only", "loss=magnitude")) == 0
    assert main(smoke(tmp_path, "--only", "loss=damgl")) == 0  # a filtered rerun does not shrink the summary
    rows = (tmp_path / "smoke" / "summary.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["tiny__magnitude__synthetic_small__s0", "tiny__damgl__synthetic_small__s0"]
    main_table = (tmp_path / "smoke" / "tables" / "main_synthetic_small_test.md").read_text()
    assert "| tiny | magnitude |" in main_table and "| tiny | DAMGL |" in main_table  # display labels


def test_loading_the_config_builds_no_model_and_an_unused_model_blocks_nothing(tmp_path: Path, monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was built or checked while loading the config")

    monkeypatch.setattr(baselines, "check_model", forbidden)
    for cls in baselines.MODELS.values():
        monkeypatch.setattr(cls, "__init__", forbidden)
    raw = yaml.safe_load(EXPERIMENTS.read_text())
    raw["models"]["ghost"] = {"class": "no_such_package.module:Net"}
    raw["profiles"]["ghostly"] = {**raw["profiles"]["smoke"], "models": ["ghost"]}
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    monkeypatch.undo()
    assert len(plan(cfg, cfg.profile("smoke"))) == 2  # the broken model is not needed here
    with pytest.raises(ConfigError, match="models.ghost: class: cannot import module 'no_such_package.module'"):
        plan(cfg, cfg.profile("ghostly"))


def write_pairs(root: Path, names: list[str], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in names:
        write_image(root / "ir" / f"{name}.png", rng.integers(0, 256, (48, 40)))
        write_image(root / "vi" / f"{name}.png", rng.integers(0, 256, (48, 40, 3)))
    return root


def folder_config(tmp_path: Path, train: str, test: str) -> Path:
    raw = yaml.safe_load(EXPERIMENTS.read_text())
    raw["datasets"]["folder_train"] = {"path": train}
    raw["datasets"]["folder_test"] = {"path": test}
    raw["profiles"]["smoke"].update(train="folder_train", test=["folder_test"])
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_config_hash_covers_dataset_identity_not_paths(tmp_path: Path, monkeypatch) -> None:
    for place in ("here", "there"):
        write_pairs(tmp_path / place / "train", ["a", "b", "c"])
        write_pairs(tmp_path / place / "test", ["d", "e"])
    absolute = plan(cfg := load_config(folder_config(tmp_path, str(tmp_path / "here" / "train"),
                                                     str(tmp_path / "here" / "test"))), cfg.profile("smoke"))  # fmt: skip
    monkeypatch.chdir(tmp_path)  # relative FUSION_DATA, relative dataset paths, another copy of the images
    monkeypatch.setenv("FUSION_DATA", "there")
    relative = plan(cfg := load_config(folder_config(tmp_path, "train", "test")), cfg.profile("smoke"))
    assert [r.config_hash for r in absolute] == [r.config_hash for r in relative]
    assert absolute[0].data_paths["folder_test"]["path"] == str(tmp_path / "here" / "test")
    assert relative[0].data_paths["folder_test"]["path"] == str(tmp_path / "there" / "test")
    assert absolute[0].config["test"]["folder_test"]["images"] == 2
    (tmp_path / "there" / "test" / "ir" / "e.png").rename(tmp_path / "there" / "test" / "ir" / "f.png")
    (tmp_path / "there" / "test" / "vi" / "e.png").rename(tmp_path / "there" / "test" / "vi" / "f.png")
    renamed = plan(cfg, cfg.profile("smoke"))
    assert renamed[0].config_hash != relative[0].config_hash  # other images, another study


def test_run_files_are_readable_by_others(finished: Path) -> None:
    old = os.umask(0o022)
    try:
        store.atomic_write_text(finished / "probe.txt", "x")
        assert stat.S_IMODE((finished / "probe.txt").stat().st_mode) == 0o644
    finally:
        os.umask(old)
    files = [p for p in (finished / "smoke").rglob("*") if p.is_file()]
    assert any(p.name == "last.pt" for p in files) and any(p.suffix == ".png" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path  # group and others may read
    assert not [p for p in files if p.name.endswith(".tmp")]


STORE_NAMES = {store.STUDY, store.SUMMARY_CSV, store.SUMMARY_MD, store.CONFIG, store.ENV, store.TRAIN_LOG,
               store.METRICS, store.DONE, store.FAILED, store.LOCK, store.FUSED, store.FUSED_RGB, store.RUNS,
               store.TABLES, store.FIGURES, store.EXAMPLES, store.SLURM, store.VAL_LOG, "last.pt", "best.pt", "checkpoints"}  # fmt: skip


def path_literals(path: Path) -> list[str]:
    """String constants that name a path: the operands of ``/``, and constants holding a dotted file name
    (docstrings left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found += [side.value for side in (node.left, node.right)
                      if isinstance(side, ast.Constant) and isinstance(side.value, str)]  # fmt: skip
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value and id(node) not in docstrings:
            found.append(node.value)
    return found


def test_only_the_store_spells_run_store_file_names() -> None:
    offenders = []
    for path in sorted((ROOT / "benchmark").rglob("*.py")):
        if path.name == "store.py":
            continue
        for text in path_literals(path):
            if {part for part in text.split("/") if part} & STORE_NAMES:
                offenders.append(f"{path.relative_to(ROOT)}: {text!r}")
    assert not offenders, offenders


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file (lazy imports inside functions too)."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for package in ("benchmark", "losses", "baselines") for p in (ROOT / package).rglob("*.py")}  # fmt: skip
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                          for a in node.names} & set(files)  # fmt: skip
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names} & set(files)
        graph[name] = found - {name}
    return graph


def test_no_module_imports_itself_through_others() -> None:
    graph = import_graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(m == goal or (m not in seen and not seen.add(m) and reaches(m, goal, seen)) for m in graph[start])

    cyclic = sorted(name for name in graph if reaches(name, name, set()))
    assert not cyclic, f"import cycles through: {cyclic}"


# the study's data flow, bottom to top: a stage imports only stages below it (the runner, on top, drives them all)
STAGES = ["benchmark.config", "benchmark.plan", "benchmark.train", "benchmark.fuse", "benchmark.launch",
          "benchmark.slurm", "benchmark.reports", "benchmark.runner"]  # fmt: skip


def test_stages_import_only_stages_below_them() -> None:
    graph = import_graph()
    upward = [f"{low} imports {high}" for i, low in enumerate(STAGES) for high in STAGES[i + 1:]
              if any(m == high or m.startswith(high + ".") for m in graph[low])]  # fmt: skip
    assert not upward, upward
    assert "benchmark.fuse" not in graph["benchmark.train"] and "benchmark.scoring" in graph["benchmark.train"]


def test_stage_modules_import_on_their_own_without_cycles() -> None:
    code = ("import benchmark.reports.figures, benchmark.reports.stats, benchmark.fuse, benchmark.train, "
            "benchmark.plan, benchmark.launch, benchmark.slurm, benchmark.runner, benchmark.store, benchmark.metrics")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_evaluate_resolves_a_dataset_name_under_fusion_data(tmp_path: Path, monkeypatch,
                                                            capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    write_pairs(tmp_path / "data" / "Pairs", ["a", "b"])
    fused = tmp_path / "mine"
    for name in ("a", "b"):
        write_image(fused / f"{name}.png", np.full((48, 40), 100))
    monkeypatch.setenv("FUSION_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["evaluate", "--dataset", "Pairs", "--fused", str(fused), "--metrics", "EN"]) == 0
    assert "Pairs: 2 pairs" in capsys.readouterr().out
    assert cli_main(["evaluate", "--dataset", "Nope", "--fused", str(fused)]) == 2
    assert f"--dataset Nope: no such folder here or under FUSION_DATA={tmp_path / 'data'}" in capsys.readouterr().err


def test_the_public_api_plans_and_evaluates_without_importing_stages_at_import(tiny_dataset: Path, tmp_path: Path) -> None:
    fresh = subprocess.run([sys.executable, "-c", "import sys, benchmark; print(sorted(m for m in sys.modules "
                            "if m.startswith('benchmark.')))"], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert fresh.stdout.strip() == "[]", fresh.stdout  # importing the package loads no stage
    import benchmark

    runs = benchmark.plan_runs(benchmark.load_config(EXPERIMENTS), "smoke", only="loss=damgl")
    assert [(r.model, r.arm, r.seed) for r in runs] == [("tiny", "damgl", 0)]
    fused = tmp_path / "mine"
    for name in ("a", "b", "c"):
        write_image(fused / f"{name}.png", np.full((40, 48), 100))
    result = benchmark.evaluate_folders(tiny_dataset, [f"flat={fused}"], metrics=["SD"], progress=False)
    assert result.methods() == ["flat"] and list(result.values("flat", "SD")) == [0.0, 0.0, 0.0]
