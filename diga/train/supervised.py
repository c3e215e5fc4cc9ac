"""Plain supervised training: the source-only baseline (source labels) and the target oracle (target labels)."""

from __future__ import annotations

from pathlib import Path

from diga.config import ConfigError
from diga.method.losses import segmentation_loss
from diga.runtime import distributed
from diga.runtime.checkpoints import new_segmenter, save_segmenter
from diga.runtime.datasets import domain_batches
from diga.runtime.device import device_for
from diga.runtime.precision import precision_for
from diga.train.best import BestOnVal
from diga.train.common import seed_stage, stage_resume, stage_settings, upsample
from diga.train.loop import run_training, segmenter_optimizer


def train_supervised(settings: dict, seed: int, stage: str, out_dir: Path, extra: dict | None = None) -> None:
    """CE on one labelled domain with the same schedule as warm-up: source (source-only, and the semi-supervised
    baseline whose labelled split is data.source, see diga.train.semisup), or target for the oracle; `extra` goes
    into the checkpoint."""
    generator = seed_stage(seed, stage)
    settings = stage_settings(settings, stage)
    device = device_for(settings)
    seg_loss = segmentation_loss(settings["optim"])
    stage_cfg = settings["stages"][stage]
    if stage == "oracle":
        if not settings["data"]["target"]["train_has_labels"]:
            raise ConfigError("the oracle needs target-train labels; set stages.oracle.enabled: false for this "
                             "benchmark")
        stream = domain_batches(settings, "target", stage_cfg["batch"], generator, device, with_labels=True)
    else:
        stream = domain_batches(settings, "source", stage_cfg["batch"], generator, device)
    precision = precision_for(settings, device)
    model = precision.place(new_segmenter(settings, device).train())
    forward = precision.forward(model)
    optimizer = segmenter_optimizer(model, settings["optim"])

    best = BestOnVal(settings, stage, out_dir, device, {"seed": seed, **(extra or {})})

    def step(iteration: int):
        stats = best(iteration, model, None)
        batch = next(stream)
        logits = upsample(precision.run(forward, batch["image"]).logits, batch["label"].shape[-2:])
        return {"ce": seg_loss(logits, batch["label"])}, stats

    resume = stage_resume(settings, out_dir, stage, seed,
                          {"model": model, "optimizer": optimizer, "stream": stream, "generator": generator,
                           "best": best})
    run_training(stage, step, optimizer, stage_cfg["iterations"], settings["optim"]["poly_power"],
                 settings["train"]["log_every"], out_dir / "train_log.csv", resume)
    best.finish(stage_cfg["iterations"], model, None)
    if distributed.is_main():  # one process writes the outputs
        save_segmenter(out_dir / "model.pt", stage, settings, model, None, {"seed": seed, **(extra or {})})
        resume.finish()


def train_source_only(settings: dict, seed: int, out_dir: Path) -> None:
    train_supervised(settings, seed, "source_only", out_dir)


def train_oracle(settings: dict, seed: int, out_dir: Path) -> None:
    train_supervised(settings, seed, "oracle", out_dir)
