"""The "best on val" checkpoint: every `evaluate.val_every` iterations the student is evaluated on target val
(as the evaluate stage does) and kept as model_best.pt when its mIoU is the best so far.

This is the official code's model selection (it uses target-val labels, so it is reported beside the
last-iteration model, labelled as such, never instead of it). Off when val_every is 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from diga.runtime import distributed
from diga.runtime.checkpoints import save_segmenter
from diga.runtime.metrics import mean_iou
from diga.runtime.validation import confusion_on_val

logger = logging.getLogger(__name__)


class BestOnVal:
    def __init__(self, settings: dict, stage: str, out_dir: Path, device: torch.device, extra: dict | None = None):
        self.settings, self.stage, self.device = settings, stage, device
        self.every = settings["evaluate"]["val_every"]
        self.path = Path(out_dir) / "model_best.pt"
        self.extra = dict(extra or {})
        self.best = float("-inf")

    def __call__(self, iteration: int, student: nn.Module, teacher: nn.Module | None) -> dict[str, float]:
        """At the start of a step: evaluate the student after `iteration` updates when it is a multiple of
        val_every; return the statistics to log."""
        if self.every <= 0 or iteration == 0 or iteration % self.every:
            return {}
        return self.evaluate(iteration, student, teacher)

    def finish(self, iterations: int, student: nn.Module, teacher: nn.Module | None) -> None:
        """After training: the final model is a candidate too."""
        if self.every > 0:
            self.evaluate(iterations, student, teacher)

    def evaluate(self, iteration: int, student: nn.Module, teacher: nn.Module | None) -> dict[str, float]:
        was_training = student.training
        student.eval()
        miou = 100 * mean_iou(confusion_on_val(self.settings, student, self.device))
        student.train(was_training)
        logger.info("[%s] val mIoU %.2f after %d iterations (best %.2f)", self.stage, miou, iteration,
                    max(miou, self.best))
        if miou > self.best:
            self.best = miou
            if distributed.is_main():  # one process writes the outputs
                save_segmenter(self.path, self.stage, self.settings, student, teacher,
                               {**self.extra, "iteration": iteration, "val_miou": miou})
        return {"val_miou": miou}

    # The best score so far is training state: a resumed stage must not overwrite a better earlier checkpoint.
    def state_dict(self) -> dict[str, float]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best = state["best"]
