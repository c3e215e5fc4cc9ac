"""Semi-supervised segmentation: the adaptation stages' training, run on one labelled split of target train.

The labelled part plays the source's role (CE, the symmetric distillation with its photometric view, the images
ClassMix pastes) and the unlabelled part the target's (the BN leak of the official warm-up, pseudo-labels,
consensus selection); semisup_settings maps the data, and the checkpoint records the split.
"""

from __future__ import annotations

from pathlib import Path

from diga.config import replace
from diga.data.splits import split_list
from diga.train.selftrain import train_selftrain
from diga.train.supervised import train_supervised
from diga.train.warmup import train_with_distillation


def semisup_settings(settings: dict, split: str) -> dict:
    """The settings a semi-supervised training stage runs with: its labelled domain (data.source, what the
    training code draws labelled batches from) is the labelled part of target train, and target train is the
    unlabelled part; both keep the target's root and resize streams. Target val is unchanged."""
    target = settings["data"]["target"]
    labelled = {"root": target["root"], "train_list": split_list(split, "labelled"),
                "streams": target.get("streams", [])}
    unlabelled = {**target, "train_list": split_list(split, "unlabelled")}
    return replace(settings, data=replace(settings["data"], source=labelled, target=unlabelled))


def train_semisup_supervised(settings: dict, seed: int, split: str, out_dir: Path) -> None:
    """The baseline: CE on the split's labelled images only."""
    train_supervised(semisup_settings(settings, split), seed, "semisup_supervised", out_dir, {"split": split})


def train_semisup_warmup(settings: dict, seed: int, split: str, out_dir: Path) -> None:
    """The warm-up's loss on the labelled images, their photometric view as the second view (no translator)."""
    train_with_distillation(semisup_settings(settings, split), seed, "semisup_warmup", out_dir, None,
                             {"split": split})


def train_semisup_selftrain(settings: dict, seed: int, split: str, round_index: int, init_path: Path,
                            pseudo_dir: Path, centroids_path: Path, out_dir: Path) -> None:
    """A self-training round: labelled CE and distillation, and CE on unlabelled images with labelled classes
    pasted in, their pixels carrying the pseudo-labels that pass the consensus."""
    train_selftrain(semisup_settings(settings, split), seed, round_index, init_path, None, pseudo_dir,
                    centroids_path, out_dir, "semisup_selftrain", {"split": split})
