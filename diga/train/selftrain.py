"""Self-training round: warm-up losses on source, plus CE on target images with source classes pasted in,
whose target pixels carry the offline pseudo-labels that pass the bilateral consensus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from diga.config import replace
from diga.data.labels import IGNORE_INDEX
from diga.data.transforms import blend_augment
from diga.method.ema import ema_decay, update_teacher
from diga.method.losses import segmentation_loss
from diga.method.mixing import class_mix_mask, classmix, cross_domain_mixture
from diga.method.selection import (
    agreeing_labels,
    class_means,
    confident_labels,
    consensus_labels,
    downsample_labels,
    nearest_centroid_labels,
    update_centroids_ema,
    usable_centroids,
)
from diga.runtime import distributed
from diga.runtime.checkpoints import load_segmenter, load_translator, save_segmenter
from diga.runtime.datasets import domain_batches
from diga.runtime.device import device_for
from diga.runtime.precision import Precision, precision_for
from diga.train.best import BestOnVal
from diga.train.common import (
    loss_heads,
    make_teacher,
    seed_stage,
    stage_resume,
    stage_settings,
    upsample,
    view_losses,
)
from diga.train.loop import StepFn, run_training, segmenter_optimizer


def selection_stats(offline: torch.Tensor, selected: torch.Tensor,
                    truth: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Fraction of target pixels kept, and (with ground truth) the accuracy of all and of kept pseudo-labels.

    Tensors (read back by the loop at log time), so the iteration does not wait for the device."""
    valid = offline != IGNORE_INDEX
    kept = valid & (selected != IGNORE_INDEX)
    stats = {"kept_fraction": kept.sum() / valid.sum().clamp(min=1)}
    if truth is not None:
        known = (truth != IGNORE_INDEX) & valid
        stats["pl_acc_all"] = ((offline == truth) & known).sum() / known.sum().clamp(min=1)
        stats["pl_acc_kept"] = ((selected == truth) & known & kept).sum() / (known & kept).sum().clamp(min=1)
    return stats


def selftrain_step(settings: dict, student: nn.Module, teacher: nn.Module, translator: nn.Module | None,
                   source: Iterator[dict], target: Iterator[dict], online: dict[str, torch.Tensor],
                   centroid_valid: torch.Tensor, generator: torch.Generator, precision: Precision,
                   best: BestOnVal | None = None, stage: str = "selftrain") -> StepFn:
    """One self-training iteration's losses; `online["centroids"]` is updated in place (EMA).

    The labelled images' second view is their cross-domain mixture (adaptation), or with no translator their
    photometric view (semi-supervised: the `semisup_selftrain` stage, `stage`)."""
    cfg = settings["stages"][stage]
    num_classes = settings["data"]["num_classes"]
    has_truth = settings["data"]["target"]["train_has_labels"]  # for the logged accuracy only
    seg_loss = segmentation_loss(settings["optim"])
    student_fwd, teacher_fwd = precision.forward(student), precision.forward(teacher)
    heads = loss_heads(student, cfg, stage)

    def step(iteration: int):
        centroids = online["centroids"]
        stats = best(iteration, student, teacher) if best is not None else {}
        update_teacher(teacher, student, ema_decay(iteration, settings["ema"]["max_decay"]),
                       settings["ema"]["average_buffers"])
        src, tgt = next(source), next(target)
        clean, labels = src["image"], src["label"]
        size = labels.shape[-2:]
        with torch.no_grad():
            space = student.input_space
            mixture = blend_augment(clean, settings["augment"], cfg["aug_beta"], generator, space)
            if translator is not None:
                mixture = cross_domain_mixture(mixture, precision.run(translator, clean),
                                               class_mix_mask(labels, generator))
            target_augmented = blend_augment(tgt["image"], settings["augment"], cfg["aug_beta"], generator, space)
            teacher_source = precision.run(teacher_fwd, torch.cat([clean, mixture]))
            teacher_target = precision.run(teacher_fwd, tgt["image"])
            offline = tgt["pseudo"]
            if cfg["selection"] == "consensus":
                nearest = nearest_centroid_labels(teacher_target.feat, centroids, size, centroid_valid)
                selected = consensus_labels(offline, nearest)
            elif cfg["selection"] == "threshold":
                probabilities = upsample(teacher_target.logits, size).softmax(1)
                selected = confident_labels(offline, probabilities, cfg["confidence_threshold"])
            else:
                selected = offline
            mixed_images, mixed_labels = classmix(clean, labels, target_augmented, selected,
                                                  class_mix_mask(labels, generator))
            # Online centroids: target pixels whose selected label the teacher also predicts, and mixture pixels
            # by their source label (and, officially, only where the teacher also predicts it on the mixture).
            feat_size = teacher_target.feat.shape[-2:]
            target_low = agreeing_labels(downsample_labels(selected, feat_size), teacher_target.logits.argmax(1))
            mixture_feat, mixture_logits = teacher_source.feat.chunk(2)[1], teacher_source.logits.chunk(2)[1]
            source_low = downsample_labels(labels, feat_size)
            if cfg["source_centroid_mask"] == "label_and_prediction":
                source_low = agreeing_labels(source_low, mixture_logits.argmax(1))
            for feat, low in ((teacher_target.feat, target_low), (mixture_feat, source_low)):
                means, present = class_means(feat, low, num_classes, settings["centroids"]["min_pixels"])
                centroids = update_centroids_ema(centroids, means, present, cfg["centroid_momentum"])
            online["centroids"] = centroids
        student_source = precision.run(student_fwd, torch.cat([clean, mixture]))
        student_mixed = precision.run(student_fwd, mixed_images)
        terms = view_losses(heads, student_source, teacher_source, labels, seg_loss, cfg, student_mixed, mixed_labels)
        truth = tgt["truth"] if has_truth else None
        return terms, {**selection_stats(offline, selected, truth), **stats}

    return step


def train_selftrain(settings: dict, seed: int, round_index: int, init_path: Path, translator_path: Path | None,
                    pseudo_dir: Path, centroids_path: Path, out_dir: Path, stage_name: str = "selftrain",
                    extra: dict | None = None) -> None:
    """A self-training round of adaptation, or (`stage_name` semisup_selftrain, no translator) of semi-supervised
    segmentation; `extra` goes into the checkpoint."""
    generator = seed_stage(seed, stage_name, round_index)
    settings = stage_settings(settings, stage_name)
    device = device_for(settings)
    precision = precision_for(settings, device)
    cfg = settings["stages"][stage_name]
    source = domain_batches(settings, "source", cfg["batch_source"], generator, device)
    # Target-train labels, where they exist, come as 'truth', for the logged accuracy only: no loss and no crop
    # choice sees them.
    target = domain_batches(settings, "target", cfg["batch_target"], generator, device, pseudo_dir=str(pseudo_dir))
    translator = precision.place(load_translator(translator_path, device)) if translator_path is not None else None
    student = precision.place(load_segmenter(init_path, device).train())
    teacher = make_teacher(student, settings)  # re-initialised to the student at each round, as in the paper
    optim = replace(settings["optim"], lr=settings["optim"]["lr"] * cfg["lr_scale"])
    optimizer = segmenter_optimizer(student, optim)
    bank = torch.load(centroids_path, map_location="cpu", weights_only=False)
    initial, centroid_valid = usable_centroids(bank["centroids"], bank["valid"], settings["centroids"]["unseen"])
    online = {"centroids": initial.to(device)}  # updated every iteration (EMA), so checkpointed
    centroid_valid = centroid_valid.to(device)

    stage = f"{stage_name}{round_index}"
    extra = {"seed": seed, "round": round_index, **(extra or {})}
    best = BestOnVal(settings, stage, out_dir, device, extra)
    step = selftrain_step(settings, student, teacher, translator, source, target, online, centroid_valid,
                          generator, precision, best, stage_name)

    state = {"student": student, "teacher": teacher, "optimizer": optimizer, "source": source, "target": target,
             "generator": generator, "online": online}
    inputs = (init_path, *([translator_path] if translator_path is not None else []), centroids_path,
              *sorted(Path(pseudo_dir).glob("*.png")))
    state["best"] = best
    resume = stage_resume(settings, out_dir, stage, seed, state, inputs)
    run_training(stage, step, optimizer, cfg["iterations"], settings["optim"]["poly_power"],
                 settings["train"]["log_every"], out_dir / "train_log.csv", resume)
    best.finish(cfg["iterations"], student, teacher)
    if distributed.is_main():  # one process writes the outputs
        save_segmenter(out_dir / "model.pt", stage, settings, student, teacher,
                       {**extra, "centroids": online["centroids"].cpu()})
        resume.finish()
