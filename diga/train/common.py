"""What every training stage needs beyond the runtime: its random streams, its view of the settings, its resume
checkpoint, the EMA teacher and logit upsampling."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diga.config import replace
from diga.data.loader import loader_workers
from diga.data.streams import domain_streams
from diga.errors import ConfigError
from diga.method.distill import symmetric_distillation
from diga.runtime import distributed
from diga.runtime.device import device_for
from diga.stages import STAGES, with_leak
from diga.train.resume import RESUME_FILE, Resume, fingerprint


def seed_stage(seed: int, stage: str, round_index: int = 0) -> torch.Generator:
    """Seed torch's global RNG (weight init, dropout) and return a generator for data and mixing.

    With several processes, the weights start the same everywhere and each process > 0 draws its own data.
    """
    entropy = [seed, STAGES[stage].stream, round_index]  # each stage its own stream
    state = np.random.SeedSequence(entropy).generate_state(2)
    torch.manual_seed(int(state[0]))
    if distributed.rank() > 0:
        state = np.random.SeedSequence([*entropy, distributed.rank()]).generate_state(2)
    generator = torch.Generator()
    generator.manual_seed(int(state[1]))
    return generator


def stage_settings(settings: dict, stage: str) -> dict:
    """`settings` as one training stage sees them: its `augment` keys over the global photometric augmentation,
    its `scale` (if set) instead of data.scale, and `train.loader_workers: auto` resolved to a number per
    BatchStream, so that the stage's streams (one per domain and resize stream) share the cores between them."""
    section = settings["stages"][stage]
    override = section.get("augment") or {}
    if override:
        settings = replace(settings, augment=replace(settings["augment"], **override))
    if section.get("scale") is not None:
        settings = replace(settings, data=replace(settings["data"], scale=list(section["scale"])))
    if settings["train"]["loader_workers"] == "auto":
        domains = with_leak(STAGES[stage].domains, section)
        streams = sum(len(domain_streams(settings["data"][domain])) for domain in domains)
        total = loader_workers("auto", device_for(settings))
        workers = total and max(1, total // streams)
        settings = replace(settings, train=replace(settings["train"], loader_workers=workers))
    return settings


def stage_resume(settings: dict, out_dir: Path, stage: str, seed: int, objects: dict[str, Any],
                 inputs: tuple[str | Path, ...] = ()) -> Resume:
    """The checkpoint of a training stage: `<out_dir>/resume.pt`, every `train.checkpoint_every` iterations."""
    return Resume(Path(out_dir) / RESUME_FILE, settings["train"]["checkpoint_every"], objects,
                  fingerprint(settings, stage, seed, inputs))


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def make_teacher(student: nn.Module, settings: dict) -> nn.Module:
    """A frozen copy of the student; eval mode unless the config asks for the official train-mode quirk."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.train(settings["ema"]["teacher_train_mode"])
    return teacher


def loss_heads(student: nn.Module, section: dict, stage: str) -> list[tuple[str, str, float]]:
    """(loss-name suffix, output field, weight) of each logits map that the stage's losses apply to: the main logits,
    and HRNet + OCR's auxiliary logits at stages.<stage>.aux_weight (every loss term alike, as the official
    semi-supervised code weighs them)."""
    heads = [("", "logits", 1.0)]
    if section.get("aux_weight", 0) > 0:
        if not hasattr(student, "head") or not hasattr(student.head, "aux_head"):
            raise ConfigError(f"stages.{stage}.aux_weight is {section['aux_weight']} but this network has no "
                              "auxiliary logits: set model.arch: hrnet_ocr, or aux_weight: 0")
        heads.append(("_aux", "aux", section["aux_weight"]))
    return heads


def view_losses(heads: list[tuple[str, str, float]], student_out: Any, teacher_out: Any, labels: torch.Tensor,
                seg_loss: Any, section: dict, student_mixed: Any = None, mixed_labels: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
    """Per head (loss_heads): CE of the clean labelled view, CE of the ClassMix images (self-training), and the
    symmetric distillation between the two views; the outputs hold [clean, second view] along the batch."""
    size = labels.shape[-2:]
    losses = {}
    for name, key, weight in heads:
        s_clean, s_view = upsample(getattr(student_out, key), size).chunk(2)
        t_clean, t_view = upsample(getattr(teacher_out, key), size).chunk(2)
        losses[f"ce{name}"] = weight * seg_loss(s_clean, labels)
        if student_mixed is not None:
            losses[f"ce_mix{name}"] = weight * seg_loss(upsample(getattr(student_mixed, key), size), mixed_labels)
        distill = symmetric_distillation(s_clean, s_view, t_clean, t_view, section["reverse_scale"])
        losses[f"skd{name}"] = weight * section["distill_weight"] * distill
    return losses
