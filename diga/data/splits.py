"""Labelled / unlabelled partitions of a training list, for semi-supervised segmentation.

- The standard Cityscapes partitions (`standard_labelled`): the labelled 1/16, 1/8, 1/4 and 1/2 of the 2975 train
  images (186, 372, 744 and 1488), shipped with the package (diga/data/splits/cityscapes/labeled_1-<n>.txt, one
  image stem per line) as the semi-supervised literature's common lists (those of CPS, which UniMatch reuses), so
  that results compare across papers. The unlabelled part is the rest of the training list.
- Other fractions or datasets (`seeded_labelled`): a seeded draw, nested across fractions for one seed (the
  labelled 1/16 is inside the labelled 1/8, ...), as the standard lists are.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np

from diga.atomic import write_json, write_text
from diga.data.streams import domain_streams, stream_list
from diga.errors import ConfigError

STANDARD_FRACTIONS = (16, 8, 4, 2)  # 1/n of Cityscapes train


def standard_labelled(denominator: int) -> list[str]:
    """The image stems of the standard labelled 1/`denominator` of Cityscapes train (sorted)."""
    if denominator not in STANDARD_FRACTIONS:
        raise ConfigError(f"no standard Cityscapes split 1/{denominator}: the standard ones are "
                          f"{', '.join(f'1/{n}' for n in STANDARD_FRACTIONS)}; other fractions are drawn by seed")
    text = resources.files("diga.data").joinpath(f"splits/cityscapes/labeled_1-{denominator}.txt").read_text()
    return text.split()


def seeded_labelled(stems: list[str], denominator: int, seed: int) -> list[str]:
    """A labelled 1/`denominator` of `stems` (rounded down, at least one) from one seeded permutation, so that for a
    seed every smaller fraction is inside every larger one (sorted)."""
    if denominator < 1:
        raise ConfigError(f"a labelled fraction 1/{denominator} needs a denominator of at least 1")
    ordered = sorted(set(stems))
    permutation = np.random.default_rng([seed, 17]).permutation(len(ordered))
    count = max(1, len(ordered) // denominator)
    return sorted(ordered[i] for i in permutation[:count])


def partition(stems: list[str], labelled: list[str]) -> tuple[list[str], list[str]]:
    """(labelled, unlabelled) stems of a training list, in its order; every labelled stem must be in it."""
    chosen = set(labelled)
    unknown = sorted(chosen - set(stems))
    if unknown:
        raise ConfigError(f"{len(unknown)} labelled image(s) are not in the training list (first: "
                          f"{', '.join(unknown[:3])}); is the training list the dataset's whole train split?")
    return [s for s in stems if s in chosen], [s for s in stems if s not in chosen]


# ----------------------------------------------------------------------------------------------------------
# A split's list files (diga.train.semisup maps the settings a semi-supervised stage trains with)
# ----------------------------------------------------------------------------------------------------------

_SPLIT_NAME = re.compile(r"1-(?P<denominator>[1-9]\d*)")


def split_denominator(split: str) -> int:
    """'1-8' (the labelled 1/8) -> 8."""
    match = _SPLIT_NAME.fullmatch(split)
    if match is None:
        raise ConfigError(f"semi-supervised split {split!r} is not of the form 1-<n> (the labelled 1/n), e.g. 1-8")
    return int(match["denominator"])


def split_list(split: str, part: str) -> str:
    """The list file of a split's `part` ('labelled' or 'unlabelled'), relative to the target's prepared folder (a
    resize stream's copy is `streams/<H>x<W>/<this>`, as for every training list)."""
    return f"lists/semisup/{split}/{part}.txt"


def image_stem(image: str) -> str:
    """A list line's image stem, as the standard lists name images: 'leftImg8bit/train/aachen/aachen_000000_000019_
    leftImg8bit.png' -> 'aachen_000000_000019'."""
    return PurePosixPath(image).stem.removesuffix("_leftImg8bit")


def write_split(settings: dict, split: str) -> dict:
    """Write the labelled and unlabelled lists of `split` for data.target's train list and for each of its resize
    streams (the same images in each); return their counts.

    `semisup.lists: standard` takes the standard Cityscapes lists, `seeded` a draw with semisup.split_seed.
    """
    target, semisup = settings["data"]["target"], settings["semisup"]
    root, denominator = Path(target["root"]), split_denominator(split)
    lines = [line for line in (root / target["train_list"]).read_text().splitlines() if line.strip()]
    stems = [image_stem(line.split()[0]) for line in lines]
    if semisup["lists"] == "standard":
        labelled_stems = standard_labelled(denominator)
    else:
        labelled_stems = seeded_labelled(stems, denominator, semisup["split_seed"])
    labelled, _ = partition(stems, labelled_stems)
    chosen = set(labelled)
    missing_labels = [line for line in lines if len(line.split()) < 2 and image_stem(line.split()[0]) in chosen]
    if missing_labels:
        raise ConfigError(f"{root / target['train_list']} lists labelled-split images without a label (first: "
                          f"{missing_labels[0]!r}); prepare the target's train labels first")
    # The native-size lists (pseudo-labels read them) and each resize stream's (training reads those).
    for size in dict.fromkeys([None, *domain_streams(target)]):
        list_file = stream_list(target["train_list"], size)
        stream_lines = [line for line in (root / list_file).read_text().splitlines() if line.strip()]
        if len(stream_lines) != len(lines):  # prepare writes a stream's list in its train list's order
            raise ConfigError(f"{root / list_file} has {len(stream_lines)} lines for {len(lines)} in "
                              f"{target['train_list']}: re-prepare the target dataset")
        for part, keep in (("labelled", True), ("unlabelled", False)):
            picked = [line for line, stem in zip(stream_lines, stems, strict=True) if (stem in chosen) == keep]
            write_text(root / stream_list(split_list(split, part), size), "\n".join(picked) + "\n")
    return {"split": split, "labelled": len(chosen), "unlabelled": len(lines) - len(chosen),
            "lists": semisup["lists"]}


def write_split_command(settings: dict, split: str, out: Path) -> None:
    """`diga semisup-split`: write a split's lists and a JSON record of its counts."""
    record = write_split(settings, split)
    print(f"split {split}: {record['labelled']} labelled, {record['unlabelled']} unlabelled images")
    write_json(out, record)
