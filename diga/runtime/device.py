"""The torch device a job runs on: train.device, one GPU per process when several run."""

from __future__ import annotations

import torch

from diga.config import ConfigError
from diga.runtime import distributed


def device_for(settings: dict) -> torch.device:
    wanted = settings["train"]["device"]
    if wanted in ("auto", "cuda") and distributed.launched() and torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank())  # one GPU per process
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is visible; set train.device: cpu or auto")
    return torch.device(wanted)
