"""Offline pseudo-labels for the target-train images: argmax of the multi-scale max logits, no threshold."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diga.atomic import atomic_dir, write_json
from diga.data.labels import class_names, palette_bytes
from diga.data.loader import in_order
from diga.provenance import provenance
from diga.runtime.checkpoints import load_segmenter
from diga.runtime.datasets import target_train
from diga.runtime.device import device_for
from diga.runtime.metrics import confusion_matrix, iou_per_class, pixel_accuracy
from diga.runtime.precision import inference_precision_for

logger = logging.getLogger(__name__)


def save_label_png(label: np.ndarray, path: Path, num_classes: int = 19) -> None:
    """An 8-bit palette PNG whose pixel index is the trainId (Cityscapes colours)."""
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    image.putpalette(palette_bytes(num_classes))
    image.save(path)


@torch.no_grad()
def make_pseudolabels(settings: dict, checkpoint: Path, out_dir: Path, summary_path: Path) -> dict:
    device = device_for(settings)
    precision = inference_precision_for(settings, device)
    model = precision.place(load_segmenter(checkpoint, device).eval())
    dataset = target_train(settings)
    num_classes = settings["data"]["num_classes"]
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    counts = np.zeros(num_classes, dtype=np.int64)
    from diga.runtime.predict import multiscale_logits

    with atomic_dir(out_dir) as tmp:
        images = in_order(dataset, 1, device, settings["train"]["loader_workers"])  # decoded ahead on a GPU
        for index, (item,) in enumerate(images):
            logits = multiscale_logits(model, item["image"][None].to(device, non_blocking=True),
                                       settings["evaluate"]["scales"], precision)
            label = logits.argmax(1)[0].cpu()
            save_label_png(label.numpy(), tmp / f"{dataset.name(index)}.png", num_classes)
            counts += np.bincount(label.flatten().numpy(), minlength=num_classes)[:num_classes]
            if "truth" in item:  # target-train labels, for the summary's accuracy only
                confusion += confusion_matrix(label, item["truth"], num_classes)
            if (index + 1) % 100 == 0:
                logger.info("[pseudolabels] %d/%d images", index + 1, len(dataset))
    share = (counts / max(1, counts.sum())).round(5).tolist()
    summary = {"images": len(dataset), "class_pixel_share": dict(zip(class_names(num_classes), share, strict=True))}
    if confusion.sum() > 0:  # only where target-train labels exist (ToyCity); used for diagnostics only
        summary["pixel_accuracy"] = 100 * pixel_accuracy(confusion.numpy())
        summary["miou"] = 100 * float(np.nanmean(iou_per_class(confusion.numpy())))
    summary["provenance"] = provenance(settings)
    write_json(summary_path, summary)
    return summary
