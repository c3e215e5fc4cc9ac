"""The one training loop: SGD with a 10x head group, poly LR, NaN guard, CSV log, progress, checkpoints."""

from __future__ import annotations

import csv
import io
import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from diga.atomic import write_text
from diga.errors import DigaError
from diga.runtime import distributed
from diga.train.resume import Resume
from diga.train.sgd import ListedSGD
from diga.train.stop import TrainingInterrupted, stop_on_signals

logger = logging.getLogger(__name__)

# A step returns the loss terms (summed into the loss) and extra statistics (logged only).
StepFn = Callable[[int], tuple[dict[str, torch.Tensor], dict[str, float]]]


class NonFiniteLossError(DigaError, RuntimeError):
    """The loss became NaN or infinite."""


def build_optimizer(backbone_params: list[nn.Parameter], head_params: list[nn.Parameter],
                    optim: dict) -> torch.optim.Optimizer:
    """SGD with two groups: the backbone at lr, the head at lr * head_lr_mult.

    A list naming a tensor more than once (the official backbone listing) gets `ListedSGD`, which updates it once
    per appearance as PyTorch 1.7 did; otherwise PyTorch's SGD."""
    groups = [
        {"params": backbone_params, "lr": optim["lr"], "initial_lr": optim["lr"], "name": "backbone"},
        {"params": head_params, "lr": optim["lr"] * optim["head_lr_mult"],
         "initial_lr": optim["lr"] * optim["head_lr_mult"], "name": "head"},
    ]
    listed = [p for group in groups for p in group["params"]]
    sgd = ListedSGD if len({id(p) for p in listed}) < len(listed) else torch.optim.SGD
    return sgd(groups, lr=optim["lr"], momentum=optim["momentum"], weight_decay=optim["weight_decay"])


def segmenter_optimizer(model: nn.Module, optim: dict) -> torch.optim.Optimizer:
    """The optimiser of a segmentation stage, its backbone listed as `optim.backbone_params` says."""
    return build_optimizer(*model.parameter_groups(optim["backbone_params"]), optim)


def poly_factor(iteration: int, total: int, power: float) -> float:
    """(1 - t / T) ** power."""
    return (1.0 - iteration / total) ** power


def linear_ramp_factor(iteration: int, total: int) -> float:
    """t / T: the official SYNTHIA warm-up's schedule as its code runs (a warm-up call whose arguments landed in
    the wrong places makes the LR rise linearly from 0 over the whole stage)."""
    return iteration / total


def set_poly_lr(optimizer: torch.optim.Optimizer, iteration: int, total: int, power: float,
                schedule: str = "poly") -> float:
    """Scale every group's initial LR by the schedule's factor (poly, or linear_ramp); return the backbone LR."""
    factor = linear_ramp_factor(iteration, total) if schedule == "linear_ramp" else poly_factor(iteration, total, power)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]


class Progress:
    """A tqdm bar with loss and ETA on a terminal; plain log lines every `every` iterations otherwise."""

    def __init__(self, name: str, total: int, every: int, first: int = 0):
        self.name, self.total, self.every, self.first = name, total, every, first
        self.start = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=first, desc=name, dynamic_ncols=True)

    def update(self, row: dict[str, float]) -> None:
        shown = {k: v for k, v in row.items() if k != "iteration"}
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
            self.bar.update(1)
            return
        iteration = int(row["iteration"])
        if iteration % self.every == 0 or iteration == self.total:
            elapsed = time.monotonic() - self.start
            eta = elapsed / (iteration - self.first) * (self.total - iteration)
            terms = " ".join(f"{k} {v:.4g}" for k, v in shown.items())
            print(f"[{self.name}] it {iteration}/{self.total} {terms} elapsed {elapsed:.0f}s eta {eta:.0f}s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def optimise(step: StepFn, optimizer: torch.optim.Optimizer, iteration: int,
             modules: list[nn.Module]) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
    """One iteration: the step's losses, backward, (averaged) gradients, SGD update. No host synchronisation.

    Gradients are cleared before the step runs, so a step may back-propagate micro-batches itself
    (`accumulate`) and return the last one's losses for this backward."""
    optimizer.zero_grad(set_to_none=True)
    terms, stats = step(iteration)
    loss = torch.stack(list(terms.values())).sum()
    loss.backward()
    distributed.average_gradients(distributed.optimizer_params(optimizer))
    optimizer.step()
    distributed.broadcast_buffers(modules)
    return loss, terms, stats


def accumulate(parts: int, losses_of: Callable[[int], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Gradient accumulation: the loss terms of micro-batches 0..parts-1, each scaled by 1/parts and summed.

    All but the last micro-batch are back-propagated here, one at a time, so only one micro-batch's activations
    are alive at once; the last comes back with its graph for the loop's backward. With equal micro-batches and
    mean-reduced losses over per-sample layers (no batch statistics), the summed terms and the accumulated
    gradients are the full batch's, up to float rounding.
    """
    total: dict[str, torch.Tensor] = {}
    for part in range(parts):
        terms = {name: value / parts for name, value in losses_of(part).items()}  # exact for one part
        if part < parts - 1:
            torch.stack(list(terms.values())).sum().backward()
            terms = {name: value.detach() for name, value in terms.items()}
        total = {name: total[name] + value for name, value in terms.items()} if total else terms
    return total


def split_batch(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """`parts` equal micro-batches of a batch (its size must be a multiple of `parts`; the config checks it)."""
    size = len(next(iter(batch.values())))
    if size % parts:
        raise ValueError(f"a batch of {size} cannot be split into {parts} equal micro-batches")
    return [{key: value[i * size // parts:(i + 1) * size // parts] for key, value in batch.items()}
            for i in range(parts)]


class PendingRows:
    """Per-iteration losses kept on the device and read back in one transfer every `log_every` iterations,
    so that the GPU never waits for the host inside the loop; the non-finite check happens at that read."""

    def __init__(self, name: str, rows: list[dict[str, float]], progress: Progress):
        self.name, self.rows, self.progress = name, rows, progress
        self.waiting: list[tuple[int, float, list[str], torch.Tensor, dict]] = []

    def add(self, iteration: int, lr: float, loss: torch.Tensor, terms: dict[str, torch.Tensor], stats: dict) -> None:
        values = distributed.mean(torch.stack([loss.detach(), *(v.detach() for v in terms.values())]))
        self.waiting.append((iteration, lr, list(terms), values, stats))

    def flush(self) -> None:
        if not self.waiting:
            return
        all_values = torch.stack([w[3] for w in self.waiting]).cpu().tolist()  # the one synchronisation
        for (iteration, lr, names, _, stats), values in zip(self.waiting, all_values, strict=True):
            if not math.isfinite(values[0]):
                shown = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, values[1:], strict=True))
                raise NonFiniteLossError(
                    f"{self.name}: the loss is not finite at iteration {iteration + 1} ({shown}). "
                    "Lower optim.lr, check the input images and labels, or the loss weights in the config."
                )
            row = {"iteration": iteration + 1, "loss": values[0], **dict(zip(names, values[1:], strict=True)),
                   "lr": lr, **{k: float(v) for k, v in stats.items()}}
            self.rows.append(row)
            if distributed.is_main():
                self.progress.update(row)
        self.waiting.clear()


def run_training(name: str, step: StepFn, optimizer: torch.optim.Optimizer, iterations: int, power: float,
                 log_every: int, log_csv: Path, resume: Resume | None = None,
                 schedule: str = "poly", stop_at: int | None = None) -> list[dict[str, float]]:
    """Run `iterations` optimisation steps (or the first `stop_at` of a schedule of `iterations`) and write the
    per-iteration log as CSV (atomically).

    With `resume`, training starts from its newest checkpoint (if one matches), saves one every `resume.every`
    iterations, and on SIGTERM/SIGUSR1 saves one after the current iteration and raises TrainingInterrupted.
    With several processes (diga/runtime/distributed.py), gradients are averaged before each step, the logged losses
    are the means over processes, and process 0 writes the log.
    """
    first, rows = 0, []
    if resume is not None and (restored := resume.load()) is not None:
        first, rows = restored
        logger.info("[%s] resumed from %s at iteration %d/%d", name, resume.path, first, iterations)
    end = iterations if stop_at is None else min(stop_at, iterations)
    progress = Progress(name, end, log_every, first)
    pending = PendingRows(name, rows, progress)
    modules = resume.modules() if resume is not None else []
    try:
        with stop_on_signals() as stop:
            for iteration in range(first, end):
                lr = set_poly_lr(optimizer, iteration, iterations, power, schedule)
                loss, terms, stats = optimise(step, optimizer, iteration, modules)
                pending.add(iteration, lr, loss, terms, stats)
                done = iteration + 1
                if done % log_every == 0:
                    pending.flush()
                if distributed.any_process(bool(stop), loss.device) and done < end:
                    pending.flush()  # a non-finite loss raises here, before a checkpoint could keep it
                    if resume is not None:
                        resume.save(done, rows)
                    where = f"saved {resume.path}" if resume is not None else "no checkpoint configured"
                    by = signal.Signals(stop.signal).name if stop else "another process"
                    raise TrainingInterrupted(f"{name}: stopped by {by} after iteration {done}/{iterations} ({where}); "
                                              "run the stage again to resume")
                if resume is not None and resume.due(done, end):
                    pending.flush()
                    resume.save(done, rows)
            pending.flush()
    finally:
        progress.close()
    if distributed.is_main():
        write_csv(log_csv, rows)
    return rows


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
