"""``experiments.yaml``: datasets, models, gradient-loss arms, ablations and profiles, validated.

Every mistake stops before any training with a message that names the key
path (``profiles.quick.losses[1]``) and the allowed values; a mistyped key gets
a suggestion. ``--set key.path=value`` overrides any field (the value is read
as YAML). :func:`load_config` returns a :class:`Config`; :func:`benchmark.plan.plan`
expands a profile into runs.

Loading is cheap: it validates every block's form, but imports no model class,
builds no network and reads no dataset. A model is built and checked, and a
dataset folder listed, when a planned run needs it, so a profile is never
blocked by a model or a dataset it does not use.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import baselines
import losses
from benchmark.data import DataError, PairedDataset, data_root, stems_identity
from benchmark.data.sources import open_dataset
from benchmark.data.synthetic import SyntheticDataset
from benchmark.metrics import CONVENTIONS, DEFAULT_CONVENTION, metric_names
from benchmark.registry import suggest
from benchmark.selection import RULES
from benchmark.store import DEFAULT_BASE_ARM, DEFAULT_PRIMARY_METRICS

NORMALISATIONS = ("clamp", "image_minmax", "recipe")
BALANCES = ("none", "initial")
# paper: the recipe's phases and learning-rate decays at its published epochs, in real epochs of the training set;
# compressed: the recipe's epochs mapped onto the step budget, so that even a short run decays fully
SCHEDULES = ("paper", "compressed")  # an arm's gradient weight as the recipe sets it, or scaled to the base arm's start
DEVICES = ("auto", "cpu", "cuda")
KEEP_WEIGHTS = ("all", "selected")  # validated weights kept: every validation's, or those a selection rule picks
DEFAULT_THREADS = 1  # a run's CPU threads when the profile sets none: the same on every launcher and machine
DEFAULT_CRITERION = "Qabf+SSIM"  # the validation criterion when a profile names none


class ConfigError(ValueError):
    """An invalid experiments file or override."""


def _check_keys(block: Any, allowed: list[str], path: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {allowed}, got {block!r}")
    for key in block:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}: unknown key{suggest(key, allowed)}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in block:
            raise ConfigError(f"{path}.{key}: missing; required keys: {', '.join(required)}")
    return block


def _name_list(value: Any, valid: list[str], path: str, what: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{path}: expected a non-empty list of {what} names, got {value!r}")
    for i, name in enumerate(value):
        if name not in valid:
            raise ConfigError(f"{path}[{i}]: unknown {what} '{name}'{suggest(name, valid)}; defined: {', '.join(valid)}")
    return value


@dataclass
class DatasetDef:
    """A dataset: a folder (relative paths under ``$FUSION_DATA``) with optional split, or the synthetic generator.

    A relative split file is looked up beside the experiments file first (the project's own lists, such as
    the validation split in ``benchmark/splits/``), then under ``$FUSION_DATA`` (the publishers' lists).
    """

    name: str
    path: str | None = None
    split: str | None = None
    synthetic: dict[str, Any] | None = None
    home: Path | None = None  # the experiments file's folder

    def source(self) -> dict[str, Any]:
        """Where the images are read from: ``{"synthetic": {...}}`` or ``{"path": ..., "split": ...}`` (absolute)."""
        if self.synthetic is not None:
            return {"synthetic": dict(self.synthetic)}
        split = self.split_file()
        return {"path": str(self.folder().resolve()), "split": str(split.resolve()) if split else None}

    def identity(self) -> dict[str, Any]:
        """What the images are, independent of where they lie: the generator's settings, or the number of
        pairs and a digest of their stems in order (reads the folder listing)."""
        if self.synthetic is not None:
            return {"synthetic": dict(self.synthetic)}
        return stems_identity(self.open().names())

    def folder(self) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else data_root() / p

    def split_file(self) -> Path | None:
        if not self.split:
            return None
        p = Path(self.split)
        if p.is_absolute():
            return p
        beside = self.home / p if self.home is not None else None
        return beside if beside is not None and beside.is_file() else data_root() / p

    def open(self) -> PairedDataset | SyntheticDataset:
        return open_dataset(self.source(), self.name)

    def pixels(self) -> int:
        """Pixels in one epoch of this dataset (sizes read from the image headers)."""
        return self.open().pixels()

    def check(self, path: str) -> None:
        """Fail early if the folder or split file is missing."""
        if self.synthetic is not None:
            return
        if not self.folder().is_dir():
            raise ConfigError(f"{path}.path: dataset folder not found: {self.folder()} (relative paths are under FUSION_DATA={data_root()})")
        split = self.split_file()
        if split is not None and not split.is_file():
            raise ConfigError(f"{path}.split: split file not found: {split}")


@dataclass
class Profile:
    """Which runs a study makes and with what budget."""

    name: str
    models: list[str]
    arms: dict[str, dict[str, Any]]  # arm name -> gradient loss block
    seeds: list[int]
    train: str
    test: list[str]
    steps: int | None  # the budget in steps, or None when it is given in epochs
    batch_size: int | None = None
    patch_size: int | None = None
    lr: float | None = None
    device: str = "auto"
    checkpoint_every: int = 100
    log_every: int = 10
    normalisation: str = "clamp"
    slurm: dict[str, Any] = field(default_factory=dict)
    loss_arms: list[str] = field(default_factory=list)  # the arms listed under 'losses'
    ablation_arms: dict[str, dict[str, str]] = field(default_factory=dict)  # ablation -> value label -> arm name
    ablation_on: dict[str, list] = field(default_factory=dict)  # optional models / seeds / test of ablation-only arms
    base_arm: str = DEFAULT_BASE_ARM  # what every other arm is compared with
    primary_metrics: list[str] = field(default_factory=lambda: list(DEFAULT_PRIMARY_METRICS))  # the Holm family
    labels: dict[str, str] = field(default_factory=dict)  # display names of datasets, models and arms
    epochs: float | None = None  # the budget in epochs of the training set (instead of steps)
    schedule: str = "paper"  # see SCHEDULES
    val: dict[str, Any] | None = None  # {dataset, every, criterion}: score the validation images every so many
    #                                     steps (default: once an epoch) by a criterion (default Qabf+SSIM)
    plateau: dict[str, Any] | None = None  # {patience, min_delta}: the plateau rule (benchmark.selection)
    stop: bool = False  # end training at the plateau (else train to the budget)
    select: list[str] = field(default_factory=lambda: ["last"])  # selection rules; the first is the primary
    keep_weights: str = "all"  # the weights of every validation, or only those a rule still selects
    conventions: list[str] = field(default_factory=list)  # metric conventions scored beside the default one
    threads: int = DEFAULT_THREADS  # CPU threads of each run (torch and Numba), under every launcher; hashed: CPU sums depend on it
    tune: dict[str, Any] | None = None  # {gradient_scale, seeds, arms, models, apply}: each arm at its own tuned weight
    reuse: list[str] = field(default_factory=list)  # profiles whose finished runs of equal hash are copied, not retrained

    def grid(self, arm: str) -> tuple[list[str], list[int], list[str]]:
        """Models, seeds and test sets an arm runs on (ablation-only arms may use a smaller grid)."""
        if arm in self.loss_arms:
            return self.models, self.seeds, self.test
        on = self.ablation_on
        return on.get("models", self.models), on.get("seeds", self.seeds), on.get("test", self.test)

    def study(self) -> dict[str, Any]:
        """JSON-able description of the study that the reports read (arms, ablation groups, grids)."""
        return {"profile": self.name, "train": self.train, "steps": self.steps, "arms": self.arms,
                "loss_arms": self.loss_arms, "ablations": self.ablation_arms, "base_arm": self.base_arm,
                "primary_metrics": self.primary_metrics, "labels": self.labels, "conventions": self.conventions,
                "select": self.select, "tune": self.tune, "reuse": self.reuse, "grids": {arm: dict(zip(("models", "seeds", "test"), self.grid(arm))) for arm in self.arms}}  # fmt: skip


PROFILE_KEYS = ["models", "losses", "ablations", "ablation_on", "seeds", "train", "test", "steps", "epochs", "schedule",
                "batch_size", "patch_size", "lr", "device", "checkpoint_every", "log_every", "normalisation", "slurm",
                "base_arm", "primary_metrics", "val", "plateau", "stop", "select", "keep_weights", "conventions",
                "threads", "tune", "reuse"]  # fmt: skip
TOP_KEYS = ["datasets", "models", "losses", "ablations", "profiles", "default_profile", "labels"]


@dataclass
class Config:
    """The validated experiments file."""

    raw: dict[str, Any]
    datasets: dict[str, DatasetDef]
    model_blocks: dict[str, dict[str, Any]]
    losses: dict[str, dict[str, Any]]
    ablations: dict[str, dict[str, dict[str, Any]]]  # ablation -> arm name -> loss block
    profiles: dict[str, Profile]
    default_profile: str
    _models: dict[tuple[str, bool], baselines.ModelSpec] = field(default_factory=dict, repr=False)

    def profile(self, name: str | None) -> Profile:
        name = name or self.default_profile
        if name not in self.profiles:
            raise ConfigError(f"--profile: unknown profile '{name}'{suggest(name, list(self.profiles))}; defined: {', '.join(self.profiles)}")
        return self.profiles[name]

    def model(self, name: str, without_checkpoint: bool = False) -> baselines.ModelSpec:
        """The resolved model (class imported, built once and checked on first use); ``without_checkpoint``
        resolves it without its ``backbone_checkpoint`` (same recipe), for planning before the file is here."""
        key = (name, without_checkpoint)
        if key not in self._models:
            block = {k: v for k, v in self.model_blocks[name].items() if not (without_checkpoint and k == "backbone_checkpoint")}
            try:
                self._models[key] = baselines.from_spec(name, block)
            except ValueError as exc:
                message = str(exc)
                raise ConfigError(message if message.startswith("models.") else f"models.{name}: {message}") from None
            except Exception as exc:  # noqa: BLE001 - a user's network may raise anything while it is built
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise ConfigError(f"models.{name}: the network failed to build ({type(exc).__name__}: {first})") from None
        return self._models[key]


def _parse_datasets(block: Any, home: Path | None) -> dict[str, DatasetDef]:
    if not isinstance(block, dict) or not block:
        raise ConfigError(f"datasets: expected a mapping of dataset names to blocks, got {block!r}")
    out = {}
    for name, d in block.items():
        path = f"datasets.{name}"
        _check_keys(d, ["path", "split", "synthetic"], path)
        if ("path" in d) == ("synthetic" in d):
            raise ConfigError(f"{path}: give exactly one of 'path' (a folder with ir/ and vi/) or 'synthetic'")
        if "synthetic" in d:
            syn = _check_keys(d["synthetic"] or {}, ["count", "height", "width", "seed"], f"{path}.synthetic")
            try:
                SyntheticDataset(**syn)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{path}.synthetic: {exc}") from None
        out[name] = DatasetDef(name, d.get("path"), d.get("split"), d.get("synthetic"), home)
    return out


def _parse_losses(block: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for name, b in (block or {}).items():
        path = f"losses.{name}"
        if not isinstance(b, dict) or "type" not in b:
            raise ConfigError(f"{path}: expected a block with 'type' (one of {', '.join(losses.LOSSES)})")
        if b["type"] not in losses.LOSSES:
            raise ConfigError(f"{path}.type: unknown gradient loss '{b['type']}'{suggest(b['type'], list(losses.LOSSES))}; valid: {', '.join(losses.LOSSES)}")
        if "weight" in b:
            raise ConfigError(f"{path}.weight: a gradient arm has no weight (each model's recipe sets it)")
        _build_loss(b, path)
        out[name] = _balanced(dict(b), path)
    return out


def _balanced(block: dict[str, Any], path: str) -> dict[str, Any]:
    """Check an arm's ``balance`` switch (see :data:`BALANCES`); ``none``, the default, is dropped."""
    value = block.pop("balance", "none")
    if value not in BALANCES:
        raise ConfigError(f"{path}.balance: '{value}' is not one of {list(BALANCES)}")
    return {**block, "balance": value} if value != "none" else block


def _build_loss(block: dict[str, Any], path: str) -> None:
    options = {k: v for k, v in block.items() if k not in ("type", "balance")}
    try:
        losses.build(block["type"], **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _parse_ablations(block: Any, loss_arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out = {}
    for name, b in (block or {}).items():
        path = f"ablations.{name}"
        _check_keys(b, ["base", "vary", "fixed"], path, required=("base", "vary"))
        if b["base"] not in loss_arms:
            raise ConfigError(f"{path}.base: unknown loss arm '{b['base']}'{suggest(b['base'], list(loss_arms))}; defined: {', '.join(loss_arms)}")
        vary = b["vary"]
        if not isinstance(vary, dict) or len(vary) != 1:
            raise ConfigError(f"{path}.vary: expected one switch with a list of values, e.g. {{scales: [[1], [1, 0.5]]}}")
        (switch, values), = vary.items()
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}.vary.{switch}: expected a non-empty list of values")
        arms = {}
        for i, value in enumerate(values):
            arm = {**loss_arms[b["base"]], **(b.get("fixed") or {}), switch: value}
            _build_loss(arm, f"{path}.vary.{switch}[{i}]")
            arm = _balanced(arm, f"{path}.vary.{switch}[{i}]")
            label = ",".join(str(v) for v in value) if isinstance(value, list) else str(value).lower()
            arms[f"{name}:{switch}={label}"] = arm
        out[name] = arms
    return out


def _parse_profile(name: str, b: Any, cfg: dict[str, Any], arms: dict, ablations: dict,
                   labels: dict[str, str]) -> Profile:  # fmt: skip
    path = f"profiles.{name}"
    _check_keys(b, PROFILE_KEYS, path, required=("models", "seeds", "train", "test"))
    if (b.get("steps") is None) == (b.get("epochs") is None):
        raise ConfigError(f"{path}: give the budget as exactly one of 'steps' or 'epochs'")
    epochs = b.get("epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs <= 0):
        raise ConfigError(f"{path}.epochs: expected a positive number, got {epochs!r}")
    schedule = b.get("schedule", "paper")
    if schedule not in SCHEDULES:
        raise ConfigError(f"{path}.schedule: '{schedule}' is not one of {list(SCHEDULES)}")
    models = _name_list(b["models"], list(cfg["models"]), f"{path}.models", "model")
    profile_arms: dict[str, dict[str, Any]] = {}
    loss_arms = _name_list(b["losses"], list(arms), f"{path}.losses", "loss arm") if "losses" in b else []
    for arm in loss_arms:
        profile_arms[arm] = arms[arm]
    ablation_arms: dict[str, dict[str, str]] = {}
    for abl in _name_list(b["ablations"], list(ablations), f"{path}.ablations", "ablation") if "ablations" in b else []:
        ablation_arms[abl] = {}
        for arm, block in ablations[abl].items():  # an arm equal to one already planned reuses its runs
            same = next((a for a, blk in profile_arms.items() if losses.resolved(blk) == losses.resolved(block)), None)
            if same is None:
                profile_arms[arm] = block
            ablation_arms[abl][arm.split("=", 1)[1]] = same or arm
    if not profile_arms:
        raise ConfigError(f"{path}: give 'losses' and/or 'ablations': the runs need at least one gradient arm")
    seeds = _seeds(b["seeds"], f"{path}.seeds")
    datasets = list(cfg["datasets"])
    train = _name_list([b["train"]], datasets, f"{path}.train", "dataset")[0]
    test = _name_list(b["test"], datasets, f"{path}.test", "dataset")
    ablation_on = _parse_ablation_on(b.get("ablation_on"), models, test, f"{path}.ablation_on")
    for key in ("steps", "checkpoint_every", "log_every", "batch_size", "patch_size", "threads"):
        value = b.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{path}.{key}: expected a positive integer, got {value!r}")
    if b.get("lr") is not None and not (isinstance(b["lr"], (int, float)) and b["lr"] > 0):
        raise ConfigError(f"{path}.lr: expected a positive number, got {b['lr']!r}")
    device = b.get("device", "auto")
    if device not in DEVICES:
        raise ConfigError(f"{path}.device: '{device}' is not one of {list(DEVICES)}")
    norm = b.get("normalisation", "clamp")
    if norm not in NORMALISATIONS:
        raise ConfigError(f"{path}.normalisation: '{norm}' is not one of {list(NORMALISATIONS)}")
    base_arm = b.get("base_arm", DEFAULT_BASE_ARM)
    if base_arm not in profile_arms and ("base_arm" in b or len(profile_arms) > 1):  # else no comparison is ever made
        given = "" if "base_arm" in b else " (the default; name the arm every other is compared with in base_arm)"
        raise ConfigError(f"{path}.base_arm: '{base_arm}'{given} is not an arm of this profile{suggest(base_arm, list(profile_arms))}; "
                          f"arms: {', '.join(profile_arms)}")  # fmt: skip
    balanced = [a for a, blk in profile_arms.items() if blk.get("balance") == "initial"]
    if balanced and (base_arm not in profile_arms or profile_arms[base_arm].get("balance")):
        raise ConfigError(f"{path}: arm '{balanced[0]}' has balance: initial, which needs an unbalanced base arm "
                          f"('{base_arm}') in the profile")  # fmt: skip
    primary = _name_list(b.get("primary_metrics", list(DEFAULT_PRIMARY_METRICS)), metric_names(), f"{path}.primary_metrics", "metric")
    val, plateau, stop, select = _parse_validation(b, path, list(cfg["datasets"]), test, train)
    keep = b.get("keep_weights", "all")
    if keep not in KEEP_WEIGHTS:
        raise ConfigError(f"{path}.keep_weights: '{keep}' is not one of {list(KEEP_WEIGHTS)}")
    conventions = _name_list(b["conventions"], list(CONVENTIONS), f"{path}.conventions", "metric convention") if "conventions" in b else []
    if DEFAULT_CONVENTION in conventions:
        raise ConfigError(f"{path}.conventions: '{DEFAULT_CONVENTION}' is always scored; list the other conventions only")
    tune = _parse_tune(b.get("tune"), path, models, seeds, loss_arms, list(profile_arms), val)
    others = [p for p in cfg["profiles"] if p != name]
    reuse = _name_list(b["reuse"], others, f"{path}.reuse", "other profile") if "reuse" in b else []
    return Profile(
        name, models, profile_arms, seeds, train, test, b.get("steps"), b.get("batch_size"), b.get("patch_size"),
        b.get("lr"), device, b.get("checkpoint_every", 100), b.get("log_every", 10), norm,
        dict(b.get("slurm") or {}), list(loss_arms), ablation_arms, ablation_on, base_arm, list(primary), labels,
        None if epochs is None else float(epochs), schedule, val, plateau, stop, select, keep, conventions,
        b.get("threads", DEFAULT_THREADS), tune, list(reuse),
    )  # fmt: skip


def _parse_validation(b: dict[str, Any], path: str, datasets: list[str], test: list[str],
                      train: str) -> tuple[dict | None, dict | None, bool, list[str]]:  # fmt: skip
    """``val``, the plateau, whether training stops there, and the selection rules of a profile.

    ``stop: {criterion, patience, min_delta}`` defines the plateau and ends training on it; ``plateau:`` with
    the same keys defines it without stopping (a run trains to its budget, and ``select: plateau`` says what
    early stopping would have scored). The criterion, given in ``val``, ``stop`` or ``plateau`` (default
    ``Qabf+SSIM``), is the same for every arm of a comparison: metrics of the validation images summed (each
    higher-is-better), or one part of the objective that every arm shares (e.g. ``intensity``, lower is
    better); never an arm's own gradient term or total. ``select`` is one rule or a list of rules
    (:data:`benchmark.selection.RULES`), the first the primary one.
    """
    val = b.get("val")
    if val is not None:
        _check_keys(val, ["dataset", "every", "criterion"], f"{path}.val", required=("dataset",))
        _name_list([val["dataset"]], datasets, f"{path}.val.dataset", "dataset")
        if val["dataset"] in test or val["dataset"] == train:
            raise ConfigError(f"{path}.val.dataset: '{val['dataset']}' is also a training or test set; use a held-out split")
        every = val.get("every", 1)  # absent: once an epoch, set when the run's steps per epoch are known
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"{path}.val.every: expected a positive integer, got {val['every']!r}")
        val = dict(val)
    if b.get("stop") is not None and b.get("plateau") is not None:
        raise ConfigError(f"{path}: give 'stop' (end training at the plateau) or 'plateau' (watch it, train on), not both")
    key = "stop" if b.get("stop") is not None else "plateau"
    plateau = b.get(key)
    criteria = {f"{path}.val.criterion": val.get("criterion")} if val else {}
    if plateau is not None:
        if val is None:
            raise ConfigError(f"{path}.{key}: needs 'val' (the validation images it watches)")
        _check_keys(plateau, ["criterion", "patience", "min_delta"], f"{path}.{key}", required=("patience",))
        if not isinstance(plateau["patience"], int) or isinstance(plateau["patience"], bool) or plateau["patience"] < 1:
            raise ConfigError(f"{path}.{key}.patience: expected a positive integer, got {plateau['patience']!r}")
        criteria[f"{path}.{key}.criterion"] = plateau.get("criterion")
        plateau = {"patience": plateau["patience"], "min_delta": float(plateau.get("min_delta", 0.0))}
    given = {where: c for where, c in criteria.items() if c is not None}
    if len(set(map(str, given.values()))) > 1:
        raise ConfigError(f"{path}: the criterion is given twice and differs: " + ", ".join(f"{w} = {c}" for w, c in given.items()))
    if val is not None:
        where, criterion = next(iter(given.items()), (f"{path}.val.criterion", DEFAULT_CRITERION))
        _check_criterion_form(str(criterion), where)
        val["criterion"] = str(criterion)
    select = b.get("select", "last")
    rules = select if isinstance(select, list) else [select]
    if not rules or len(set(map(str, rules))) != len(rules):
        raise ConfigError(f"{path}.select: expected a rule or a list of distinct rules from {list(RULES)}, got {select!r}")
    for i, rule in enumerate(rules):
        where = f"{path}.select" + (f"[{i}]" if isinstance(select, list) else "")
        if rule not in RULES:
            raise ConfigError(f"{where}: '{rule}' is not one of {list(RULES)}{suggest(str(rule), list(RULES))}")
        if rule != "last" and val is None:
            raise ConfigError(f"{where}: {rule} needs 'val' (the validation history it selects from)")
        if rule == "plateau" and plateau is None:
            raise ConfigError(f"{where}: plateau needs 'stop' or 'plateau' (its patience and min_delta)")
    return val, plateau, key == "stop" and plateau is not None, list(rules)


def _check_criterion_form(criterion: str, where: str) -> None:
    """A criterion is metrics summed or objective parts every arm shares, never both and never an arm's own term."""
    terms = criterion.split("+")
    if any(t in ("gradient", "loss") for t in terms):
        raise ConfigError(f"{where}: '{criterion}' depends on the arm; use metrics (Qabf+SSIM) or a part every arm "
                          "shares (intensity)")  # fmt: skip
    metrics = [t for t in terms if t in metric_names()]
    if metrics and len(metrics) != len(terms):
        raise ConfigError(f"{where}: '{criterion}' mixes metrics and objective parts")


def _parse_tune(block: Any, path: str, models: list[str], seeds: list[int], loss_arms: list[str], all_arms: list[str],
                val: dict | None) -> dict[str, Any] | None:  # fmt: skip
    """``tune: {gradient_scale: [...], seeds: [...], arms: [...], models: [...], apply: true}``: every (model,
    arm, scale) is trained on every tuning seed and validated, never tested; each arm then trains the profile's
    seeds at the scale whose mean validation criterion is best. Every arm gets the same trials, so the grid is
    even. With ``apply: false`` the trials are trained and reported but the profile's seeds stay at the recipe's
    weight (a profile that applies the same tuning reuses the trials: the study at both weights)."""
    if block is None:
        return None
    where = f"{path}.tune"
    _check_keys(block, ["gradient_scale", "seeds", "arms", "models", "apply"], where, required=("gradient_scale", "seeds"))
    if not isinstance(block.get("apply", True), bool):
        raise ConfigError(f"{where}.apply: expected true or false, got {block['apply']!r}")
    if val is None:
        raise ConfigError(f"{where}: needs 'val' (tuning selects on the validation criterion, never on test images)")
    scales = block["gradient_scale"]
    if (not isinstance(scales, list) or not scales or len(set(scales)) != len(scales)
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in scales)):  # fmt: skip
        raise ConfigError(f"{where}.gradient_scale: expected a list of distinct positive numbers, got {scales!r}")
    tuning = _seeds(block["seeds"], f"{where}.seeds")
    if len(set(tuning)) != len(tuning) or set(tuning) & set(seeds):
        raise ConfigError(f"{where}.seeds: expected distinct seeds disjoint from the profile's seeds {seeds}, got {tuning}")
    if not block.get("arms", loss_arms):
        raise ConfigError(f"{where}.arms: the profile has no loss arm to tune; name its arms")
    arms = _name_list(block.get("arms", loss_arms), all_arms, f"{where}.arms", "arm of the profile")
    chosen = _name_list(block.get("models", models), models, f"{where}.models", "profile model")
    return {"gradient_scale": [float(x) for x in scales], "seeds": list(tuning), "arms": list(arms), "models": list(chosen),
            "apply": block.get("apply", True)}  # fmt: skip


def _parse_ablation_on(block: Any, models: list[str], test: list[str], path: str) -> dict[str, list]:
    """``ablation_on: {models: [...], seeds: [...], test: [...]}``: a sub-grid of the profile for ablation-only arms."""
    if block is None:
        return {}
    _check_keys(block, ["models", "seeds", "test"], path)
    if "models" in block:
        _name_list(block["models"], models, f"{path}.models", "profile model")
    if "test" in block:
        _name_list(block["test"], test, f"{path}.test", "profile test set")
    if "seeds" in block:
        _seeds(block["seeds"], f"{path}.seeds")
    return dict(block)


def _seeds(value: Any, path: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ConfigError(f"{path}: expected a non-empty list of integers, got {value!r}")
    twice = sorted({s for s in value if value.count(s) > 1})
    if twice:
        raise ConfigError(f"{path}: seed {twice[0]} is listed twice ({value!r}); each seed is one run of each arm")
    return value


def _coerce(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a raw config (values read as YAML)."""
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected key.path=value, got '{item}'")
        parts = key.split(".")
        if parts[0] not in raw and parts[0] in PROFILE_KEYS:
            profiles = ", ".join(raw.get("profiles") or {})
            raise ConfigError(f"--set {item}: '{parts[0]}' is a key of a profile; write --set profiles.<name>.{key}={value} "
                              f"(profiles: {profiles})")  # fmt: skip
        node = raw
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[: i + 1])
                options = list(node) if isinstance(node, dict) else []
                raise ConfigError(f"--set {key}: '{where}' does not exist{suggest(part, options)}")
            node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{'.'.join(parts[:-1])}' is not a mapping")
        node[parts[-1]] = _coerce(value)
    return raw


def parse_config(raw: dict[str, Any], home: Path | None = None) -> Config:
    """Validate a raw experiments mapping; ``home`` is the folder relative split files are looked up in first."""
    _check_keys(raw, TOP_KEYS, "experiments", required=("datasets", "models", "profiles"))
    datasets = _parse_datasets(raw["datasets"], home)
    if not isinstance(raw["models"], dict) or not raw["models"]:
        raise ConfigError(f"models: expected a mapping of model names to blocks, got {raw['models']!r}")
    for name, block in raw["models"].items():
        if not isinstance(block, dict):
            raise ConfigError(f"models.{name}: expected a mapping with 'type' or 'class'")
        try:
            baselines.check_block(name, block)
        except ValueError as exc:
            message = str(exc)
            raise ConfigError(message if message.startswith("models.") else f"models.{name}: {message}") from None
    arms = _parse_losses(raw.get("losses"))
    ablations = _parse_ablations(raw.get("ablations"), arms)
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ConfigError(f"labels: expected a mapping of names to display labels, got {labels!r}")
    profiles = {name: _parse_profile(name, b, raw, arms, ablations, dict(labels)) for name, b in raw["profiles"].items()}
    default = raw.get("default_profile", next(iter(profiles)))
    if default not in profiles:
        raise ConfigError(f"default_profile: unknown profile '{default}'{suggest(default, list(profiles))}")
    return Config(raw, datasets, dict(raw["models"]), arms, ablations, profiles, default)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, path: tuple[str, ...] = ()) -> None:
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        where = ".".join((*path, str(key)))
        if key in seen:
            raise ConfigError(f"{where}: duplicate key (lines {seen[key]} and {key_node.start_mark.line + 1}); "
                              "YAML would keep only the last one")  # fmt: skip
        seen[key] = key_node.start_mark.line + 1


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    _no_duplicates(loader, node, _mapping_path(loader, node))
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


def _mapping_path(loader: _StrictLoader, node: yaml.MappingNode) -> tuple[str, ...]:
    """The key path of a mapping node inside the document (for the message)."""
    def find(current: yaml.Node, trail: tuple[str, ...]) -> tuple[str, ...] | None:
        if current is node:
            return trail
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                found = find(v, (*trail, str(k.value)))
                if found is not None:
                    return found
        elif isinstance(current, yaml.SequenceNode):
            for i, v in enumerate(current.value):
                found = find(v, (*trail[:-1], f"{trail[-1]}[{i}]") if trail else (f"[{i}]",))
                if found is not None:
                    return found
        return None

    return find(loader._root, ()) or ()  # noqa: SLF001


def _compose_root(loader: _StrictLoader) -> yaml.Node | None:
    loader._root = yaml.SafeLoader.get_single_node(loader)  # noqa: SLF001
    return loader._root  # noqa: SLF001


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.get_single_node = _compose_root  # type: ignore[method-assign]


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate an experiments file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiments file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return parse_config(apply_overrides(raw, overrides or []), path.resolve().parent)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
