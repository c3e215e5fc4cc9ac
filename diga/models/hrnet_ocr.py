"""HRNetV2 with the OCR head: the semi-supervised setting's network.

One code path, two sizes chosen by config: the paper's HRNetV2-W48 (branches of 48/96/192/384 channels, stages 2-4
with 1/4/3 modules of 4 basic blocks per branch, a 720-channel concatenation, OCR with 512-d pixel features and
256-d keys) and a tiny one for ToyCity on a CPU (`HRNetSize`).

- Backbone: a stem of two stride-2 3x3 convs; stage 1, one branch of bottlenecks; then each stage adds a branch at
  half the resolution (a transition) and runs modules in which every branch has its basic blocks and then every
  branch receives the sum of all branches, resized (fuse layers). The output concatenates the four branches
  upsampled to the first one's resolution (stride 4).
- OCR head: auxiliary logits from the concatenation give soft object regions; each class's region representation is
  the softmax-weighted mean of the 512-d pixel features; every pixel attends over the class representations
  (scaled dot product of 256-d keys); the attended context and the pixel feature give the 512-d feature (`feat`,
  the feature class centroids are made of) and the main logits.

Module and parameter names follow the HRNet ImageNet checkpoints (conv1, bn1, conv2, bn2, layer1, transition1,
stage2, ...), so `load_hrnet_weights` loads such a file by name and says which tensors found no place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from diga.errors import MissingWeightsError, WeightsError
from diga.models.input_space import InputSpace


class OCROutput(NamedTuple):
    logits: torch.Tensor  # B x C x h x w at stride 4: the main (OCR) logits
    feat: torch.Tensor    # B x D x h x w: the OCR feature used for class centroids (512-d at the paper's size)
    aux: torch.Tensor     # B x C x h x w: the auxiliary logits (soft object regions)


@dataclass(frozen=True)
class HRNetSize:
    """The widths and depths of one HRNetV2 + OCR network."""

    stem: int = 64                                  # stem and stage-1 width (stage 1 outputs 4x this)
    stage1_blocks: int = 4                          # bottlenecks in stage 1
    branches: tuple[int, ...] = (48, 96, 192, 384)  # per-branch widths, highest resolution first
    modules: tuple[int, ...] = (1, 4, 3)            # modules in stages 2, 3, 4
    blocks: int = 4                                 # basic blocks per branch in a module
    ocr_mid: int = 512                              # pixel representation and `feat`
    ocr_key: int = 256                              # attention keys and values
    dropout: float = 0.05


PAPER_SIZE = HRNetSize()  # HRNetV2-W48 + OCR
TINY_SIZE = HRNetSize(stem=16, stage1_blocks=1, branches=(8, 16, 32, 64), modules=(1, 1, 1), blocks=1,
                      ocr_mid=32, ocr_key=16)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
                               nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    def __init__(self, in_ch: int, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch * 4)
        self.downsample = (nn.Sequential(nn.Conv2d(in_ch, ch * 4, 1, bias=False), nn.BatchNorm2d(ch * 4))
                           if in_ch != ch * 4 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class HighResolutionModule(nn.Module):
    """Basic blocks on every branch, then each output branch sums every input branch brought to its resolution:
    lower ones by a 1x1 conv and bilinear upsampling, higher ones by stride-2 3x3 convs."""

    def __init__(self, widths: tuple[int, ...], blocks: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(w) for _ in range(blocks)]) for w in widths)
        self.fuse_layers = nn.ModuleList()
        for i, out_w in enumerate(widths):
            row = nn.ModuleList()
            for j, in_w in enumerate(widths):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(in_w, out_w, 1, bias=False), nn.BatchNorm2d(out_w)))
                elif j == i:
                    row.append(nn.Identity())
                else:  # i - j stride-2 convs; only the last changes the width and has no ReLU
                    steps = [_conv_bn_relu(in_w, in_w, 3, 2) for _ in range(i - j - 1)]
                    steps.append(_conv_bn_relu(in_w, out_w, 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            total = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                y = layer(xs[j])
                if j > i:
                    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
                total = total + y
            out.append(F.relu(total))
        return out


def _transition(previous: tuple[int, ...], widths: tuple[int, ...]) -> nn.ModuleList:
    """Existing branches change width where needed (3x3 conv); the new branch is a stride-2 3x3 conv of the lowest."""
    layers = nn.ModuleList()
    for i, width in enumerate(widths):
        if i < len(previous):
            layers.append(_conv_bn_relu(previous[i], width) if previous[i] != width else nn.Identity())
        else:
            layers.append(nn.Sequential(_conv_bn_relu(previous[-1], width, 3, 2)))
    return layers


class HRNetV2(nn.Module):
    def __init__(self, size: HRNetSize):
        super().__init__()
        self.conv1 = nn.Conv2d(3, size.stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(size.stem)
        self.conv2 = nn.Conv2d(size.stem, size.stem, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(size.stem)
        self.layer1 = nn.Sequential(*[Bottleneck(size.stem if b == 0 else size.stem * 4, size.stem)
                                      for b in range(size.stage1_blocks)])
        widths: tuple[int, ...] = (size.stem * 4,)
        for stage, modules in enumerate(size.modules, start=2):
            branch_widths = size.branches[:stage]
            setattr(self, f"transition{stage - 1}", _transition(widths, branch_widths))
            setattr(self, f"stage{stage}", nn.Sequential(*[HighResolutionModule(branch_widths, size.blocks)
                                                           for _ in range(modules)]))
            widths = branch_widths
        self.out_channels = sum(widths)
        self.last_stage = 1 + len(size.modules)  # stages 2 .. last_stage follow stage 1 (layer1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in range(2, self.last_stage + 1):
            transition = getattr(self, f"transition{stage - 1}")
            inputs = [layer(xs[i] if i < len(xs) else xs[-1]) for i, layer in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(inputs)
        size = xs[0].shape[-2:]
        return torch.cat([xs[0]] + [F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                                    for x in xs[1:]], dim=1)


class OCRHead(nn.Module):
    def __init__(self, in_ch: int, num_classes: int, size: HRNetSize):
        super().__init__()
        mid, key = size.ocr_mid, size.ocr_key
        self.aux_head = nn.Sequential(nn.Conv2d(in_ch, in_ch, 1), nn.BatchNorm2d(in_ch), nn.ReLU(),
                                      nn.Conv2d(in_ch, num_classes, 1))
        self.conv3x3_ocr = nn.Sequential(nn.Conv2d(in_ch, mid, 3, 1, 1), nn.BatchNorm2d(mid), nn.ReLU())
        self.f_pixel = nn.Sequential(_conv_bn_relu(mid, key, 1), _conv_bn_relu(key, key, 1))
        self.f_object = nn.Sequential(_conv_bn_relu(mid, key, 1), _conv_bn_relu(key, key, 1))
        self.f_down = _conv_bn_relu(mid, key, 1)
        self.f_up = _conv_bn_relu(key, mid, 1)
        self.fuse = nn.Sequential(_conv_bn_relu(2 * mid, mid, 1), nn.Dropout2d(size.dropout))
        self.cls_head = nn.Conv2d(mid, num_classes, 1)
        self.key_scale = key ** -0.5

    def forward(self, x: torch.Tensor) -> OCROutput:
        aux = self.aux_head(x)
        pixels = self.conv3x3_ocr(x)
        batch, channels, height, width = pixels.shape
        # Soft object regions: each class's representation is the mean of the pixel features under softmax(aux)
        # taken over the image's pixels.
        regions = F.softmax(aux.flatten(2), dim=2)                           # B x K x HW
        objects = (regions @ pixels.flatten(2).transpose(1, 2))              # B x K x mid
        objects = objects.transpose(1, 2).unsqueeze(3)                       # B x mid x K x 1
        query = self.f_pixel(pixels).flatten(2).transpose(1, 2)              # B x HW x key
        keys = self.f_object(objects).flatten(2)                             # B x key x K
        values = self.f_down(objects).flatten(2).transpose(1, 2)             # B x K x key
        attention = F.softmax(query @ keys * self.key_scale, dim=2)          # B x HW x K
        context = (attention @ values).transpose(1, 2).reshape(batch, -1, height, width)
        feat = self.fuse(torch.cat([self.f_up(context), pixels], dim=1))
        return OCROutput(self.cls_head(feat), feat, aux)


class HRNetOCR(nn.Module):
    """Takes [0, 1] RGB images (mapped to `input_norm` itself, as DeepLabV2 does); logits at stride 4."""

    def __init__(self, size: HRNetSize, num_classes: int, input_norm: str = "imagenet_rgb"):
        super().__init__()
        self.backbone = HRNetV2(size)
        self.head = OCRHead(self.backbone.out_channels, num_classes, size)
        self.input_space = InputSpace(input_norm)

    def forward(self, images: torch.Tensor) -> OCROutput:
        return self.head(self.backbone(self.input_space.to_network(images)))

    def parameter_groups(self, listing: str = "unique") -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone, head) trainable parameters, each tensor once (the official walk is DeepLabV2's only)."""
        if listing != "unique":
            raise ValueError(f"optim.backbone_params {listing!r} describes the official DeepLabV2 code; HRNet lists "
                             "each tensor once: set optim.backbone_params: unique")
        return ([p for p in self.backbone.parameters() if p.requires_grad],
                [p for p in self.head.parameters() if p.requires_grad])


SIZES = {"paper": PAPER_SIZE, "tiny": TINY_SIZE}


def build_hrnet_ocr(model: dict, num_classes: int) -> HRNetOCR:
    """HRNetV2 + OCR of size `model.hrnet_size`, with ImageNet backbone weights when `model.init` is a path."""
    net = HRNetOCR(SIZES[model["hrnet_size"]], num_classes, model.get("input_norm", "imagenet_rgb"))
    net.config = dict(model, num_classes=num_classes)  # stored with checkpoints to rebuild the same network
    if model["init"] == "torchvision":
        raise MissingWeightsError("model.init 'torchvision' is a ResNet-101; HRNet needs the HRNet-W48-C ImageNet "
                                  "checkpoint as a path (hrnetv2_w48_imagenet_pretrained.pth), or model.init: random")
    if model["init"] != "random":
        load_hrnet_weights(net, model["init"])
    return net


def load_hrnet_weights(net: HRNetOCR, path: str, ignore_prefixes: tuple[str, ...] = (
        "incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")) -> None:
    """Load HRNet backbone weights by name from `path` (an ImageNet classification checkpoint: its classification
    parts, `ignore_prefixes`, are left out). Every backbone tensor must find a tensor of its name and shape, and
    every tensor of the file a place; otherwise nothing is loaded and the error names them."""
    from pathlib import Path

    if not Path(path).is_file():
        raise MissingWeightsError(
            f"the HRNet weights {path} do not exist. Put the ImageNet HRNet-W48-C checkpoint there "
            "(hrnetv2_w48_imagenet_pretrained.pth), or set model.init: random to train from scratch.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()
             if not k.removeprefix("module.").startswith(ignore_prefixes)}
    wanted = net.backbone.state_dict()
    # BN batch counters are absent from checkpoints of old PyTorch versions; they are not weights.
    missing = sorted(k for k in set(wanted) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(wanted))
    mismatched = sorted(k for k in set(state) & set(wanted) if state[k].shape != wanted[k].shape)
    if missing or unexpected or mismatched:
        def first(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        problems = [f"{len(missing)} backbone tensor(s) not in the file ({first(missing)})" if missing else "",
                    f"{len(unexpected)} tensor(s) of the file with no place ({first(unexpected)})" if unexpected
                    else "",
                    f"{len(mismatched)} of another shape ({first(mismatched)})" if mismatched else ""]
        raise WeightsError(f"{path} does not fit this HRNet: " + "; ".join(p for p in problems if p)
                           + ". Is it the HRNet-W48-C ImageNet checkpoint, for model size 'paper'?")
    net.backbone.load_state_dict(state, strict=False)  # every weight checked above; only BN counters may be absent
