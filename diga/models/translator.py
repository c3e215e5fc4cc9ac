"""The source-to-target image translator: encoder/decoder generators and multi-scale PatchGAN discriminators.

Shape as in the paper's translator (MUNIT-style blocks, instance norm), width and depth set by config.
Images enter and leave in [0, 1] image space; the networks work in the translator's space (`stages.translator.space`):
'unit', [-1, 1] RGB (2x - 1), or 'caffe_bgr', the tensor the official segmenter input is (the official translator
reads and writes that tensor, and its losses compare it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diga.models.input_space import InputSpace

TRANSLATOR_SPACES = ("unit", "caffe_bgr")


class UnitSpace(nn.Module):
    """[0, 1] images <-> [-1, 1] tensors (2x - 1), the usual GAN range."""

    def to_network(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2 - 1

    def to_image(self, tensor: torch.Tensor) -> torch.Tensor:
        return (tensor + 1) / 2


def translator_space(name: str) -> nn.Module:
    if name not in TRANSLATOR_SPACES:
        raise ValueError(f"stages.translator.space must be one of {TRANSLATOR_SPACES}, not {name!r}")
    return UnitSpace() if name == "unit" else InputSpace(name)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, affine: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.ReflectionPad2d(kernel // 2 if stride == 1 else (kernel - stride) // 2 + (kernel - stride) % 2),
        nn.Conv2d(in_ch, out_ch, kernel, stride), nn.InstanceNorm2d(out_ch, affine=affine), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, channels: int, affine: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=affine),
            nn.ReLU(inplace=True), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """7x7 conv, `downsample` stride-2 4x4 convs (2 in the paper: 1/4 resolution), residual blocks: a content map."""

    def __init__(self, width: int, res_blocks: int, affine: bool, space: nn.Module, downsample: int = 2):
        super().__init__()
        self.space = space
        layers = [_conv(3, width, 7, affine=affine)]
        for i in range(downsample):
            layers.append(_conv(width * 2 ** i, width * 2 ** (i + 1), 4, 2, affine=affine))
        channels = width * 2 ** downsample
        self.net = nn.Sequential(*layers, *[ResBlock(channels, affine) for _ in range(res_blocks)])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.space.to_network(images))


class Decoder(nn.Module):
    """Residual blocks, `downsample` (nearest upsample + 5x5 conv) stages, 7x7 conv, tanh: content map to image."""

    def __init__(self, width: int, res_blocks: int, affine: bool, space: nn.Module, downsample: int = 2):
        super().__init__()
        self.space = space
        channels = width * 2 ** downsample
        layers = [ResBlock(channels, affine) for _ in range(res_blocks)]
        for i in range(downsample, 0, -1):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       _conv(width * 2 ** i, width * 2 ** (i - 1), 5, affine=affine)]
        self.net = nn.Sequential(*layers, nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Tanh())

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.space.to_image(self.net(content))


class Generator(nn.Module):
    """Encoder of one domain + decoder into another: what warm-up and self-training call to translate."""

    def __init__(self, width: int, res_blocks: int, affine: bool = True, space: str = "unit", downsample: int = 2):
        super().__init__()
        self.encoder = Encoder(width, res_blocks, affine, translator_space(space), downsample)
        self.decoder = Decoder(width, res_blocks, affine, translator_space(space), downsample)
        self.factor = 2 ** downsample

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        pad_h, pad_w = (-height) % self.factor, (-width) % self.factor  # what the encoder's strides divide
        padded = F.pad(images, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else images
        return self.decoder(self.encoder(padded))[..., :height, :width]


class MultiScaleDiscriminator(nn.Module):
    """PatchGAN (4 stride-2 convs, LeakyReLU, 1x1 out) applied at `scales` image scales (3x3 avg-pool between)."""

    def __init__(self, width: int, scales: int, bias: bool = True, space: str = "unit"):
        super().__init__()
        self.space = translator_space(space)

        def patchgan() -> nn.Sequential:
            layers, in_ch = [], 3
            for i in range(4):
                out_ch = width * 2 ** i
                layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=bias), nn.LeakyReLU(0.2, inplace=True)]
                in_ch = out_ch
            return nn.Sequential(*layers, nn.Conv2d(in_ch, 1, 1, bias=bias))
        self.nets = nn.ModuleList([patchgan() for _ in range(scales)])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs, x = [], self.space.to_network(images)
        for net in self.nets:
            outputs.append(net(x))
            x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return outputs


def build_generator(translator: dict) -> Generator:
    # Checkpoints written before these options existed: affine instance norm, unit space, 1/4 resolution.
    return Generator(translator["width"], translator["res_blocks"], translator.get("norm_affine", True),
                     translator.get("space", "unit"), translator.get("downsample", 2))


def build_discriminator(translator: dict) -> MultiScaleDiscriminator:
    return MultiScaleDiscriminator(translator["width"], translator["disc_scales"], translator["disc_bias"],
                                   translator["space"])
