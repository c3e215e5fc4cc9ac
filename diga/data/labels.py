"""The Cityscapes 19-class label space: names, palette, the ignore index, and every dataset's lookup table.

One home for class tables; every other module imports from here. The 16-class space (SYNTHIA -> Cityscapes)
is the 19 classes without terrain, truck and train, in the same order; mIoU13 further leaves out wall, fence
and pole (the literature's convention; the official code reports only the 16).
"""

from __future__ import annotations

import numpy as np

from diga.errors import DatasetError

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


# The 16-class label space of SYNTHIA -> Cityscapes, and the 13 classes of mIoU13.
DROPPED_FOR_16 = ("terrain", "truck", "train")
CLASS_NAMES_16: tuple[str, ...] = tuple(n for n in CLASS_NAMES if n not in DROPPED_FOR_16)
DROPPED_FOR_13 = ("wall", "fence", "pole")
CLASS_NAMES_13: tuple[str, ...] = tuple(n for n in CLASS_NAMES_16 if n not in DROPPED_FOR_13)

# Cityscapes labelIds (gtFine_labelIds.png; GTA5's palette indices use the same ids) -> class name.
CITYSCAPES_LABEL_IDS: dict[int, str] = {
    7: "road", 8: "sidewalk", 11: "building", 12: "wall", 13: "fence", 17: "pole", 19: "traffic light",
    20: "traffic sign", 21: "vegetation", 22: "terrain", 23: "sky", 24: "person", 25: "rider", 26: "car",
    27: "truck", 28: "bus", 31: "train", 32: "motorcycle", 33: "bicycle",
}
# SYNTHIA-RAND-CITYSCAPES class ids (first channel of GT/LABELS/*.png) -> class name; no terrain, truck, train.
SYNTHIA_IDS: dict[int, str] = {
    3: "road", 4: "sidewalk", 2: "building", 21: "wall", 5: "fence", 7: "pole", 15: "traffic light",
    9: "traffic sign", 6: "vegetation", 1: "sky", 10: "person", 17: "rider", 8: "car", 19: "bus",
    12: "motorcycle", 11: "bicycle",
}

# BDD100K semantic-segmentation masks hold Cityscapes trainIds already (0..18, 255 ignore).
BDD100K_IDS: dict[int, str] = dict(enumerate(CLASS_NAMES))
# Mapillary Vistas v1.2 (66 ids, validation/labels/*.png) -> the 19 classes, the table the DG literature's
# ResNet-era methods evaluate with; every other id (lane markings, crosswalks, curbs, ...) is ignored.
MAPILLARY_CLASS_IDS: dict[str, tuple[int, ...]] = {
    "road": (13, 24, 41), "sidewalk": (2, 15), "building": (17,), "wall": (6,), "fence": (3,), "pole": (45, 47),
    "traffic light": (48,), "traffic sign": (50,), "vegetation": (30,), "terrain": (29,), "sky": (27,),
    "person": (19,), "rider": (20, 21, 22), "car": (55,), "truck": (61,), "bus": (54,), "train": (58,),
    "motorcycle": (57,), "bicycle": (52,),
}


def raw_ids_from_classes(class_ids: dict[str, list[int] | tuple[int, ...]]) -> dict[int, str]:
    """{class name: [raw ids]} -> {raw id: class name}; a raw id under two classes or an unknown name is an error."""
    table: dict[int, str] = {}
    for name, ids in class_ids.items():
        if name not in CLASS_NAMES:
            raise ValueError(f"unknown class {name!r}; known classes: {', '.join(CLASS_NAMES)}")
        for raw in ids:
            if raw in table:
                raise ValueError(f"raw id {raw} is mapped to both {table[raw]!r} and {name!r}")
            table[raw] = name
    return table


MAPILLARY_IDS: dict[int, str] = raw_ids_from_classes(MAPILLARY_CLASS_IDS)
# Each real dataset's raw label ids -> class name (GTA5's palette indices are Cityscapes labelIds).
DATASET_IDS: dict[str, dict[int, str]] = {
    "cityscapes": CITYSCAPES_LABEL_IDS, "gta5": CITYSCAPES_LABEL_IDS, "synthia": SYNTHIA_IDS,
    "bdd100k": BDD100K_IDS, "mapillary": MAPILLARY_IDS,
}


def class_names(num_classes: int) -> tuple[str, ...]:
    """The names of the 19- or 16-class label space, indexed by trainId."""
    if num_classes == NUM_CLASSES:
        return CLASS_NAMES
    if num_classes == len(CLASS_NAMES_16):
        return CLASS_NAMES_16
    raise ValueError(f"num_classes must be {NUM_CLASSES} or {len(CLASS_NAMES_16)}, got {num_classes}")


def lookup_table(raw_ids: dict[int, str], num_classes: int, size: int = 256) -> np.ndarray:
    """A uint8 table raw id -> trainId of the `num_classes` space; unknown ids and dropped classes -> 255."""
    names = class_names(num_classes)
    table = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for raw, name in raw_ids.items():
        if name in names:
            table[raw] = names.index(name)
    return table


def palette_bytes(num_classes: int = NUM_CLASSES) -> list[int]:
    """A 768-entry PIL palette: trainIds get their class colour, everything else (255 included) black."""
    colours = [PALETTE[CLASS_NAMES.index(name)] for name in class_names(num_classes)]
    flat = [channel for colour in colours for channel in colour]
    return flat + [0] * (768 - len(flat))


def class_id(name: str) -> int:
    """The trainId of a class name (raises KeyError naming the known classes)."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; known classes: {', '.join(CLASS_NAMES)}") from None


def check_label_ids(label: np.ndarray, num_classes: int, source: str) -> None:
    """Raise DatasetError (a ValueError) if a label map holds ids outside 0..num_classes-1 and the ignore index."""
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise DatasetError(
            f"{source}: label ids {bad.tolist()} are outside the {num_classes} trainIds "
            f"(0..{num_classes - 1}) and the ignore index {IGNORE_INDEX}. Labels must be trainIds: "
            "convert raw dataset ids with the dataset's lookup table (diga prepare) before training."
        )
