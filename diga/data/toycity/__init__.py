"""ToyCity: a procedurally generated street-scene source -> target domain-shift benchmark.

DiGA needs a GTA5/SYNTHIA -> Cityscapes pair to show its stage ordering (source-only < warm-up <
self-training). No offline package ships street scenes with semantic labels, so ToyCity draws them:
the same 19 Cityscapes trainIds (from `diga.data.labels`), the same layout prior in both domains, and
an appearance shift that photometric jitter alone cannot undo. Everything is numpy + pillow; 600
images of 64x128 take a few seconds on one CPU core.

One module per job: `spec` (what to generate), `classes` (the trainIds by name), `canvas` (camera geometry
and drawing primitives), `layout` (the street scene shared by both domains), `style` (the source and target
renderers), `sample` (one seeded image and label) and `writer` (the dataset folder and its manifest).
"""

from diga.data.toycity.layout import sample_layout
from diga.data.toycity.sample import DOMAIN_IDS, SPLIT_IDS, generate_sample, sample_rng
from diga.data.toycity.spec import ToyCitySpec
from diga.data.toycity.style import SOURCE_COLOURS, render_source, render_target
from diga.data.toycity.writer import MANIFEST_VERSION, write_toycity, write_toycity_style

__all__ = ["DOMAIN_IDS", "MANIFEST_VERSION", "SOURCE_COLOURS", "SPLIT_IDS", "ToyCitySpec", "generate_sample",
           "render_source", "render_target", "sample_layout", "sample_rng", "write_toycity",
           "write_toycity_style"]
