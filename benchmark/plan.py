"""The plan stage: a profile of ``experiments.yaml`` becomes the list of runs it makes.

A budget in ``epochs`` becomes steps at each model's batch and patch size: one epoch is as many patch
pixels as the training set has pixels, so ``steps = ceil(epochs * pixels / (batch * patch^2))``; every run
records its steps, epochs and steps per epoch.

Each :class:`RunSpec` carries the run's resolved configuration. Its hash
covers what decides the numbers: the model block, the gradient arm, the seed,
the budget, and each dataset's identity (name, image count and a digest of its
image stems, or the synthetic generator's settings). Paths are recorded beside
the config but never hashed, so the same study hashes the same from any folder
and on any machine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import baselines
from benchmark.config import Config, ConfigError, DatasetDef, Profile
from benchmark.data import PairedDataset, data_root
from benchmark.data.releases import fetch_hint, manifest_text, pair_rows, release_for
from benchmark.data.sources import open_dataset
from benchmark.metrics import metric_names
from benchmark.registry import suggest
from benchmark.store import run_id


@dataclass
class RunSpec:
    """One training run and its evaluation: readable id, resolved config, hash."""

    run_id: str
    model: str
    arm: str
    seed: int
    config: dict[str, Any]
    data_paths: dict[str, dict[str, Any]] = field(default_factory=dict)  # where each dataset is read; not hashed
    log_every: int = 10  # not hashed: logging does not change results
    keep_weights: str = "all"  # not hashed: which validated weights stay on disk does not change results
    provisional: bool = False  # planned without a dataset folder: the hash changes once the images are read
    stage: str = "study"  # "tune": a tuning run (validated, never tested); "pending": waits for tuning to pick its scale

    def model_spec(self, check: bool = True) -> baselines.ModelSpec:
        """The model as this run was planned with it (its resolved block), built and checked unless ``check`` is
        off (no build, no random draw): workers, packs and Slurm tasks use it and never read the experiments file
        again."""
        block = {k: v for k, v in self.config["model"].items() if k != "name"}
        try:
            return baselines.from_spec(self.model, block, check)
        except Exception as exc:  # noqa: BLE001 - a user's network may raise anything while it is built
            raise ConfigError(f"models.{self.model} (as run {self.run_id} was planned): {type(exc).__name__}: {exc}") from None

    def dataset(self, name: str) -> Any:
        """A dataset this run reads, from where it was planned to read it (:attr:`data_paths`)."""
        return open_dataset(self.data_paths[name], name)

    @property
    def config_hash(self) -> str:
        text = json.dumps(self.config, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def missing_inputs(cfg: Config, profile: Profile) -> dict[str, str]:
    """What the profile needs that is not on this machine: config key -> what is missing and how to get it.

    Dataset folders (with the ``data prepare`` command of a known release) and model checkpoints (with
    where they are published); the harness never downloads either.
    """
    from baselines.tcmoa import MAE_CHECKPOINTS

    missing = {}
    for name in _dataset_names(profile):
        ds = cfg.datasets[name]
        if ds.synthetic is None and not ds.folder().is_dir():
            missing[f"datasets.{name}.path"] = (f"dataset folder not found: {ds.folder()} (relative paths are under "
                                           f"FUSION_DATA={data_root()}); {fetch_hint(ds.path, data_root())}")  # fmt: skip
    for model in profile.models:
        block = cfg.model_blocks[model]
        checkpoint = block.get("backbone_checkpoint")
        if checkpoint and not Path(checkpoint).is_file():
            url = MAE_CHECKPOINTS.get(block.get("size", ""), "the MAE release (github.com/facebookresearch/mae)")
            missing[f"models.{model}.backbone_checkpoint"] = f"{checkpoint} not found; download {url} to that path"
    return missing


def _dataset_names(profile: Profile) -> list[str]:
    return list(dict.fromkeys([profile.train, *profile.test, *([profile.val["dataset"]] if profile.val else [])]))


def _expected_identity(ds: DatasetDef) -> tuple[dict[str, Any], int | None]:
    """A missing folder's identity and pixel count as its release states them (digest unknown)."""
    known = release_for(ds.path or "")
    if known is None:
        return {"images": None, "stems_sha256": None}, None
    release, split = known
    pairs = release.pairs[split]
    return {"images": pairs, "stems_sha256": None}, pairs * release.size[0] * release.size[1] if release.size else None


def plan(cfg: Config, profile: Profile, allow_missing: bool = False,
         scales: dict[str, dict[str, float]] | None = None, only: str | None = None) -> list[RunSpec]:  # fmt: skip
    """Expand models x arms x seeds into runs; data folders are read and each model is built and checked once.

    With ``allow_missing`` (a dry run), a missing dataset folder is planned from its release's pair count and
    image size (its runs' hashes are provisional, :attr:`RunSpec.provisional`), and a model whose checkpoint
    is missing is built without it; otherwise anything :func:`missing_inputs` lists is an error naming it.

    With ``tune``, the tuning runs come first (``stage = "tune"``: every tuned model, arm, gradient scale and
    tuning seed, validated and never tested); the study's runs of a tuned arm train at the scale tuning
    selected (``scales``: arm -> model -> scale, :func:`benchmark.tuning.select_scales`), and before it is
    known they are planned at the recipe's weight as ``pending``. With ``tune.apply`` false they stay at the
    recipe's weight.
    """
    missing = missing_inputs(cfg, profile)
    if missing and not allow_missing:
        raise ConfigError("\n".join(f"{key}: {why}" for key, why in missing.items()))
    val = [profile.val["dataset"]] if profile.val else []
    datasets = {name: cfg.datasets[name] for name in _dataset_names(profile)}
    identity, pixels = {}, {}
    for name, ds in datasets.items():
        if f"datasets.{name}.path" in missing:
            identity[name], pixels[name] = _expected_identity(ds)
            continue
        ds.check(f"datasets.{name}")
        identity[name] = ds.identity()
    train_pixels = pixels[profile.train] if profile.train in pixels else datasets[profile.train].pixels()
    sources = {name: ds.source() for name, ds in datasets.items()}
    tune = profile.tune or {}
    tuned = {(m, a) for m in tune.get("models", []) for a in tune.get("arms", [])} if tune.get("apply", True) else set()
    runs = []
    for model in only_models(profile.models, only):
        spec = cfg.model(model, without_checkpoint=f"models.{model}.backbone_checkpoint" in missing)
        recipe = spec.recipe
        batch, patch = profile.batch_size or recipe.batch_size, profile.patch_size or recipe.patch_size
        if patch is None:
            raise ConfigError(f"profiles.{profile.name}.patch_size: model '{model}' trains on whole images; set a patch size")
        if train_pixels is None and not profile.steps:
            raise ConfigError(f"profiles.{profile.name}.epochs: the size of '{profile.train}' is unknown until "
                              f"its folder is here; give a budget in steps to plan without it")  # fmt: skip
        per_epoch = train_pixels / (batch * patch * patch) if train_pixels is not None else float("nan")
        steps = profile.steps or max(1, math.ceil(profile.epochs * per_epoch))

        def make(arm: str, seed: int, tests: list[str], scale: float, stage: str) -> RunSpec:
            block = profile.arms[arm]
            config = {
                "model": {"name": model, **copy.deepcopy(cfg.raw["models"][model])},
                "arm": {"name": arm, **block},
                "seed": seed,
                "train": {"name": profile.train, **identity[profile.train]},
                "test": {t: identity[t] for t in tests},
                "steps": steps,
                "epochs": steps / per_epoch,
                "steps_per_epoch": per_epoch,
                "schedule": profile.schedule,
                "batch_size": batch,
                "patch_size": patch,
                "lr": profile.lr,
                "normalisation": recipe.output_normalisation if profile.normalisation == "recipe" else profile.normalisation,
                "checkpoint_every": profile.checkpoint_every,
            }
            if scale != 1:  # the recipe's weight times this (absent at 1: runs at the recipe's weight keep their hash)
                config["gradient_scale"] = scale
            if profile.val:  # validation, stopping and selection change what is scored, so they are hashed
                every = profile.val.get("every", max(1, round(per_epoch)))  # default: once an epoch
                config["val"] = {**profile.val, "every": every, "identity": identity[profile.val["dataset"]]}
                if profile.plateau:
                    config["plateau"] = dict(profile.plateau)
                if profile.stop:
                    config["stop"] = "plateau"
                config["select"] = list(profile.select)
                _check_criterion(profile, model, recipe)
            if profile.conventions:  # scored beside the default convention (absent: the hash of older runs holds)
                config["conventions"] = list(profile.conventions)
            config["threads"] = profile.threads  # CPU sums depend on the thread count, so every launcher uses it
            if block.get("balance") == "initial":  # the factor is measured against the base arm's term
                config["base_arm"] = dict(profile.arms[profile.base_arm])
            paths = {t: sources[t] for t in dict.fromkeys([profile.train, *tests, *val])}
            return RunSpec(run_id(model, arm, profile.train, seed, scale), model, arm, seed, config, paths,
                           profile.log_every, profile.keep_weights, any(t in pixels for t in paths), stage)  # fmt: skip

        for arm in tune.get("arms", []) if model in tune.get("models", []) else []:
            if model not in profile.grid(arm)[0]:
                raise ConfigError(f"profiles.{profile.name}.tune: arm '{arm}' is not planned for model '{model}', so the "
                                  "arms would not get the same tuning trials; tune models every tuned arm runs on")  # fmt: skip
            runs += [make(arm, seed, [], scale, "tune") for scale in tune["gradient_scale"] for seed in tune["seeds"]]
        for arm in profile.arms:
            models, seeds, tests = profile.grid(arm)
            for seed in seeds if model in models else []:
                if (model, arm) not in tuned:
                    runs.append(make(arm, seed, tests, 1.0, "study"))
                elif scales is None:
                    runs.append(make(arm, seed, tests, 1.0, "pending"))
                else:
                    runs.append(make(arm, seed, tests, scales[arm][model], "study"))
    return runs


def _check_criterion(profile: Profile, model: str, recipe) -> None:
    """An objective part named by the validation criterion must be in the model's last phase."""
    parts = set(recipe.phases[-1].objective)
    for term in profile.val["criterion"].split("+"):
        if term not in metric_names() and term not in parts:
            raise ConfigError(f"profiles.{profile.name}.val.criterion: '{term}' is neither a metric nor a part of "
                              f"{model}'s objective ({', '.join(sorted(parts))})")  # fmt: skip


SELECT_KEYS = {"model": "model", "loss": "arm", "arm": "arm", "seed": "seed"}


def only_models(models: list[str], only: str | None) -> list[str]:
    """The profile's models that ``--only`` can select (all when it names no model), so a model that is not
    selected is never built: one that fails to build blocks only its own runs. An unknown name is left for
    :func:`select` to report with the planned values."""
    named = {v for k, _, v in (item.partition("=") for item in (only or "").split(",")) if k == "model"}
    return [m for m in models if not named or m in named or not named & set(models)]


def select(runs: list[RunSpec], only: str | None) -> list[RunSpec]:
    """The runs matching ``--only key=value,...`` (values of one key are alternatives).

    A key outside :data:`SELECT_KEYS`, or a value that no planned run has, is an error naming it
    with the planned values, so a typo never silently selects nothing.
    """
    if not only:
        return runs
    wanted: dict[str, set[str]] = {}
    for item in only.split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in SELECT_KEYS:
            raise ConfigError(f"--only: expected key=value with key in {sorted(SELECT_KEYS)}, got '{item}'")
        attr = SELECT_KEYS[key]
        planned = list(dict.fromkeys(str(getattr(r, attr)) for r in runs))
        if value not in planned:
            raise ConfigError(f"--only {key}={value}: no planned run has {key} '{value}'{suggest(value, planned)}; "
                              f"planned: {', '.join(planned)}")  # fmt: skip
        wanted.setdefault(attr, set()).add(value)
    chosen = [r for r in runs if all(str(getattr(r, k)) in v for k, v in wanted.items())]
    if not chosen:
        raise ConfigError(f"--only {only}: the values exist but no planned run has all of them")
    return chosen


def verify_data(cfg: Config, profile: Profile, runs: list[RunSpec]) -> tuple[int, dict[str, str]]:
    """Read every pair of the datasets the runs use, before any training.

    Each image must be readable, have its partner and the partner's size; the first problem raises
    :class:`~benchmark.data.DataError` naming the file. Returns the number of pairs and, per dataset read
    from files, its manifest (:mod:`benchmark.data.releases`: every file with its size and SHA-256).
    """
    names = dict.fromkeys([profile.train, *(t for r in runs for t in r.config["test"]),
                           *([profile.val["dataset"]] if profile.val else [])])  # fmt: skip
    pairs, manifests = 0, {}
    for name in names:
        dataset = cfg.datasets[name].open()
        if isinstance(dataset, PairedDataset):  # generated pairs are always complete
            rows = [row for p in dataset.pairs for row in pair_rows(name, p.ir, p.vi, dataset.root)]
            manifests[name] = manifest_text(rows)
        pairs += len(dataset)
    return pairs, manifests
