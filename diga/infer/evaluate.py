"""Evaluate a stage's model on target val: per-class IoU, mIoU and pixel accuracy, as a metrics JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diga.atomic import write_json
from diga.data.labels import CLASS_NAMES_13, class_names
from diga.provenance import provenance
from diga.runtime.checkpoints import load_segmenter
from diga.runtime.device import device_for
from diga.runtime.metrics import iou_per_class, mean_iou, pixel_accuracy
from diga.runtime.precision import inference_precision_for
from diga.runtime.validation import confusion_on_val


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


def evaluate_checkpoint(settings: dict, seed: int, checkpoint: Path, stage: str, out_path: Path,
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
