"""The train stage: one training loop for every model; the recipe drives it, the gradient arm fills its slot.

:class:`PatchSampler` draws random patches with flips from training pairs;
:class:`Trainer` runs the recipe's phases over a step budget, seeded and
deterministic on the CPU, with bf16 autocast and channels-last on CUDA, and
can save and restore its whole state so that a resumed run equals an
uninterrupted one. :func:`train_run` trains one planned run with its log and
checkpoints in the run store.
"""

from __future__ import annotations

import copy
import io
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from baselines.recipe import Recipe
from benchmark import interrupts, selection
from benchmark.console import say
from benchmark.data import DataError
from benchmark.metrics import metric_names
from benchmark.scoring import fuse_sample, grey8, score
from benchmark.store import RunDir
from losses.fusion import GRADIENT_SLOT

if TYPE_CHECKING:
    from benchmark.plan import RunSpec


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


class PatchSampler:
    """Random ``patch x patch`` crops with random horizontal and vertical flips.

    Args:
        images: ``(name, ir, vis_y)`` with float32 (H, W) arrays in [0, 1].
        patch: crop side; every image must be at least that large.
        batch: crops per batch.
        seed: seed of the sampler's own generator.
    """

    def __init__(self, images: Sequence[tuple[str, np.ndarray, np.ndarray]], patch: int, batch: int, seed: int):
        if not images:
            raise DataError("no training images")
        for name, ir, _ in images:
            if min(ir.shape) < patch:
                raise DataError(f"training image '{name}' is {ir.shape[1]}x{ir.shape[0]}, smaller than the {patch}-pixel patch")
        self.images, self.patch, self.batch = list(images), patch, batch
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``(ir, vis)`` of shape (batch, 1, patch, patch)."""
        p = self.patch
        ir_out = np.empty((self.batch, 1, p, p), dtype=np.float32)
        vis_out = np.empty_like(ir_out)
        for k in range(self.batch):
            _, ir, vis = self.images[self.rng.integers(len(self.images))]
            i = self.rng.integers(ir.shape[0] - p + 1)
            j = self.rng.integers(ir.shape[1] - p + 1)
            a, b = ir[i : i + p, j : j + p], vis[i : i + p, j : j + p]
            if self.rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            if self.rng.random() < 0.5:
                a, b = a[::-1], b[::-1]
            ir_out[k, 0], vis_out[k, 0] = a, b
        return torch.from_numpy(ir_out), torch.from_numpy(vis_out)

    def state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def load_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_optimizer(params: Sequence[nn.Parameter], spec: dict[str, Any]) -> torch.optim.Optimizer:
    """``{"type": "adam" | "adamw", "lr": ..., **kwargs}`` -> optimiser."""
    spec = dict(spec)
    kind = spec.pop("type", "adam")
    if kind not in _OPTIMIZERS:
        raise ValueError(f"optimizer.type: '{kind}' is not one of {list(_OPTIMIZERS)}")
    return _OPTIMIZERS[kind](params, **spec)


def lr_factor(schedule: dict[str, Any], epoch: float) -> float:
    """Learning-rate multiplier at a (fractional) epoch: ``constant``, or ``step`` decay by ``gamma`` every k epochs."""
    kind = schedule.get("type", "constant")
    if kind == "constant":
        return 1.0
    if kind == "step":
        return float(schedule["gamma"]) ** math.floor(epoch / float(schedule["every_epochs"]))
    raise ValueError(f"schedule.type: '{kind}' is not one of ['constant', 'step']")


@dataclass
class StepLog:
    """One logged step."""

    step: int
    phase: str
    lr: float
    loss: float
    parts: dict[str, float]


class Trainer:
    """Runs a recipe's phases for ``steps`` optimisation steps in total.

    With ``steps_per_epoch`` (the ``paper`` schedule), the recipe's phases and
    learning-rate steps fall at its published epochs, measured in real epochs of
    the training set: a short budget ends early in the recipe, with the
    learning rate it has reached there. Without it (the ``compressed``
    schedule), the recipe's epochs are mapped onto the budget: phases share the
    steps in proportion to their epochs and a decay "every epoch" happens every
    ``steps / total_epochs`` steps, so even a short run decays fully.

    Args:
        model: the network (moved to ``device``).
        recipe: its training recipe.
        gradient: the gradient arm's loss block (``{"type": "damgl", ...}``), or ``None`` for the
            recipe's own term.
        steps: total optimisation steps.
        device: ``"cpu"`` or ``"cuda"``; on CUDA, bf16 autocast and channels-last are used.
        lr: overrides the recipe's learning rate when given.
        gradient_scale: multiplies the recipe's gradient weight (a balanced arm's factor, see :func:`balance_scale`).
        steps_per_epoch: steps that make one epoch of the training set (the ``paper`` schedule), or ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        recipe: Recipe,
        gradient: dict[str, Any] | None,
        steps: int,
        device: str = "cpu",
        lr: float | None = None,
        gradient_scale: float = 1.0,
        steps_per_epoch: float | None = None,
    ):
        if steps < 1:
            raise ValueError(f"steps: expected a positive number, got {steps}")
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.model = model.to(self.device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.recipe, self.steps, self.step = recipe, steps, 0
        self.objectives = [recipe.objective(i, gradient, gradient_scale).to(self.device) for i in range(len(recipe.phases))]
        total_epochs = sum(p.epochs for p in recipe.phases)
        self.steps_per_epoch = steps / total_epochs if steps_per_epoch is None else float(steps_per_epoch)
        bounds = np.cumsum([p.epochs * self.steps_per_epoch for p in recipe.phases])
        self.phase_end = [min(steps, int(round(b))) for b in bounds]
        opt_spec = dict(recipe.optimizer) | ({"lr": lr} if lr is not None else {})
        self.base_lr = float(opt_spec["lr"])
        self.optimizer = make_optimizer(self.model.parameters(), opt_spec)

    def phase_index(self, step: int) -> int:
        """Phase of a 0-based step."""
        return next(i for i, end in enumerate(self.phase_end) if step < end or i == len(self.phase_end) - 1)

    def _set_trainable(self, phase: int) -> None:
        prefixes = self.recipe.phases[phase].trainable
        for name, param in self.model.named_parameters():
            param.requires_grad_(not prefixes or name.startswith(prefixes))

    def begin_step(self) -> tuple[int, float]:
        """Set the phase (trainable parameters, the model's phase) and the learning rate of the next step;
        returns both."""
        phase = self.phase_index(self.step)
        self._set_trainable(phase)
        if hasattr(self.model, "set_phase"):  # multi-phase models (CDDFuse) change their forward pass
            self.model.set_phase(self.recipe.phases[phase].name)
        lr = self.base_lr * lr_factor(self.recipe.schedule, self.step / self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        return phase, lr

    def check_finite(self, total: torch.Tensor, phase: int) -> None:
        """Raise :class:`NonFiniteLoss` for a NaN or infinite loss."""
        if not torch.isfinite(total):
            raise NonFiniteLoss(f"loss is {total.item()} at step {self.step} (phase '{self.recipe.phases[phase].name}')")

    def finish_step(self, phase: int, lr: float, total: torch.Tensor, parts: dict[str, torch.Tensor]) -> StepLog:
        """Clip (where the recipe does) and apply the gradients already in the parameters; count the step."""
        if self.recipe.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
        self.optimizer.step()
        self.step += 1
        return StepLog(self.step, self.recipe.phases[phase].name, lr, total.item(), {k: v.item() for k, v in parts.items()})

    def train_step(self, ir: torch.Tensor, vis: torch.Tensor) -> StepLog:
        """One optimisation step on a batch; raises :class:`NonFiniteLoss` on NaN/inf."""
        phase, lr = self.begin_step()
        ir, vis = ir.to(self.device), vis.to(self.device)
        if self.cuda:
            ir, vis = ir.contiguous(memory_format=torch.channels_last), vis.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            fused = self.model(ir, vis)
            aux = getattr(self.model, "aux", None)
            total, parts = self.objectives[phase](fused.float(), ir, vis, aux)
        self.check_finite(total, phase)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        return self.finish_step(phase, lr, total, parts)

    def state_dict(self, sampler: PatchSampler, seconds: float = 0.0, val_seconds: float = 0.0) -> dict[str, Any]:
        """Everything needed to resume exactly: model, optimiser, step, the sampler's generator and every
        global random state a model may draw from (torch on the CPU and on each CUDA device, as TC-MoA's
        gating noise does; NumPy; Python), plus the seconds spent so far (in all, and validating)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "sampler": sampler.state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.cuda else None,
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
            "seconds": seconds,
            "val_seconds": val_seconds,
        }

    def load_state_dict(self, state: dict[str, Any], sampler: PatchSampler) -> tuple[float, float]:
        """Restore :meth:`state_dict`; returns the seconds it recorded (in all, and validating)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        sampler.load_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if self.cuda and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if "numpy_rng" in state:
            np.random.set_state(state["numpy_rng"])
            random.setstate(state["python_rng"])
        return float(state.get("seconds", 0.0)), float(state.get("val_seconds", 0.0))


def load_training_images(dataset: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, ir, vis_y) float32 arrays in [0, 1] for every training pair."""
    out = []
    for i in range(len(dataset)):
        s = dataset[i]
        out.append((s.name, s.ir_unit, s.vi_ycbcr[0]))
    return out


class Validation:
    """Scores the validation images during training and keeps the weights it scored.

    The criterion is the sum of validation metrics (higher is better) or of objective parts every arm
    shares (lower is better), computed on full-size images fused as the test sets are. Which validated
    network is scored afterwards is for the selection rules (:mod:`benchmark.selection`), functions of the
    history in ``val_log.csv`` alone, so a resumed run selects as an uninterrupted one; with ``stop``,
    training ends when the plateau rule is reached.
    """

    def __init__(self, run: RunSpec, run_dir: RunDir):
        c = run.config
        self.every, self.rules = c["val"]["every"], list(c.get("select", ["last"]))
        self.terms = c["val"]["criterion"].split("+")
        self.metrics = [t for t in self.terms if t in metric_names()]
        self.higher = bool(self.metrics)  # metrics: higher is better; objective parts: lower
        self.plateau = selection.Plateau(**c["plateau"]) if c.get("plateau") else None
        self.stops, self.keep_all = c.get("stop") == "plateau", run.keep_weights == "all"
        self.dataset = run.dataset(c["val"]["dataset"])
        self.run_dir, self.normalisation = run_dir, c["normalisation"]
        self.rows: list[list[str]] = []
        self.seconds = 0.0  # wall time spent validating, counted across resumes (kept in the checkpoint)

    def resume(self, step: int) -> None:
        """Keep the validations up to ``step`` (those a resumed run has already passed)."""
        self.rows = self.run_dir.read_val_log(step)

    def history(self) -> tuple[list[int], list[float]]:
        """The validated steps and their criterion values."""
        return [int(r[0]) for r in self.rows], [float(r[2]) for r in self.rows]

    def picks(self) -> dict[str, int]:
        """``{rule: step}``: the network each selection rule picks from the history so far."""
        return selection.picks(self.rules, *self.history(), self.higher, self.plateau)

    def reached(self) -> bool | None:
        """Whether the history shows the plateau (``None`` without a plateau rule)."""
        if self.plateau is None:
            return None
        return selection.walk(self.history()[1], self.higher, self.plateau).reached is not None

    def exhausted(self) -> bool:
        """Whether training ends here: the run stops at its plateau and the history shows it."""
        return self.stops and bool(self.reached())

    def keep(self) -> None:
        """With ``keep_weights: selected``, remove the validated weights no rule picks any more (a network a
        rule picks at the end was picked by it when it was validated, so nothing needed is removed)."""
        if not self.keep_all and self.rows:
            self.run_dir.drop_val_weights(set(self.picks().values()))

    def __call__(self, trainer: Trainer, step: int) -> None:
        """Validate after ``step``: log the criterion and keep the weights it scored."""
        started = time.perf_counter()
        model, phase = trainer.model, trainer.phase_index(max(step - 1, 0))
        model.eval()
        if hasattr(model, "set_phase"):
            model.set_phase(trainer.recipe.phases[phase].name)
        totals = {t: 0.0 for t in self.terms}
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for i in range(len(self.dataset)):
                s = self.dataset[i]
                ir, vis, fused = fuse_sample(model, s, trainer.device)
                if self.metrics:
                    for m, v in score(grey8(fused, self.normalisation).astype(np.float64), s, self.metrics).items():
                        totals[m] += v
                else:
                    _, parts = trainer.objectives[phase](fused, ir, vis, getattr(model, "aux", None))
                    for t in self.terms:
                        totals[t] += float(parts[t])
        model.train()
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        self.run_dir.save_val_weights(step, buffer.getvalue())
        means = [totals[t] / len(self.dataset) for t in self.terms]
        self.rows.append([str(step), repr(step / trainer.steps_per_epoch), repr(sum(means)), *map(repr, means)])
        self.run_dir.write_val_log(self.terms, self.rows)
        self.seconds += time.perf_counter() - started

    def ending(self) -> dict[str, Any]:
        """How training ended, for ``done.json``: whether the plateau was reached, the step of the best
        validation, and per rule the step it scores (``scored_step``: the primary rule's)."""
        picks = self.picks()
        steps, values = self.history()
        best = selection.best_index(values, self.higher)
        return {"plateau": self.reached(), "best_step": None if best is None else steps[best], "selected": self.rules[0],
                "scored_step": picks[self.rules[0]], "select": picks, "val_seconds": round(self.seconds, 3)}  # fmt: skip


def _warn(problems: list[str]) -> None:
    for text in problems:
        say(f"warning: {text}")


def restore(trainer: Trainer, sampler: PatchSampler, run_dir: RunDir, run_id: str) -> tuple[float, float, list[int]]:
    """Load the newest readable checkpoint into ``trainer`` and ``sampler``, saying from which step the run
    resumes; returns the seconds it recorded (in all, and validating) and the steps the run has resumed from,
    this one included (none for a new run).

    A checkpoint that does not match its digest or cannot be unpickled is skipped with a warning; the
    previous one is tried next, and with none left the run restarts from scratch, saying so.
    """
    problems = []
    for path, data, problem in run_dir.checkpoints():
        if data is None:
            problems.append(problem)
            continue
        try:
            state = torch.load(io.BytesIO(data), weights_only=False, map_location=trainer.device)
            if not isinstance(state, dict) or not {"model", "optimizer", "step", "sampler"} <= set(state):
                raise ValueError("not a checkpoint of this harness")
        except Exception as exc:  # noqa: BLE001 - an unreadable file of any kind falls back
            problems.append(f"{path} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
            continue
        clocks = trainer.load_state_dict(state, sampler)
        _warn(problems)
        say(f"{run_id}: resuming from {path.name} at step {trainer.step}")
        return (*clocks, [*state.get("resumes", []), trainer.step])
    _warn(problems)
    if problems:
        say(f"{run_id}: no readable checkpoint left; restarting from scratch")
        run_dir.drop_checkpoints()
    return 0.0, 0.0, []


def balance_scale(model: nn.Module, recipe: Recipe, gradient: dict[str, Any], base: dict[str, Any],
                  sampler: PatchSampler) -> float:  # fmt: skip
    """The factor on an arm's gradient weight that makes its gradient term start at the base arm's share.

    Both terms are evaluated on the run's first batch with the initial weights (the sampler's state is left
    as it was); every other part of the objective is then equal, so equal shares need equal weighted
    terms: the factor is ``base term / arm term``. It depends on the seed alone, so a resumed run
    recomputes the same factor.
    """
    phase = next((i for i, p in enumerate(recipe.phases) if p.swap_gradient), None)
    if phase is None:
        return 1.0
    state = copy.deepcopy(sampler.state())
    ir, vis = sampler.next()
    sampler.load_state(state)
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # a model's own noise draws leave the stream as it was
        model.train()
        fused = model(ir, vis).float()
        terms = [recipe.objective(phase, block)(fused, ir, vis, getattr(model, "aux", None))[1][GRADIENT_SLOT]
                 for block in (gradient, base)]  # fmt: skip
    return float(terms[1] / terms[0]) if float(terms[0]) > 0 else 1.0


def random_batch(batch: int, patch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An (infrared, visible) batch of uniform noise patches, the same for a seed: for timings and checks."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, patch, patch, generator=g), torch.rand(batch, 1, patch, patch, generator=g)


def arm_gradient(arm: dict[str, Any]) -> dict[str, Any]:
    """A run config's ``arm`` block as the gradient loss block a recipe takes (its name and balance left out)."""
    return {k: v for k, v in arm.items() if k not in ("name", "balance")}


def time_step(model: nn.Module, recipe: Recipe, gradient: dict[str, Any], batch: int, patch: int, device: str,
              steps: int = 10, warmup: int = 3) -> float:  # fmt: skip
    """Median seconds of one training step on random ``batch`` x ``patch`` patches, after ``warmup`` steps
    (allocator and oneDNN caches settle over the first few): what a dry run multiplies by the budget (the
    step's cost does not depend on the pixels)."""
    trainer = Trainer(model, recipe, gradient, steps + warmup, device=device)
    ir, vis = random_batch(batch, patch)
    times = []
    for _ in range(steps + warmup):
        t0 = time.perf_counter()
        trainer.train_step(ir, vis)
        if trainer.cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[warmup:]))


class RunLoop:
    """One run's training with its bookkeeping: built (and resumed from its newest checkpoint), then
    :meth:`after` each step (logging, validation, checkpoints, the plateau and stop requests) until
    :attr:`finished`; :meth:`result` says how it ended. :func:`train_run` drives one; a pack drives several.
    """

    def __init__(self, run: RunSpec, run_dir: RunDir, device: str, progress: bool = True):
        c = self.config = run.config
        self.run, self.run_dir = run, run_dir
        spec = run.model_spec()
        torch.manual_seed(run.seed)
        np.random.seed(run.seed)
        random.seed(run.seed)
        model = spec.build()
        gradient = arm_gradient(c["arm"])
        self.sampler = PatchSampler(load_training_images(run.dataset(c["train"]["name"])), c["patch_size"],
                                    c["batch_size"], seed=run.seed)  # fmt: skip
        scale = float(c.get("gradient_scale", 1.0))  # a tuned arm's multiple of the recipe's weight
        if c["arm"].get("balance", "none") == "initial":
            scale *= balance_scale(model, spec.recipe, gradient, c["base_arm"], self.sampler)
        per_epoch = c["steps_per_epoch"] if c.get("schedule") == "paper" else None
        self.trainer = Trainer(model, spec.recipe, gradient, c["steps"], device=device, lr=c["lr"], gradient_scale=scale,
                               steps_per_epoch=per_epoch)  # fmt: skip
        self.parts = list(dict.fromkeys(p for objective in self.trainer.objectives for p in objective.terms))
        self.before, validated, self.resumes = restore(self.trainer, self.sampler, run_dir, run.run_id)
        self.rows = run_dir.read_log(self.trainer.step)
        self.validation = Validation(run, run_dir) if c.get("val") else None
        if self.validation is not None:
            self.validation.resume(self.trainer.step)
            self.validation.seconds = validated
        interrupts.check(run.run_id, f"before training step {self.trainer.step + 1} of {c['steps']}")
        self.started = time.perf_counter()
        self.plateau = self.validation is not None and self.validation.exhausted()  # a resumed run that had stopped
        self.bar = tqdm(total=c["steps"], initial=self.trainer.step, desc=run.run_id, unit="step", disable=not progress,
                        leave=False)  # fmt: skip

    @property
    def finished(self) -> bool:
        return self.plateau or self.trainer.step >= self.config["steps"]

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def save(self) -> None:
        buffer = io.BytesIO()
        v = self.validation
        torch.save({**self.trainer.state_dict(self.sampler, self.seconds(), v.seconds if v else 0.0), "resumes": self.resumes},
                   buffer)  # fmt: skip
        self.run_dir.save_checkpoint(buffer.getvalue())
        self.run_dir.write_log(self.parts, self.rows)
        if v is not None:
            v.keep()

    def after(self, log: StepLog) -> None:
        """Log, validate, checkpoint and stop after a step (a stop request raises
        :class:`~benchmark.interrupts.Interrupted` once the checkpoint is written)."""
        c, v, trainer = self.config, self.validation, self.trainer
        self.bar.update()
        if log.step % self.run.log_every == 0 or log.step in (1, c["steps"]):  # step 1: the loss at the initial weights
            self.rows.append([str(log.step), log.phase, repr(log.lr), repr(log.loss),
                              *(repr(log.parts.get(p, float("nan"))) for p in self.parts), f"{self.seconds():.3f}"])  # fmt: skip
            self.bar.set_postfix({"loss": f"{log.loss:.4f}", **{p: f"{x:.3f}" for p, x in log.parts.items()}})
        if v is not None and (log.step % v.every == 0 or log.step == c["steps"]):
            v(trainer, log.step)
            self.plateau = v.exhausted()
        stop = interrupts.requested() is not None
        if stop or self.plateau or log.step % c["checkpoint_every"] == 0 or log.step == c["steps"]:
            self.save()
        if stop:
            interrupts.check(self.run.run_id, f"at step {log.step} of {c['steps']} (checkpoint saved)")

    def fail(self, error: str) -> tuple[Trainer, str | None, float, dict[str, Any]]:
        """End on a non-finite loss: the log so far is written and the error returned."""
        self.bar.close()
        self.run_dir.write_log(self.parts, self.rows)
        return self.trainer, error, self.seconds(), {}

    def result(self) -> tuple[Trainer, str | None, float, dict[str, Any]]:
        """The trainer, no error, the training seconds across resumes, and how training ended."""
        self.bar.close()
        v = self.validation
        ending = {"stopped_at": self.trainer.step, **v.ending()} if v is not None else {}
        return self.trainer, None, self.seconds(), {**ending, **({"resumed_from": self.resumes} if self.resumes else {})}


def train_run(run: RunSpec, run_dir: RunDir, device: str,
              progress: bool = True) -> tuple[Trainer, str | None, float, dict[str, Any]]:  # fmt: skip
    """Train (or resume) one run with logging and checkpoints.

    Returns the trainer, an error for a NaN loss (else ``None``), the training seconds, counted across
    resumes, and how training ended (``plateau``, ``stopped_at``, the step each selection rule picks). A
    stop request (:mod:`benchmark.interrupts`) writes a checkpoint after the current step and raises
    :class:`~benchmark.interrupts.Interrupted`. With validation (``val``), the run is scored every
    ``every`` steps, keeps the weights it validated, and may stop on its plateau (``stop``).
    """
    loop = RunLoop(run, run_dir, device, progress)
    try:
        while not loop.finished:
            try:
                log = loop.trainer.train_step(*loop.sampler.next())
            except NonFiniteLoss as exc:
                return loop.fail(str(exc))
            loop.after(log)
    finally:
        loop.bar.close()
    return loop.result()
