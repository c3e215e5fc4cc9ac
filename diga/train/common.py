"""What every stage needs: seeding, devices, batches, checkpoints to resume, models, the translator, CE loss."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diga.atomic import save_torch
from diga.data.datasets import SegmentationList
from diga.data.loader import BatchStream  # re-exported: the stages (and others) import it from here
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
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; set train.device: cpu or auto")
    return torch.device(wanted)


def source_train(settings: dict) -> SegmentationList:
    data = settings["data"]
    return SegmentationList(data["source"]["root"], data["source"]["train_list"], data["num_classes"])


def target_train(settings: dict, with_labels: bool | None = None, pseudo_dir: str | None = None) -> SegmentationList:
    data = settings["data"]
    labels = data["target"]["train_has_labels"] if with_labels is None else with_labels
    return SegmentationList(data["target"]["root"], data["target"]["train_list"], data["num_classes"],
                            with_labels=labels, extra_label_dir=pseudo_dir)


def target_val(settings: dict) -> SegmentationList:
    data = settings["data"]
    return SegmentationList(data["target"]["root"], data["target"]["val_list"], data["num_classes"])


batches = BatchStream  # the stages' name for it


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
