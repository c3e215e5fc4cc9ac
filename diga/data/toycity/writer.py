"""The ToyCity dataset folder (`write_toycity`).

The layout the prepared real datasets use: per-domain list files of "image label" lines relative to
the domain root (source in a GTA-like images/labels tree, target in a Cityscapes-like
leftImg8bit/gtFine tree) and a manifest.json, all written atomically. An unseen domain of domain
generalisation (`write_toycity_style`) is a folder of its own in the target's layout, val only.
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
from diga.data.toycity.style import DG_STYLES
from diga.errors import ConfigError
from diga.progress import progress_bar

MANIFEST_VERSION = 1


def _file_names(domain: str, split: str, index: int) -> tuple[str, str]:
    if domain == "source":
        stem = f"toy_src_{index:06d}"
        return f"images/{split}/{stem}.png", f"labels/{split}/{stem}_labelTrainIds.png"
    city = "toycity" if domain == "target" else domain
    stem = f"toy_tgt_{split}_{index:06d}" if domain == "target" else f"toy_{domain}_{split}_{index:06d}"
    return (f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
            f"gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png")


def _write_split(spec: ToyCitySpec, folder: Path, domain: str, split: str, count: int, bar) -> np.ndarray:
    """`count` samples of one domain and split as PNGs under `folder`, with their list file; the class pixel counts."""
    pixels = np.zeros(NUM_CLASSES, np.int64)
    lines = []
    for index in range(count):
        image, label = generate_sample(spec, domain, split, index)
        image_rel, label_rel = _file_names(domain, split, index)
        for rel, array in ((image_rel, image), (label_rel, label)):
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path, format="PNG")
        pixels += np.bincount(label.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        lines.append(f"{image_rel} {label_rel}\n")
        bar.update(1)
    list_path = folder / "lists" / f"{split}.txt"
    list_path.parent.mkdir(parents=True, exist_ok=True)
    list_path.write_text("".join(lines))
    return pixels


def _shares(counts: np.ndarray) -> dict[str, float]:
    return {name: round(float(n) / float(counts.sum()), 6) for name, n in zip(CLASS_NAMES, counts, strict=True)}


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
            pixels[domain] += _write_split(spec, tmp / domain, domain, split, count, bar)
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
            "class_pixel_share": {domain: _shares(counts) for domain, counts in pixels.items()},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_toycity_style(spec: ToyCitySpec, style: str, root: str | Path, progress: bool = True) -> dict:
    """One unseen domain of domain generalisation (`style.DG_STYLES[style]`): `spec.n_target_val` val images in
    the target's folder layout (lists/val.txt), written atomically into `root` with a manifest."""
    spec.validate()
    if style not in DG_STYLES:
        raise ConfigError(f"ToyCity has no style {style!r}; its unseen styles are {', '.join(DG_STYLES)}")
    with atomic_dir(root) as tmp, progress_bar(spec.n_target_val, f"toycity {style}", "img", progress) as bar:
        pixels = _write_split(spec, tmp, style, "val", spec.n_target_val, bar)
        manifest = {"dataset": "toycity", "style": style, "version": MANIFEST_VERSION, "spec": asdict(spec),
                    "num_classes": NUM_CLASSES, "lists": {"val": "lists/val.txt"}, "count": {"val": spec.n_target_val},
                    "class_pixel_share": _shares(pixels)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
