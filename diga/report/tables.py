"""The result table: one row per stage, per-class IoU and mIoU, mean and std over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from diga.atomic import write_text

STAGE_LABELS = {"source_only": "source-only", "warmup": "warm-up", "oracle": "oracle (target labels)"}


def stage_label(stage: str) -> str:
    if stage.endswith("_best"):  # the best-on-val checkpoint (evaluate.val_every)
        return f"{stage_label(stage.removesuffix('_best'))} (best on val)"
    if stage.startswith("selftrain"):
        return f"self-training round {stage.removeprefix('selftrain')}"
    return STAGE_LABELS.get(stage, stage)


def stage_order(stage: str) -> tuple[int, int, int]:
    if stage.endswith("_best"):
        return (*stage_order(stage.removesuffix("_best"))[:2], 1)
    if stage.startswith("selftrain"):
        return (2, int(stage.removeprefix("selftrain")), 0)
    return ({"source_only": 0, "warmup": 1, "oracle": 3}.get(stage, 4), 0, 0)


def collect(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """One row per (stage, seed) with a column per class IoU and the mIoU."""
    rows = []
    for path in metrics_paths:
        metrics = json.loads(Path(path).read_text())
        trained = metrics.get("training_provenance") or metrics["provenance"]
        rows.append({"stage": metrics["stage"], "seed": metrics["seed"], **metrics["per_class_iou"],
                     "mIoU": metrics["miou"], "config_hash": trained["config_hash"],
                     "git_commit": trained["git_commit"]})
    if not rows:
        raise ValueError("no metrics files given to the table")
    return pd.DataFrame(rows)


def summarise(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof 1; 0 for one seed) over seeds per stage, stages in pipeline order."""
    value_columns = [c for c in per_seed.columns if c not in ("stage", "seed", "config_hash", "git_commit")]
    grouped = per_seed.groupby("stage")[value_columns]
    means, stds = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    table = pd.DataFrame(index=means.index)
    table["seeds"] = per_seed.groupby("stage")["seed"].count()
    for column in value_columns:
        table[column] = means[column]
        table[f"{column}_std"] = stds[column]
    table = table.loc[sorted(table.index, key=stage_order)]
    table.insert(0, "stage_label", [stage_label(s) for s in table.index])
    return table


def to_markdown(table: pd.DataFrame, class_names: list[str], benchmark: str, provenance_line: str) -> str:
    header = ["stage", "seeds", *class_names, "mIoU"]
    lines = [f"# {benchmark}: target-val IoU per class (%), mean ± std over seeds", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [row["stage_label"], str(int(row["seeds"]))]
        for name in [*class_names, "mIoU"]:
            mean, std = row[name], row[f"{name}_std"]
            cell = "–" if np.isnan(mean) else f"{mean:.1f} ± {std:.1f}"
            cells.append(f"**{cell}**" if name == "mIoU" else cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", provenance_line, ""]
    return "\n".join(lines)


def write_table(metrics_paths: list[str | Path], out_md: Path, out_csv: Path, benchmark: str) -> pd.DataFrame:
    per_seed = collect(metrics_paths)
    class_names = [c for c in per_seed.columns if c not in ("stage", "seed", "mIoU", "config_hash", "git_commit")]
    table = summarise(per_seed)
    commits = ", ".join(sorted(per_seed["git_commit"].unique()))
    hashes = ", ".join(sorted(per_seed["config_hash"].unique()))
    provenance_line = (f"Seeds: {sorted(per_seed['seed'].unique().tolist())}. Code: {commits}. "
                       f"Training config hashes: {hashes}. The student of each stage is evaluated; '–' = class absent.")
    write_text(out_md, to_markdown(table, class_names, benchmark, provenance_line))
    csv_table = table.rename(columns={"stage_label": "label"}).reset_index()
    write_text(out_csv, csv_table.to_csv(index=False, float_format="%.4f"))
    return table
