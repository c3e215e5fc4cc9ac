"""`diga bench`: time one iteration of each stage in each precision/layout mode, side by side in one process.

Every stage runs its real step function (diga/train/*: the same losses, EMA, mixing and selection as training)
on synthetic batches already on the device, so the figures are the network's cost without the data loader
(which `--stages data` measures on its own). The fp32 eager baseline runs first; every other mode is reported as
a ratio to it. FLOPs are counted once per stage with torch.utils.flop_counter (they do not depend on the
mode), and the matrix-unit peak of each mode is measured here with a large matmul.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diga.errors import UsageError
from diga.runtime.precision import Precision

logger = logging.getLogger(__name__)

# name -> (train.precision, channels_last, compile)
MODES = {
    "fp32": ("fp32", False, False),
    "tf32": ("tf32", False, False),
    "bf16": ("bf16", False, False),
    "bf16+cl": ("bf16", True, False),
    "bf16+cl+compile": ("bf16", True, True),
}


@dataclass
class Timing:
    stage: str
    mode: str
    ms: float                 # median per iteration (per image for evaluate)
    images: int               # crops (or images) the iteration consumes from the data
    peak_gib: float | None    # peak allocated device memory (CUDA only)
    flop: float | None        # per iteration, counted


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(run: Callable[[int], object], device: torch.device, iterations: int, warmup: int) -> float:
    """Median wall time of `run(i)` over `iterations` calls, after `warmup` untimed calls, device synchronised."""
    for i in range(warmup):
        run(i)
    times = []
    for i in range(warmup, warmup + iterations):
        synchronize(device)
        start = time.perf_counter()
        run(i)
        synchronize(device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def count_flop(run: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return float(counter.get_total_flops())


def matmul_peak_tflops(mode: str, device: torch.device) -> float:
    """The measured rate of a large square matmul in this mode's arithmetic (TFLOP/s)."""
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    # A CPU without native bf16 emulates it: 1024^3 takes 2.4 s there (13 runs), 256^3 about 0.04 s.
    n = 8192 if device.type == "cuda" else 256 if dtype == torch.bfloat16 else 1024
    Precision(mode, False, False, device.type)  # sets the TF32 switches for fp32/tf32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = [median_ms(lambda _: a @ b, device, iterations=1, warmup=0) for _ in range(3 + 10)][3:]
    return 2 * n**3 / (min(times) / 1000) / 1e12  # the best run: a peak, not a typical rate


class FixedBatches:
    """The same random batch every time, on the device: labels are blocks of classes, like a street scene's
    regions, so that class mixing and centroid updates do real work."""

    def __init__(self, batch: int, crop: tuple[int, int], num_classes: int, device: torch.device, seed: int,
                 pseudo: bool = False):
        generator = torch.Generator().manual_seed(seed)
        height, width = crop
        coarse = torch.randint(0, num_classes, (batch, 1, max(1, height // 32), max(1, width // 32)),
                               generator=generator)
        labels = F.interpolate(coarse.float(), size=crop, mode="nearest")[:, 0].long()
        self.batch = {"image": torch.rand(batch, 3, height, width, generator=generator).to(device)}
        if pseudo:  # a target batch: its ground truth only feeds the logged pseudo-label accuracy
            self.batch["truth"] = labels.to(device)
            self.batch["pseudo"] = labels.roll(1, dims=0).to(device)  # plausible, partly wrong pseudo-labels
        else:
            self.batch["label"] = labels.to(device)

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        return self.batch


def total(batch: int | list[int]) -> int:
    """A stage's batch size: an integer, or one count per resize stream."""
    return sum(batch) if isinstance(batch, list) else batch


def bench_settings(settings: dict, mode: str) -> dict:
    """The config with this mode's precision, random initial weights (timing only) and no best-on-val."""
    precision, channels_last, compile_ = MODES[mode]
    out = copy.deepcopy(settings)
    out["train"].update(precision=precision, channels_last=channels_last, compile=compile_)
    out["model"]["init"] = "random"
    out["evaluate"]["val_every"] = 0
    return out


def _stage_runner(stage: str, settings: dict, device: torch.device,
                  eval_size: tuple[int, int]) -> tuple[Callable[[int], object], int]:
    """A function running one iteration of `stage` (given the iteration number), and the images it consumes."""
    from diga.runtime.checkpoints import new_segmenter
    from diga.runtime.precision import precision_for
    from diga.train.common import make_teacher
    from diga.train.loop import optimise, segmenter_optimizer, set_poly_lr

    precision = precision_for(settings, device)
    crop, num_classes = tuple(settings["data"]["crop"]), settings["data"]["num_classes"]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if stage == "evaluate":
        from diga.runtime.predict import multiscale_logits

        model = precision.place(new_segmenter(settings, device).eval())
        image = torch.rand(1, 3, *eval_size, device=device)
        return (lambda _: multiscale_logits(model, image, settings["evaluate"]["scales"], precision)), 1
    if stage == "translator":
        from diga.train.translator import build_translator_training, translator_step

        cfg = settings["stages"]["translator"]
        parts = build_translator_training(settings, device, precision, pretrained_vgg=False)
        source = FixedBatches(total(cfg["batch"]), crop, num_classes, device, 1)
        target = FixedBatches(total(cfg["batch"]), crop, num_classes, device, 2)
        step = translator_step(settings, parts, source, target, precision)
        optimizer, images = parts["opt_gen"], 2 * total(cfg["batch"])
        schedule = cfg["iterations"]
    else:
        from diga.models.translator import build_generator

        # The semi-supervised stages run the same steps without a translator (the photometric second view).
        semisup = stage.startswith("semisup_")
        translator = None
        if not semisup:
            translator = build_generator(settings["stages"]["translator"]).to(device).eval().requires_grad_(False)
            translator = precision.place(translator)
        student = precision.place(new_segmenter(settings, device).train())
        teacher = make_teacher(student, settings)
        optimizer = segmenter_optimizer(student, settings["optim"])
        if stage in ("warmup", "semisup_warmup"):
            from diga.train.warmup import warmup_step

            cfg = settings["stages"][stage]
            source = FixedBatches(total(cfg["batch"]), crop, num_classes, device, 1)
            target = (FixedBatches(total(cfg["batch"]), crop, num_classes, device, 2) if cfg["target_bn_leak"]
                      else None)
            step = warmup_step(settings, student, teacher, translator if cfg.get("mixture") else None, source,
                               target, generator, precision, stage=stage)
            images = total(cfg["batch"]) * (2 if target is not None else 1)
        else:
            from diga.train.selftrain import selftrain_step

            cfg = settings["stages"][stage]
            source = FixedBatches(total(cfg["batch_source"]), crop, num_classes, device, 1)
            target = FixedBatches(total(cfg["batch_target"]), crop, num_classes, device, 2, pseudo=True)
            with torch.no_grad():  # the centroids' dimension: the network's feature channels
                feat_dim = student.eval()(torch.zeros(1, 3, 64, 64, device=device)).feat.shape[1]
            student.train()
            online = {"centroids": torch.randn(num_classes, feat_dim, device=device)}
            valid = torch.ones(num_classes, dtype=torch.bool, device=device)
            step = selftrain_step(settings, student, teacher, translator, source, target, online, valid,
                                  generator, precision, stage=stage)
            images = total(cfg["batch_source"]) + total(cfg["batch_target"])
        schedule = cfg["iterations"]

    def run(iteration: int) -> object:
        iteration %= schedule  # a short test schedule must not run past its end (the poly LR turns negative)
        set_poly_lr(optimizer, iteration, schedule, settings["optim"]["poly_power"])
        return optimise(step, optimizer, iteration, [])

    return run, images


def time_stage(stage: str, settings: dict, mode: str, device: torch.device, iterations: int, warmup: int,
               eval_size: tuple[int, int], with_flop: bool) -> Timing:
    mode_settings = bench_settings(settings, mode)
    run, images = _stage_runner(stage, mode_settings, device, eval_size)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    ms = median_ms(run, device, iterations, warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    flop = count_flop(lambda: run(warmup + iterations)) if with_flop else None
    return Timing(stage, mode, ms, images, peak, flop)


def run_bench(settings: dict, stages: list[str], modes: list[str], device: torch.device, iterations: int,
              warmup: int, eval_size: tuple[int, int], fp32_iterations: int | None = None) -> list[dict]:
    """Time every (stage, mode); fp32 first, so each row carries its speed-up over fp32 measured in this run.
    `fp32_iterations` (default `iterations`) shortens the baseline, which takes seconds per iteration on a GPU
    at the paper's size."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UsageError(f"unknown bench mode(s) {unknown}; choose from {list(MODES)}")
    modes = ["fp32", *[m for m in modes if m != "fp32"]]
    peaks = {mode: matmul_peak_tflops(MODES[mode][0], device) for mode in {MODES[m][0] for m in modes}}
    rows = []
    for stage in stages:
        flop = None
        baseline = None
        for mode in modes:
            logger.info("[bench] %s %s ...", stage, mode)
            short = mode == "fp32" and fp32_iterations  # eager fp32 needs one untimed iteration, no more
            timing = time_stage(stage, settings, mode, device, fp32_iterations if short else iterations,
                                min(warmup, 1) if short else warmup, eval_size, flop is None)
            flop = timing.flop if flop is None else flop
            baseline = timing.ms if baseline is None else baseline
            arithmetic = MODES[mode][0]
            achieved = flop / (timing.ms / 1000) / 1e12 if flop else None
            rows.append({
                "stage": stage, "mode": mode, "ms_median": round(timing.ms, 3),
                "speedup_vs_fp32": round(baseline / timing.ms, 3),
                "images_per_s": round(timing.images / (timing.ms / 1000), 2),
                "peak_gib": None if timing.peak_gib is None else round(timing.peak_gib, 3),
                "tflop_per_iter": None if flop is None else round(flop / 1e12, 8),
                "achieved_tflops": None if achieved is None else round(achieved, 6),
                "peak_tflops_measured": round(peaks[arithmetic], 6),
                "fraction_of_peak": None if achieved is None else round(achieved / peaks[arithmetic], 4),
            })
            # Each figure as soon as it exists, so a run cut short still reports what it measured.
            logger.info("[bench] %s %s: %.1f ms (%.2fx fp32)%s", stage, mode, timing.ms, baseline / timing.ms,
                        f", peak {timing.peak_gib:.2f} GiB" if timing.peak_gib is not None else "")
    return rows


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import os

    return f"CPU, {torch.get_num_threads()} threads of {os.cpu_count()} cores"


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (None shown as '-')."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("-" if row[c] is None else str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_rows(rows: list[dict], path, context: dict) -> None:
    """CSV of the rows, each with the run's context (device, torch version, date, config)."""
    import csv
    import io

    from diga.atomic import write_text

    buffer = io.StringIO()
    full = [{**row, **context} for row in rows]
    writer = csv.DictWriter(buffer, fieldnames=list(full[0]))
    writer.writeheader()
    writer.writerows(full)
    write_text(path, buffer.getvalue())
