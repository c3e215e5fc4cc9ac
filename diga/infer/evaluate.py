"""Evaluate a stage's model on target val, or on a dataset of dg.targets (domain generalisation): per-class IoU,
mIoU and pixel accuracy, as a metrics JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diga.atomic import write_json
from diga.data.datasets import SegmentationList
from diga.data.labels import CLASS_NAMES_13, class_names
from diga.errors import ConfigError
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
    """The stage's model on target val (data.target)."""
    return _evaluate(settings, seed, checkpoint, stage, out_path, variant, kind, dataset=None, extra={})


def evaluate_on_dg_target(settings: dict, seed: int, checkpoint: Path, stage: str, target: str, out_path: Path,
                          variant: str = "main", kind: str = "last") -> dict:
    """The stage's model on one dataset of dg.targets (domain generalisation), at its evaluation size."""
    targets = {entry["name"]: entry for entry in settings["dg"]["targets"]}
    if target not in targets:
        raise ConfigError(f"dg.targets has no target {target!r}; its targets are {', '.join(targets) or 'none'}")
    entry = targets[target]
    dataset = SegmentationList(entry["root"], entry["val_list"], settings["data"]["num_classes"], size=entry["size"])
    return _evaluate(settings, seed, checkpoint, stage, out_path, variant, kind, dataset,
                     {"dg_target": target, "eval_size": entry["size"]})


def _evaluate(settings: dict, seed: int, checkpoint: Path, stage: str, out_path: Path, variant: str, kind: str,
              dataset: SegmentationList | None, extra: dict) -> dict:
    device = device_for(settings)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    precision = inference_precision_for(settings, device)
    model = precision.place(load_segmenter(state, device, "student").eval())
    confusion = confusion_on_val(settings, model, device, dataset)
    result = {"benchmark": settings["benchmark"], "stage": stage, "variant": variant, "seed": seed,
              "checkpoint": kind, "model": "student", **extra,
              **metrics_from_confusion(confusion), "confusion": confusion.tolist()}
    if state.get("teacher") is not None:  # the EMA teacher, for reference
        teacher = precision.place(load_segmenter(state, device, "teacher").eval())
        result["teacher_miou"] = metrics_from_confusion(confusion_on_val(settings, teacher, device, dataset))["miou"]
    if "split" in state:  # a semi-supervised model: the labelled split it was trained on
        result["semisup_split"] = state["split"]
    if "val_miou" in state:  # a best-on-val checkpoint: when it was taken
        result["checkpoint_iteration"], result["checkpoint_val_miou"] = state["iteration"], state["val_miou"]
    result["provenance"] = provenance(settings)
    result["training_provenance"] = state.get("provenance")  # the config and code that trained the model
    write_json(out_path, result)
    return result
