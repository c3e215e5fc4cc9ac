"""Semi-supervised partitions: the shipped standard Cityscapes lists (counts, nesting, names) and seeded draws."""

from __future__ import annotations

import re

import pytest

from diga.data.splits import STANDARD_FRACTIONS, partition, seeded_labelled, standard_labelled
from diga.errors import ConfigError

# Cityscapes' 18 training cities.
TRAIN_CITIES = {"aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg", "hanover",
                "jena", "krefeld", "monchengladbach", "strasbourg", "stuttgart", "tubingen", "ulm", "weimar", "zurich"}


def test_standard_cityscapes_splits_have_the_published_sizes_are_nested_and_name_train_images():
    splits = {n: standard_labelled(n) for n in STANDARD_FRACTIONS}
    assert {n: len(stems) for n, stems in splits.items()} == {16: 186, 8: 372, 4: 744, 2: 1488}
    for stems in splits.values():
        assert len(set(stems)) == len(stems) and stems == sorted(stems)
        assert all(re.fullmatch(r"[a-z]+_\d{6}_\d{6}", s) and s.split("_")[0] in TRAIN_CITIES for s in stems)
    assert set(splits[16]) < set(splits[8]) < set(splits[4]) < set(splits[2])
    with pytest.raises(ConfigError, match="no standard Cityscapes split 1/32"):
        standard_labelled(32)


def test_seeded_splits_are_nested_per_seed_and_partition_the_list():
    stems = [f"img_{i:06d}" for i in range(100)]
    draws = {n: seeded_labelled(stems, n, seed=3) for n in (16, 8, 4, 2)}
    assert {n: len(d) for n, d in draws.items()} == {16: 6, 8: 12, 4: 25, 2: 50}
    assert set(draws[16]) < set(draws[8]) < set(draws[4]) < set(draws[2])
    assert seeded_labelled(stems, 8, seed=3) == draws[8] and seeded_labelled(stems, 8, seed=4) != draws[8]
    labelled, unlabelled = partition(stems, draws[4])
    assert labelled == draws[4] and len(unlabelled) == 75 and not set(labelled) & set(unlabelled)
    assert sorted(labelled + unlabelled) == stems and unlabelled == [s for s in stems if s not in set(draws[4])]
    with pytest.raises(ConfigError, match=r"1 labelled image\(s\) are not in the training list \(first: elsewhere"):
        partition(stems, ["elsewhere_000000_000019", *draws[16]])


def _target_folder(root, stems, labelled=True, stream=None):
    """A prepared target folder's train list (Cityscapes naming), and a resize stream's list in the same order."""
    lines = [f"leftImg8bit/train/{s.split('_')[0]}/{s}_leftImg8bit.png"
             + (f" gtFine/train/{s.split('_')[0]}/{s}_gtFine_labelTrainIds.png" if labelled else "") for s in stems]
    (root / "lists").mkdir(parents=True)
    (root / "lists/train.txt").write_text("\n".join(lines) + "\n")
    if stream:
        folder = root / "streams" / stream / "lists"
        folder.mkdir(parents=True)
        (folder / "train.txt").write_text("".join(f"streams/{stream}/{line}\n" for line in lines))
    return lines


def test_a_split_writes_labelled_and_unlabelled_lists_for_the_train_list_and_each_stream(tmp_path):
    from diga.data.splits import split_list, write_split

    # The standard 1/2 and two images outside it (a standard list must lie inside the train list, else an error).
    stems = standard_labelled(2) + ["zurich_999999_000019", "ulm_999999_000019"]
    lines = _target_folder(tmp_path, stems, stream="512x1024")
    settings = {"data": {"target": {"root": str(tmp_path), "train_list": "lists/train.txt",
                                    "streams": [[512, 1024]]}},
                "semisup": {"lists": "standard", "split_seed": 0}}
    record = write_split(settings, "1-2")
    assert record == {"split": "1-2", "labelled": 1488, "unlabelled": 2, "lists": "standard"}
    assert (tmp_path / split_list("1-2", "labelled")).read_text().splitlines() == lines[:1488]
    assert (tmp_path / split_list("1-2", "unlabelled")).read_text().splitlines() == lines[1488:]
    streamed = (tmp_path / "streams/512x1024" / split_list("1-2", "unlabelled")).read_text().splitlines()
    assert streamed == [f"streams/512x1024/{line}" for line in lines[1488:]]  # the same images, the stream's copies

    # A seeded split of the same list: nested in its larger fraction, and the two lists partition the images.
    settings["semisup"] = {"lists": "seeded", "split_seed": 5}
    assert write_split(settings, "1-4")["labelled"] == 1490 // 4
    quarter = (tmp_path / split_list("1-4", "labelled")).read_text().splitlines()
    write_split(settings, "1-2")
    half = (tmp_path / split_list("1-2", "labelled")).read_text().splitlines()
    assert set(quarter) < set(half) and len(half) == 1490 // 2
    assert sorted(half + (tmp_path / split_list("1-2", "unlabelled")).read_text().splitlines()) == sorted(lines)


def test_a_split_needs_labels_for_its_labelled_images_and_a_well_formed_name(tmp_path):
    from diga.data.splits import split_denominator, write_split

    _target_folder(tmp_path, standard_labelled(16), labelled=False)
    settings = {"data": {"target": {"root": str(tmp_path), "train_list": "lists/train.txt"}},
                "semisup": {"lists": "standard", "split_seed": 0}}
    with pytest.raises(ConfigError, match="without a label"):
        write_split(settings, "1-16")
    assert split_denominator("1-16") == 16
    for bad in ("1/8", "8", "1-0", "2-8"):
        with pytest.raises(ConfigError, match="not of the form 1-<n>"):
            split_denominator(bad)
