"""The paper's tables from this run's metrics: main results (with published rows), ablations, pseudo-label
quality. Each table is written as Markdown, CSV and LaTeX (booktabs) from one list of rows."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from diga.atomic import write_text
from diga.config import ConfigError
from diga.stages import label as stage_label
from diga.stages import order as stage_order

CHECKPOINT_LABELS = {"last": "last", "best": "best on val"}


# ----------------------------------------------------------------------------------------------------------
# Collecting metrics
# ----------------------------------------------------------------------------------------------------------

def read_metrics(path: str | Path) -> dict:
    metrics = json.loads(Path(path).read_text())
    trained = metrics.get("training_provenance") or metrics["provenance"]
    row = {"stage": metrics["stage"], "variant": metrics.get("variant", "main"),
           "checkpoint": metrics.get("checkpoint", "last"), "seed": metrics["seed"],
           **{k: (np.nan if v is None else v) for k, v in metrics["per_class_iou"].items()},
           "mIoU": metrics["miou"], "config_hash": trained["config_hash"], "git_commit": trained["git_commit"]}
    if "miou13" in metrics:  # 16-class (SYNTHIA) runs: the 13-class mIoU, computed by evaluate
        row["mIoU13"] = np.nan if metrics["miou13"] is None else metrics["miou13"]
    if "dg_target" in metrics:  # a domain generalisation evaluation: the dataset it was made on
        row["target"] = metrics["dg_target"]
    if "semisup_split" in metrics:  # a semi-supervised model: its labelled split
        row["split"] = metrics["semisup_split"]
    return row


def collect(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """One row per metrics file: stage, variant, checkpoint, seed, a column per class, mIoU (and mIoU13)."""
    if not metrics_paths:
        raise ValueError("no metrics files given to the table")
    return pd.DataFrame([read_metrics(p) for p in metrics_paths])


def class_columns(per_seed: pd.DataFrame) -> list[str]:
    fixed = {"stage", "variant", "checkpoint", "seed", "target", "split", "mIoU", "mIoU13", "config_hash",
             "git_commit"}
    return [c for c in per_seed.columns if c not in fixed]


# ----------------------------------------------------------------------------------------------------------
# Table rows and rendering
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One table row: a label, the seed count ('' for published rows) and values as (mean, std or None)."""

    label: str
    seeds: str
    values: dict[str, tuple[float, float | None]]
    extra: dict[str, str] = field(default_factory=dict)  # text columns (source, backbone, verified, ...)
    key: str = ""  # a machine-readable id for CSV readers (the stage, the variant, the method)


def measured_rows(per_seed: pd.DataFrame, columns: list[str]) -> list[Row]:
    """Mean and std (ddof 1; 0 for one seed) over seeds per (stage, checkpoint), stages in pipeline order."""
    rows = []
    groups = per_seed.groupby(["stage", "checkpoint"], sort=False)
    keys = sorted(groups.groups, key=lambda key: (stage_order(key[0]), key[1] != "last"))
    show_checkpoint = per_seed["checkpoint"].nunique() > 1
    for stage, checkpoint in keys:
        group = groups.get_group((stage, checkpoint))
        label = stage_label(stage) + (f" ({CHECKPOINT_LABELS.get(checkpoint, checkpoint)})" if show_checkpoint else "")
        values = {c: _mean_std(group[c]) if c in group else (math.nan, None) for c in columns}
        rows.append(Row(label, str(len(group)), values, key=stage if checkpoint == "last" else f"{stage}:{checkpoint}"))
    return rows


def _mean_std(values: pd.Series) -> tuple[float, float | None]:
    """Mean and sample std (ddof 1; 0 for one value) of the non-missing values; (nan, None) if there are none."""
    values = values.dropna()
    if values.empty:
        return math.nan, None
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _published_row(ref: dict, values: dict[str, tuple[float, float | None]]) -> Row:
    """A published row: its method, verified flag, backbone and source."""
    flag = "verified" if ref.get("verified") else "unverified"
    return Row(f"{ref['method']} [published, {flag}]", "", values,
               {"backbone": ref.get("backbone", "unknown"), "source": ref["source"],
                "verified": str(bool(ref.get("verified"))).lower()}, key=ref["method"])


def reference_rows(references: list[dict], class_names: list[str], columns: list[str]) -> list[Row]:
    """Published rows: values as given (no std), with source, backbone and the verified flag."""
    rows = []
    for ref in references:
        values = {c: (math.nan, None) for c in columns}
        per_class = ref.get("per_class") or []
        if per_class and len(per_class) != len(class_names):
            raise ConfigError(f"references: {ref['method']} has {len(per_class)} per-class values, the table has "
                             f"{len(class_names)} classes; fix config/references.yaml")
        for name, value in zip(class_names, per_class, strict=False):
            values[name] = (float(value), None)
        values["mIoU"] = (float(ref["miou"]), None)
        if "mIoU13" in columns and "miou13" in ref:
            values["mIoU13"] = (float(ref["miou13"]), None)
        rows.append(_published_row(ref, values))
    return rows


def format_value(mean: float, std: float | None, digits: int = 1, plus_minus: str = " ± ") -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f}{plus_minus}{std:.{digits}f}"


def to_markdown(rows: list[Row], columns: list[str], title: str, notes: list[str], first: str = "stage",
                bold: tuple[str, ...] = ("mIoU", "mIoU13"), extra: tuple[str, ...] = ()) -> str:
    header = [first, "seeds", *columns, *extra]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label, row.seeds]
        for column in columns:
            cell = format_value(*row.values[column])
            cells.append(f"**{cell}**" if column in bold and cell != "–" else cell)
        cells += [row.extra.get(column, "") for column in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + notes + [""])


def to_csv(rows: list[Row], columns: list[str], first: str = "stage", extra: tuple[str, ...] = ()) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["key", first, "seeds", *[h for c in columns for h in (c, f"{c}_std")], *extra])
    for row in rows:
        cells = [row.key or row.label, row.label, row.seeds]
        for column in columns:
            mean, std = row.values[column]
            cells += ["" if math.isnan(mean) else f"{mean:.4f}", "" if std is None else f"{std:.4f}"]
        writer.writerow(cells + [row.extra.get(column, "") for column in extra])
    return buffer.getvalue()


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


def to_latex(rows: list[Row], columns: list[str], caption: str, first: str = "stage") -> str:
    """A booktabs table (needs \\usepackage{booktabs}); published rows below a midrule."""
    spec = "l" + "c" + "c" * len(columns)
    header = " & ".join([first, "seeds", *[_latex_escape(c) for c in columns]]) + r" \\"
    lines = [r"\begin{table}[t]", r"\centering", r"\scriptsize", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             header, r"\midrule"]
    previous_published = False
    for row in rows:
        published = row.seeds == ""
        if published and not previous_published and lines[-1] != r"\midrule":
            lines.append(r"\midrule")
        previous_published = published
        cells = [_latex_escape(row.label), row.seeds or "--"]
        cells += [format_value(*row.values[c], plus_minus=r"$\pm$").replace("–", "--") for c in columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_latex_escape(caption)}}}", r"\end{table}", ""]
    return "\n".join(lines)


def write_all(stem: Path, markdown: str, csv_text: str, latex: str) -> None:
    write_text(stem.with_suffix(".md"), markdown)
    write_text(stem.with_suffix(".csv"), csv_text)
    write_text(stem.with_suffix(".tex"), latex)


def provenance_note(per_seed: pd.DataFrame) -> str:
    commits = ", ".join(sorted(per_seed["git_commit"].unique()))
    hashes = ", ".join(sorted(per_seed["config_hash"].unique()))
    seeds = sorted(per_seed["seed"].unique().tolist())
    return (f"Seeds: {seeds}. Code: {commits}. Training config hashes: {hashes}. "
            "Measured rows: the student of each stage, mean ± std over seeds; '–' = class absent or not reported.")


# ----------------------------------------------------------------------------------------------------------
# The three tables
# ----------------------------------------------------------------------------------------------------------

def load_references(path: str | Path | None, benchmark: str) -> list[dict]:
    if path is None:
        return []
    data = yaml.safe_load(Path(path).read_text()) or {}
    return data.get(benchmark, [])


def write_main_table(metrics_paths: list[str | Path], out_stem: Path, benchmark: str,
                     references_path: str | Path | None = None) -> list[Row]:
    """Per-class IoU and mIoU per stage (and mIoU13 for 16 classes), published rows below."""
    per_seed = collect(metrics_paths)
    per_seed = per_seed[per_seed["variant"] == "main"]
    names = class_columns(per_seed)
    columns = [*names, "mIoU"] + (["mIoU13"] if "mIoU13" in per_seed else [])
    rows = measured_rows(per_seed, columns)
    references = reference_rows(load_references(references_path, benchmark), names, columns)
    title = f"{benchmark}: target-val IoU per class (%), mean ± std over seeds"
    notes = [provenance_note(per_seed)]
    for row in references:
        notes.append(f"- {row.label}: {row.extra['backbone']}; source: {row.extra['source']}.")
    markdown = to_markdown(rows + references, columns, title, notes)
    csv_text = to_csv(rows + references, columns, extra=("backbone", "source", "verified"))
    write_all(out_stem, markdown, csv_text, to_latex(rows + references, columns, title))
    return rows + references


# What the main run's rows of the ablation table show; a variant's row says what it changes instead.
MAIN_ABLATION_ROWS = {"source_only": "source-only", "warmup": "warm-up: SKD + cross-domain mixture",
                      "final": "full DiGA: threshold-free consensus"}


def write_ablation_table(metrics_paths: list[str | Path], out_stem: Path, benchmark: str, final_stage: str,
                         descriptions: dict[str, str] | None = None) -> list[Row]:
    """mIoU of the main run's source-only, warm-up and final rows, and of each variant's warm-up and final models
    that have metrics (a variant reports the stages it changes), with the variant's description
    (ablations.descriptions) as its label."""
    per_seed = collect(metrics_paths)
    per_seed = per_seed[per_seed["checkpoint"] == "last"]
    variants = [v for v in dict.fromkeys(per_seed["variant"]) if v != "main"]
    rows = []
    for kind, stage in (("source_only", "source_only"), ("warmup", "warmup"), ("final", final_stage)):
        for variant in ["main", *variants] if kind != "source_only" else ["main"]:
            chosen = per_seed[(per_seed["variant"] == variant) & (per_seed["stage"] == stage)]
            if chosen.empty:
                continue
            label = MAIN_ABLATION_ROWS[kind] if variant == "main" else \
                f"{MAIN_ABLATION_ROWS[kind].split(':')[0]}: {(descriptions or {}).get(variant, variant)}"
            std = float(chosen["mIoU"].std(ddof=1)) if len(chosen) > 1 else 0.0
            rows.append(Row(label, str(len(chosen)), {"mIoU": (float(chosen["mIoU"].mean()), std)},
                            {"variant": variant, "stage": stage}, key=f"{variant}:{stage}"))
    title = f"{benchmark}: ablations, target-val mIoU (%), mean ± std over seeds"
    notes = ["Each row is a config variant of the same rules (config `ablations`); 'main' is the full run.",
             provenance_note(per_seed)]
    markdown = to_markdown(rows, ["mIoU"], title, notes, first="configuration", extra=("variant", "stage"))
    write_all(out_stem, markdown, to_csv(rows, ["mIoU"], first="configuration", extra=("variant", "stage")),
              to_latex(rows, ["mIoU"], title, first="configuration"))
    return rows


def write_pseudolabel_table(train_logs: list[str | Path], summaries: list[str | Path], out_stem: Path,
                            benchmark: str) -> list[Row]:
    """Per self-training round: accuracy of the offline pseudo-labels it learns from (whole target-train images)
    and, averaged over its training crops, the fraction kept by the selection and the accuracy of kept and of
    all pseudo-labels. Paths are .../seed<k>/selftrain<r>/train_log.csv and .../seed<k>/<stage>/pseudolabels.json
    (the stage the round's labels come from)."""
    records = []
    for log_path, summary_path in zip(train_logs, summaries, strict=True):
        log = pd.read_csv(log_path)
        summary = json.loads(Path(summary_path).read_text())
        if "pl_acc_kept" not in log:
            raise ConfigError(f"{log_path} has no pseudo-label accuracy: the target-train labels are needed "
                             "(data.target.train_has_labels: true)")
        records.append({"round": Path(log_path).parent.name, "from": Path(summary_path).parent.name,
                        "offline_accuracy": summary["pixel_accuracy"], "kept": 100 * log["kept_fraction"].mean(),
                        "kept_accuracy": 100 * log["pl_acc_kept"].mean(),
                        "all_accuracy": 100 * log["pl_acc_all"].mean()})
    frame = pd.DataFrame(records)
    columns = ["offline_accuracy", "kept", "kept_accuracy", "all_accuracy"]
    rows = []
    for (round_name, source), group in sorted(frame.groupby(["round", "from"]), key=lambda kv: stage_order(kv[0][0])):
        values = {c: (float(group[c].mean()), float(group[c].std(ddof=1)) if len(group) > 1 else 0.0)
                  for c in columns}
        rows.append(Row(f"{stage_label(round_name)} (labels from {stage_label(source)})", str(len(group)), values,
                        key=round_name))
    title = f"{benchmark}: pseudo-label quality per self-training round (%), mean ± std over seeds"
    notes = ["offline_accuracy: pixel accuracy of the offline pseudo-labels on whole target-train images. "
             "kept: share of target pixels the selection keeps; kept_accuracy / all_accuracy: accuracy of the kept "
             "/ of all pseudo-labels on the training crops; both averaged over the round's iterations. Target-train "
             "labels are used for these diagnostics only, never by a loss."]
    markdown = to_markdown(rows, columns, title, notes, first="round", bold=())
    write_all(out_stem, markdown, to_csv(rows, columns, first="round"), to_latex(rows, columns, title, first="round"))
    return rows


# ----------------------------------------------------------------------------------------------------------
# Domain generalisation
# ----------------------------------------------------------------------------------------------------------

def _dg_label(stage: str, checkpoint: str, variant: str, descriptions: dict[str, str]) -> str:
    label = stage_label(stage)
    if checkpoint != "last":
        label += f" ({CHECKPOINT_LABELS.get(checkpoint, checkpoint)})"
    if variant != "main":
        label += f" [{descriptions.get(variant, variant)}]"
    return label


def dg_reference_rows(references: list[dict], targets: list[str], field: str = "targets",
                      mean: bool = True) -> list[Row]:
    """Published rows of a table over datasets (DG: `targets: {name: miou}`) or splits (semi-supervised:
    `splits: {1-8: miou}`), as given; their mean only if published."""
    rows = []
    for ref in references:
        given = {str(k): v for k, v in (ref.get(field) or {}).items()}
        values = {t: (float(given[t]), None) if t in given else (math.nan, None) for t in targets}
        if mean:
            values["mean"] = (float(ref["mean"]), None) if "mean" in ref else (math.nan, None)
        rows.append(_published_row(ref, values))
    return rows


def write_dg_table(metrics_paths: list[str | Path], out_stem: Path, benchmark: str, targets: list[str],
                   references_path: str | Path | None = None, descriptions: dict[str, str] | None = None) -> list[Row]:
    """The domain generalisation table: per model (stage, checkpoint, variant), the mIoU on each unseen target and
    their mean (per seed, then mean ± std over seeds); published rows below. A second table (`<stem>_per_class`)
    has the per-class IoU of each model on each target. Metrics files carry their target as `dg_target`."""
    per_seed = collect(metrics_paths)
    missing = sorted(set(targets) - set(per_seed["target"]))
    if missing:
        raise ValueError(f"no metrics for the DG target(s) {missing}")
    names = class_columns(per_seed)
    keys = ["variant", "stage", "checkpoint"]
    models = sorted(per_seed.groupby(keys, sort=False).groups,
                    key=lambda k: (k[0] != "main", stage_order(k[1]), k[2] != "last"))
    rows, class_rows = [], []
    for variant, stage, checkpoint in models:
        chosen = per_seed[(per_seed["variant"] == variant) & (per_seed["stage"] == stage)
                          & (per_seed["checkpoint"] == checkpoint)]
        by_seed = chosen.pivot_table(index="seed", columns="target", values="mIoU")
        label = _dg_label(stage, checkpoint, variant, descriptions or {})
        values = {t: _mean_std(by_seed[t]) if t in by_seed else (math.nan, None) for t in targets}
        complete = by_seed.reindex(columns=targets).dropna()  # seeds with every target evaluated
        values["mean"] = _mean_std(complete.mean(axis=1)) if not complete.empty else (math.nan, None)
        key = f"{variant}:{stage}:{checkpoint}"
        rows.append(Row(label, str(len(by_seed)), values, {"variant": variant, "stage": stage}, key=key))
        for target in targets:
            group = chosen[chosen["target"] == target]
            class_values = {c: _mean_std(group[c]) for c in [*names, "mIoU"]}
            class_rows.append(Row(f"{label} on {target}", str(len(group)), class_values, key=f"{key}:{target}"))
    columns = [*targets, "mean"]
    references = dg_reference_rows(load_references(references_path, benchmark), targets)
    title = f"{benchmark}: domain generalisation, mIoU (%) on unseen target datasets, mean ± std over seeds"
    notes = ["No model saw a target image in a loss; `mean` is the mean over the targets per seed, then over seeds.",
             provenance_note(per_seed)]
    for row in references:
        notes.append(f"- {row.label}: {row.extra['backbone']}; source: {row.extra['source']}.")
    class_title = f"{benchmark}: domain generalisation, IoU per class (%) on each target, mean ± std over seeds"
    class_columns_ = [*names, "mIoU"]
    markdown = (to_markdown(rows + references, columns, title, notes, first="model", bold=("mean",))
                + "\n" + to_markdown(class_rows, class_columns_, class_title, [], first="model on target"))
    write_all(out_stem, markdown, to_csv(rows + references, columns, first="model", extra=("backbone", "source",
                                                                                               "verified")),
              to_latex(rows + references, columns, title, first="model"))
    class_stem = out_stem.with_name(out_stem.name + "_per_class")
    write_text(class_stem.with_suffix(".csv"), to_csv(class_rows, class_columns_, first="model on target"))
    write_text(class_stem.with_suffix(".tex"), to_latex(class_rows, class_columns_, class_title,
                                                        first="model on target"))
    return rows + references


def write_semisup_table(metrics_paths: list[str | Path], out_stem: Path, benchmark: str, splits: list[str],
                        references_path: str | Path | None = None) -> list[Row]:
    """The semi-supervised table: per model (stage, checkpoint), the mIoU on target val for each labelled split
    (mean ± std over seeds); published rows below. Metrics files carry their split as `semisup_split`."""
    per_seed = collect(metrics_paths)
    missing = sorted(set(splits) - set(per_seed.get("split", pd.Series(dtype=str))))
    if missing:
        raise ValueError(f"no metrics for the semi-supervised split(s) {missing}")
    models = sorted(per_seed.groupby(["stage", "checkpoint"], sort=False).groups,
                    key=lambda k: (stage_order(k[0]), k[1] != "last"))
    rows = []
    for stage, checkpoint in models:
        chosen = per_seed[(per_seed["stage"] == stage) & (per_seed["checkpoint"] == checkpoint)]
        values = {split: _mean_std(chosen.loc[chosen["split"] == split, "mIoU"]) for split in splits}
        seeds = chosen.groupby("split")["seed"].nunique()
        label = _dg_label(stage, checkpoint, "main", {})
        rows.append(Row(label, "/".join(str(seeds.get(split, 0)) for split in splits), values, {"stage": stage},
                        key=f"{stage}:{checkpoint}"))
    references = dg_reference_rows(load_references(references_path, benchmark), splits, field="splits", mean=False)
    header = {split: f"1/{split.removeprefix('1-')} labelled" for split in splits}
    title = f"{benchmark}: semi-supervised segmentation, mIoU (%) on target val, mean ± std over seeds"
    notes = ["Each column: the labelled fraction of target train (the rest is used unlabelled); seeds per column in "
             "the second column.", provenance_note(per_seed)]
    for row in references:
        notes.append(f"- {row.label}: {row.extra['backbone']}; source: {row.extra['source']}.")
    renamed = [Row(r.label, r.seeds, {header[k]: v for k, v in r.values.items()}, r.extra, key=r.key)
               for r in rows + references]
    columns = list(header.values())
    write_all(out_stem, to_markdown(renamed, columns, title, notes, first="model"),
              to_csv(renamed, columns, first="model", extra=("backbone", "source", "verified")),
              to_latex(renamed, columns, title, first="model"))
    return rows + references
