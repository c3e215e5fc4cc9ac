"""Resize streams: prepared resized copies, the composed batch of a stage, its resume state, and the config checks.

The dataset is hand-made so every expected value can be checked by hand: 8x16 GTA5 images made of 4x8 blocks of
one colour and one class each (labelIds 7, 8, 11, 26 = trainIds road 0, sidewalk 1, building 2, car 13).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fakedata import gta_palette, png_bytes
from PIL import Image

from conftest import TINY_CONFIG
from diga.config import ConfigError, validate
from diga.data.prepare import PreparationError, prepare
from diga.data.streams import stream_counts
from diga.runtime.datasets import ComposedStream, domain_batches, source_train, target_train
from diga.train.common import stage_settings

BLOCK_IDS = np.array([[7, 8], [11, 26]], dtype=np.uint8)  # labelIds of the four 4x8 blocks
BLOCK_TRAIN_IDS = [[0, 1], [2, 13]]
COLOURS = np.array([[[200, 0, 0], [0, 200, 0]], [[0, 0, 200], [200, 200, 0]]], dtype=np.uint8)


def blocks(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 2x2 array of values blown up to height x width (each value a (height/2) x (width/2) block)."""
    return np.repeat(np.repeat(array, height // 2, axis=0), width // 2, axis=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Three 8x16 GTA5 pairs prepared with streams 4x8 (down), 8x16 (native: reused) and 16x32 (up)."""
    tmp = tmp_path_factory.mktemp("streams")
    tree = tmp / "GTA5"
    (tree / "images").mkdir(parents=True)
    (tree / "labels").mkdir()
    for number in (1, 2, 3):
        Image.fromarray(blocks(COLOURS, 8, 16)).save(tree / "images" / f"{number:05d}.png")
        (tree / "labels" / f"{number:05d}.png").write_bytes(png_bytes(blocks(BLOCK_IDS, 8, 16), "P", gta_palette()))
    manifest = prepare("gta5", tree, tmp / "gta5", 19, streams=[(4, 8), (8, 16), (16, 32)],
                       stream_lists=["lists/train_full.txt"])
    return tmp / "gta5", manifest


def stream_settings(root, streams, batch, scale=(1.0, 1.0)) -> dict:
    settings = yaml.safe_load(TINY_CONFIG.read_text())
    settings["data"].update(source={"root": str(root), "train_list": "lists/train_full.txt", "streams": streams},
                            crop=[8, 16], scale=list(scale))
    settings["stages"]["source_only"]["batch"] = batch
    return validate(settings)


# ---------------------------------------------------------------------------------------------- preparation


def test_streams_store_resized_pairs_with_their_own_lists(prepared):
    root, manifest = prepared
    assert manifest["streams"]["4x8"] == {"size": [4, 8], "resized": 3, "reused": 0,
                                          "lists": {"lists/train_full.txt": "streams/4x8/lists/train_full.txt"}}
    assert manifest["streams"]["8x16"]["resized"] == 0 and manifest["streams"]["8x16"]["reused"] == 3
    assert json.loads((root / "manifest.json").read_text())["streams"] == manifest["streams"]
    # The native-size stream lists the prepared pairs themselves; the others their resized copies.
    assert (root / "streams/8x16/lists/train_full.txt").read_text() == (root / "lists/train_full.txt").read_text()
    assert not (root / "streams" / "8x16" / "images").exists()
    lines = (root / "streams/16x32/lists/train_full.txt").read_text().splitlines()
    assert lines[0] == "streams/16x32/images/00001.png streams/16x32/labels/00001.png" and len(lines) == 3
    for height, width in ((4, 8), (16, 32)):
        folder = root / "streams" / f"{height}x{width}"
        with Image.open(folder / "images" / "00002.png") as image:
            assert image.size == (width, height) and image.mode == "RGB"
        label = np.asarray(Image.open(folder / "labels" / "00002.png"))
        # Nearest keeps every pixel a valid trainId, and one block per class: no blended ids at the edges.
        assert label.tolist() == blocks(np.array(BLOCK_TRAIN_IDS), height, width).tolist()


def test_streams_of_an_unknown_list_say_which_lists_exist(prepared, tmp_path):
    root, manifest = prepared
    tree = Path(manifest["tree"])
    with pytest.raises(PreparationError, match=r"\['lists/nope.txt'\].*lists/train.txt, lists/train_full.txt"):
        prepare("gta5", tree, tmp_path / "gta5", 19, streams=[(4, 8)], stream_lists=["lists/nope.txt"])
    assert not (tmp_path / "gta5").exists()  # nothing half-written
    assert prepare("gta5", tree, tmp_path / "gta5", 19, stream_lists=["lists/nope.txt"])["streams"] == {}


def test_bicubic_images_keep_the_block_colours_away_from_edges(prepared):
    root, _ = prepared
    image = np.asarray(Image.open(root / "streams" / "16x32" / "images" / "00001.png"))
    assert image[0, 0].tolist() == [200, 0, 0] and image[15, 31].tolist() == [200, 200, 0]
    assert image[1, 14].tolist() != image[1, 17].tolist()  # the two top blocks


# ------------------------------------------------------------------------------------------- composed batches


def test_each_stream_provides_images_at_its_size(prepared):
    root, _ = prepared
    settings = stream_settings(root, [[4, 8], [16, 32]], [1, 2])
    assert source_train(settings, size=(4, 8))[0]["image"].shape == (3, 4, 8)
    assert source_train(settings, size=(16, 32))[0]["label"].shape == (16, 32)
    assert source_train(settings)[0]["image"].shape == (3, 8, 16)  # no size: the prepared images


def test_composed_batch_concatenates_the_streams_in_order(prepared):
    root, _ = prepared
    settings = stream_settings(root, [[4, 8], [16, 32]], [1, 2])
    stream = domain_batches(settings, "source", [1, 2], torch.Generator().manual_seed(0), torch.device("cpu"))
    assert [part.batch_size for part in stream.parts] == [1, 2]
    batch = next(stream)
    assert batch["image"].shape == (3, 3, 8, 16) and batch["label"].shape == (3, 8, 16)
    # Scale 1: the 4x8 image is padded (ignore) to the 8x16 crop, so 32 labelled pixels; the 16x32 crops are full.
    valid = (batch["label"] != 255).flatten(1).sum(1).tolist()
    assert valid == [32, 128, 128]
    # An integer total is split over the streams, the earlier ones taking the remainder.
    stream = domain_batches(settings, "source", 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert [part.batch_size for part in stream.parts] == [2, 1]
    assert stream_counts(5, 2) == [3, 2] and stream_counts(4, 1) == [4] and stream_counts([0, 3], 2) == [0, 3]


def test_a_zero_count_stream_is_not_drawn(prepared):
    root, _ = prepared
    settings = stream_settings(root, [[4, 8], [16, 32]], [0, 2])
    stream = domain_batches(settings, "source", [0, 2], torch.Generator().manual_seed(0), torch.device("cpu"))
    assert len(stream.parts) == 1 and next(stream)["image"].shape[0] == 2


def test_no_streams_draw_exactly_as_one_batch_stream(prepared):
    """Without streams the composed stream is one BatchStream over the plain list: the same crops as before."""
    from diga.data.loader import BatchStream

    root, _ = prepared
    settings = stream_settings(root, [], 2, scale=(0.75, 1.5))
    composed = domain_batches(settings, "source", 2, torch.Generator().manual_seed(5), torch.device("cpu"))
    plain = BatchStream(source_train(settings), 2, settings, torch.Generator().manual_seed(5), torch.device("cpu"))
    for _ in range(3):
        a, b = next(composed), next(plain)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_composed_stream_resumes_to_the_same_batches(prepared):
    root, _ = prepared
    settings = stream_settings(root, [[4, 8], [8, 16], [16, 32]], [1, 2, 1], scale=(0.75, 1.5))

    def new_stream(seed):
        generator = torch.Generator().manual_seed(seed)
        return domain_batches(settings, "source", [1, 2, 1], generator, torch.device("cpu")), generator

    stream, generator = new_stream(3)
    for _ in range(2):  # part-way through a shuffled order of the 3 images
        next(stream)
    state, generator_state = stream.state_dict(), generator.get_state()
    expected = [next(stream) for _ in range(3)]
    resumed, other = new_stream(99)
    resumed.load_state_dict(state)
    other.set_state(generator_state)  # the stage checkpoints its generator beside the stream
    for want in expected:
        got = next(resumed)
        assert torch.equal(got["image"], want["image"]) and torch.equal(got["label"], want["label"])
    with pytest.raises(ValueError, match="3 streams"):
        ComposedStream(resumed.parts[:2]).load_state_dict(state)


def test_target_pseudo_labels_follow_the_stream_size(prepared, tmp_path):
    root, _ = prepared
    settings = stream_settings(root, [], 2)
    settings["data"]["target"].update(root=str(root), train_list="lists/train_full.txt", streams=[[4, 8]])
    for number in (1, 2, 3):  # full-size pseudo-labels (trainIds), as the pseudolabels rule writes them
        Image.fromarray(blocks(np.array(BLOCK_TRAIN_IDS, dtype=np.uint8), 8, 16)).save(tmp_path / f"{number:05d}.png")
    item = target_train(settings, pseudo_dir=str(tmp_path), size=(4, 8))[0]
    assert item["image"].shape == (3, 4, 8)
    assert item["pseudo"].tolist() == blocks(np.array(BLOCK_TRAIN_IDS), 4, 8).tolist()


def test_target_ground_truth_never_chooses_a_training_crop(prepared, tmp_path):
    """Target-train labels (data.target.train_has_labels) are for measurement only (self-training's logged
    pseudo-label accuracy): with the crop filter on, self-training's target stream draws the same crops and
    pseudo-labels whether those labels are true, garbage or absent; the truth only follows the crop's geometry."""
    root, _ = prepared
    garbage = tmp_path / "garbage"
    shutil.copytree(root, garbage)
    for path in (garbage / "labels").glob("*.png"):  # one class everywhere: a filter reading it always redraws
        Image.fromarray(np.zeros((8, 16), dtype=np.uint8)).save(path)
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    for number in (1, 2, 3):  # pseudo-labels equal to the truth, so both must come out cropped alike
        Image.fromarray(blocks(np.array(BLOCK_TRAIN_IDS, dtype=np.uint8), 8, 16)).save(pseudo / f"{number:05d}.png")

    def draws(target_root: Path, has_labels: bool, **options) -> list[dict]:
        settings = stream_settings(root, [], 2, scale=(0.75, 1.5))
        settings["data"].update(crop=[4, 8], crop_filter_tries=5)
        settings["data"]["target"].update(root=str(target_root), train_list="lists/train_full.txt",
                                          train_has_labels=has_labels)
        stream = domain_batches(settings, "target", 2, torch.Generator().manual_seed(0), torch.device("cpu"),
                                **options)
        return [next(stream) for _ in range(8)]

    true, junk, absent = (draws(path, has, pseudo_dir=str(pseudo))  # as train_selftrain asks for them
                          for path, has in ((root, True), (garbage, True), (root, False)))
    for a, b, c in zip(true, junk, absent, strict=True):
        for key in ("image", "pseudo", "label"):
            assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]), key
        assert (a["label"] == 255).all()  # a target image carries no training label
        assert torch.equal(a["truth"], a["pseudo"]) and set(b["truth"].unique().tolist()) <= {0, 255}
        assert "truth" not in c
    # The filter is on here: the oracle, which trains on target labels, has its crops chosen by them.
    oracle = draws(root, True, with_labels=True)
    assert "truth" not in oracle[0]
    assert any(not torch.equal(a["image"], o["image"]) for a, o in zip(absent, oracle, strict=True))


# ------------------------------------------------------------------------------------------------ the config


def tiny() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


def test_a_batch_list_must_have_one_count_per_stream():
    settings = tiny()
    settings["data"]["source"]["streams"] = [[16, 32], [32, 64]]
    settings["stages"]["warmup"]["batch"] = [1, 2, 3]
    settings["stages"]["selftrain"]["batch_target"] = [2, 1]  # the target has no streams
    with pytest.raises(ConfigError) as error:
        validate(settings)
    message = str(error.value)
    assert "stages.warmup.batch lists 3 count(s) but data.source.streams has 2 stream(s); give 2 count(s)" in message
    assert "stages.selftrain.batch_target lists 2 count(s) but data.target.streams is empty" in message
    settings["stages"]["warmup"]["batch"] = [1, 2]
    settings["stages"]["selftrain"]["batch_target"] = [3]
    assert validate(settings)["stages"]["warmup"]["batch"] == [1, 2]


def test_the_translator_batch_list_fits_both_domains():
    settings = tiny()
    settings["data"]["source"]["streams"] = [[16, 32], [32, 64]]
    settings["stages"]["translator"] = {"batch": [1, 1]}
    with pytest.raises(ConfigError, match="stages.translator.batch lists 2 count.* data.target.streams is empty"):
        validate(settings)
    settings["data"]["target"]["streams"] = [[16, 32], [32, 64]]
    assert validate(settings)["stages"]["translator"]["batch"] == [1, 1]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("batch", [0, 0], "batch: \\[0, 0\\] is not valid under any of the given schemas"),
    ("batch", 0, "is not valid under any of the given schemas"),
    ("augment", {"jitter_p": 1.5}, "1.5 is greater than the maximum of 1"),
    ("augment", {"jiter_p": 0.5}, "'jiter_p' was unexpected"),
])
def test_the_schema_rejects_bad_batches_and_augment_overrides(key, value, message):
    settings = tiny()
    settings["stages"]["warmup"][key] = value
    with pytest.raises(ConfigError, match=message):
        validate(settings)


def test_stream_sizes_are_pairs():
    settings = tiny()
    settings["data"]["source"]["streams"] = [[720, 1280, 3]]
    with pytest.raises(ConfigError, match="data/source/streams/0"):
        validate(settings)


def test_a_stage_settings_overrides_only_its_keys():
    settings = tiny()
    settings["stages"]["warmup"]["augment"] = {"jitter_p": 0.7, "grayscale_p": 0.1}
    settings = validate(settings)
    warmup = stage_settings(settings, "warmup")["augment"]
    assert warmup["jitter_p"] == 0.7 and warmup["grayscale_p"] == 0.1 and warmup["blur_p"] == 0.8
    assert stage_settings(settings, "selftrain")["augment"] == settings["augment"]
    assert settings["augment"]["jitter_p"] == 0.5  # the global section is unchanged


def test_a_stage_scale_replaces_data_scale_for_that_stage_only():
    settings = tiny()
    settings["stages"]["warmup"]["scale"] = [1.0, 1.0]
    settings["stages"]["translator"]["scale"] = [1.0, 1.0]
    settings = validate(settings)
    assert stage_settings(settings, "warmup")["data"]["scale"] == [1.0, 1.0]
    assert stage_settings(settings, "translator")["data"]["scale"] == [1.0, 1.0]
    assert stage_settings(settings, "selftrain")["data"]["scale"] == settings["data"]["scale"] == [0.75, 1.5]
    settings["stages"]["oracle"]["scale"] = [1.0]
    with pytest.raises(ConfigError, match="scale"):
        validate(settings)


def test_auto_loader_workers_are_shared_by_a_stages_streams(monkeypatch):
    import diga.train.common as common

    settings = tiny()
    settings["data"]["source"]["streams"] = [[24, 48], [32, 64]]
    settings["data"]["target"]["streams"] = [[24, 48], [40, 80]]
    settings = validate(settings)
    assert settings["train"]["loader_workers"] == "auto"
    # On the CPU, auto is no workers at all.
    assert stage_settings(settings, "selftrain")["train"]["loader_workers"] == 0
    # As on a GPU node whose job has 9 cores: 8 workers for the process, split over its batch streams.
    monkeypatch.setattr(common, "loader_workers", lambda choice, device: 8)
    assert stage_settings(settings, "selftrain")["train"]["loader_workers"] == 2   # 4 streams: source 2, target 2
    assert stage_settings(settings, "warmup")["train"]["loader_workers"] == 4      # source only
    assert stage_settings(settings, "oracle")["train"]["loader_workers"] == 4      # target only
    settings["train"]["loader_workers"] = 3                                        # a number is per stream
    assert stage_settings(settings, "selftrain")["train"]["loader_workers"] == 3
