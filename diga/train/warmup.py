"""Warm-up: source CE plus symmetric distillation between the clean source and its cross-domain mixture.

Domain generalisation (the `dg_warmup` stage) is the same loss with the photometric view alone as the second view: no
translator, no target image in any loss."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from diga.data.transforms import blend_augment
from diga.method.ema import ema_decay, update_teacher
from diga.method.losses import segmentation_loss
from diga.method.mixing import class_mix_mask, cross_domain_mixture
from diga.runtime import distributed
from diga.runtime.checkpoints import load_translator, new_segmenter, save_segmenter
from diga.runtime.datasets import domain_batches
from diga.runtime.device import device_for
from diga.runtime.precision import Precision, precision_for
from diga.train.best import BestOnVal
from diga.train.common import loss_heads, make_teacher, seed_stage, stage_resume, stage_settings, view_losses
from diga.train.loop import StepFn, run_training, segmenter_optimizer


def warmup_step(settings: dict, student: nn.Module, teacher: nn.Module, translator: nn.Module | None,
                source: Iterator[dict], target: Iterator[dict] | None, generator: torch.Generator,
                precision: Precision, best: BestOnVal | None = None, stage: str = "warmup") -> StepFn:
    """One iteration's losses (the loop does backward and SGD) of the warm-up, or of the `dg_warmup` stage
    (`stage`, with no translator); also what `diga bench` times.

    CE(student(x), y) + distill_weight * SKD(x, view), the view being the cross-domain mixture of the augmented
    source and its translation, or (translator None) the augmented source."""
    cfg = settings["stages"][stage]
    seg_loss = segmentation_loss(settings["optim"])
    student_fwd, teacher_fwd = precision.forward(student), precision.forward(teacher)
    heads = loss_heads(student, cfg, stage)

    def step(iteration: int):
        stats = best(iteration, student, teacher) if best is not None else {}
        update_teacher(teacher, student, ema_decay(iteration, settings["ema"]["max_decay"]),
                       settings["ema"]["average_buffers"])
        batch = next(source)
        clean, labels = batch["image"], batch["label"]
        augmented = blend_augment(clean, settings["augment"], cfg["aug_beta"], generator, student.input_space)
        if translator is not None:
            with torch.no_grad():
                translated = precision.run(translator, clean)
            second_view = cross_domain_mixture(augmented, translated, class_mix_mask(labels, generator))
        else:
            second_view = augmented
        if target is not None:
            with torch.no_grad():
                precision.run(student_fwd, next(target)["image"])
        both = torch.cat([clean, second_view])
        student_out = precision.run(student_fwd, both)
        with torch.no_grad():
            teacher_out = precision.run(teacher_fwd, both)
        return view_losses(heads, student_out, teacher_out, labels, seg_loss, cfg), stats

    return step


def train_warmup(settings: dict, seed: int, translator_path: Path, out_dir: Path) -> None:
    train_with_distillation(settings, seed, "warmup", out_dir, translator_path)


def train_dg_warmup(settings: dict, seed: int, out_dir: Path) -> None:
    """Domain generalisation: the warm-up's loss on source alone, its second view the photometric augmentation."""
    train_with_distillation(settings, seed, "dg_warmup", out_dir, None)


def train_with_distillation(settings: dict, seed: int, stage: str, out_dir: Path, translator_path: Path | None,
                             extra: dict | None = None):
    """The warm-up (with the translator of the cross-domain mixture), or the DG or semi-supervised warm-up
    (translator_path None); `extra` goes into the checkpoint."""
    generator = seed_stage(seed, stage)
    settings = stage_settings(settings, stage)
    device = device_for(settings)
    precision = precision_for(settings, device)
    cfg = settings["stages"][stage]
    source = domain_batches(settings, "source", cfg["batch"], generator, device)
    # Official-code quirk (off by default): target images pass through the student in train mode, so BN
    # running statistics see the target domain although no loss does.
    target = (domain_batches(settings, "target", cfg["batch"], generator, device, with_labels=False)
              if cfg["target_bn_leak"] else None)
    mixture = translator_path is not None and cfg["mixture"]
    translator = precision.place(load_translator(translator_path, device)) if mixture else None
    student = precision.place(new_segmenter(settings, device).train())
    teacher = make_teacher(student, settings)
    optimizer = segmenter_optimizer(student, settings["optim"])

    best = BestOnVal(settings, stage, out_dir, device, {"seed": seed, **(extra or {})})
    step = warmup_step(settings, student, teacher, translator, source, target, generator, precision, best, stage)

    state = {"student": student, "teacher": teacher, "optimizer": optimizer, "source": source, "generator": generator,
             "best": best}
    if target is not None:
        state["target"] = target
    inputs = (translator_path,) if translator_path is not None else ()
    resume = stage_resume(settings, out_dir, stage, seed, state, inputs=inputs)
    run_training(stage, step, optimizer, cfg["iterations"], settings["optim"]["poly_power"],
                 settings["train"]["log_every"], out_dir / "train_log.csv", resume, cfg["lr_schedule"])
    best.finish(cfg["iterations"], student, teacher)
    if distributed.is_main():  # one process writes the outputs
        save_segmenter(out_dir / "model.pt", stage, settings, student, teacher, {"seed": seed, **(extra or {})})
        resume.finish()
