"""The confusion matrix of a model over target val, multi-scale: what evaluation and best-on-val checkpoints
both measure."""

from __future__ import annotations

import logging

import numpy as np
import torch

from diga.data.datasets import SegmentationList
from diga.data.loader import in_order
from diga.runtime.datasets import target_val
from diga.runtime.metrics import confusion_matrix
from diga.runtime.precision import inference_precision_for
from diga.runtime.predict import multiscale_logits

logger = logging.getLogger(__name__)


@torch.no_grad()
def confusion_on_val(settings: dict, model: torch.nn.Module, device: torch.device,
                     dataset: SegmentationList | None = None) -> np.ndarray:
    """Confusion matrix of `model` over target val (or `dataset`). Images are decoded by loader workers on a GPU,
    and the counts stay on the device until the end, so the GPU does not wait for the host between images."""
    dataset = dataset if dataset is not None else target_val(settings)
    num_classes = settings["data"]["num_classes"]
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    batch = settings["evaluate"]["batch"]
    precision = inference_precision_for(settings, device)
    done = 0
    for index, items in enumerate(in_order(dataset, batch, device, settings["train"]["loader_workers"])):
        shapes = {tuple(item["image"].shape) for item in items}
        groups = [items] if len(shapes) == 1 else [[item] for item in items]  # mixed sizes: one at a time
        for group in groups:
            images = torch.stack([item["image"] for item in group]).to(device, non_blocking=True)
            labels = torch.stack([item["label"] for item in group]).to(device, non_blocking=True)
            prediction = multiscale_logits(model, images, settings["evaluate"]["scales"], precision).argmax(1)
            confusion += confusion_matrix(prediction, labels, num_classes)
        done += len(items)
        if (index + 1) % 50 == 0:
            logger.info("[evaluate] %d/%d images", done, len(dataset))
    return confusion.cpu().numpy()
