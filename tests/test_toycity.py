"""ToyCity: determinism, label range and coverage, the shift knob, and the atomic on-disk writer."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image

from diga.data import toycity
from diga.data.labels import CLASS_NAMES, NUM_CLASSES
from diga.data.toycity import (
    ToyCitySpec,
    generate_sample,
    render_source,
    render_target,
    sample_layout,
    sample_rng,
    write_toycity,
)
from diga.data.toycity.style import TARGET_STYLES

TINY = ToyCitySpec(seed=3, height=32, width=64, n_source=6, n_target_train=4, n_target_val=3)


def test_same_spec_and_index_is_byte_identical():
    spec = ToyCitySpec()
    for domain, split in (("source", "train"), ("target", "train"), ("target", "val")):
        image_a, label_a = generate_sample(spec, domain, split, 7)
        image_b, label_b = generate_sample(spec, domain, split, 7)
        assert image_a.dtype == np.uint8 and label_a.dtype == np.uint8
        assert image_a.shape == (64, 128, 3) and label_a.shape == (64, 128)
        assert image_a.tobytes() == image_b.tobytes()
        assert label_a.tobytes() == label_b.tobytes()


def test_order_free_and_distinct_streams():
    spec = ToyCitySpec()
    later = generate_sample(spec, "target", "train", 5)
    for index in range(5):                                  # generating others first changes nothing
        generate_sample(spec, "target", "train", index)
    again = generate_sample(spec, "target", "train", 5)
    assert later[0].tobytes() == again[0].tobytes()
    # different index, split, domain or seed: different samples
    base_image, base_label = generate_sample(spec, "target", "train", 0)
    others = (generate_sample(spec, "target", "train", 1), generate_sample(spec, "target", "val", 0),
              generate_sample(spec, "source", "train", 0),
              generate_sample(ToyCitySpec(seed=1), "target", "train", 0))
    for other in others:
        assert not np.array_equal(base_label, other[1])
        assert not np.array_equal(base_image, other[0])


def test_labels_in_range_and_every_class_appears():
    spec = ToyCitySpec()
    present = np.zeros(NUM_CLASSES, dtype=bool)
    for index in range(60):
        _, label = generate_sample(spec, "target", "train", index)
        assert label.min() >= 0 and label.max() < NUM_CLASSES
        present[np.unique(label)] = True
    missing = [CLASS_NAMES[c] for c in np.flatnonzero(~present)]
    assert not missing, f"classes never drawn in 60 target images: {missing}"


def test_long_tail_class_shares():
    spec = ToyCitySpec()
    counts = np.zeros(NUM_CLASSES)
    for index in range(60):
        _, label = generate_sample(spec, "source", "train", index)
        counts += np.bincount(label.ravel(), minlength=NUM_CLASSES)
    share = counts / counts.sum()
    big = {CLASS_NAMES.index(name) for name in ("road", "building", "vegetation", "sky")}
    smallest_big = min(share[c] for c in big)
    assert all(share[c] < smallest_big for c in range(NUM_CLASSES) if c not in big)
    assert share[CLASS_NAMES.index("road")] > 0.2
    for rare in ("traffic light", "rider", "motorcycle", "train"):
        assert share[CLASS_NAMES.index(rare)] < 0.01


def test_layout_is_valid_at_minimum_size():
    rng = np.random.default_rng(0)
    for _ in range(20):
        label = sample_layout(rng, 32, 64)
        assert label.shape == (32, 64) and label.dtype == np.uint8
        assert label.max() < NUM_CLASSES


def test_shift_changes_images_but_not_labels():
    diffs = []
    for index in range(4):
        image0, label0 = generate_sample(ToyCitySpec(shift=0.0), "target", "val", index)
        image1, label1 = generate_sample(ToyCitySpec(shift=1.0), "target", "val", index)
        assert np.array_equal(label0, label1)
        diffs.append(np.abs(image0.astype(int) - image1.astype(int)).mean())
    assert min(diffs) > 15.0, diffs                                     # grey levels, out of 255


def test_shift_zero_target_equals_source_style():
    spec = ToyCitySpec(shift=0.0)
    rng = sample_rng(spec, "target", "train", 2)
    layout = sample_layout(rng, spec.height, spec.width)
    twin = copy.deepcopy(rng)
    assert np.array_equal(render_target(layout, rng, 0.0), render_source(layout, twin))


def test_source_colour_is_a_near_perfect_cue_and_target_is_not():
    spec = ToyCitySpec()

    def spread(domain):
        image, label = generate_sample(spec, domain, "train", 0)
        road = image[label == CLASS_NAMES.index("road")].astype(float)
        return road.std(axis=0).mean()

    assert spread("source") < 3.0                                        # flat colour, tiny jitter
    assert spread("target") > 8.0                                        # texture, blur and noise


def test_bad_spec_raises_with_field_name():
    with pytest.raises(ValueError, match="height"):
        ToyCitySpec(height=0)
    with pytest.raises(ValueError, match="width"):
        ToyCitySpec(width=32)
    with pytest.raises(ValueError, match="shift"):
        ToyCitySpec(shift=1.5)                                           # version 1 ends at 1
    with pytest.raises(ValueError, match="shift"):
        ToyCitySpec(version=2, shift=2.5)                                # version 2 ends at 2
    with pytest.raises(ValueError, match="version"):
        ToyCitySpec(version=3)
    with pytest.raises(ValueError, match="n_source"):
        ToyCitySpec(n_source=0)
    with pytest.raises(ValueError, match="domain"):
        generate_sample(ToyCitySpec(), "other", "train", 0)


def _class_shares(version: int, count: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Pixel share of each class and the number of layouts that contain it, over `count` layouts."""
    pixels, present = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    for index in range(count):
        counts = np.bincount(sample_layout(np.random.default_rng([7, index]), 64, 128, version).ravel(),
                             minlength=NUM_CLASSES)
        pixels += counts
        present += counts > 0
    return pixels / pixels.sum(), present


def test_version_2_makes_thin_and_rare_classes_larger_and_more_frequent():
    share1, present1 = _class_shares(1)
    share2, present2 = _class_shares(2)
    thin_and_rare = ("wall", "fence", "pole", "person", "rider", "truck", "bus", "train", "motorcycle", "bicycle")
    for name in thin_and_rare:
        c = CLASS_NAMES.index(name)
        assert share2[c] > 1.2 * share1[c], (name, share1[c], share2[c])
    for name in ("rider", "motorcycle", "bicycle"):                    # drawn more than 3x as much
        c = CLASS_NAMES.index(name)
        assert share2[c] > 3 * share1[c], (name, share1[c], share2[c])
    # in version 2 every class is in at least a fifth of the layouts (version 1: the train in 5 %)
    assert present2.min() >= 40, dict(zip(CLASS_NAMES, present2, strict=True))
    assert present1[CLASS_NAMES.index("train")] < 20


def test_version_2_poles_are_at_least_three_pixels_wide():
    pole = CLASS_NAMES.index("pole")
    for version, narrowest in ((1, 1), (2, 3)):
        widths = []
        for index in range(100):
            label = sample_layout(np.random.default_rng([3, index]), 64, 128, version)
            for row in label == pole:                                     # horizontal runs of pole pixels
                edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
                widths += list(edges[1::2] - edges[::2])
        # occlusion clips about a tenth of the runs, so look at the common case: the 20th percentile of run widths
        assert np.percentile(widths, 20) == narrowest, (version, np.bincount(widths))


def test_version_2_style_is_linear_in_shift_up_to_two():
    assert TARGET_STYLES[2].hue_deg(1.0) == -30.0 and TARGET_STYLES[2].hue_deg(2.0) == -60.0
    assert TARGET_STYLES[2].hue_deg(0.5) == -15.0
    assert TARGET_STYLES[1].hue_deg(0.1) == pytest.approx(33.0)            # (60 + 6) ramped in by half
    diffs = []
    for shift in (0.5, 1.0, 2.0):
        image0, label0 = generate_sample(ToyCitySpec(version=2, shift=0.0), "target", "val", 1)
        image, label = generate_sample(ToyCitySpec(version=2, shift=shift), "target", "val", 1)
        assert np.array_equal(label0, label)
        diffs.append(np.abs(image0.astype(int) - image.astype(int)).mean())
    assert diffs[0] < diffs[1] < diffs[2], diffs
    spec = ToyCitySpec(version=2, shift=0.0)
    rng = sample_rng(spec, "target", "train", 2)
    layout = sample_layout(rng, spec.height, spec.width, 2)
    twin = copy.deepcopy(rng)
    assert np.array_equal(render_target(layout, rng, 0.0, 2), render_source(layout, twin))


def _read_list(path):
    return [line.split() for line in path.read_text().splitlines()]


def test_write_toycity_layout_and_manifest(tmp_path, capsys):
    root = tmp_path / "toy"
    manifest = write_toycity(TINY, root, progress=True)
    lines = capsys.readouterr().err.splitlines()                       # not a tty: whole ASCII lines
    assert lines[0].startswith("toycity:   0%|") and lines[-1].startswith("toycity: 100%|##########| 13/13 [")
    assert len(lines) <= 3 and "\r" not in "".join(lines)
    expected = {("source", "train"): 6, ("target", "train"): 4, ("target", "val"): 3}
    for (domain, split), count in expected.items():
        lines = _read_list(root / domain / "lists" / f"{split}.txt")
        assert len(lines) == count
        for fields in lines:
            assert len(fields) == 2
            image_path, label_path = (root / domain / f for f in fields)
            assert image_path.is_file() and label_path.is_file()
            with Image.open(image_path) as image:
                assert image.mode == "RGB" and image.size == (64, 32)
            with Image.open(label_path) as label:
                assert label.mode == "L" and label.size == (64, 32)
                values = np.asarray(label)
            assert values.max() < NUM_CLASSES
    assert (root / "source/images/train/toy_src_000000.png").is_file()
    assert (root / "source/labels/train/toy_src_000000_labelTrainIds.png").is_file()
    assert (root / "target/leftImg8bit/val/toycity/toy_tgt_val_000002_leftImg8bit.png").is_file()
    assert (root / "target/gtFine/train/toycity/toy_tgt_train_000003_gtFine_labelTrainIds.png").is_file()

    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["dataset"] == "toycity" and on_disk["num_classes"] == 19
    assert on_disk["spec"]["n_source"] == 6
    assert on_disk["domains"]["source"]["count"] == {"train": 6}
    assert on_disk["domains"]["target"]["count"] == {"train": 4, "val": 3}
    assert on_disk["domains"]["target"]["lists"] == {"train": "lists/train.txt", "val": "lists/val.txt"}
    for domain in ("source", "target"):
        share = on_disk["class_pixel_share"][domain]
        assert set(share) == set(CLASS_NAMES)
        assert abs(sum(share.values()) - 1.0) < 1e-4
    # the saved label equals the generated one
    _, label = generate_sample(TINY, "target", "val", 1)
    saved_path = root / "target/gtFine/val/toycity/toy_tgt_val_000001_gtFine_labelTrainIds.png"
    with Image.open(saved_path) as saved_png:
        saved = np.asarray(saved_png)
    assert np.array_equal(saved, label)
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]             # no temp folders left


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_toycity_twice_is_identical(tmp_path):
    first = write_toycity(TINY, tmp_path / "a", progress=False)
    second = write_toycity(TINY, tmp_path / "b", progress=False)
    assert first == second
    snap_a, snap_b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    assert len(snap_a) == 2 * 13 + 3 + 1
    assert snap_a == snap_b
    write_toycity(TINY, tmp_path / "a", progress=False)                 # overwrite in place
    assert _snapshot(tmp_path / "a") == snap_a


def test_write_toycity_failure_leaves_old_copy_and_no_temp(tmp_path, monkeypatch):
    root = tmp_path / "toy"
    write_toycity(TINY, root, progress=False)
    before = _snapshot(root)
    calls = {"n": 0}
    real = toycity.writer.generate_sample

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(toycity.writer, "generate_sample", failing)
    with pytest.raises(RuntimeError, match="boom"):
        write_toycity(ToyCitySpec(seed=9, height=32, width=64, n_source=6, n_target_train=4, n_target_val=3),
                      root, progress=False)
    assert _snapshot(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]


def test_unseen_styles_have_their_own_layouts_and_look_and_are_written_as_val_folders(tmp_path):
    from diga.config import _schema
    from diga.data.toycity import DOMAIN_IDS, write_toycity_style
    from diga.data.toycity.style import DG_STYLES

    spec = ToyCitySpec(version=2, shift=1.3, height=32, width=64, n_target_val=4)
    names = _schema()["properties"]["dg"]["properties"]["targets"]["items"]["properties"]["toycity_style"]["enum"]
    assert set(names) - {None} == set(DG_STYLES) and set(DG_STYLES) <= set(DOMAIN_IDS)
    target_image, target_label = generate_sample(spec, "target", "val", 0)
    for style in DG_STYLES:
        image, label = generate_sample(spec, style, "val", 0)
        again, _ = generate_sample(spec, style, "val", 0)
        assert np.array_equal(image, again)                      # seeded per sample
        assert not np.array_equal(label, target_label)           # a domain of its own layouts
        # Its look: the same layout rendered in the target style and in this style differ on average by far more
        # than the sensor noise.
        rng_a, rng_b = sample_rng(spec, style, "val", 0), sample_rng(spec, style, "val", 0)
        layout = sample_layout(rng_a, 32, 64, 2)
        sample_layout(rng_b, 32, 64, 2)
        plain = render_target(layout, rng_a, 1.3, 2).astype(float)
        styled = render_target(layout, rng_b, 1.3, 2, DG_STYLES[style]).astype(float)
        assert np.abs(plain - styled).mean() > 15
    assert generate_sample(spec, "dusk", "val", 0)[0].mean() < target_image.mean() - 10   # darker
    manifest = write_toycity_style(spec, "haze", tmp_path / "haze", progress=False)
    lines = _read_list(tmp_path / "haze" / "lists" / "val.txt")
    assert manifest["count"] == {"val": 4} and len(lines) == 4
    assert all((tmp_path / "haze" / image).is_file() and "/haze/" in image for image, _ in lines)
    with Image.open(tmp_path / "haze" / lines[0][1]) as label:
        assert np.array_equal(np.asarray(label), generate_sample(spec, "haze", "val", 0)[1])
    with pytest.raises(ValueError, match="no style 'fog'; its unseen styles are dusk, haze"):
        write_toycity_style(spec, "fog", tmp_path / "fog", progress=False)
    assert not (tmp_path / "fog").exists()
