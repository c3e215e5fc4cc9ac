"""Acquisition of the real datasets (GTA5, SYNTHIA-RAND-CITYSCAPES, Cityscapes): three ways in.

- `folder`: an already extracted dataset, used in place and never written to;
- `archives`: the archives the user downloaded (their standard names, in `archive_dir`);
- `download`: the public archives (GTA5's 20 zips, SYNTHIA's rar) fetched into `archive_dir`, with resume,
  progress and retries. Cityscapes needs the user's own login: fetch it with csDownload, then use `archives`.

Every archive is checked against the sha256 in the config (`sha256: {name: hex}`); where none is configured,
the first ingest records it in `<data.root>/raw/<dataset>.sha256.json` and later ingests check against that.
Archives are extracted into a temporary folder renamed to `<data.root>/raw/<dataset>/`. The job's output is a
receipt JSON naming the extracted tree, which the prepare step reads.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from diga.atomic import write_json
from diga.data.archives import download, extract, verify_sha256


@dataclass(frozen=True)
class DatasetInfo:
    archives: tuple[str, ...]           # the standard archive names
    url: str | None                     # base URL of the public archives (None: login required)
    markers: tuple[str, ...]            # folders that identify the extracted tree
    help: str


GTA5_PARTS = tuple(f"{i:02d}" for i in range(1, 11))
DATASETS: dict[str, DatasetInfo] = {
    "gta5": DatasetInfo(
        archives=tuple(f"{part}_{kind}.zip" for part in GTA5_PARTS for kind in ("images", "labels")),
        url="https://download.visinf.tu-darmstadt.de/data/from_games/data/",
        markers=("images", "labels"),
        help="GTA5 (Playing for Data): https://download.visinf.tu-darmstadt.de/data/from_games/ "
             "(01_images.zip .. 10_images.zip, 01_labels.zip .. 10_labels.zip)",
    ),
    "synthia": DatasetInfo(
        archives=("SYNTHIA_RAND_CITYSCAPES.rar",),
        url="http://synthia-dataset.cvc.uab.cat/",
        markers=("RGB", "GT/LABELS"),
        help="SYNTHIA-RAND-CITYSCAPES: http://synthia-dataset.cvc.uab.cat/SYNTHIA_RAND_CITYSCAPES.rar "
             "(a zip or tar of the same tree is accepted too)",
    ),
    "cityscapes": DatasetInfo(
        archives=("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip"),
        url=None,
        markers=("gtFine", "leftImg8bit"),
        help="Cityscapes needs your own account at https://www.cityscapes-dataset.com. Download the two zips "
             "with `pip install cityscapesscripts && csDownload -d <archive_dir> gtFine_trainvaltest.zip "
             "leftImg8bit_trainvaltest.zip` (or from the website), then set datasets.cityscapes.way: archives "
             "and datasets.cityscapes.archive_dir: <archive_dir>",
    ),
}


class AcquisitionError(RuntimeError):
    """A dataset that cannot be acquired as configured; the message says what to do."""


def find_tree(folder: Path, name: str) -> Path | None:
    """The folder (this one or one level down) holding the dataset's marker folders."""
    markers = DATASETS[name].markers
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    for candidate in candidates:
        if all((candidate / marker).is_dir() for marker in markers):
            return candidate
    return None


def _archive_names(name: str, spec: dict) -> list[str]:
    return list(spec.get("archive_names") or DATASETS[name].archives)


def _checksums(name: str, spec: dict, archives: list[Path], record_path: Path) -> dict[str, str]:
    """Verify every archive: against the config's sha256, else the one recorded at first ingest (then record)."""
    configured = {k: v.lower() for k, v in (spec.get("sha256") or {}).items()}
    recorded = json.loads(record_path.read_text()) if record_path.is_file() else {}
    result, new = {}, {}
    for archive in archives:
        expected = configured.get(archive.name) or recorded.get(archive.name)
        print(f"[{name}] sha256 {archive.name} ...", file=sys.stderr, flush=True)
        result[archive.name] = verify_sha256(archive, expected)
        if expected is None:
            new[archive.name] = result[archive.name]
    if new:
        write_json(record_path, {**recorded, **new})
        lines = "\n".join(f"      {k}: {v}" for k, v in new.items())
        print(f"[{name}] no sha256 configured for {', '.join(new)}; recorded in {record_path}. To pin them, add to "
              f"the config:\n  datasets:\n    {name}:\n      sha256:\n{lines}", file=sys.stderr, flush=True)
    return result


def acquire(name: str, spec: dict, data_root: str | Path, receipt: str | Path, progress: bool = True) -> dict:
    """Acquire one dataset as `spec['way']` says and write the receipt JSON; return it."""
    if name not in DATASETS:
        raise AcquisitionError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    info, data_root, way = DATASETS[name], Path(data_root), spec["way"]
    record_path = data_root / "raw" / f"{name}.sha256.json"
    archives: dict[str, str] = {}
    if way == "folder":
        if not spec.get("folder"):
            raise AcquisitionError(f"datasets.{name}.way is 'folder' but datasets.{name}.folder is not set")
        tree = find_tree(Path(spec["folder"]), name)
        if tree is None:
            raise AcquisitionError(
                f"datasets.{name}.folder {spec['folder']} does not hold the extracted dataset (expected the folders "
                f"{', '.join(info.markers)} in it or one level down). Point it at the extracted {name} folder.")
    else:
        archive_dir = Path(spec.get("archive_dir") or data_root / "downloads" / name)
        names = _archive_names(name, spec)
        missing = [n for n in names if not (archive_dir / n).is_file()]
        if missing and way == "download":
            if info.url is None and not spec.get("url"):
                raise AcquisitionError(f"{name} cannot be downloaded without a login. {info.help}")
            base = (spec.get("url") or info.url).rstrip("/") + "/"
            for archive in missing:
                print(f"[{name}] downloading {base + archive}", file=sys.stderr, flush=True)
                download(base + archive, archive_dir / archive, retries=spec["retries"], progress=progress)
        elif missing:
            raise AcquisitionError(
                f"{name}: {len(missing)} archive(s) missing from {archive_dir}: {', '.join(missing)}. {info.help}. "
                f"Put them there, or set datasets.{name}.way: download (public data only) or folder.")
        paths = [archive_dir / n for n in names]
        archives = _checksums(name, spec, paths, record_path)
        tree_root = extract(paths, data_root / "raw" / name)
        tree = find_tree(tree_root, name)
        if tree is None:
            raise AcquisitionError(
                f"{name}: the archives in {archive_dir} extracted to {tree_root} but hold no "
                f"{', '.join(info.markers)} folders; are these the right archives? {info.help}")
    result = {"dataset": name, "way": way, "tree": str(tree.resolve()), "archives": archives}
    write_json(receipt, result)
    return result
