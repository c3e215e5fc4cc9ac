"""Class feature centroids of the target domain, from the model's own predictions (no labels)."""

from __future__ import annotations

from pathlib import Path

import torch

from diga.atomic import save_torch
from diga.data.loader import in_order
from diga.method.selection import class_means, update_centroids_cumulative
from diga.provenance import provenance
from diga.runtime.checkpoints import load_segmenter
from diga.runtime.datasets import target_train
from diga.runtime.device import device_for
from diga.runtime.precision import inference_precision_for


@torch.no_grad()
def compute_centroids(settings: dict, checkpoint: Path, out_path: Path) -> torch.Tensor:
    """Running mean, per class, of each image's mean head feature over the pixels predicted as that class."""
    device = device_for(settings)
    precision = inference_precision_for(settings, device)
    model = precision.place(load_segmenter(checkpoint, device).eval())
    cfg, num_classes = settings["centroids"], settings["data"]["num_classes"]
    # The official pass reads the low-scale stream (512x1024 Cityscapes): `centroids.size` names that stream.
    size = tuple(cfg["size"]) if cfg["size"] is not None else None
    dataset = target_train(settings, with_labels=False, size=size)
    centroids = counts = None
    for _ in range(cfg["epochs"]):
        for (item,) in in_order(dataset, 1, device, settings["train"]["loader_workers"]):  # decoded ahead on a GPU
            output = precision.run(model, item["image"][None].to(device, non_blocking=True))
            if centroids is None:
                centroids = torch.zeros(num_classes, output.feat.shape[1], device=device)
                counts = torch.zeros(num_classes, dtype=torch.long, device=device)
            means, present = class_means(output.feat, output.logits.argmax(1), num_classes, cfg["min_pixels"])
            centroids, counts = update_centroids_cumulative(centroids, counts, means, present, cfg["count_cap"])
    save_torch(out_path, {"centroids": centroids.cpu(), "valid": (counts > 0).cpu(), "counts": counts.cpu(),
                          "provenance": provenance(settings)})
    return centroids
