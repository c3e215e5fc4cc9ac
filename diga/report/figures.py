"""The figures a reader looks at first: training curves, per-class IoU per stage, a qualitative grid of
predictions on fixed val images, and the confusion matrix of the final model. PNG and PDF each."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from diga.atomic import atomic_path  # noqa: E402
from diga.data.labels import IGNORE_INDEX, PALETTE  # noqa: E402
from diga.stages import label as stage_label  # noqa: E402
from diga.stages import order as stage_order  # noqa: E402
from diga.stages import parse_folder  # noqa: E402

LOSS_COLUMNS_SKIPPED = {"iteration", "lr", "loss", "kept_fraction", "pl_acc_all", "pl_acc_kept", "dis"}


def save_figure(figure: plt.Figure, stem: Path) -> list[Path]:
    """Write stem.png and stem.pdf atomically."""
    paths = []
    for suffix in (".png", ".pdf"):
        path = stem.with_suffix(suffix)
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=suffix[1:], dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(figure)
    return paths


def _colour(stage: str) -> str:
    record, round_index = parse_folder(stage)
    if round_index is not None:  # rounds: deepening shades of orange
        return plt.get_cmap("Oranges")(0.45 + 0.2 * round_index)
    return record.colour or "#7f7f7f"


def training_curves(logs: dict[str, Path], stem: Path, smooth: int = 10) -> list[Path]:
    """One row per stage: loss terms (left), LR and the selection statistics (right)."""
    stages = sorted(logs, key=stage_order)
    figure, axes = plt.subplots(len(stages), 2, figsize=(11, 2.3 * len(stages)), squeeze=False)
    for row, stage in enumerate(stages):
        log = pd.read_csv(logs[stage])
        left, right = axes[row]
        for column in ["loss", *[c for c in log.columns if c not in LOSS_COLUMNS_SKIPPED]]:
            left.plot(log["iteration"], log[column].rolling(smooth, min_periods=1).mean(), label=column,
                      linewidth=1.8 if column == "loss" else 1.0)
        left.set_title(f"{stage_label(stage)}: losses (moving mean of {smooth})", fontsize=9)
        left.legend(fontsize=7, ncol=3)
        right.plot(log["iteration"], log["lr"], color="black", label="lr (backbone)")
        right.set_ylabel("learning rate", fontsize=8)
        if "kept_fraction" in log:
            twin = right.twinx()
            for column, style in (("kept_fraction", "-"), ("pl_acc_kept", "--"), ("pl_acc_all", ":")):
                if column in log:
                    twin.plot(log["iteration"], log[column].rolling(smooth, min_periods=1).mean(), style,
                              label=column, color="tab:orange")
            twin.set_ylim(0, 1)
            twin.legend(fontsize=7, loc="lower left")
        right.set_title(f"{stage_label(stage)}: schedule and selection", fontsize=9)
        for axis in (left, right):
            axis.tick_params(labelsize=7)
    axes[-1][0].set_xlabel("iteration")
    axes[-1][1].set_xlabel("iteration")
    figure.tight_layout()
    return save_figure(figure, stem)


def per_class_iou(metrics_paths: list[Path], stem: Path) -> list[Path]:
    """Grouped bars: IoU per class for each stage, mean over seeds (error bars: std)."""
    records = []
    for path in metrics_paths:
        metrics = json.loads(Path(path).read_text())
        records.append({"stage": metrics["stage"], **{k: (np.nan if v is None else v)
                                                      for k, v in metrics["per_class_iou"].items()}})
    frame = pd.DataFrame(records)
    names = [c for c in frame.columns if c != "stage"]
    stages = sorted(frame["stage"].unique(), key=stage_order)
    width = 0.8 / len(stages)
    figure, axis = plt.subplots(figsize=(max(10, 0.65 * len(names)), 3.8))
    positions = np.arange(len(names))
    for index, stage in enumerate(stages):
        group = frame[frame["stage"] == stage][names]
        mean, std = group.mean(), group.std(ddof=1).fillna(0)
        axis.bar(positions + index * width - 0.4 + width / 2, mean.fillna(0), width, yerr=std,
                 label=stage_label(stage), color=_colour(stage), error_kw={"linewidth": 0.6})
    axis.set_xticks(positions, names, rotation=45, ha="right", fontsize=8)
    axis.set_ylabel("IoU (%)")
    axis.set_ylim(0, 100)
    axis.legend(fontsize=8, ncol=len(stages))
    axis.set_title("Target-val IoU per class and stage (mean over seeds)")
    figure.tight_layout()
    return save_figure(figure, stem)


def colourise(label: np.ndarray) -> np.ndarray:
    """A trainId map as an RGB image with the Cityscapes palette (ignore in black)."""
    lookup = np.zeros((256, 3), dtype=np.uint8)
    lookup[: len(PALETTE)] = np.array(PALETTE, dtype=np.uint8)
    lookup[IGNORE_INDEX] = 0
    return lookup[label]


def qualitative_grid(images: list[np.ndarray], truths: list[np.ndarray], predictions: dict[str, list[np.ndarray]],
                     class_names: list[str], stem: Path) -> list[Path]:
    """Rows: val images. Columns: image | ground truth | one prediction per stage. Legend: the palette."""
    columns = ["target image", "ground truth", *[stage_label(s) for s in predictions]]
    figure, axes = plt.subplots(len(images), len(columns), figsize=(2.4 * len(columns), 1.35 * len(images) + 0.9),
                                squeeze=False)
    for row, (image, truth) in enumerate(zip(images, truths, strict=True)):
        panels = [image, colourise(truth), *[colourise(p[row]) for p in predictions.values()]]
        for column, panel in enumerate(panels):
            axis = axes[row][column]
            axis.imshow(panel, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column], fontsize=9)
    handles = [Patch(color=np.array(PALETTE[i]) / 255, label=name) for i, name in enumerate(class_names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(10, len(handles)), fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    return save_figure(figure, stem)


def confusion_figure(metrics_paths: list[Path], stem: Path, title: str) -> list[Path]:
    """Row-normalised confusion matrix (summed over seeds): where each true class goes."""
    confusion, names = None, None
    for path in metrics_paths:
        metrics = json.loads(Path(path).read_text())
        matrix = np.array(metrics["confusion"], dtype=np.float64)
        confusion = matrix if confusion is None else confusion + matrix
        names = list(metrics["per_class_iou"])
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    shown = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("ground truth")
    axis.set_title(title, fontsize=10)
    figure.colorbar(shown, ax=axis, fraction=0.046, label="fraction of the true class's pixels")
    figure.tight_layout()
    return save_figure(figure, stem)


def predict_val_images(settings: dict, models: dict[str, Path], count: int):
    """The first `count` target-val images, their ground truth, and each model's multi-scale prediction."""
    import torch

    from diga.runtime.checkpoints import load_segmenter
    from diga.runtime.datasets import target_val
    from diga.runtime.device import device_for
    from diga.runtime.predict import multiscale_logits

    device = device_for(settings)
    dataset = target_val(settings)
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    images = [(item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for item in items]
    truths = [item["label"].numpy().astype(np.uint8) for item in items]
    predictions = {}
    for stage, path in models.items():
        model = load_segmenter(path, device).eval()
        with torch.no_grad():
            predictions[stage] = [
                multiscale_logits(model, item["image"][None].to(device), settings["evaluate"]["scales"])
                .argmax(1)[0].cpu().numpy().astype(np.uint8) for item in items]
    return images, truths, predictions


def make_figures(settings: dict, metrics_paths: list[Path], logs: dict[str, Path], models: dict[str, Path],
                 out_dir: Path, final_stage: str, qualitative_count: int = 4) -> list[Path]:
    """All figures of a run into out_dir: training_curves, per_class_iou, qualitative, confusion_final."""
    written = training_curves(logs, out_dir / "training_curves")
    written += per_class_iou(metrics_paths, out_dir / "per_class_iou")
    images, truths, predictions = predict_val_images(settings, models, qualitative_count)
    names = list(json.loads(Path(metrics_paths[0]).read_text())["per_class_iou"])
    written += qualitative_grid(images, truths, predictions, names, out_dir / "qualitative")
    final = [p for p in metrics_paths if json.loads(Path(p).read_text())["stage"] == final_stage]
    written += confusion_figure(final, out_dir / "confusion_final",
                                f"Confusion of the final model ({stage_label(final_stage)}), summed over seeds")
    return written
