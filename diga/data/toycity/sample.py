"""One ToyCity sample: a layout, then the style of its domain, from a generator of its own.

`generate_sample` seeds `np.random.default_rng([seed, domain_id, split_id, index])` (no Python
`hash()`), so every image is reproducible on its own, in any order. The layout is drawn first, so
the labels of a target image do not depend on `shift`. A domain is the source, the target, or one of
the unseen styles of domain generalisation (`style.DG_STYLES`), each with its own layouts.
"""

from __future__ import annotations

import numpy as np

from diga.data.toycity.layout import sample_layout
from diga.data.toycity.spec import ToyCitySpec
from diga.data.toycity.style import DG_STYLES, render_source, render_target

DOMAIN_IDS = {"source": 0, "target": 1, "dusk": 2, "haze": 3}  # every name of DG_STYLES has its own id
SPLIT_IDS = {"train": 0, "val": 1}


def sample_rng(spec: ToyCitySpec, domain: str, split: str, index: int) -> np.random.Generator:
    """The generator of one sample: seeded by (seed, domain, split, index), order-free, no hash()."""
    if domain not in DOMAIN_IDS:
        raise ValueError(f"domain {domain!r} is not one of {sorted(DOMAIN_IDS)}")
    if split not in SPLIT_IDS:
        raise ValueError(f"split {split!r} is not one of {sorted(SPLIT_IDS)}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    return np.random.default_rng([int(spec.seed), DOMAIN_IDS[domain], SPLIT_IDS[split], int(index)])


def generate_sample(spec: ToyCitySpec, domain: str, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, label uint8 HxW) pair; the layout is drawn before the style."""
    rng = sample_rng(spec, domain, split, index)
    label = sample_layout(rng, spec.height, spec.width, spec.version)
    if domain == "source":
        image = render_source(label, rng)
    else:
        image = render_target(label, rng, float(spec.shift), spec.version, DG_STYLES.get(domain))
    return image, label
