"""Preparation of an acquired dataset into the list-file layout that `diga.data.datasets` reads.

A derived folder (never the user's dataset folder) with: the image folder(s) linked to the extracted tree,
labels converted to uint8 trainId PNGs (255 = ignore) through the lookup tables of `diga.data.labels`, list
files of 'image label' lines, manifest.json, and report.md / report.json with the validation of every pair:
counts against the known totals, image/label size match, raw label ids in the dataset's range. Broken pairs
are listed and skipped with a warning.

- Cityscapes: gtFine/*_gtFine_labelIds.png (labelIds) -> 19 or 16 trainIds; lists/train.txt, lists/val.txt.
- GTA5: labels/NNNNN.png are palette ('P') PNGs whose index is the Cityscapes labelId (read as indices, not
  colours); lists/train.txt = the 18,111 ids the paper trains on, lists/train_full.txt = all usable ids.
- SYNTHIA-RAND-CITYSCAPES: GT/LABELS/NNNNNNN.png are 16-bit 3-channel PNGs, class id in the first channel ->
  16 trainIds; lists/train.txt.
- BDD100K (10K images + semantic-segmentation labels): images/10k/val/<id>.jpg with labels/sem_seg/masks/val/<id>.png,
  already trainIds (0..18, 255); lists/val.txt. Only val is prepared: the pipeline evaluates on it, never trains.
- Mapillary Vistas v1.2: validation/images/<id>.jpg with validation/labels/<id>.png (66 ids, 0..65) -> 19 trainIds
  (labels.MAPILLARY_CLASS_IDS, or datasets.mapillary_label_map); lists/val.txt, for the same reason.

Resize streams (`diga.data.streams`): for each [height, width] size, the pairs of the training list(s) are stored
resized under streams/<H>x<W>/ (image bicubic, label nearest, as the official loaders resize), with their own
list, so training never decodes a full-size PNG only to shrink it. A pair already at that size is listed as is.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from diga.atomic import atomic_dir
from diga.data.labels import DATASET_IDS, IGNORE_INDEX, lookup_table
from diga.data.streams import Size, size_name, stream_list
from diga.errors import DigaError

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 2  # 2: resize streams

# Known totals of the real datasets (checked, reported; a mismatch is a warning unless strict).
EXPECTED_COUNTS = {
    "cityscapes": {"train": 2975, "val": 500},
    "gta5": {"train_full": 24966},
    "synthia": {"train": 9400},
    "bdd100k": {"val": 1000},
    "mapillary": {"val": 2000},
}
GTA5_TOTAL = 24966
GTA5_KNOWN_UNUSABLE = 25  # 24,941 of 24,966 pairs are usable (missing or mismatched labels)
# The ids of GTA5's 24,966 that the paper's 18,111-image list leaves out (inclusive ranges).
GTA5_EXCLUDED_RANGES = (
    "8166-9514 9768-9909 10108-10123 10217-10225 10235-10239 10244-10249 10372 10377-12017 12111-12567 "
    "12577-12690 12703-12711 12742-12745 12827-14015 14062-14380 14516-14748 14844-15170 15188 15260-15420 15430 "
    "15476-15479 15483-15487 15510-15514 15524 15534 15538-15547 15560-15627 15658-15713 15783-15982 16213-16279 "
    "16642-16650 17197 17234 17429-17545 17605-17616 17690-17691 17705-17706 17718 17737-17740 17745-17746 "
    "17775-17894 18102 18424 18478 18491 18495-18553 19068 19316-19317 19378-19397 19578 19729-19746 19827-19902 "
    "19913 20089"
)
RAW_ID_RANGE = {"cityscapes": 33, "gta5": 33, "synthia": 22, "bdd100k": 18, "mapillary": 65}  # largest raw id
RAW_IGNORE = {"bdd100k": (IGNORE_INDEX,)}  # ids above the range that a valid label may hold too


class PreparationError(DigaError, RuntimeError):
    """A dataset tree that cannot be prepared (wrong layout, nothing usable)."""


def gta5_paper_ids() -> set[int]:
    """The 18,111 GTA5 ids of the paper's training list: 1..24966 minus the excluded ranges."""
    excluded: set[int] = set()
    for item in GTA5_EXCLUDED_RANGES.split():
        low, _, high = item.partition("-")
        excluded.update(range(int(low), int(high or low) + 1))
    return set(range(1, GTA5_TOTAL + 1)) - excluded


@dataclass(frozen=True)
class Pair:
    split: str
    image_rel: str       # relative to the prepared root (through the linked image folder)
    image_abs: str
    label_abs: str       # the raw label in the extracted tree
    label_rel: str       # the converted label, relative to the prepared root


def read_first_channel(path: str) -> np.ndarray:
    """The first (red) channel of an image at its full bit depth, as H x W: SYNTHIA's labels are 16-bit colour
    PNGs with the class id there, of which Pillow would keep only the high byte."""
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"{path}: OpenCV cannot decode this image (truncated or corrupted?); extract it from its "
                         "archive again, or download the archive again if its checksum fails")
    if array.ndim == 2:
        return array
    return array[:, :, 2 if array.shape[2] >= 3 else 0]  # OpenCV orders colour channels BGR(A)


def _read_raw_label(dataset: str, path: str) -> np.ndarray:
    if dataset == "synthia":
        return read_first_channel(path)
    with Image.open(path) as image:
        if dataset == "gta5" and image.mode not in ("P", "L"):
            raise ValueError(f"label mode {image.mode}, expected a palette PNG of labelIds")
        if image.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"label mode {image.mode}, expected single-channel ids")
        return np.asarray(image)


class _Fault(ValueError):
    """A broken pair, blamed on one of its two files."""

    def __init__(self, path: str, problem: str):
        super().__init__(problem)
        self.path = path


def convert_pair(job: tuple[str, int, Pair, str, dict[int, str]]) -> dict:
    """Validate one pair and write its trainId label (through `raw_ids`: raw id -> class name); return its record
    (with 'problem' and the faulty 'file' if broken)."""
    dataset, num_classes, pair, out_root, raw_ids = job
    record = {"split": pair.split, "image": pair.image_rel, "label": pair.label_rel}
    try:
        if not os.path.isfile(pair.image_abs):
            raise _Fault(pair.image_abs, "image missing")
        if not os.path.isfile(pair.label_abs):
            raise _Fault(pair.label_abs, "label missing")
        try:
            with Image.open(pair.image_abs) as image:
                image_size = image.size
                image.verify()
        except (OSError, ValueError, SyntaxError) as error:  # PIL raises SyntaxError for broken PNGs
            raise _Fault(pair.image_abs, f"image unreadable: {error}") from None
        try:
            raw = _read_raw_label(dataset, pair.label_abs)
        except (OSError, ValueError, SyntaxError) as error:
            raise _Fault(pair.label_abs, f"label unreadable: {error}") from None
        if raw.ndim != 2:
            raise _Fault(pair.label_abs, f"label has shape {raw.shape}, expected a single channel")
        if (raw.shape[1], raw.shape[0]) != image_size:
            raise _Fault(pair.label_abs, f"label size {raw.shape[1]}x{raw.shape[0]} != image size "
                                         f"{image_size[0]}x{image_size[1]}")
        top = int(raw.max())
        if top > RAW_ID_RANGE[dataset]:
            values = np.unique(raw)
            allowed = RAW_IGNORE.get(dataset, ())
            bad = [int(v) for v in values if v > RAW_ID_RANGE[dataset] and v not in allowed]
            if bad:
                also = "".join(f" and {a}" for a in allowed)
                raise _Fault(pair.label_abs, f"raw label id {bad[0]} is outside the dataset's ids "
                                             f"0..{RAW_ID_RANGE[dataset]}{also}")
    except _Fault as fault:
        record.update(problem=str(fault), file=fault.path)
        return record
    table = lookup_table(raw_ids, num_classes, size=max(256, top + 1))
    out = Path(out_root) / pair.label_rel
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(table[raw]).save(out, format="PNG")  # a failed write (disk full) stops the job: not a broken pair
    return record


def _blame(broken: list[dict], tree: Path, receipt: dict | None) -> None:
    """Name each broken pair's faulty file as its archive holds it, and that archive (None: not from an archive)."""
    base = Path(receipt["extracted"]) if receipt and receipt.get("extracted") else tree
    member_of: dict[str, str] = {}
    if broken and receipt and receipt.get("index"):
        try:
            archives = json.loads(Path(receipt["index"]).read_text())["archives"]
        except (OSError, ValueError, KeyError):
            archives = {}
        member_of = {member: name for name, entry in archives.items() for member in entry.get("members", [])}
    for record in broken:
        relative = os.path.relpath(record["file"], base).replace(os.sep, "/")
        record.update(file=relative, archive=member_of.get(relative))


def _where(record: dict) -> str:
    """"`gtFine/.../x_gtFine_labelIds.png` (from gtFine_trainvaltest.zip)"."""
    return f"`{record['file']}`" + (f" (from {record['archive']})" if record.get("archive") else "")


def resize_pair(job: tuple[str, str, str, Size]) -> tuple[str, str]:
    """Store one prepared pair at `size` (bicubic image, nearest label) under streams/<H>x<W>/; return the list
    line's (image, label), the pair itself where it is already at that size."""
    root, image_rel, label_rel, (height, width) = job
    with Image.open(Path(root) / image_rel) as image:
        if image.size == (width, height):
            return image_rel, label_rel
        resized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    folder = f"streams/{size_name((height, width))}"
    out_image, out_label = Path(root) / folder / image_rel, Path(root) / folder / label_rel
    out_image.parent.mkdir(parents=True, exist_ok=True)
    out_label.parent.mkdir(parents=True, exist_ok=True)
    resized.save(out_image, format="PNG")
    with Image.open(Path(root) / label_rel) as label:
        label.resize((width, height), Image.Resampling.NEAREST).save(out_label, format="PNG")
    return f"{folder}/{image_rel}", f"{folder}/{label_rel}"


def _map(function: Callable, jobs: list, workers: int, what: str) -> list:
    """`function` over `jobs`, in order, in `workers` processes when more than one (with progress lines)."""
    if workers <= 1:
        return [function(job) for job in jobs]
    results = []
    with ProcessPoolExecutor(workers, initializer=_ignore_ctrl_c) as pool:
        try:
            for index, result in enumerate(pool.map(function, jobs, chunksize=16), start=1):
                results.append(result)
                if index % 500 == 0:
                    logger.info("[prepare] %s: %d/%d", what, index, len(jobs))
        except KeyboardInterrupt:
            pool.shutdown(cancel_futures=True)  # drop the queued pairs, let the running chunks end, then clean up
            raise
    return results


def _ignore_ctrl_c() -> None:
    """Ctrl-C reaches the whole process group: only the main process handles it (one message, no worker
    tracebacks in the log)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def write_streams(root: Path, lists: dict[str, list[str]], stream_lists: list[str], streams: list[Size],
                  workers: int) -> dict:
    """Resized copies of the pairs of `stream_lists` (list files as in data.<domain>.train_list, e.g.
    'lists/train.txt') at every size in `streams`, one list per stream and list; return their manifest record."""
    if not streams:
        return {}
    by_file = {f"lists/{name}.txt": lines for name, lines in lists.items()}
    unknown = [name for name in stream_lists if name not in by_file]
    if unknown:
        raise PreparationError(f"the training list(s) {unknown} are not among this dataset's lists "
                               f"({', '.join(sorted(by_file))}); fix data.<domain>.train_list")
    pairs = sorted({tuple(line.split()) for name in stream_lists for line in by_file[name]})
    record = {}
    for size in streams:
        jobs = [(str(root), *pair, size) for pair in pairs]
        resized = dict(zip(pairs, _map(resize_pair, jobs, workers, f"stream {size_name(size)}"), strict=True))
        for name in stream_lists:
            path = root / stream_list(name, size)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(" ".join(resized[tuple(line.split())]) + "\n" for line in by_file[name]))
        kept = sum(resized[pair][0] == pair[0] for pair in pairs)
        record[size_name(size)] = {"size": list(size), "resized": len(pairs) - kept, "reused": kept,
                                   "lists": {name: stream_list(name, size) for name in stream_lists}}
    return record


def _cityscapes_pairs(tree: Path) -> list[Pair]:
    pairs = []
    for split in ("train", "val"):
        for image in sorted((tree / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
            stem = image.name.removesuffix("_leftImg8bit.png")
            city = image.parent.name
            label = tree / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            pairs.append(Pair(split, f"leftImg8bit/{split}/{city}/{image.name}", str(image), str(label),
                              f"gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png"))
    return pairs


def _numbered_pairs(tree: Path, image_dir: str, label_dir: str, link: str, split: str) -> list[Pair]:
    images = {p.name for p in (tree / image_dir).glob("*.png")}
    labels = {p.name for p in (tree / label_dir).glob("*.png")}
    return [Pair(split, f"{link}/{name}", str(tree / image_dir / name), str(tree / label_dir / name),
                 f"labels/{name}") for name in sorted(images | labels)]


def _named_pairs(tree: Path, image_dir: str, label_dir: str, link: str, split: str) -> list[Pair]:
    """<image_dir>/<id>.jpg with <label_dir>/<id>.png (BDD100K, Mapillary); the image folder is linked as `link`."""
    stems = {p.stem for p in (tree / image_dir).glob("*.jpg")} | {p.stem for p in (tree / label_dir).glob("*.png")}
    return [Pair(split, f"{link}/{stem}.jpg", str(tree / image_dir / f"{stem}.jpg"),
                 str(tree / label_dir / f"{stem}.png"), f"labels/{split}/{stem}.png") for stem in sorted(stems)]


LAYOUTS: dict[str, tuple[Callable[[Path], list[Pair]], dict[str, str]]] = {
    "cityscapes": (_cityscapes_pairs, {"leftImg8bit": "leftImg8bit"}),
    "gta5": (lambda tree: _numbered_pairs(tree, "images", "labels", "images", "train_full"), {"images": "images"}),
    "synthia": (lambda tree: _numbered_pairs(tree, "RGB", "GT/LABELS", "RGB", "train"), {"RGB": "RGB"}),
    "bdd100k": (lambda tree: _named_pairs(tree, "images/10k/val", "labels/sem_seg/masks/val", "images_val", "val"),
                {"images_val": "images/10k/val"}),
    "mapillary": (lambda tree: _named_pairs(tree, "validation/images", "validation/labels", "images_val", "val"),
                  {"images_val": "validation/images"}),
}


def _write_report(root: Path, dataset: str, counts: dict, expected: dict, broken: list[dict],
                  warnings: list[str]) -> None:
    (root / "report.json").write_text(json.dumps(
        {"dataset": dataset, "counts": counts, "expected": expected, "broken": broken, "warnings": warnings},
        indent=2) + "\n")
    lines = [f"# {dataset}: preparation report", "", "| list | pairs | expected |", "|---|---|---|"]
    lines += [f"| {name} | {count} | {expected.get(name, '–')} |" for name, count in counts.items()]
    lines += ["", f"## Warnings ({len(warnings)})", ""] + [f"- {w}" for w in warnings]
    lines += ["", f"## Broken pairs, skipped ({len(broken)})", ""]
    lines += [f"- {_where(b)}: {b['problem']}; pair `{b['image']}` skipped" for b in broken]
    (root / "report.md").write_text("\n".join(lines) + "\n")


def prepare(dataset: str, tree: str | Path, out: str | Path, num_classes: int, workers: int = 1,
            strict_counts: bool = False, streams: list[Size] = (),
            stream_lists: list[str] = ("lists/train.txt",), receipt: dict | None = None,
            raw_ids: dict[int, str] | None = None) -> dict:
    """Prepare one acquired dataset into `out` (replaced atomically); return the manifest.

    `streams`: [height, width] sizes at which the pairs of the list files `stream_lists` are also stored.
    `receipt`: what `diga fetch` wrote, to name the archive a broken file came from.
    `raw_ids`: raw label id -> class name, if not the dataset's table in `diga.data.labels`.
    """
    if dataset not in LAYOUTS:
        raise PreparationError(f"unknown dataset {dataset!r}; known: {', '.join(LAYOUTS)}")
    if dataset == "synthia" and num_classes != 16:
        raise PreparationError("SYNTHIA has 16 classes: set data.num_classes: 16 for SYNTHIA -> Cityscapes")
    tree = Path(tree).resolve()
    find_pairs, links = LAYOUTS[dataset]
    pairs = find_pairs(tree)
    if not pairs:
        raise PreparationError(f"{tree} holds no {dataset} image/label pairs; check the acquired folder")
    with atomic_dir(out) as tmp:
        for link, target in links.items():
            os.symlink(tree / target, tmp / link, target_is_directory=True)
        raw_ids = raw_ids or DATASET_IDS[dataset]
        records = _map(convert_pair, [(dataset, num_classes, pair, str(tmp), raw_ids) for pair in pairs], workers,
                       f"{dataset} pairs")
        good = [r for r in records if "problem" not in r]
        broken = [r for r in records if "problem" in r]
        _blame(broken, tree, receipt)
        lists: dict[str, list[str]] = {}
        for record in good:
            lists.setdefault(record["split"], []).append(f"{record['image']} {record['label']}\n")
        if dataset == "gta5":
            paper = gta5_paper_ids()
            lists["train"] = [line for line in lists.get("train_full", [])
                              if int(Path(line.split()[0]).stem) in paper]
        if not any(lists.values()):
            raise PreparationError(f"{dataset}: every pair in {tree} is broken; the archives are probably wrong or "
                                   "truncated. The first: " + "; ".join(f"{_where(b)}: {b['problem']}"
                                                                        for b in broken[:3]))
        found: dict[str, int] = {}
        for record in records:
            found[record["split"]] = found.get(record["split"], 0) + 1
        warnings = []
        expected = EXPECTED_COUNTS[dataset]
        for split, total in expected.items():
            if found.get(split, 0) != total:
                warnings.append(f"{split}: {found.get(split, 0)} pairs found, the real dataset has {total}")
        if dataset == "gta5" and found.get("train_full") == GTA5_TOTAL and len(broken) != GTA5_KNOWN_UNUSABLE:
            warnings.append(f"{len(broken)} broken pairs, the known number is {GTA5_KNOWN_UNUSABLE}")
        if broken:
            warnings.append(f"{len(broken)} broken pair(s) skipped (listed below)")
        (tmp / "lists").mkdir()
        for name, lines in lists.items():
            (tmp / "lists" / f"{name}.txt").write_text("".join(lines))
        counts = {name: len(lines) for name, lines in lists.items()}
        stream_record = write_streams(tmp, lists, list(stream_lists), [tuple(size) for size in streams], workers)
        _write_report(tmp, dataset, counts, expected, broken, warnings)
        for warning in warnings:
            logger.warning("[prepare %s] warning: %s", dataset, warning)
        for record in broken[:20]:
            logger.warning("[prepare %s] skipped pair %s: %s: %s", dataset, record["image"], _where(record),
                           record["problem"])
        if strict_counts and any("pairs found" in w for w in warnings):
            raise PreparationError(f"{dataset}: counts differ from the real dataset ({'; '.join(warnings)}); the "
                                   "archives are incomplete. Re-acquire them, or set datasets.strict_counts: false")
        manifest = {
            "dataset": dataset, "version": MANIFEST_VERSION, "num_classes": num_classes, "tree": str(tree),
            "lists": {name: f"lists/{name}.txt" for name in lists}, "count": counts, "broken": len(broken),
            "report": "report.md", "streams": stream_record,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
