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
