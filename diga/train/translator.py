"""Stage 1: train the source-to-target image translator (frozen afterwards).

Two encoder/decoder generators (source->target and target->source) and two multi-scale discriminators,
with LSGAN, cycle, self-reconstruction, semantic-edge and (optional) VGG perceptual losses.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from diga.atomic import atomic_path, save_torch
from diga.models.translator import build_discriminator, build_generator
from diga.provenance import provenance
from diga.runtime import distributed
from diga.runtime.datasets import domain_batches, source_train
from diga.runtime.device import device_for
from diga.runtime.precision import Precision, precision_for
from diga.train.common import seed_stage, stage_resume, stage_settings
from diga.train.loop import StepFn, accumulate, run_training, set_poly_lr, split_batch

# 5x5 Laplacian: marks label boundaries for the semantic-edge loss.
_LAPLACIAN_5X5 = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, -24, 1, 1], [1, 1, 1, 1, 1],
                               [1, 1, 1, 1, 1]], dtype=torch.float32)


def label_edges(labels: torch.Tensor) -> torch.Tensor:
    """B x 1 x H x W mask of pixels near a class boundary (|Laplacian of the label map| > 0.1)."""
    kernel = _LAPLACIAN_5X5.to(labels.device)[None, None]
    response = F.conv2d(F.pad(labels[:, None].float(), (2, 2, 2, 2), mode="replicate"), kernel)
    return (response.abs() > 0.1).float()


def lsgan_generator_loss(outputs: list[torch.Tensor]) -> torch.Tensor:
    return sum(((o - 1) ** 2).mean() for o in outputs)


def lsgan_discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(((r - 1) ** 2).mean() + (f**2).mean() for r, f in zip(real, fake, strict=True))


class VGGPerceptual(torch.nn.Module):
    """L1 between VGG19 relu1..relu5 features, weighted 1/32 .. 1, from a user-provided weights file."""

    SLICES = (2, 7, 12, 21, 30)
    WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self, weights_path: str | None, pretrained: bool = True, normalise: bool = True):
        super().__init__()
        self.normalise = normalise  # ImageNet statistics on [0, 1] RGB; off: VGG gets the tensor as it is (official)
        import torchvision

        from diga.models.weights import resolve_vgg_weights

        vgg = torchvision.models.vgg19()
        if pretrained:  # random weights only for `diga bench`, which times the network, not its features
            weights_path = resolve_vgg_weights(weights_path)
            vgg.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.features = vgg.features[: self.SLICES[-1]].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x, y = ((a - self.mean) / self.std, (b - self.mean) / self.std) if self.normalise else (a, b)
        loss, start = a.new_zeros(()), 0
        for end, weight in zip(self.SLICES, self.WEIGHTS, strict=True):
            x, y = self.features[start:end](x), self.features[start:end](y)
            loss = loss + weight * F.l1_loss(x, y.detach())
            start = end
        return loss


def build_translator_training(settings: dict, device: torch.device, precision: Precision,
                              pretrained_vgg: bool = True) -> dict:
    """The two generators, two discriminators, the optional perceptual loss and both Adam optimisers."""
    cfg = settings["stages"]["translator"]
    nets = {"s2t": build_generator(cfg), "t2s": build_generator(cfg),
            "dis_target": build_discriminator(cfg),  # real = target images
            "dis_source": build_discriminator(cfg)}  # real = source images
    nets = {name: precision.place(net.to(device)) for name, net in nets.items()}
    perceptual = (VGGPerceptual(cfg["vgg_weights"], pretrained_vgg, normalise=cfg["space"] == "unit")
                  if cfg["perceptual_weight"] > 0 else None)
    opt_gen = torch.optim.Adam(itertools.chain(nets["s2t"].parameters(), nets["t2s"].parameters()), lr=cfg["lr"],
                               betas=(0.5, 0.999))
    opt_dis = torch.optim.Adam(itertools.chain(nets["dis_target"].parameters(), nets["dis_source"].parameters()),
                               lr=cfg["lr"], betas=(0.5, 0.999))
    for group in opt_gen.param_groups + opt_dis.param_groups:
        group["initial_lr"] = group["lr"]
    return {**nets, "perceptual": precision.place(perceptual.to(device)) if perceptual is not None else None,
            "opt_gen": opt_gen, "opt_dis": opt_dis}


def translator_step(settings: dict, parts: dict, source: Iterator[dict], target: Iterator[dict],
                    precision: Precision) -> StepFn:
    """One translator iteration: the discriminator update, then the generators' losses (the loop steps them)."""
    cfg = settings["stages"]["translator"]
    s2t, t2s, dis_target, dis_source = parts["s2t"], parts["t2s"], parts["dis_target"], parts["dis_source"]
    perceptual, opt_dis = parts["perceptual"], parts["opt_dis"]

    def translate(encoder_of: nn.Module, decoder_of: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return precision.run(lambda y: decoder_of.decoder(encoder_of.encoder(y)), x)

    def judge(dis: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        return precision.run(dis, x)

    parts = cfg["accumulate"]

    # The image terms compare images in [0, 1] ('unit'), or the tensors the official translator compares.
    view = (lambda images: images) if cfg["space"] == "unit" else s2t.encoder.space.to_network

    def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(view(a), view(b))

    def generator_terms(chunk: dict, fakes: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        x_s, x_t = chunk["source"], chunk["target"]
        fake_t, fake_s = fakes if fakes is not None else (translate(s2t, s2t, x_s), translate(t2s, t2s, x_t))
        adversarial = lsgan_generator_loss(judge(dis_target, fake_t)) + lsgan_generator_loss(judge(dis_source, fake_s))
        cycle = l1(translate(t2s, t2s, fake_t), x_s) + l1(translate(s2t, s2t, fake_s), x_t)
        # Self-reconstruction: each domain's encoder decoded in its own style returns the image.
        self_recon = l1(translate(s2t, t2s, x_s), x_s) + l1(translate(t2s, s2t, x_t), x_t)
        edges = label_edges(chunk["label"])
        edge = F.l1_loss(view(fake_t) * edges, view(x_s) * edges)
        terms = {"adv": cfg["adversarial_weight"] * adversarial, "cycle": cfg["cycle_weight"] * cycle,
                 "self": cfg["self_weight"] * self_recon, "edge": cfg["edge_weight"] * edge}
        if perceptual is not None:
            with precision.autocast():
                pair_loss = perceptual(view(fake_t), view(x_s)) + perceptual(view(fake_s), view(x_t))
            terms["perceptual"] = cfg["perceptual_weight"] * pair_loss.float()
        return terms

    def step(iteration: int):
        set_poly_lr(opt_dis, iteration, cfg["iterations"], cfg["poly_power"])  # the generators' schedule, too
        src, tgt = next(source), next(target)
        chunks = split_batch({"source": src["image"], "label": src["label"], "target": tgt["image"]}, parts)
        # With one part, the translations the discriminators see keep their graph for the generators' losses.
        # With several (stages.translator.accumulate), they are made without one here and again, per part, below, so
        # that only one part's activations are ever alive.
        with torch.set_grad_enabled(parts == 1):
            fakes = [(translate(s2t, s2t, c["source"]), translate(t2s, t2s, c["target"])) for c in chunks]
        # Discriminator update first, on detached translations; its gradients accumulate over the parts too.
        opt_dis.zero_grad(set_to_none=True)
        dis_loss = torch.zeros((), device=src["image"].device)
        for chunk, (fake_t, fake_s) in zip(chunks, fakes, strict=True):
            real_t, real_s = chunk["target"], chunk["source"]
            part_loss = (lsgan_discriminator_loss(judge(dis_target, real_t), judge(dis_target, fake_t.detach()))
                         + lsgan_discriminator_loss(judge(dis_source, real_s), judge(dis_source, fake_s.detach()))
                         ) / parts
            (cfg["adversarial_weight"] * part_loss).backward()
            dis_loss += part_loss.detach()
        distributed.average_gradients(distributed.optimizer_params(opt_dis))
        opt_dis.step()
        terms = accumulate(parts, lambda k: generator_terms(chunks[k], fakes[k] if parts == 1 else None))
        return terms, {"dis": dis_loss}

    return step


def train_translator(settings: dict, seed: int, out_dir: Path) -> None:
    generator = seed_stage(seed, "translator")
    settings = stage_settings(settings, "translator")
    device = device_for(settings)
    precision = precision_for(settings, device)
    cfg = settings["stages"]["translator"]
    source = domain_batches(settings, "source", cfg["batch"], generator, device)
    target = domain_batches(settings, "target", cfg["batch"], generator, device, with_labels=False)
    parts = build_translator_training(settings, device, precision)
    step = translator_step(settings, parts, source, target, precision)
    resume = stage_resume(settings, out_dir, "translator", seed, {
        **{k: v for k, v in parts.items() if k != "perceptual"}, "source": source, "target": target,
        "generator": generator})
    # keep_iteration (the official 48,000 of 50,000): the saved translator is the one after that many iterations;
    # the iterations after it could not change it, so they are not run.
    run_training("translator", step, parts["opt_gen"], cfg["iterations"], cfg["poly_power"],
                 settings["train"]["log_every"], out_dir / "train_log.csv", resume, stop_at=cfg["keep_iteration"])
    if distributed.is_main():  # one process writes the outputs
        save_torch(out_dir / "translator.pt", {
            "translator_config": cfg, "source_to_target": parts["s2t"].state_dict(),
            "provenance": provenance(settings)})
        save_examples(parts["s2t"].eval(), source_train(settings), out_dir / "examples.png", device)
        resume.finish()


@torch.no_grad()
def save_examples(s2t: torch.nn.Module, dataset, path: Path, device: torch.device, count: int = 4) -> None:
    """A strip of source images (top) over their translations (bottom), to check the translator by eye."""
    images = torch.stack([dataset[i]["image"] for i in range(min(count, len(dataset)))]).to(device)
    translated = s2t(images)
    grid = torch.cat([torch.cat(list(images), dim=2), torch.cat(list(translated), dim=2)], dim=1)
    array = (grid.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
