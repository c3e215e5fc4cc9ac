"""Evaluate a stage's model on target val: per-class IoU, mIoU and pixel accuracy, as a metrics JSON."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from diga.atomic import write_json
from diga.data.labels import CLASS_NAMES_13, class_names
from diga.data.loader import in_order
from diga.infer.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from diga.infer.predict import multiscale_logits
from diga.provenance import provenance
from diga.train.common import device_for, load_segmenter, target_val
from diga.train.precision import inference_precision_for

logger = logging.getLogger(__name__)


@torch.no_grad()
def confusion_on_val(settings: dict, model: torch.nn.Module, device: torch.device) -> np.ndarray:
    """Confusion matrix of `model` over target val. Images are decoded by loader workers on a GPU, and the counts
    stay on the device until the end, so the GPU does not wait for the host between images."""
    dataset = target_val(settings)
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


def metrics_from_confusion(confusion: np.ndarray) -> dict:
    names = class_names(confusion.shape[0])
    ious = iou_per_class(confusion)
    per_class = {name: (None if np.isnan(v) else round(100 * float(v), 4)) for name, v in zip(names, ious, strict=True)}
    result = {
        "per_class_iou": per_class,
        "miou": round(100 * mean_iou(confusion), 4),
        "pixel_accuracy": round(100 * pixel_accuracy(confusion), 4),
    }
    if len(names) == 16:  # SYNTHIA -> Cityscapes: mIoU16 is "miou"; mIoU13 leaves out wall, fence and pole
        subset = [ious[names.index(name)] for name in CLASS_NAMES_13]
        result["miou13"] = round(100 * float(np.nanmean(subset)), 4) if np.isfinite(subset).any() else None
    return result


def evaluate_checkpoint(settings: dict, checkpoint: Path, stage: str, seed: int, out_path: Path,
                        variant: str = "main", kind: str = "last") -> dict:
    device = device_for(settings)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    precision = inference_precision_for(settings, device)
    model = precision.place(load_segmenter(state, device, "student").eval())
    confusion = confusion_on_val(settings, model, device)
    result = {"benchmark": settings["benchmark"], "stage": stage, "variant": variant, "seed": seed,
              "checkpoint": kind, "model": "student",
              **metrics_from_confusion(confusion), "confusion": confusion.tolist()}
    if state.get("teacher") is not None:  # the EMA teacher, for reference
        teacher = precision.place(load_segmenter(state, device, "teacher").eval())
        result["teacher_miou"] = metrics_from_confusion(confusion_on_val(settings, teacher, device))["miou"]
    if "val_miou" in state:  # a best-on-val checkpoint: when it was taken
        result["checkpoint_iteration"], result["checkpoint_val_miou"] = state["iteration"], state["val_miou"]
    result["provenance"] = provenance(settings)
    result["training_provenance"] = state.get("provenance")  # the config and code that trained the model
    write_json(out_path, result)
    return result
