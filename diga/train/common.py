"""What every stage needs: seeding, devices, batches, checkpoints to resume, models, the translator, CE loss."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diga.atomic import save_torch
from diga.config import ConfigError
from diga.data.datasets import SegmentationList
from diga.data.loader import BatchStream, loader_workers  # BatchStream re-exported: stages import it from here
from diga.data.streams import Size, domain_streams, stream_counts, stream_list
from diga.models.deeplabv2 import DeepLabV2, build_segmenter
from diga.models.translator import Generator, build_generator
from diga.provenance import provenance
from diga.train import distributed
from diga.train.resume import RESUME_FILE, Resume, fingerprint

# Fixed stream ids: each stage gets its own reproducible random stream for a given seed.
STAGE_STREAMS = {"translator": 1, "source_only": 2, "warmup": 3, "oracle": 4, "selftrain": 5}


def seed_stage(seed: int, stage: str, round_index: int = 0) -> torch.Generator:
    """Seed torch's global RNG (weight init, dropout) and return a generator for data and mixing.

    With several processes, the weights start the same everywhere and each process > 0 draws its own data.
    """
    entropy = [seed, STAGE_STREAMS[stage], round_index]
    state = np.random.SeedSequence(entropy).generate_state(2)
    torch.manual_seed(int(state[0]))
    if distributed.rank() > 0:
        state = np.random.SeedSequence([*entropy, distributed.rank()]).generate_state(2)
    generator = torch.Generator()
    generator.manual_seed(int(state[1]))
    return generator


def device_for(settings: dict) -> torch.device:
    wanted = settings["train"]["device"]
    if wanted in ("auto", "cuda") and distributed.launched() and torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank())  # one GPU per process
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is visible; set train.device: cpu or auto")
    return torch.device(wanted)


def source_train(settings: dict, size: Size | None = None) -> SegmentationList:
    """Source train at its own size, or its resize stream of `size` (see diga.data.streams)."""
    data = settings["data"]
    return SegmentationList(data["source"]["root"], stream_list(data["source"]["train_list"], size),
                            data["num_classes"])


def target_train(settings: dict, with_labels: bool | None = None, pseudo_dir: str | None = None,
                 size: Size | None = None) -> SegmentationList:
    """Target train (at a stream's `size` if given; full-size pseudo-labels are then resized to it, nearest)."""
    data = settings["data"]
    labels = data["target"]["train_has_labels"] if with_labels is None else with_labels
    return SegmentationList(data["target"]["root"], stream_list(data["target"]["train_list"], size),
                            data["num_classes"], with_labels=labels, extra_label_dir=pseudo_dir,
                            resize_extra_labels=size is not None)


def target_val(settings: dict) -> SegmentationList:
    data = settings["data"]
    return SegmentationList(data["target"]["root"], data["target"]["val_list"], data["num_classes"])


batches = BatchStream  # the stages' name for it


class ComposedStream:
    """One batch from each of several streams (one per resize stream of a domain), concatenated in stream order.

    The parts draw in a fixed order from their generators, so it is as deterministic as they are; its state is
    theirs, in order.
    """

    def __init__(self, parts: list[BatchStream]):
        self.parts = parts

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        drawn = [next(part) for part in self.parts]
        return {key: torch.cat([batch[key] for batch in drawn]) for key in drawn[0]}

    def state_dict(self) -> dict[str, list]:
        return {"parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state: dict[str, list]) -> None:
        if len(state["parts"]) != len(self.parts):
            raise ValueError(f"a resume state of {len(state['parts'])} streams for {len(self.parts)} streams")
        for part, part_state in zip(self.parts, state["parts"], strict=True):
            part.load_state_dict(part_state)

    def close(self) -> None:
        """Stop the parts' loader workers (they also stop when the stream is garbage collected)."""
        for part in self.parts:
            part.close()


def domain_batches(settings: dict, domain: str, batch: int | list[int], generator: torch.Generator,
                   device: torch.device, **dataset_options) -> ComposedStream:
    """A stage's batches of one domain ('source' or 'target'): `batch` split over data.<domain>.streams, each
    stream's share drawn (scaled, cropped, flipped) by a BatchStream over that stream's list.

    `dataset_options` go to target_train (with_labels, pseudo_dir). With no streams configured this is one
    BatchStream over the plain list, drawing exactly as before streams existed.
    """
    sizes = domain_streams(settings["data"][domain])
    dataset = source_train if domain == "source" else target_train
    return ComposedStream([batches(dataset(settings, size=size, **dataset_options), count, settings, generator, device)
                           for size, count in zip(sizes, stream_counts(batch, len(sizes)), strict=True) if count > 0])


# The domains each training stage draws batches from (warm-up: the target too with the BN-leak quirk).
STAGE_DOMAINS = {"translator": ("source", "target"), "source_only": ("source",), "oracle": ("target",),
                 "warmup": ("source",), "selftrain": ("source", "target")}


def stage_settings(settings: dict, stage: str) -> dict:
    """`settings` as one training stage sees them: its `augment` keys over the global photometric augmentation,
    its `scale` (if set) instead of data.scale, and `train.loader_workers: auto` resolved to a number per
    BatchStream, so that the stage's streams (one per domain and resize stream) share the cores between them."""
    section = settings["translator"] if stage == "translator" else settings.get("stages", {}).get(stage, {})
    override = section.get("augment") or {}
    if override:
        settings = dict(settings, augment={**settings["augment"], **override})
    if section.get("scale") is not None:
        settings = dict(settings, data=dict(settings["data"], scale=list(section["scale"])))
    if settings["train"]["loader_workers"] == "auto":
        domains = STAGE_DOMAINS[stage] + (("target",) if section.get("target_bn_leak") else ())
        streams = sum(len(domain_streams(settings["data"][domain])) for domain in domains)
        total = loader_workers("auto", device_for(settings))
        settings = dict(settings, train=dict(settings["train"], loader_workers=total and max(1, total // streams)))
    return settings


def stage_resume(settings: dict, out_dir: Path, stage: str, seed: int, objects: dict[str, Any],
                 inputs: tuple[str | Path, ...] = ()) -> Resume:
    """The checkpoint of a training stage: `<out_dir>/resume.pt`, every `train.checkpoint_every` iterations."""
    return Resume(Path(out_dir) / RESUME_FILE, settings["train"]["checkpoint_every"], objects,
                  fingerprint(settings, stage, seed, inputs))


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def new_segmenter(settings: dict, device: torch.device) -> DeepLabV2:
    return build_segmenter(settings["model"], settings["data"]["num_classes"]).to(device)


def load_segmenter(path: str | Path | dict, device: torch.device, which: str = "student") -> DeepLabV2:
    """Rebuild a segmenter from a stage checkpoint (the architecture is stored with the weights).

    `path` may also be the already loaded checkpoint, so a caller needing several of its parts reads it once.
    """
    checkpoint = path if isinstance(path, dict) else torch.load(path, map_location="cpu", weights_only=False)
    architecture = {k: v for k, v in checkpoint["model_config"].items() if k != "num_classes"}
    model = build_segmenter(dict(architecture, init="random"), checkpoint["model_config"]["num_classes"])
    model.load_state_dict(checkpoint[which])
    return model.to(device)


def make_teacher(student: nn.Module, settings: dict) -> nn.Module:
    """A frozen copy of the student; eval mode unless the config asks for the official train-mode quirk."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.train(settings["ema"]["teacher_train_mode"])
    return teacher


def load_translator(path: str | Path, device: torch.device) -> Generator:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    generator = build_generator(checkpoint["translator_config"])
    generator.load_state_dict(checkpoint["source_to_target"])
    generator.requires_grad_(False)
    return generator.to(device).eval()


def save_segmenter(path: str | Path, stage: str, settings: dict, student: nn.Module,
                   teacher: nn.Module | None, extra: dict[str, Any] | None = None) -> None:
    save_torch(path, {
        "stage": stage,
        "model_config": student.config,
        "student": student.state_dict(),
        "teacher": teacher.state_dict() if teacher is not None else None,
        "provenance": provenance(settings),
        **(extra or {}),
    })
