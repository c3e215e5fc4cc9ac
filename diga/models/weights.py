"""Initial weights: files the user provides, or torchvision's ImageNet weights found in its local cache.

Nothing is downloaded: a missing file stops the stage before training with where to get it, and never falls back
to a random initialisation (that needs `model.init: random`).
"""

from __future__ import annotations

from pathlib import Path

from diga.errors import MissingWeightsError

# The file names torchvision caches its ImageNet weights under (torch.hub's checkpoints folder).
TORCHVISION_FILES = {
    "resnet101": ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"),
    "vgg19": ("vgg19-dcbb9e9d.pth",),
}
DEEPLAB_INIT = "DeepLab_resnet_pretrained_init-f81d91e8.pth"
HRNET_INIT = "hrnetv2_w48_imagenet_pretrained.pth"  # HRNet-W48-C, ImageNet (the semi-supervised setting)


def torchvision_cache() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_torchvision_weights(arch: str) -> Path | None:
    for name in TORCHVISION_FILES[arch]:
        path = torchvision_cache() / name
        if path.is_file():
            return path
    return None


def resolve_backbone_init(init: str) -> str:
    """The weights file `model.init` stands for: a path, or 'torchvision' (ImageNet ResNet-101 from the cache)."""
    if init == "torchvision":
        path = cached_torchvision_weights("resnet101")
        if path is None:
            names = " or ".join(TORCHVISION_FILES["resnet101"])
            raise MissingWeightsError(
                f"model.init is 'torchvision' but no ResNet-101 ImageNet weights ({names}) are in "
                f"{torchvision_cache()}. On a machine with internet run `python -c \"import torchvision; "
                "torchvision.models.resnet101(weights='IMAGENET1K_V1')\"` and copy the cache, or give the paper's "
                f"DeepLab init ({DEEPLAB_INIT}, README 'Real benchmarks') as model.init.")
        return str(path)
    if not Path(init).is_file():
        raise MissingWeightsError(
            f"model.init points at {init}, which does not exist. Put the initial weights there (the paper's: the "
            f"ImageNet+COCO DeepLab init {DEEPLAB_INIT} for DeepLabV2, {HRNET_INIT} for HRNet; README 'Real "
            "benchmarks'), use model.init: torchvision "
            "for cached ImageNet weights, or model.init: random to train from scratch.")
    return init


def resolve_vgg_weights(path: str | None) -> str:
    """stages.translator.vgg_weights, or (null) torchvision's cached VGG19 ImageNet weights."""
    if path is None:
        cached = cached_torchvision_weights("vgg19")
        if cached is None:
            raise MissingWeightsError(
                f"stages.translator.perceptual_weight > 0 needs VGG19 ImageNet weights: set "
                f"stages.translator.vgg_weights to vgg19-dcbb9e9d.pth "
                f"(https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) or put it in "
                f"{torchvision_cache()}; or set stages.translator.perceptual_weight: 0")
        return str(cached)
    if not Path(path).is_file():
        raise MissingWeightsError(
            f"stages.translator.vgg_weights {path} does not exist: download torchvision's vgg19 ImageNet weights "
            "(https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) there, or set "
            "stages.translator.perceptual_weight: 0")
    return path


def describe_initial_weights(settings: dict) -> dict:
    """Resolve the config's weight files (raising FileNotFoundError with the fix) and record their sha256."""
    from diga.data.archives import sha256_file

    record: dict = {"model_init": settings["model"]["init"], "vgg_weights": None}
    if settings["model"]["init"] != "random":
        path = resolve_backbone_init(settings["model"]["init"])
        record["model_init"] = {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}
    if settings["stages"]["translator"]["perceptual_weight"] > 0:
        path = resolve_vgg_weights(settings["stages"]["translator"]["vgg_weights"])
        record["vgg_weights"] = {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}
    return record
