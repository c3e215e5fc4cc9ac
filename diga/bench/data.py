"""`diga bench-data`: crops per second through the training loader, for each number of loader workers (with
`--split val`: whole images per second as evaluation and pseudo-labelling read them).

What is timed is what a stage waits for: PNG decode of the prepared files, rescale, crop, flip, crop filter,
collate, and (on CUDA) pinning and the copy to the device, for source-train batches (labelled, so the crop filter
runs). Nothing consumes the batches, so the figure is the loader's ceiling.
"""

from __future__ import annotations

import time

import torch

from diga.bench.harness import synchronize, total
from diga.config import replace
from diga.runtime.datasets import domain_batches


def measure_loader(settings: dict, workers: int, batches: int, batch_size: int | list[int],
                   device: torch.device | None = None, prefetch: int = 2) -> dict:
    """Time `batches` batches after a warm-up long enough to start the workers and drain their first burst (the
    batches they load ahead before the steady state), so the rate is the sustained one. `prefetch` is the
    loader's look-ahead per worker (BatchStream's default), which sets how long that warm-up is."""
    device = torch.device("cpu") if device is None else device
    # The source domain as training reads it: one BatchStream per resize stream (their prepared copies), each with
    # `workers` processes; with no streams, one BatchStream over the plain list.
    settings = replace(settings, train=replace(settings["train"], loader_workers=workers))
    stream = domain_batches(settings, "source", batch_size, torch.Generator().manual_seed(0), device)
    try:
        for _ in range(max(5, 2 * prefetch * workers)):
            next(stream)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(batches):
            next(stream)
        synchronize(device)
        seconds = time.perf_counter() - start
    finally:
        stream.close()
    return {"workers": workers, "batch_size": batch_size, "batches": batches,
            "images_per_s": round(batches * total(batch_size) / seconds, 1),
            "ms_per_batch": round(1000 * seconds / batches, 3)}


def measure_val_loader(settings: dict, workers: int, device: torch.device | None = None) -> dict:
    """Images per second of one pass over target val as evaluation reads it (diga.data.loader.in_order: whole
    images in order, decoded by `workers` processes), worker start-up included, as every evaluation pays it."""
    from diga.data.loader import in_order
    from diga.runtime.datasets import target_val

    device = torch.device("cpu") if device is None else device
    dataset = target_val(settings)
    start = time.perf_counter()
    for items in in_order(dataset, 1, device, workers):
        for item in items:
            image = item["image"].to(device, non_blocking=True)
    synchronize(device)
    seconds = time.perf_counter() - start
    height, width = image.shape[-2:]
    return {"workers": workers, "images": len(dataset), "size": f"{height}x{width}",
            "images_per_s": round(len(dataset) / seconds, 1), "ms_per_image": round(1000 * seconds / len(dataset), 3)}


def bench_loader(settings: dict, workers: list[int], batches: int, batch_size: int | list[int],
                 device: torch.device | None = None, split: str = "train") -> list[dict]:
    """One row per worker count, each with its speed relative to loading in the training process (0 workers).

    `split` 'train': the training loader's augmented crops; 'val': whole target-val images in order."""
    if split == "val":
        rows = [measure_val_loader(settings, count, device) for count in workers]
    else:
        rows = [measure_loader(settings, count, batches, batch_size, device) for count in workers]
    baseline = next((row["images_per_s"] for row in rows if row["workers"] == 0), None)
    for row in rows:
        row["speedup_vs_0"] = None if baseline is None else round(row["images_per_s"] / baseline, 2)
    return rows
