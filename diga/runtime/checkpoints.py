"""Stage checkpoints: a segmenter built or rebuilt from one (the architecture is stored with the weights),
the frozen translator, and the saved form with its provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from diga.atomic import save_torch
from diga.models.factory import build_segmenter
from diga.models.translator import Generator, build_generator
from diga.provenance import provenance


def new_segmenter(settings: dict, device: torch.device) -> nn.Module:
    return build_segmenter(settings["model"], settings["data"]["num_classes"]).to(device)


def load_segmenter(path: str | Path | dict, device: torch.device, which: str = "student") -> nn.Module:
    """Rebuild a segmenter from a stage checkpoint (the architecture is stored with the weights).

    `path` may also be the already loaded checkpoint, so a caller needing several of its parts reads it once.
    """
    checkpoint = path if isinstance(path, dict) else torch.load(path, map_location="cpu", weights_only=False)
    architecture = {k: v for k, v in checkpoint["model_config"].items() if k != "num_classes"}
    model = build_segmenter(dict(architecture, init="random"), checkpoint["model_config"]["num_classes"])
    model.load_state_dict(checkpoint[which])
    return model.to(device)


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
