"""Real-dataset acquisition and preparation on small fake archives with the real names and layouts."""

from __future__ import annotations

import json
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from fakedata import (
    corrupt_one_byte,
    gta_palette,
    make_bdd100k,
    make_cityscapes,
    make_gta5,
    make_mapillary,
    make_synthia,
    png16_bytes,
    png_bytes,
    serve,
)
from PIL import Image

from diga import cli
from diga.data.archives import (
    ArchiveError,
    ChecksumError,
    DownloadError,
    download,
    extract,
    rar_extractor,
    sha256_file,
    verify_sha256,
)
from diga.data.datasets import SegmentationList
from diga.data.ingest import AcquisitionError, acquire
from diga.data.labels import (
    CITYSCAPES_LABEL_IDS,
    IGNORE_INDEX,
    SYNTHIA_IDS,
    class_names,
    lookup_table,
    raw_ids_from_classes,
)
from diga.data.prepare import gta5_paper_ids, prepare, read_first_channel
from diga.data.transforms import random_scale_crop_flip
from diga.infer.evaluate import metrics_from_confusion
from diga.method.losses import cross_entropy, ohem_cross_entropy


def spec(**overrides) -> dict:
    base = {"way": "archives", "folder": None, "archive_dir": None, "archive_names": None, "url": None,
            "sha256": {}, "retries": 3}
    return {**base, **overrides}


# ------------------------------------------------------------------------------------------ checksums, download


def test_a_corrupted_byte_fails_the_checksum(tmp_path):
    archive = make_cityscapes(tmp_path)[0]
    good = sha256_file(archive)
    assert verify_sha256(archive, good) == good
    corrupt_one_byte(archive)
    with pytest.raises(ChecksumError, match="gtFine_trainvaltest.zip.*download it again"):
        verify_sha256(archive, good)


def test_download_resumes_after_a_cut_connection(tmp_path):
    served = tmp_path / "server"
    archives = make_gta5(served, [1, 2, 3])
    with serve(served, cut={"01_images.zip"}) as (url, log):
        out = download(url + "01_images.zip", tmp_path / "dl" / "01_images.zip", backoff=0.01, progress=False)
    assert sha256_file(out) == sha256_file(archives[0])
    assert not (tmp_path / "dl" / "01_images.zip.part").exists()
    ranges = [r for name, r in log if name == "01_images.zip"]
    assert ranges[0] is None and ranges[1] is not None and int(ranges[1].split("=")[1].split("-")[0]) > 0


def test_download_gives_up_with_a_clear_message(tmp_path):
    with serve(tmp_path) as (url, _):
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(url + "missing.zip", tmp_path / "missing.zip", retries=1, backoff=0.01, progress=False)


# ------------------------------------------------------------------------------------------ extraction


def test_zip_and_tar_extract_into_place(tmp_path):
    zips = make_gta5(tmp_path / "a", [1, 2])
    tar_path = tmp_path / "a" / "labels.tar.gz"
    with zipfile.ZipFile(zips[1]) as handle:
        handle.extractall(tmp_path / "x")
    with tarfile.open(tar_path, "w:gz") as handle:
        handle.add(tmp_path / "x" / "labels", arcname="labels")
    dest = extract([zips[0], tar_path], tmp_path / "out")
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["00001.png", "00002.png"]
    assert sorted(p.name for p in (dest / "labels").iterdir()) == ["00001.png", "00002.png"]
    assert not list(tmp_path.glob(".out.tmp-*")) and (tmp_path / "out").is_dir()  # the temporary folder was renamed


def test_a_truncated_archive_stops_naming_the_file(tmp_path):
    archive = make_gta5(tmp_path, [1, 2])[0]
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="01_images.zip.*truncated"):
        extract([archive], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_backslash_member_names_become_folders(tmp_path):
    archive = make_synthia(tmp_path, 2, backslash=True)
    dest = extract([archive], tmp_path / "out")
    assert (dest / "RAND_CITYSCAPES" / "RGB" / "0000001.png").is_file()
    assert (dest / "RAND_CITYSCAPES" / "GT" / "LABELS" / "0000000.png").is_file()
    assert not [p for p in dest.rglob("*") if "\\" in p.name]


def test_rar_goes_through_a_debian_extractor(tmp_path, monkeypatch):
    fake = tmp_path / "SYNTHIA_RAND_CITYSCAPES.rar"
    fake.write_bytes(b"Rar!\x1a\x07\x00 not really")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ArchiveError, match="libarchive-tools"):
        extract([fake], tmp_path / "out")
    monkeypatch.undo()
    if rar_extractor() is None:
        print("skipping real RAR extraction: neither bsdtar nor unar is installed")
        pytest.skip("no RAR extractor (bsdtar/unar) installed; free tools cannot create .rar test files anyway")
    with pytest.raises(ArchiveError, match="SYNTHIA_RAND_CITYSCAPES.rar"):  # a broken rar names the file
        extract([fake], tmp_path / "out")
    # A real RAR (version 4, stored members, Windows backslash paths), as SYNTHIA ships.
    archive = make_synthia(tmp_path / "z", 2, rar=True)
    assert archive.read_bytes().startswith(b"Rar!\x1a\x07\x00")
    dest = extract([archive], tmp_path / "out")
    label = dest / "RAND_CITYSCAPES" / "GT" / "LABELS" / "0000001.png"
    assert label.is_file() and (dest / "RAND_CITYSCAPES" / "RGB" / "0000001.png").is_file()
    assert not [p for p in dest.rglob("*") if "\\" in p.name]
    assert read_first_channel(str(label)).max() > 0  # the 16-bit label survived byte for byte
    # A truncated download: the extractor's error names the archive and nothing is left half-written. (bsdtar
    # does not check the CRC of stored RAR members; a flipped byte is caught by the archive's sha256 instead.)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="SYNTHIA_RAND_CITYSCAPES.rar"):
        extract([archive], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


# ------------------------------------------------------------------------------------------ label conversion


def test_lookup_tables_map_known_ids():
    city19, city16 = lookup_table(CITYSCAPES_LABEL_IDS, 19), lookup_table(CITYSCAPES_LABEL_IDS, 16)
    assert city19[[7, 8, 11, 22, 26, 27, 31, 33, 0, 1, 255]].tolist() == [0, 1, 2, 9, 13, 14, 16, 18, 255, 255, 255]
    assert city16[[7, 22, 23, 26, 27, 28, 31, 33]].tolist() == [0, 255, 9, 12, 255, 13, 255, 15]
    synthia = lookup_table(SYNTHIA_IDS, 16)
    assert synthia[[3, 4, 2, 21, 1, 8, 19, 11, 0, 13]].tolist() == [0, 1, 2, 3, 9, 12, 13, 15, 255, 255]
    assert class_names(16)[12] == "car" and len(class_names(16)) == 16


def test_16bit_labels_read_at_full_depth_from_the_first_channel(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 65536, size=(5, 7, 3)).astype(np.uint16)
    array[:2] = rng.integers(0, 300, size=(2, 7, 3))  # SYNTHIA-like small ids, some above one byte
    array[0, :3, 0] = [255, 256, 65535]
    path = tmp_path / "label.png"
    path.write_bytes(png16_bytes(array))
    assert (np.asarray(Image.open(path)) == array >> 8).all()  # the file is right: Pillow sees the high bytes
    first = read_first_channel(str(path))
    assert first.dtype == np.uint16 and first.tolist() == array[:, :, 0].tolist()
    assert first[0, :3].tolist() == [255, 256, 65535]
    # 8-bit images too: red of an RGB PNG, and a single-channel PNG as is.
    Image.fromarray(array[:, :, ::-1].astype(np.uint8)).save(tmp_path / "rgb8.png")
    assert read_first_channel(str(tmp_path / "rgb8.png")).tolist() == array[:, :, 2].astype(np.uint8).tolist()
    Image.fromarray(array[:, :, 1].astype(np.uint8)).save(tmp_path / "gray8.png")
    assert read_first_channel(str(tmp_path / "gray8.png")).tolist() == array[:, :, 1].astype(np.uint8).tolist()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"truncated\.png: OpenCV cannot decode.*extract it from its archive again"):
        read_first_channel(str(truncated))


def _tree(tmp_path, name, archives):
    receipt = acquire(name, spec(archive_dir=str(archives[0].parent), archive_names=[a.name for a in archives]),
                      tmp_path / "resources", tmp_path / "resources" / "raw" / f"{name}.json", progress=False)
    return receipt["tree"]


def test_hand_made_labels_convert_to_known_train_ids(tmp_path):
    # GTA5: a palette label whose palette colours are unrelated to the ids; read as indices.
    ids = np.array([[7, 8, 11, 26], [33, 0, 22, 31]], dtype=np.uint8)
    gta = tmp_path / "gta" / "GTA5"
    (gta / "images").mkdir(parents=True)
    (gta / "labels").mkdir()
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(gta / "images" / "00001.png")
    (gta / "labels" / "00001.png").write_bytes(png_bytes(ids, "P", gta_palette()))
    prepare("gta5", gta, tmp_path / "gta5", 19)
    out = np.asarray(Image.open(tmp_path / "gta5" / "labels" / "00001.png"))
    assert out.tolist() == [[0, 1, 2, 13], [18, 255, 9, 16]]
    # SYNTHIA: 16-bit, 3 channels, class id in the first one; the others hold large instance values.
    syn = tmp_path / "syn" / "RAND_CITYSCAPES"
    (syn / "RGB").mkdir(parents=True)
    (syn / "GT" / "LABELS").mkdir(parents=True)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(syn / "RGB" / "0000000.png")
    raw = np.array([[3, 1, 8], [21, 0, 11]], dtype=np.uint16)
    (syn / "GT" / "LABELS" / "0000000.png").write_bytes(png16_bytes(np.dstack([raw, raw + 60000, raw + 300])))
    prepare("synthia", syn, tmp_path / "synthia", 16)
    out = np.asarray(Image.open(tmp_path / "synthia" / "labels" / "0000000.png"))
    assert out.tolist() == [[0, 9, 12], [3, 255, 15]]


def test_cityscapes_prepares_lists_for_19_and_16_classes(tmp_path):
    tree = _tree(tmp_path, "cityscapes", make_cityscapes(tmp_path / "archives"))
    for classes, folder in ((19, "cityscapes"), (16, "cityscapes16")):
        manifest = prepare("cityscapes", tree, tmp_path / "resources" / folder, classes)
        assert manifest["count"] == {"train": 6, "val": 4} and manifest["broken"] == 0
        root = tmp_path / "resources" / folder
        val = SegmentationList(root, "lists/val.txt", classes)
        item = val[0]
        assert item["image"].shape == (3, 32, 64) and item["label"].shape == (32, 64)
        car = class_names(classes).index("car")
        assert car in item["label"].unique().tolist() and 255 in item["label"].unique().tolist()
        assert (root / "leftImg8bit").is_symlink()  # images stay in the extracted tree
        report = (root / "report.md").read_text()
        assert "the real dataset has 2975" in report and "the real dataset has 500" in report


def test_gta5_lists_and_broken_pair_report(tmp_path):
    ids = [1, 2, 3, 4, 5, 8166, 20090]
    archives = make_gta5(tmp_path / "archives", ids, broken={3: "size", 4: "missing", 5: "rgb"})
    tree = _tree(tmp_path, "gta5", archives)
    manifest = prepare("gta5", tree, tmp_path / "resources" / "gta5", 19, workers=2)
    root = tmp_path / "resources" / "gta5"
    full = (root / "lists" / "train_full.txt").read_text().split("\n")
    paper = (root / "lists" / "train.txt").read_text().split("\n")
    assert [line.split()[0] for line in full if line] == ["images/00001.png", "images/00002.png",
                                                         "images/08166.png", "images/20090.png"]
    assert [line.split()[0] for line in paper if line] == ["images/00001.png", "images/00002.png",
                                                          "images/20090.png"]  # 8166 is not in the 18,111
    assert manifest["broken"] == 3 and manifest["count"] == {"train_full": 4, "train": 3}
    report = json.loads((root / "report.json").read_text())
    problems = {b["image"]: b["problem"] for b in report["broken"]}
    assert "size" in problems["images/00003.png"] and "missing" in problems["images/00004.png"]
    assert "palette" in problems["images/00005.png"]
    assert "images/00003.png" in (root / "report.md").read_text()
    assert len(gta5_paper_ids()) == 18111


# Mapillary Vistas v1.2 id -> Cityscapes trainId of the official DG evaluation, written out here independently of
# the package's table (which is per class name); every id not listed is ignored.
MAPILLARY_OFFICIAL = {13: 0, 24: 0, 41: 0, 2: 1, 15: 1, 17: 2, 6: 3, 3: 4, 45: 5, 47: 5, 48: 6, 50: 7, 30: 8,
                      29: 9, 27: 10, 19: 11, 20: 12, 21: 12, 22: 12, 55: 13, 61: 14, 54: 15, 58: 16, 57: 17, 52: 18}


def test_mapillary_ids_map_to_the_official_train_ids_pixel_for_pixel(tmp_path):
    every_id = np.arange(66, dtype=np.uint8).reshape(6, 11)
    archive = make_mapillary(tmp_path / "archives", {"v0": every_id, "v1": every_id[::-1].copy()})
    tree = _tree(tmp_path, "mapillary", [archive])
    manifest = prepare("mapillary", tree, tmp_path / "resources" / "mapillary", 19)
    assert manifest["count"] == {"val": 2} and manifest["broken"] == 0  # the training pair is not prepared
    root = tmp_path / "resources" / "mapillary"
    expected = np.array([MAPILLARY_OFFICIAL.get(i, 255) for i in range(66)]).reshape(6, 11)
    for stem, raw in (("v0", every_id), ("v1", every_id[::-1])):
        out = np.asarray(Image.open(root / "labels" / "val" / f"{stem}.png"))
        assert out.tolist() == np.array([MAPILLARY_OFFICIAL.get(int(i), 255) for i in raw.flat]).reshape(6, 11).tolist()
    assert (out[::-1] == expected).all()
    item = SegmentationList(root, "lists/val.txt", 19)[0]  # the JPEG through its linked folder
    assert item["image"].shape == (3, 6, 11) and sorted(set(item["label"].flatten().tolist())) == [*range(19), 255]
    assert "the real dataset has 2000" in (root / "report.md").read_text()
    # A custom table (datasets.mapillary_label_map): lane markings (24) left out of road, ids not named ignored.
    custom = raw_ids_from_classes({"road": [13, 41], "car": [55, 56]})
    prepare("mapillary", tree, tmp_path / "resources" / "mapillary_custom", 19, raw_ids=custom)
    out = np.asarray(Image.open(tmp_path / "resources" / "mapillary_custom" / "labels" / "val" / "v0.png"))
    assert out.flatten().tolist() == [{13: 0, 41: 0, 55: 13, 56: 13}.get(i, 255) for i in range(66)]
    # The same through `diga prepare` with the table in its config slice (what the workflow passes).
    job = {"benchmark": "toycity", "seeds": [0], "data": {"num_classes": 19},
           "sections": ["data.num_classes", "datasets.strict_counts", "datasets.mapillary_label_map"],
           "datasets": {"strict_counts": False, "mapillary_label_map": {"road": [13, 41], "car": [55, 56]}}}
    out_dir = tmp_path / "resources" / "mapillary_cli"
    assert cli.main(["prepare", "--config", json.dumps(job), "--dataset", "mapillary", "--receipt",
                     str(tmp_path / "resources" / "raw" / "mapillary.json"), "--out", str(out_dir)]) == 0
    assert (np.asarray(Image.open(out_dir / "labels" / "val" / "v0.png")) == out.reshape(6, 11)).all()
    with pytest.raises(ValueError, match="raw id 13 is mapped to both 'road' and 'car'"):
        raw_ids_from_classes({"road": [13], "car": [13]})
    with pytest.raises(ValueError, match="unknown class 'lane marking'"):
        raw_ids_from_classes({"lane marking": [24]})


def test_bdd100k_keeps_its_train_ids_and_skips_labels_with_other_ids(tmp_path):
    good = np.array([[*range(19), 255]] * 3, dtype=np.uint8)
    bad = good.copy()
    bad[1, 4] = 19  # not a trainId: a label of another label space
    make_bdd100k(tmp_path / "archives", {"a": good, "b": bad, "c": good[:, ::-1].copy()})
    receipt = acquire("bdd100k", spec(archive_dir=str(tmp_path / "archives")), tmp_path / "resources",
                      tmp_path / "resources" / "raw" / "bdd100k.json", progress=False)  # the standard archive names
    tree = receipt["tree"]
    manifest = prepare("bdd100k", tree, tmp_path / "resources" / "bdd100k", 19, receipt=receipt)
    root = tmp_path / "resources" / "bdd100k"
    assert manifest["count"] == {"val": 2} and manifest["broken"] == 1
    assert (root / "lists" / "val.txt").read_text().split() == [
        "images_val/a.jpg", "labels/val/a.png", "images_val/c.jpg", "labels/val/c.png"]
    assert np.asarray(Image.open(root / "labels" / "val" / "c.png")).tolist() == good[:, ::-1].tolist()
    report = json.loads((root / "report.json").read_text())
    assert report["broken"][0]["file"] == "bdd100k/labels/sem_seg/masks/val/b.png"
    assert report["broken"][0]["archive"] == "bdd100k_sem_seg_labels_trainval.zip"
    assert report["broken"][0]["problem"] == "raw label id 19 is outside the dataset's ids 0..18 and 255"
    # 16 classes (SYNTHIA -> BDD100K): terrain, truck and train are ignored, the rest renumbered.
    prepare("bdd100k", tree, tmp_path / "resources" / "bdd16", 16)
    out = np.asarray(Image.open(tmp_path / "resources" / "bdd16" / "labels" / "val" / "a.png"))
    assert out[0].tolist() == [*range(9), 255, 9, 10, 11, 12, 255, 13, 255, 14, 15, 255]


def test_acquire_records_then_checks_the_sha256(tmp_path):
    archives = make_cityscapes(tmp_path / "archives")
    data_root = tmp_path / "resources"
    acquire("cityscapes", spec(archive_dir=str(tmp_path / "archives")), data_root, data_root / "raw" / "c.json",
            progress=False)
    recorded = json.loads((data_root / "raw" / "cityscapes.sha256.json").read_text())
    assert recorded["gtFine_trainvaltest.zip"] == sha256_file(archives[0])
    corrupt_one_byte(archives[1])
    with pytest.raises(ChecksumError, match="leftImg8bit_trainvaltest.zip"):
        acquire("cityscapes", spec(archive_dir=str(tmp_path / "archives")), data_root, data_root / "raw" / "c.json",
                progress=False)


def test_configured_sha256_is_checked_before_extraction(tmp_path):
    archives = make_gta5(tmp_path / "archives", [1])
    wrong = {archives[0].name: "0" * 64}
    with pytest.raises(ChecksumError, match="01_images.zip"):
        acquire("gta5", spec(archive_dir=str(tmp_path / "archives"), archive_names=[a.name for a in archives],
                             sha256=wrong), tmp_path / "r", tmp_path / "r" / "raw" / "gta5.json", progress=False)
    assert not (tmp_path / "r" / "raw" / "gta5").exists()


def test_folder_way_uses_the_tree_in_place_and_missing_archives_say_what_to_do(tmp_path):
    source = tmp_path / "mine"
    make_synthia(tmp_path / "a", 2)
    with zipfile.ZipFile(tmp_path / "a" / "SYNTHIA_RAND_CITYSCAPES.zip") as handle:
        handle.extractall(source)
    (source / "RAND_CITYSCAPES").chmod(0o555)
    try:
        receipt = acquire("synthia", spec(way="folder", folder=str(source)), tmp_path / "r",
                          tmp_path / "r" / "raw" / "synthia.json", progress=False)
        assert receipt["tree"] == str((source / "RAND_CITYSCAPES").resolve())
        prepare("synthia", receipt["tree"], tmp_path / "r" / "synthia", 16)
        assert sorted(p.name for p in (source / "RAND_CITYSCAPES").iterdir()) == ["GT", "RGB"]
    finally:
        (source / "RAND_CITYSCAPES").chmod(0o755)
    with pytest.raises(AcquisitionError, match="01_images.zip.*tu-darmstadt"):
        acquire("gta5", spec(archive_dir=str(tmp_path / "none")), tmp_path / "r", tmp_path / "r" / "x.json")
    with pytest.raises(AcquisitionError, match="csDownload"):
        acquire("cityscapes", spec(way="download", archive_dir=str(tmp_path / "none")), tmp_path / "r",
                tmp_path / "r" / "x.json")


def test_download_way_fetches_checks_and_extracts(tmp_path):
    served = tmp_path / "server"
    make_gta5(served, [1, 2])
    with serve(served, cut={"01_labels.zip"}) as (url, _):
        receipt = acquire("gta5", spec(way="download", url=url, archive_names=["01_images.zip", "01_labels.zip"],
                                       archive_dir=str(tmp_path / "downloads")),
                          tmp_path / "r", tmp_path / "r" / "raw" / "gta5.json", progress=False)
    assert set(receipt["archives"]) == {"01_images.zip", "01_labels.zip"}
    assert (tmp_path / "r" / "raw" / "gta5" / "labels" / "00002.png").is_file()


# ------------------------------------------------------------------------------------------ protocol pieces


def test_ohem_keeps_the_hard_pixels_only():
    labels = torch.zeros(1, 1, 4, dtype=torch.long)
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0] = torch.tensor([10.0, 10.0, 0.0, -2.0])  # two easy pixels, two hard ones
    per_pixel = torch.nn.functional.cross_entropy(logits, labels, reduction="none").flatten()
    assert ohem_cross_entropy(logits, labels, 0.7, 1).item() == pytest.approx(per_pixel[2:].mean().item())
    # min_kept above the number of hard pixels keeps the min_kept hardest ones
    assert ohem_cross_entropy(logits, labels, 0.0, 2).item() == pytest.approx(per_pixel[2:].mean().item(), rel=1e-5)
    ignored = torch.full_like(labels, 255)
    assert ohem_cross_entropy(logits, ignored).item() == 0.0 == cross_entropy(logits, ignored).item()


def test_16_class_metrics_report_miou13():
    confusion = np.diag(np.arange(1, 17)).astype(float)
    wall, fence, pole = (class_names(16).index(n) for n in ("wall", "fence", "pole"))
    for c in (wall, fence, pole):
        confusion[c, c], confusion[c, 0] = 0, 5
    metrics = metrics_from_confusion(confusion)
    assert list(metrics["per_class_iou"]) == list(class_names(16))
    assert metrics["per_class_iou"]["wall"] == 0.0 and metrics["miou13"] > metrics["miou"]
    assert "miou13" not in metrics_from_confusion(np.eye(19))


def test_crop_filter_redraws_crops_with_too_few_classes():
    from diga.data.transforms import crop_has_enough_classes, filtered_crop

    assert crop_has_enough_classes(torch.tensor([[0, 1, 2, 3]] * 4))
    assert crop_has_enough_classes(torch.tensor([[0, 0, 1, 1]] * 4))
    assert not crop_has_enough_classes(torch.tensor([[0, 0, 255, 255]] * 4))
    assert not crop_has_enough_classes(torch.zeros(4, 4, dtype=torch.long))
    label = torch.zeros(40, 40, dtype=torch.long)
    label[:, 30:] = torch.arange(3).repeat_interleave(4)[None, :10]  # the classes sit in a right-hand strip
    item = {"image": torch.rand(3, 40, 40), "label": label}
    unfiltered = [filtered_crop(item, (8, 8), (1.0, 1.0), torch.Generator().manual_seed(s), 1) for s in range(40)]
    filtered = [filtered_crop(item, (8, 8), (1.0, 1.0), torch.Generator().manual_seed(s), 5) for s in range(40)]
    rate = [sum(crop_has_enough_classes(c["label"]) for c in crops) for crops in (unfiltered, filtered)]
    assert rate[1] > rate[0]
    no_labels = {"image": item["image"], "label": torch.full((40, 40), 255)}
    a = filtered_crop(no_labels, (8, 8), (1.0, 1.0), torch.Generator().manual_seed(0), 5)["image"]
    b = filtered_crop(no_labels, (8, 8), (1.0, 1.0), torch.Generator().manual_seed(0), 1)["image"]
    assert torch.equal(a, b)  # unlabelled (target) crops are never redrawn


def test_official_geometry_independent_axes_and_small_images_resized():
    image = torch.rand(3, 40, 80)
    label = torch.arange(80).repeat(40, 1) % 19  # a class per column: widths tell the horizontal scale
    item = {"image": image, "label": label}
    # Joint factors keep the aspect ratio; a too-small image is padded with ignore pixels.
    padded = random_scale_crop_flip(item, (48, 64), (0.5, 0.5), torch.Generator().manual_seed(0))
    assert padded["image"].shape == (3, 48, 64)
    assert (padded["label"][20:] == IGNORE_INDEX).all()  # 40 * 0.5 = 20 rows of image, the rest padding
    # Resized instead (the official RandomCrop): no ignore pixels, the whole 20x40 image stretched to 48x64.
    resized = random_scale_crop_flip(item, (48, 64), (0.5, 0.5), torch.Generator().manual_seed(0), resize_small=True)
    assert resized["image"].shape == (3, 48, 64) and not (resized["label"] == IGNORE_INDEX).any()
    # The valid (non-ignore) region of a padded crop is the rescaled image: its aspect ratio stays 2 with joint
    # factors and varies with independent ones.
    def aspect_ratios(independent: bool) -> set[float]:
        ratios = set()
        for seed in range(20):
            out = random_scale_crop_flip(item, (48, 96), (0.5, 1.0), torch.Generator().manual_seed(seed),
                                         independent=independent)
            valid = out["label"] != IGNORE_INDEX
            ratios.add(round(int(valid.any(0).sum()) / int(valid.any(1).sum()), 1))
        return ratios

    assert aspect_ratios(False) == {2.0}
    assert len(aspect_ratios(True)) > 5
