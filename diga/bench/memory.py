"""`diga bench-memory`: the peak tensor memory of each stage's training iteration, measured on the CPU and
extrapolated to the paper's crop, so that "does it fit a 24 GB card?" has an answer before a GPU is at hand.

On CUDA, `diga bench` reads the allocator's own peak (torch.cuda.max_memory_allocated). A CPU has no such
counter, so `LiveTensorMemory` keeps one: it sees every tensor an operator reads or writes (forward, backward and
the optimiser step go through the dispatcher), counts each storage once, and subtracts it when the storage is
freed. The iteration is run at two small crops: everything that scales with the crop (activations, images,
their gradients) grows linearly with its area, the rest (weights, gradients, momentum) does not, so two points fix
the line, and a third crop can check it (`--crops` takes any number; the fit is least squares).

What it leaves out, so the GPU figure is somewhat higher: cuDNN/cuBLAS workspaces, the allocator's rounding and
the CUDA context (about 0.5 GiB, outside max_memory_allocated too). CPU autocast keeps the same operators in bf16
as CUDA's for this network (convolutions, matrix products), and both keep the losses in fp32.
"""

from __future__ import annotations

import logging
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from diga.errors import UsageError

logger = logging.getLogger(__name__)

GIB = 2**30
# A "24 GB" card holds 24e9 bytes (22.35 GiB); the CUDA context takes about 0.5 GiB of it. A stage "fits" when
# its estimate plus MARGIN is below that: what the estimate leaves out (workspaces, allocator rounding) and its
# error. For the warm-up iteration it came within 7 % of a peak measured on an H200 (benchmarks/RESULTS.md).
CARD_24GB_GIB = 24e9 / GIB - 0.5
MARGIN = 0.10


class LiveTensorMemory(TorchDispatchMode):
    """Bytes of tensor storage alive (among those touched since entering), and their peak.

    A storage is counted from the first operator that reads or writes it: weights and optimiser state are first
    touched in the first iteration, so measure the peak of a later one (`reset_peak`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[int, int] = {}  # storage address -> bytes
        self.current = 0
        self.peak = 0

    def reset_peak(self) -> None:
        self.peak = self.current

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        address, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or address in self.sizes or storage.device.type == "meta":
            return
        self.sizes[address] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        # The storage's Python object lives exactly as long as the storage (PyTorch preserves it), so this runs
        # when the memory is freed.
        weakref.finalize(storage, self._release, address)

    def _release(self, address: int) -> None:
        self.current -= self.sizes.pop(address, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        for value in tree_leaves((args, kwargs, out)):
            if isinstance(value, torch.Tensor):
                self._count(value)
        return out


def iteration_peak_bytes(run, iterations: int = 2) -> int:
    """Peak live tensor bytes of the last of `iterations` calls of `run(i)` (the first ones touch all state)."""
    with LiveTensorMemory() as memory:
        for i in range(iterations - 1):
            run(i)
        memory.reset_peak()
        run(iterations - 1)
    return memory.peak


def fit_line(areas: list[float], values: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of values against areas."""
    n = len(areas)
    mean_a, mean_v = sum(areas) / n, sum(values) / n
    spread = sum((a - mean_a) ** 2 for a in areas)
    slope = sum((a - mean_a) * (v - mean_v) for a, v in zip(areas, values, strict=True)) / spread
    return mean_v - slope * mean_a, slope


def estimate_memory(settings: dict, stages: list[str], modes: list[str], crops: list[tuple[int, int]],
                    target_crop: tuple[int, int], eval_size: tuple[int, int]) -> list[dict]:
    """Per (stage, mode): the measured peak at each crop and the line's value at `target_crop`.

    The evaluate stage scales with the evaluated image instead: its crops are image sizes, extrapolated to
    `eval_size`.
    """
    from diga.bench.harness import MODES, _stage_runner, bench_settings

    eager = [name for name, (_, _, compiled) in MODES.items() if not compiled]
    if any(mode not in eager for mode in modes):
        raise UsageError(f"bench-memory modes must be among {eager} (torch.compile changes the peak little and "
                         f"is not traced here), not {modes}")
    if len({h * w for h, w in crops}) < 2:
        raise UsageError("bench-memory needs at least two --crops of different areas to extrapolate")
    device = torch.device("cpu")
    rows = []
    for stage in stages:
        goal = eval_size if stage == "evaluate" else target_crop
        for mode in modes:
            peaks = []
            for crop in crops:
                logger.info("[bench-memory] %s %s at %dx%d ...", stage, mode, crop[0], crop[1])
                mode_settings = bench_settings(settings, mode)
                mode_settings["data"]["crop"] = list(crop)
                mode_settings["train"]["device"] = "cpu"
                run, _ = _stage_runner(stage, mode_settings, device, crop)
                peaks.append(iteration_peak_bytes(run))
            areas = [h * w for h, w in crops]
            intercept, slope = fit_line(areas, peaks)
            predicted = (intercept + slope * goal[0] * goal[1]) / GIB
            row = {"stage": stage, "mode": mode,
                   **{f"peak_gib_{h}x{w}": round(p / GIB, 4) for (h, w), p in zip(crops, peaks, strict=True)},
                   "fixed_gib": round(intercept / GIB, 3), "gib_per_megapixel": round(slope * 1e6 / GIB, 3),
                   "at": f"{goal[0]}x{goal[1]}", "predicted_peak_gib": round(predicted, 2),
                   "fits_24gb": predicted * (1 + MARGIN) <= CARD_24GB_GIB}
            logger.info("[bench-memory] %s %s: %.2f GiB at %dx%d", stage, mode, predicted, goal[0], goal[1])
            rows.append(row)
    return rows
