"""One loader for every prepared dataset: a list file of 'image label' lines relative to a domain root.

ToyCity (diga make-toy) and the prepared real datasets share this layout, so the method never
knows which benchmark it runs on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from diga.data.labels import IGNORE_INDEX, check_label_ids
from diga.data.transforms import LABEL_KEYS
from diga.errors import DatasetError, DigaError


class MissingDatasetError(DigaError, FileNotFoundError):
    """A dataset folder or list file that is not where the config says."""


def read_list(root: Path, list_file: str) -> list[tuple[Path, Path | None]]:
    """Parse a list file into (image, label) paths; the label column is optional (target train without labels)."""
    path = root / list_file
    if not root.is_dir():
        raise MissingDatasetError(
            f"dataset folder {root} does not exist. Build it first (ToyCity: `diga make-toy` or "
            "`snakemake make_toy`; real data: the data rules), or fix data.*.root in the config."
        )
    if not path.is_file():
        raise MissingDatasetError(f"list file {path} does not exist; check data.*_list in the config")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2:
            raise DatasetError(f"{path}:{number}: expected 'image [label]', got {line!r}")
        pairs.append((root / fields[0], root / fields[1] if len(fields) == 2 else None))
    if not pairs:
        raise MissingDatasetError(f"list file {path} is empty")
    return pairs


def load_image(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """An RGB image as a float tensor 3xHxW in [0, 1]; resized (bicubic) to `size` [height, width] if given.

    Pillow on purpose: OpenCV decodes the same 8-bit PNGs to the same pixels 8-25 % faster, but neither the
    training crops nor whole-image reads (`diga bench-data`, 64x128 and 1024x2048 ToyCity) got measurably faster.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise MissingDatasetError(f"image {path} is listed but missing; regenerate or re-prepare the dataset") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def load_label(path: Path, num_classes: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A trainId label map as a long tensor HxW, checked for ids outside the class range; resized (nearest) to
    `size` [height, width] if given."""
    try:
        with Image.open(path) as image:
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.NEAREST)
            array = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise MissingDatasetError(f"label {path} is listed but missing; regenerate or re-prepare the dataset") from None
    if array.ndim != 2:
        raise DatasetError(f"{path}: label images must be single-channel trainId maps, got shape {array.shape}")
    check_label_ids(array, num_classes, str(path))
    return torch.from_numpy(array.astype(np.int64))


class SegmentationList(Dataset):
    """Images (and optionally labels) of one split of one domain.

    Labels are returned as 'label', the label a stage trains on, or with `truth_only` as 'truth', ground truth
    for measurement only (target train), which no transform or loss reads; 'label' is then all ignore, as it is
    without labels.
    `extra_label_dir`: a folder of pseudo-label PNGs named `<image stem>.png`, returned as 'pseudo'; with
    `resize_extra_labels` they are resized (nearest) to the image, whose list is then a resized stream.
    `size`: every image (bicubic) and label (nearest) resized to [height, width] as it is read (an evaluation
    protocol, e.g. Mapillary at 1080x1920).
    """

    def __init__(self, root: str | Path, list_file: str, num_classes: int, with_labels: bool = True,
                 extra_label_dir: str | Path | None = None, resize_extra_labels: bool = False,
                 truth_only: bool = False, size: tuple[int, int] | None = None):
        self.root = Path(root)
        self.size = tuple(size) if size is not None else None
        self.pairs = read_list(self.root, list_file)
        self.num_classes = num_classes
        self.with_labels = with_labels
        self.truth_only = truth_only
        if with_labels and any(label is None for _, label in self.pairs):
            raise DatasetError(f"{self.root / list_file} lists images without labels, but labels are required")
        self.extra_label_dir = Path(extra_label_dir) if extra_label_dir else None
        self.resize_extra_labels = resize_extra_labels
        if self.extra_label_dir is not None and not self.extra_label_dir.is_dir():
            raise MissingDatasetError(
                f"pseudo-label folder {self.extra_label_dir} does not exist; run the pseudolabels rule")

    def __len__(self) -> int:
        return len(self.pairs)

    def name(self, index: int) -> str:
        return self.pairs[index][0].stem

    def __getitem__(self, index: int) -> dict:
        image_path, label_path = self.pairs[index]
        item = {"image": load_image(image_path, self.size), "index": index}
        height, width = item["image"].shape[1:]
        if self.with_labels and not self.truth_only:
            item["label"] = load_label(label_path, self.num_classes, self.size)
        else:
            item["label"] = torch.full((height, width), IGNORE_INDEX, dtype=torch.long)
            if self.with_labels:
                item["truth"] = load_label(label_path, self.num_classes, self.size)
        if self.extra_label_dir is not None:
            item["pseudo"] = load_label(self.extra_label_dir / f"{image_path.stem}.png", self.num_classes)
            if self.resize_extra_labels and tuple(item["pseudo"].shape) != (height, width):
                # 'nearest-exact' samples pixel centres, as PIL's NEAREST does for the prepared labels.
                item["pseudo"] = F.interpolate(item["pseudo"][None, None].float(), size=(height, width),
                                               mode="nearest-exact")[0, 0].long()
        for key in LABEL_KEYS:
            if key in item and tuple(item[key].shape) != (height, width):
                raise DatasetError(f"{image_path}: {key} size {tuple(item[key].shape)} != image size {(height, width)}")
        return item
