"""Training batches: an endless, seeded stream of augmented crops, optionally loaded by worker processes.

The numbers do not depend on the number of workers or on their timing. The stream alone draws, per batch, the
item indices (from a shuffled order) and one seed per item, from its own generator; each item's rescale, crop
and flip then use a private generator seeded with that seed, wherever it runs. Workers only compute, and the
batches come back in the order they were planned. Items are computed on one thread everywhere (bilinear resizing
rounds differently with more), so the batches do not depend on `--threads` either. The saved state is the
position after the last batch handed out (not the prefetched ones); loading a state discards prefetched work.
"""

from __future__ import annotations

import os
import signal
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils.data import DataLoader, Dataset

from diga.data.transforms import filtered_crop

SEED_RANGE = 2**62
MAX_AUTO_WORKERS = 8


def loader_workers(choice: int | str, device: torch.device) -> int:
    """`train.loader_workers`: a number, or 'auto': none on the CPU (training already keeps every core busy), and on
    a GPU up to 8 per training process, leaving that process a core of its own."""
    if choice != "auto":
        return int(choice)
    if device.type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun: processes on this node
    return max(1, min(MAX_AUTO_WORKERS, per_process - 1))


class _Schedule:
    """Which items each batch holds and their seeds, drawn in order; a DataLoader's batch sampler.

    `consumed` is the state after the last batch handed out; every new iteration starts from it, and `pending`
    holds the state after each batch planned since, oldest first.
    """

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size = size, batch_size
        generator = torch.Generator()
        generator.manual_seed(seed)
        self.consumed = {"order": [], "generator": generator.get_state()}
        self.pending: deque[dict] = deque()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        self.pending.clear()
        generator = torch.Generator()
        generator.set_state(self.consumed["generator"])
        return self._draw(generator, list(self.consumed["order"]))

    def _draw(self, generator: torch.Generator, order: list[int]) -> Iterator[list[tuple[int, int]]]:
        while True:
            while len(order) < self.batch_size:
                order = order + torch.randperm(self.size, generator=generator).tolist()
            chosen, order = order[: self.batch_size], order[self.batch_size:]
            seeds = torch.randint(SEED_RANGE, (self.batch_size,), generator=generator).tolist()
            self.pending.append({"order": order, "generator": generator.get_state()})
            yield list(zip(chosen, seeds, strict=True))

    def consume(self) -> None:
        self.consumed = self.pending.popleft()


class _Crops(Dataset):
    """Item (index, seed) -> the dataset's item, rescaled, cropped and flipped with a generator seeded by `seed`."""

    def __init__(self, dataset: Dataset, crop: tuple[int, int], scale: tuple[float, float], tries: int,
                 geometry: dict[str, bool]):
        self.dataset, self.crop, self.scale, self.tries, self.geometry = dataset, crop, scale, tries, geometry

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        return filtered_crop(self.dataset[index], self.crop, self.scale, torch.Generator().manual_seed(seed),
                             self.tries, **self.geometry)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread, as in a worker: bilinear resizing rounds differently with more threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _stack(items: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0] if torch.is_tensor(items[0][key])}


def _worker_init(_worker_id: int) -> None:
    # Slurm signals every process of the job; the training process saves a checkpoint and then stops the workers,
    # which must not die first (the loader would fail mid-iteration).
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def _shut_down(live: list) -> None:
    """Stop the workers of the running loader iterator, if any (also the stream's finaliser)."""
    iterator, live[0] = live[0], None
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


class BatchStream:
    """An endless stream of augmented (rescale, crop, flip, crop filter) batches in a seeded random order.

    `generator` (the stage's) is drawn from once, here, to seed the stream's own generator, so that loading ahead
    never touches it. `workers` processes (default: `train.loader_workers`) load batches, each `prefetch` batches
    ahead; 0 loads them in this process when asked. On CUDA, batches are pinned and copied asynchronously.
    Call `close()` (or use it as a context manager) to stop the workers early; they also stop when the stream is
    garbage collected. A closed stream may be used again: it restarts its workers from where it stood.
    """

    def __init__(self, dataset: Dataset, batch_size: int, settings: dict, generator: torch.Generator,
                 device: torch.device, *, workers: int | str | None = None, prefetch: int = 2):
        data = settings["data"]
        self.batch_size, self.device, self.prefetch = batch_size, torch.device(device), prefetch
        self.workers = loader_workers(settings["train"]["loader_workers"] if workers is None else workers,
                                      self.device)
        geometry = {"independent": data.get("scale_axes", "joint") == "independent",
                    "resize_small": data.get("small_images", "pad") == "resize"}
        self._crops = _Crops(dataset, tuple(data["crop"]), tuple(data["scale"]), data["crop_filter_tries"], geometry)
        self._schedule = _Schedule(len(dataset), batch_size, int(torch.randint(SEED_RANGE, (), generator=generator)))
        self._live: list = [None]  # the loader's iterator, in a list the finaliser can reach without the stream
        weakref.finalize(self, _shut_down, self._live)

    def _start(self) -> Iterator[dict[str, torch.Tensor]]:
        parallel = self.workers > 0
        loader = DataLoader(self._crops, batch_sampler=self._schedule, num_workers=self.workers, collate_fn=_stack,
                            pin_memory=self.device.type == "cuda", worker_init_fn=_worker_init if parallel else None,
                            prefetch_factor=self.prefetch if parallel else None,
                            # Its own generator: the DataLoader draws a worker base seed (unused here) from it,
                            # instead of from torch's global RNG, which the stage's checkpoints cover.
                            generator=torch.Generator())
        return iter(loader)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._live[0] is None:
            self._live[0] = self._start()
        if self.workers:
            batch = next(self._live[0])
        else:
            with _one_thread():
                batch = next(self._live[0])
        self._schedule.consume()
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}

    def state_dict(self) -> dict:
        consumed = self._schedule.consumed
        return {"order": list(consumed["order"]), "generator": consumed["generator"].clone()}

    def load_state_dict(self, state: dict) -> None:
        self.close()  # anything loaded ahead belongs to the old position
        self._schedule.consumed = {"order": list(state["order"]), "generator": state["generator"].clone()}

    def close(self) -> None:
        _shut_down(self._live)

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def in_order(dataset: Dataset, batch_size: int, device: torch.device, workers: int | str) -> Iterator[list[dict]]:
    """The dataset's items in order, `batch_size` at a time (lists of items, which may differ in size), decoded by
    `workers` processes ahead of the consumer ('auto': as for training, none on the CPU) and pinned on CUDA.

    Evaluation and pseudo-labelling read full-size images, whose PNG decoding would otherwise leave a GPU idle.
    """
    workers = loader_workers(workers, torch.device(device))
    if workers == 0:
        for start in range(0, len(dataset), batch_size):
            yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        return
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                          collate_fn=list, pin_memory=torch.device(device).type == "cuda", prefetch_factor=4,
                          worker_init_fn=_worker_init)
