"""Resumable training: periodic checkpoints of everything a stage's loop changes, and a clean stop on SIGTERM.

A stage hands `run_training` a `Resume` naming the objects to save: modules, optimizers, batch streams (anything
with `state_dict`/`load_state_dict`), `torch.Generator`s and plain dicts of tensors (updated in place on load).
The loop adds the iteration, the log rows so far and the global RNG states (torch CPU/CUDA, numpy, random).
A module is saved with the buffers its `state_dict` leaves out (registered persistent=False), since a loop may
change them too: the EMA teacher averages every buffer, and so moves its input normalisation constants by rounding.
The file is `<out_dir>/resume.pt`, written to a temporary sibling, flushed to disk and renamed over the previous one,
so a complete checkpoint always exists. It records a fingerprint of the stage's settings and input files, and a
checkpoint from other settings or inputs is ignored (the stage starts from scratch). The stage deletes it once its
outputs are written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diga.atomic import atomic_path
from diga.runtime import distributed

logger = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"


def fingerprint(settings: dict, stage: str, seed: int, inputs: Iterable[str | Path] = ()) -> str:
    """What a checkpoint must match to be resumed: the stage, its settings, seed and input files (size, mtime)."""
    files = []
    for path in inputs:
        stat = Path(path).stat()
        files.append([str(path), stat.st_size, stat.st_mtime_ns])
    # The loader's process count changes no number, so a stage may resume with another one.
    settings = dict(settings, train={k: v for k, v in settings.get("train", {}).items() if k != "loader_workers"})
    payload = json.dumps({"stage": stage, "seed": seed, "settings": settings, "inputs": files}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _capture(obj: Any) -> Any:
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if isinstance(obj, dict):
        return {k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in obj.items()}
    return obj.state_dict()


def _restore(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    elif isinstance(obj, dict):
        for key, value in state.items():
            obj[key] = value.to(obj[key].device) if torch.is_tensor(obj.get(key)) else value
    else:
        obj.load_state_dict(state)


def unsaved_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's buffers that `state_dict` leaves out (persistent=False), copied."""
    saved = module.state_dict(keep_vars=True)
    return {name: buf.detach().cpu().clone() for name, buf in module.named_buffers() if name not in saved}


def restore_buffers(module: torch.nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    for name, value in buffers.items():
        module.get_buffer(name).copy_(value)


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class Resume:
    """Where a stage checkpoints, how often, and what: `objects` maps names to the state to save and restore."""

    path: Path
    every: int
    objects: dict[str, Any]
    fingerprint: str

    def _split(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Modules and optimizers are the same in every process; streams, generators, tensors differ per process."""
        shared = {n: o for n, o in self.objects.items() if isinstance(o, (torch.nn.Module, torch.optim.Optimizer))}
        return shared, {n: o for n, o in self.objects.items() if n not in shared}

    def save(self, iteration: int, rows: list[dict[str, float]]) -> None:
        """Write a checkpoint (a collective call with several processes; process 0 writes the file)."""
        shared, own = self._split()
        ranks = distributed.gather({"rng": rng_states(), "objects": {n: _capture(o) for n, o in own.items()}})
        if distributed.is_main():
            payload = {"fingerprint": self.fingerprint, "iteration": iteration, "rows": rows, "ranks": ranks,
                       "objects": {name: _capture(obj) for name, obj in shared.items()},
                       "buffers": {name: unsaved_buffers(obj) for name, obj in shared.items()
                                   if isinstance(obj, torch.nn.Module)}}
            with atomic_path(self.path) as tmp:
                with open(tmp, "wb") as handle:
                    torch.save(payload, handle)
                    handle.flush()
                    os.fsync(handle.fileno())

    def load(self) -> tuple[int, list[dict[str, float]]] | None:
        """Restore the newest checkpoint into the objects; (iteration, log rows), or None to start afresh."""
        if not self.path.is_file():
            return None
        payload = torch.load(self.path, map_location="cpu", weights_only=False)
        if payload.get("fingerprint") != self.fingerprint or len(payload["ranks"]) != distributed.world_size():
            logger.warning("ignoring %s: it was written with other settings or inputs", self.path)
            return None
        shared, own = self._split()
        mine = payload["ranks"][distributed.rank()]
        for name, obj in shared.items():
            _restore(obj, payload["objects"][name])
        for name, buffers in payload.get("buffers", {}).items():  # none in checkpoints from before they were saved
            restore_buffers(shared[name], buffers)
        for name, obj in own.items():
            _restore(obj, mine["objects"][name])
        set_rng_states(mine["rng"])
        return payload["iteration"], payload["rows"]

    def modules(self) -> list[torch.nn.Module]:
        return [obj for obj in self.objects.values() if isinstance(obj, torch.nn.Module)]

    def due(self, iteration: int, total: int) -> bool:
        """A periodic checkpoint after `iteration` iterations (none after the last: the outputs follow)."""
        return self.every > 0 and iteration % self.every == 0 and iteration < total

    def finish(self) -> None:
        """The stage's outputs are written: the checkpoint is no longer needed."""
        if distributed.is_main():
            self.path.unlink(missing_ok=True)
