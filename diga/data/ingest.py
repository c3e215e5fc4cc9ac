"""Acquisition of the real datasets (GTA5, SYNTHIA-RAND-CITYSCAPES, Cityscapes, BDD100K, Mapillary Vistas): three
ways in.

- `folder`: an already extracted dataset, used in place and never written to;
- `archives`: the archives the user downloaded (their standard names, in `archive_dir`);
- `download`: the public archives (GTA5's 20 zips, SYNTHIA's rar) fetched into `archive_dir`, with resume,
  progress and retries. Cityscapes, BDD100K and Mapillary need the user's own account: download them, then use
  `archives` (or give `url`, a mirror of the archives).

Every archive is read completely (its sha256) and checked against the sha256 in the config (`sha256: {name: hex}`),
else against the one recorded in `<data.root>/raw/<dataset>.sha256.json` when it was last ingested. A checksum is
recorded only once the archives have been extracted and hold the dataset, so a truncated file never blocks its
good replacement. Archives are extracted into a temporary folder renamed to `<data.root>/raw/<dataset>/`, with
an index (INDEX) of each archive's size, modification time, sha256 and files: an error in a file names the archive
it came from, and archives deleted after extraction are not needed again. The job's output is a receipt JSON naming
the extracted tree and the ingested archives, which the prepare step and the workflow (to notice a replaced
archive: workflow/rules/common.smk, archive_identity) read.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from diga.atomic import write_json
from diga.data.archives import ArchiveError, ChecksumError, archive_kind, download, extract, rar_extractor, sha256_file
from diga.errors import DigaError

logger = logging.getLogger(__name__)

INDEX = ".diga-archives.json"  # in the extracted folder: what each archive was and which files it held


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
        help="Cityscapes needs your own account at https://www.cityscapes-dataset.com: download the two zips "
             "with `pip install cityscapesscripts && csDownload -d <archive_dir> gtFine_trainvaltest.zip "
             "leftImg8bit_trainvaltest.zip` (or from the website)",
    ),
    # Domain generalisation's extra targets; both licences are accepted with your own account, so no default URL.
    "bdd100k": DatasetInfo(
        archives=("bdd100k_images_10k.zip", "bdd100k_sem_seg_labels_trainval.zip"),
        url=None,
        markers=("images/10k", "labels/sem_seg/masks"),
        help="BDD100K needs your own account at https://bdd-data.berkeley.edu: download the 10K images "
             "(bdd100k_images_10k.zip) and the semantic-segmentation labels (bdd100k_sem_seg_labels_trainval.zip); "
             "with other archive names set datasets.bdd100k.archive_names, or extract them and use way: folder",
    ),
    "mapillary": DatasetInfo(
        archives=("mapillary-vistas-dataset_public_v1.2.zip",),
        url=None,
        markers=("validation/images", "validation/labels"),
        help="Mapillary Vistas v1.2 needs your own account at https://www.mapillary.com/dataset/vistas: download "
             "mapillary-vistas-dataset_public_v1.2.zip (version 1.2: its labels have the 66 ids the evaluation maps)",
    ),
}


class AcquisitionError(DigaError, RuntimeError):
    """A dataset that cannot be acquired as configured; the message says what to do."""


# ----------------------------------------------------------------------------------------------
# Config snippets in messages
# ----------------------------------------------------------------------------------------------


def config_snippet(dataset: str, settings: dict) -> str:
    """`datasets.<dataset>.<key>: value` lines as YAML that validates when pasted as printed."""
    return yaml.safe_dump({"datasets": {dataset: settings}}, sort_keys=False, default_flow_style=False,
                          width=10_000)


def config_advice(dataset: str, settings: dict) -> str:
    """Where the snippet goes, then the snippet (merged into the config, or as a file of its own)."""
    keys = ", ".join(f"`{key}:`" for key in settings)
    return (f"put these lines in the config, merged into its `datasets:` > `{dataset}:` section (replacing any "
            f"{keys} there), or save them as a file and add it after your config "
            f"(--configfile <your config> <this file>):\n{config_snippet(dataset, settings)}")


# ----------------------------------------------------------------------------------------------
# The extracted tree and its index
# ----------------------------------------------------------------------------------------------


def find_tree(folder: Path, name: str) -> Path | None:
    """The folder (this one or one level down) holding the dataset's marker folders."""
    markers = DATASETS[name].markers
    for candidate in _candidates(folder):
        if all((candidate / marker).is_dir() for marker in markers):
            return candidate
    return None


def _candidates(folder: Path) -> list[Path]:
    return [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []


def missing_markers(folder: Path, name: str) -> str:
    """What the folder lacks, e.g. "no `leftImg8bit` folder (found gtFine in resources/raw/cityscapes)"."""
    markers = DATASETS[name].markers
    best, found = folder, []
    for candidate in _candidates(folder):
        present = [m for m in markers if (candidate / m).is_dir()]
        if len(present) > len(found):
            best, found = candidate, present
    absent = [f"`{m}`" for m in markers if m not in found]
    text = f"no {' or '.join(absent)} folder" + ("s" if len(absent) > 1 else "")
    return text + (f" (found {', '.join(found)} in {best})" if found else "")


def read_index(extracted: Path) -> dict[str, dict]:
    """{archive name: {size, mtime, sha256, members}} of the archives extracted into `extracted` ({} if none)."""
    try:
        return json.loads((extracted / INDEX).read_text())["archives"]
    except (OSError, ValueError, KeyError):
        return {}


def archive_state(path: Path) -> dict:
    """What identifies an archive without reading it: its size and modification time (whole seconds, as copies
    that keep the time, `cp -p` or `rsync -a`, keep it across file systems)."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime": int(stat.st_mtime)}


# ----------------------------------------------------------------------------------------------
# Acquisition
# ----------------------------------------------------------------------------------------------


def _archive_names(name: str, spec: dict) -> list[str]:
    return list(spec.get("archive_names") or DATASETS[name].archives)


def _near_misses(missing: list[str], names: list[str], archive_dir: Path) -> dict[str, str]:
    """Missing name -> a file in `archive_dir` that looks like it (e.g. 'leftImg8bit_trainvaltest (1).zip')."""
    present = sorted(p.name for p in archive_dir.iterdir() if p.is_file()) if archive_dir.is_dir() else []
    others = [n for n in present if n not in names and not n.endswith(".part")]
    found = {}
    for wanted in missing:
        stem = wanted.split(".")[0].lower()
        similar = [n for n in others if n.lower().startswith(stem)] or difflib.get_close_matches(wanted, others, 1, 0.8)
        if similar and similar[0] not in found.values():
            found[wanted] = similar[0]
    return found


def _missing_error(name: str, spec: dict, names: list[str], missing: list[str], archive_dir: Path) -> AcquisitionError:
    info = DATASETS[name]
    head = f"{name}: {len(missing)} archive(s) missing from {archive_dir}: {', '.join(missing)}."
    near = _near_misses(missing, names, archive_dir)
    if near:
        renames = "; ".join(f"mv {shlex.quote(str(archive_dir / have))} {shlex.quote(str(archive_dir / want))}"
                            for want, have in near.items())
        named = [near.get(n, n) for n in names]
        return AcquisitionError(
            f"{head} {archive_dir} holds {', '.join(repr(n) for n in near.values())}, which "
            f"{'look like them' if len(near) > 1 else 'looks like it'} under another name. Rename: {renames}\n"
            f"or keep the names and list them in the config: {config_advice(name, {'archive_names': named})}")
    ways = [] if info.url is None and not spec.get("url") else [
        f"To download them (public data), {config_advice(name, {'way': 'download'})}"]
    ways.append("To use a dataset you extracted yourself, "
                + config_advice(name, {"way": "folder", "folder": f"/path/to/extracted/{name}"}))
    if spec.get("archive_dir"):
        where = "Put them there"
    else:
        where = "Put them there, or point archive_dir at the folder that holds them: " + config_advice(
            name, {"archive_dir": f"/path/to/your/{name}/archives"})
    return AcquisitionError(f"{head} {info.help}. {where}\n" + "\n".join(ways))


def _check_extractable(name: str, paths: list[Path], archive_dir: Path) -> None:
    """Known archive types and an installed RAR extractor, before any archive is read."""
    for path in paths:
        archive_kind(path)
    rars = [p for p in paths if archive_kind(p) == "rar"]
    if rars and rar_extractor() is None:
        folder = str(archive_dir / rars[0].name.rsplit(".", 1)[0])
        raise ArchiveError(
            f"{rars[0]}: extracting .rar needs bsdtar or unar (Debian/Ubuntu: `apt-get install libarchive-tools` or "
            f"`apt-get install unar`). Or extract it yourself (e.g. 7-Zip or unrar) into {folder} and use that "
            f"folder: {config_advice(name, {'way': 'folder', 'folder': folder})}")


def _mismatch(name: str, archive_dir: Path, shas: dict[str, str], pins: dict[str, str], recorded: dict[str, str],
              record_path: Path, way: str) -> ChecksumError | None:
    """The error for archives whose sha256 differs from the pinned (else recorded) one, or None."""
    lines = []
    for archive, actual in shas.items():
        expected = pins.get(archive) or recorded.get(archive)
        if expected is not None and actual != expected:
            source = ("datasets.{name}.sha256 in the config" if archive in pins else
                      f"{record_path}, recorded when this archive was last ingested").format(name=name)
            lines.append(f"{archive_dir / archive}: sha256 {actual} differs from {expected}, in {source}")
    if not lines:
        return None
    again = "delete it and rerun: it is downloaded again" if way == "download" else "download it again"
    return ChecksumError(
        "\n".join(lines) + f"\nThe file was replaced, or it is truncated or damaged. If it is damaged, put back the "
        f"copy that was ingested or {again}. If this copy is the one you want, pin the checksums of the archives as "
        f"they are now (a checksum in the config takes precedence over a recorded one): "
        + config_advice(name, {"sha256": shas}))


def _hash_all(name: str, paths: list[Path]) -> dict[str, str]:
    result = {}
    for path in paths:
        logger.info("[%s] sha256 %s ...", name, path.name)
        result[path.name] = sha256_file(path)
    return result


def _ingest_archives(name: str, spec: dict, data_root: Path, progress: bool) -> dict:
    info, way = DATASETS[name], spec["way"]
    archive_dir = Path(spec.get("archive_dir") or data_root / "downloads" / name)
    names = _archive_names(name, spec)
    extracted = data_root / "raw" / name
    record_path = data_root / "raw" / f"{name}.sha256.json"
    index = read_index(extracted)
    pins = {k: v.lower() for k, v in (spec.get("sha256") or {}).items()}
    recorded = json.loads(record_path.read_text()) if record_path.is_file() else {}
    missing = [n for n in names if not (archive_dir / n).is_file()]
    ingested = set(index) == set(names) and find_tree(extracted, name) is not None

    if missing and ingested:
        # Archives deleted after extraction (allowed): the extracted tree stands for them if the rest are unchanged.
        present = [archive_dir / n for n in names if n not in missing]
        shas = _hash_all(name, present)
        changed = [n for n, sha in shas.items() if sha != index[n]["sha256"]]
        if changed:
            raise AcquisitionError(
                f"{name}: {', '.join(changed)} in {archive_dir} differ from the copies extracted into {extracted}, "
                f"and {', '.join(missing)} are no longer there; extracting again needs every archive: put them back "
                f"in {archive_dir} (or download them again) and rerun")
        logger.info("[%s] %s not in %s: using %s, extracted from them before", name, ", ".join(missing), archive_dir,
                    extracted)
        # The receipt holds what is in archive_dir now (its size and time are what the workflow compares).
        archives = {n: {**archive_state(archive_dir / n), "sha256": shas[n]} if n in shas else
                    {k: index[n][k] for k in ("size", "mtime", "sha256")} for n in names}
        return _receipt(name, way, extracted, archives)
    if missing and way == "download":
        if info.url is None and not spec.get("url"):
            raise AcquisitionError(
                f"{name} cannot be downloaded without your own account (or a URL in datasets.{name}.url). {info.help}; "
                f"then use the archives: "
                f"{config_advice(name, {'way': 'archives', 'archive_dir': str(archive_dir)})}")
        base = (spec.get("url") or info.url).rstrip("/") + "/"
        for archive in missing:
            logger.info("[%s] downloading %s", name, base + archive)
            download(base + archive, archive_dir / archive, retries=spec["retries"], progress=progress)
    elif missing:
        raise _missing_error(name, spec, names, missing, archive_dir)

    paths = [archive_dir / n for n in names]
    _check_extractable(name, paths, archive_dir)
    states = {p.name: archive_state(p) for p in paths}
    shas = _hash_all(name, paths)
    mismatch = _mismatch(name, archive_dir, shas, pins, recorded, record_path, way)
    if mismatch is not None:
        raise mismatch
    archives = {n: {**states[n], "sha256": shas[n]} for n in names}

    if ingested and all(index[n]["sha256"] == shas[n] for n in names):
        # The same content (e.g. a copy with a new modification time): the extracted tree is already right.
        logger.info("[%s] %s already holds these archives (same sha256); not extracting again (delete that folder "
                    "to extract again)", name, extracted)
        write_json(extracted / INDEX, {"archives": {n: {**index[n], **archives[n]} for n in names}})
    else:
        def write_index(tmp: Path, members: dict[str, list[str]]) -> None:
            write_json(tmp / INDEX, {"archives": {n: {**archives[n], "members": members[n]} for n in names}})

        try:
            extract(paths, extracted, finish=write_index)
        except ArchiveError as error:
            again = "With way: download, deleting it is enough: the rerun downloads it. " if way == "download" else ""
            raise ArchiveError(f"{error} {again}No checksum was recorded, so a good copy will be accepted.") from None
    if find_tree(extracted, name) is None:
        raise AcquisitionError(
            f"{name}: the archives in {archive_dir} ({', '.join(names)}) extracted to {extracted} but hold "
            f"{missing_markers(extracted, name)}; are these the right archives? Nothing was recorded. {info.help}")

    # Only now, with every archive read and extracted into a recognised tree, are the checksums recorded.
    new = {n: shas[n] for n in names if n not in pins and n not in recorded}
    if any(recorded.get(n) != shas[n] for n in names):
        write_json(record_path, {**recorded, **shas})
    if new:
        logger.info("[%s] no sha256 configured for %s; recorded in %s, and checked whenever the archives are "
                    "ingested again. To pin them (optional), %s", name, ", ".join(new), record_path,
                    config_advice(name, {"sha256": shas}))
    return _receipt(name, way, extracted, archives)


def _receipt(name: str, way: str, extracted: Path, archives: dict) -> dict:
    tree = find_tree(extracted, name)
    return {"dataset": name, "way": way, "tree": str(tree.resolve()), "extracted": str(extracted.resolve()),
            "index": str((extracted / INDEX).resolve()), "archives": archives}


def acquire(name: str, spec: dict, data_root: str | Path, receipt: str | Path, progress: bool = True,
            identity: str | None = None) -> dict:
    """Acquire one dataset as `spec['way']` says and write the receipt JSON; return it.

    `identity`: the workflow's token for the archives' state at the start of the job (recorded as given).
    """
    if name not in DATASETS:
        raise AcquisitionError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    data_root, way = Path(data_root), spec["way"]
    if way == "folder":
        if not spec.get("folder"):
            raise AcquisitionError(f"datasets.{name}.way is 'folder' but datasets.{name}.folder is not set: "
                                   + config_advice(name, {"way": "folder", "folder": f"/path/to/extracted/{name}"}))
        folder = Path(spec["folder"])
        tree = find_tree(folder, name)
        if tree is None:
            raise AcquisitionError(
                f"datasets.{name}.folder {folder} does not hold the extracted dataset: {missing_markers(folder, name)}"
                f" (the folders {', '.join(DATASETS[name].markers)} are expected in it or one level down). Point it "
                f"at the extracted {name} folder.")
        result = {"dataset": name, "way": way, "tree": str(tree.resolve()), "folder": os.path.realpath(folder),
                  "extracted": None, "index": None, "archives": {}}
    else:
        result = _ingest_archives(name, spec, data_root, progress)
    result.update(identity=identity, archive_names=spec.get("archive_names"))
    write_json(receipt, result)
    return result
