"""Numeric precision, memory layout and compilation of the forward passes.

`train.precision: auto` is bf16 autocast with channels_last on CUDA (7x the fp32 eager speed of the paper's
network on an H200, measured by a stand-alone script) and plain fp32 on CPU, where bf16 kernels differ
from one CPU to the next (and so would the numbers).
Losses, softmax and the EMA always run in fp32: `Precision.run` returns fp32 outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from diga.config import replace

logger = logging.getLogger(__name__)

MODES = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class Precision:
    mode: str                 # fp32 (IEEE), tf32 (TF32 matrix units, fp32 storage) or bf16 (autocast)
    channels_last: bool
    compile: bool
    device_type: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"train.precision must be auto or one of {MODES}, not {self.mode!r}")
        if self.device_type == "cuda":  # process-wide switches: fp32 means IEEE fp32, not silently TF32
            fp32 = "tf32" if self.mode == "tf32" else "ieee"
            torch.backends.cuda.matmul.fp32_precision = fp32
            torch.backends.cudnn.conv.fp32_precision = fp32

    def autocast(self):
        if self.mode == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return nullcontext()

    def place(self, module: nn.Module) -> nn.Module:
        """Put a module's weights in the layout its forward passes use (in place); returns the module."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def forward(self, module: nn.Module) -> Callable[..., Any]:
        """The callable that runs `module`: compiled when train.compile is set, else the module itself."""
        return Compiled(module) if self.compile else module

    def run(self, forward: Callable[..., Any], images: torch.Tensor) -> Any:
        """Forward under autocast; floating outputs (a tensor or a tuple of them) come back in fp32."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = forward(images)
        return _to_fp32(out)


def _to_fp32(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.float()
    if isinstance(out, tuple) and hasattr(out, "_replace"):  # a NamedTuple such as SegOutput
        return type(out)(*(_to_fp32(v) for v in out))
    if isinstance(out, list):  # a multi-scale discriminator's outputs
        return [_to_fp32(v) for v in out]
    return out


class Compiled:
    """torch.compile of a module that falls back to eager, with one warning, if compilation fails."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.compiled: Callable[..., Any] | None = torch.compile(module)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as error:  # noqa: BLE001 - any compiler failure: run eager instead
                logger.warning("[precision] torch.compile failed (%s: %s); running eager. Set train.compile: false "
                               "to skip the attempt.", type(error).__name__, str(error)[:200])
                self.compiled = None
        return self.module(*args)


def precision_for(settings: dict, device: torch.device) -> Precision:
    """Resolve train.precision / channels_last ('auto': bf16 + channels_last on CUDA, fp32 elsewhere)."""
    train = settings["train"]
    cuda = device.type == "cuda"
    mode = train["precision"]
    if mode == "auto":
        mode = "bf16" if cuda else "fp32"
    channels_last = train["channels_last"]
    if channels_last == "auto":
        channels_last = cuda and mode == "bf16"
    return Precision(mode, bool(channels_last), bool(train["compile"]), device.type)


def inference_precision_for(settings: dict, device: torch.device) -> Precision:
    """The precision of evaluation, pseudo-labels, centroids and best-on-val: `train.inference_precision`, or
    train.precision when it is null (the official code runs inference in fp32)."""
    mode = settings["train"]["inference_precision"]
    if mode is not None:
        settings = replace(settings, train=replace(settings["train"], precision=mode))
    return precision_for(settings, device)
