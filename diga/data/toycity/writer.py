"""The ToyCity dataset folder (`write_toycity`).

The layout the prepared real datasets use: per-domain list files of "image label" lines relative to
the domain root (source in a GTA-like images/labels tree, target in a Cityscapes-like
leftImg8bit/gtFine tree) and a manifest.json, all written atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from diga.atomic import atomic_dir
from diga.data.labels import CLASS_NAMES, NUM_CLASSES
from diga.data.toycity.sample import generate_sample
from diga.data.toycity.spec import ToyCitySpec
from diga.progress import progress_bar

MANIFEST_VERSION = 1


def _file_names(domain: str, split: str, index: int) -> tuple[str, str]:
    if domain == "source":
        stem = f"toy_src_{index:06d}"
        return f"images/{split}/{stem}.png", f"labels/{split}/{stem}_labelTrainIds.png"
    stem = f"toy_tgt_{split}_{index:06d}"
    return (f"leftImg8bit/{split}/toycity/{stem}_leftImg8bit.png",
            f"gtFine/{split}/toycity/{stem}_gtFine_labelTrainIds.png")


def write_toycity(spec: ToyCitySpec, root: str | Path, progress: bool = True) -> dict:
    """Generate the dataset into `root` atomically and return its manifest (also written as manifest.json).

    Everything is built in a temporary sibling folder (diga.atomic.atomic_dir), manifest.json last, which then
    replaces `root`; on any error it is removed and `root` is left as it was.
    """
    spec.validate()
    plan = [("source", "train", spec.n_source), ("target", "train", spec.n_target_train),
            ("target", "val", spec.n_target_val)]
    pixels = {"source": np.zeros(NUM_CLASSES, np.int64), "target": np.zeros(NUM_CLASSES, np.int64)}
    with atomic_dir(root) as tmp, progress_bar(sum(n for _, _, n in plan), "toycity", "img", progress) as bar:
        for domain, split, count in plan:
            lines = []
            for index in range(count):
                image, label = generate_sample(spec, domain, split, index)
                image_rel, label_rel = _file_names(domain, split, index)
                for rel, array in ((image_rel, image), (label_rel, label)):
                    path = tmp / domain / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(array).save(path, format="PNG")
                pixels[domain] += np.bincount(label.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
                lines.append(f"{image_rel} {label_rel}\n")
                bar.update(1)
            list_path = tmp / domain / "lists" / f"{split}.txt"
            list_path.parent.mkdir(parents=True, exist_ok=True)
            list_path.write_text("".join(lines))
        manifest = {
            "dataset": "toycity",
            "version": MANIFEST_VERSION,
            "spec": asdict(spec),
            "num_classes": NUM_CLASSES,
            "domains": {
                "source": {"root": "source", "lists": {"train": "lists/train.txt"},
                           "count": {"train": spec.n_source}},
                "target": {"root": "target", "lists": {"train": "lists/train.txt", "val": "lists/val.txt"},
                           "count": {"train": spec.n_target_train, "val": spec.n_target_val}},
            },
            "class_pixel_share": {
                domain: {name: round(float(n) / float(counts.sum()), 6)
                         for name, n in zip(CLASS_NAMES, counts, strict=True)}
                for domain, counts in pixels.items()
            },
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
