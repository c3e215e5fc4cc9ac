"""Labelled / unlabelled partitions of a training list, for semi-supervised segmentation.

- The standard Cityscapes partitions (`standard_labelled`): the labelled 1/16, 1/8, 1/4 and 1/2 of the 2975 train
  images (186, 372, 744 and 1488), shipped with the package (diga/data/splits/cityscapes/labeled_1-<n>.txt, one
  image stem per line) as the semi-supervised literature's common lists (those of CPS, which UniMatch reuses), so
  that results compare across papers. The unlabelled part is the rest of the training list.
- Other fractions or datasets (`seeded_labelled`): a seeded draw, nested across fractions for one seed (the
  labelled 1/16 is inside the labelled 1/8, ...), as the standard lists are.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

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
