"""The Cityscapes 19-class label space: names, palette, and the ignore index.

One home for class tables; every other module imports from here.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255

CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)
NUM_CLASSES = len(CLASS_NAMES)

# Cityscapes colour palette, indexed by trainId (used for pseudo-label PNGs and figures).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def palette_bytes() -> list[int]:
    """A 768-entry PIL palette: trainIds get their colour, everything else (255 included) black."""
    flat = [channel for colour in PALETTE for channel in colour]
    return flat + [0] * (768 - len(flat))


def class_id(name: str) -> int:
    """The trainId of a class name (raises KeyError naming the known classes)."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; known classes: {', '.join(CLASS_NAMES)}") from None


def check_label_ids(label: np.ndarray, num_classes: int, source: str) -> None:
    """Raise ValueError if a label map holds ids outside 0..num_classes-1 and the ignore index."""
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise ValueError(
            f"{source}: label ids {bad.tolist()} are outside the {num_classes} trainIds "
            f"(0..{num_classes - 1}) and the ignore index {IGNORE_INDEX}. Labels must be trainIds: "
            "convert raw dataset ids with the dataset's lookup table (diga prepare) before training."
        )
