"""Several runs of one model trained in one process at once (``--pack N``), for GPUs that one small CNN leaves idle.

The runs' parameters are stacked and the network's forward pass is mapped over them with
``torch.func.vmap`` (one batched kernel where there were N small ones); each run keeps its own objective,
optimiser, learning-rate schedule, patch stream, logs, validation and checkpoints, which
:class:`~benchmark.train.RunLoop` writes exactly as for a run trained alone, so a packed run resumes
alone and the other way round. The arithmetic differs from a lone run only in rounding (a batched
convolution adds in another order): the tests require the same losses within 1e-5 over 20 steps.

A model can be packed when its forward pass draws no random numbers (``vmap`` refuses them) and needs
no per-phase switch or auxiliary output: the CNN baselines. Others train alone, saying why.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.func import functional_call, vmap

from benchmark.train import NonFiniteLoss, RunLoop, StepLog, Trainer

if TYPE_CHECKING:
    from benchmark.plan import RunSpec
    from benchmark.store import RunDir


def why_not_packable(model: torch.nn.Module, objectives: Sequence[torch.nn.Module]) -> str | None:
    """Why runs of this model cannot share a pack, or ``None`` when they can (a forward pass that draws
    random numbers is found by ``vmap`` at the first step)."""
    if hasattr(model, "set_phase"):
        return "its forward pass changes with the training phase"
    if hasattr(model, "aux") or any(getattr(t, "needs_aux", False) for o in objectives for t in o.terms.values()):
        return "its objective reads an auxiliary output of the forward pass"
    return None


class NotPackable(ValueError):
    """Runs that cannot train as one pack (the reason says why); they train one by one instead."""


class Pack:
    """One training step for several trainers of the same architecture, on their own batches.

    The trainers stay the owners of their parameters: every step stacks them, maps the forward pass over
    the stack, adds the runs' losses (their gradients do not mix), hands each run its slice of the
    gradient and lets its own optimiser step.
    """

    def __init__(self, trainers: Sequence[Trainer]):
        devices = {t.device for t in trainers}
        if len(devices) != 1:
            raise ValueError(f"a pack trains on one device, got {sorted(map(str, devices))}")
        for t in trainers:
            reason = why_not_packable(t.model, t.objectives)
            if reason:
                raise NotPackable(f"{type(t.model).__name__} cannot be packed: {reason}")
        self.device = next(iter(devices))
        self.cuda = self.device.type == "cuda"
        self.base = copy.deepcopy(trainers[0].model).to("meta")

    def _forward(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], ir: torch.Tensor,
                 vis: torch.Tensor) -> torch.Tensor:  # fmt: skip
        return functional_call(self.base, (params, buffers), (ir, vis))

    def step(self, trainers: Sequence[Trainer], batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[StepLog | str]:
        """One step of every trainer on its batch: a :class:`StepLog`, or the error of a run whose loss is
        not finite (that run is not updated)."""
        begun = [t.begin_step() for t in trainers]
        models = [t.model for t in trainers]
        own_params, own_buffers = [dict(m.named_parameters()) for m in models], [dict(m.named_buffers()) for m in models]
        params = {n: torch.stack([p[n].detach() for p in own_params]).requires_grad_() for n in own_params[0]}
        buffers = {n: torch.stack([b[n] for b in own_buffers]) for n in own_buffers[0]}
        ir = torch.stack([b[0] for b in batches]).to(self.device)
        vis = torch.stack([b[1] for b in batches]).to(self.device)
        self.base.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            try:
                fused = vmap(self._forward, randomness="error")(params, buffers, ir, vis)
            except RuntimeError as exc:
                if "random" not in str(exc):
                    raise
                raise NotPackable(f"{type(models[0]).__name__} cannot be packed: its forward pass draws random "
                                  "numbers, which a mapped forward pass cannot give each run as it would alone") from None  # fmt: skip
            results = [t.objectives[phase](fused[k].float(), ir[k], vis[k], None) for k, (t, (phase, _)) in
                       enumerate(zip(trainers, begun))]  # fmt: skip
        errors: dict[int, str] = {}
        for k, (t, (phase, _)) in enumerate(zip(trainers, begun)):
            try:
                t.check_finite(results[k][0], phase)
            except NonFiniteLoss as exc:
                errors[k] = str(exc)
        total = sum(r[0] for k, r in enumerate(results) if k not in errors)
        if isinstance(total, torch.Tensor):
            total.backward()
        out: list[StepLog | str] = []
        for k, (t, (phase, lr)) in enumerate(zip(trainers, begun)):
            if k in errors:
                out.append(errors[k])
                continue
            t.optimizer.zero_grad(set_to_none=True)
            for n, p in t.model.named_parameters():
                if p.requires_grad and params[n].grad is not None:
                    p.grad = params[n].grad[k].clone()
            with torch.no_grad():
                for n, b in t.model.named_buffers():
                    b.copy_(buffers[n][k])
            out.append(t.finish_step(phase, lr, *results[k]))
        return out


def train_packed(runs: Sequence[RunSpec], run_dirs: Sequence[RunDir], device: str,
                 progress: bool = True) -> list[tuple[Trainer, str | None, float, dict[str, Any]]]:  # fmt: skip
    """Train (or resume) several runs of one model together; returns what :func:`~benchmark.train.train_run`
    returns, per run. Runs that reach their plateau or their budget leave the pack; the others go on."""
    loops = [RunLoop(run, run_dir, device, progress) for run, run_dir in zip(runs, run_dirs)]
    pack = Pack([loop.trainer for loop in loops])
    results: dict[int, tuple[Trainer, str | None, float, dict[str, Any]]] = {}
    try:
        while True:
            active = [i for i, loop in enumerate(loops) if i not in results and not loop.finished]
            if not active:
                break
            logs = pack.step([loops[i].trainer for i in active], [loops[i].sampler.next() for i in active])
            for i, log in zip(active, logs):
                if isinstance(log, str):
                    results[i] = loops[i].fail(log)
                else:
                    loops[i].after(log)
    finally:
        for loop in loops:
            loop.bar.close()
    return [results[i] if i in results else loop.result() for i, loop in enumerate(loops)]
