"""The table of the pipeline's stages: every fact about a stage that more than its own step needs.

The CLI builds each stage's sub-command from its record, the Snakemake rules take each job's config slice and GPU
count from it, training takes its random stream and the domains it draws from, the reports take its label, order
and colour, and the benchmark harness the stages it can time. Adding a stage means one record here, its step
(the function the record names) and its rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What inference reads of the train section: where and at which precision the networks run, its loader workers.
INFERENCE = ("train.device", "train.precision", "train.inference_precision", "train.channels_last", "train.compile",
             "train.loader_workers")


@dataclass(frozen=True)
class Arg:
    """One command-line argument of a stage's sub-command, passed to its step in the record's order."""

    name: str                     # the flag without dashes: "out-dir" -> --out-dir
    type: Any = Path
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] | None = None
    help: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Stage:
    name: str                     # its folder under seed<k>/, its rule, its key under `stages:` when it trains
    step: str                     # "module:function", called as function(settings, [seed,] *args)
    help: str
    reads: tuple[str, ...]        # config sections the job is given ("section" or "section.key")
    args: tuple[Arg, ...] = ()
    seeded: bool = True           # takes --seed
    trains: bool = False          # a training stage: stages.<name> holds its iterations, batches and gpus
    domains: tuple[str, ...] = ()                       # the domains it draws training batches from
    batches: dict[str, tuple[str, ...]] = field(default_factory=dict)  # batch key in stages.<name> -> domains
    stream: int | None = None     # its random-stream id (with the seed and the round)
    rounds: bool = False          # one run per self-training round: folders <name>1, <name>2, ...
    label: str | None = None      # its row in the tables ({round} for rounds); None: not a table row
    order: int = 9                # its place in tables and figures
    colour: str | None = None     # its colour in the figures (rounds: shades of orange)
    bench: bool = False           # `diga bench` can time one of its iterations

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    def sections(self, settings: dict) -> tuple[str, ...]:
        """What the job reads: its `reads`, and for a training stage the evaluate section it needs."""
        if not self.trains:
            return self.reads
        # Training checks evaluate.val_every; with best-on-val checkpoints on it evaluates as the evaluate job does.
        return self.reads + (("evaluate",) if settings["evaluate"]["val_every"] > 0 else ("evaluate.val_every",))


_OUT_DIR = Arg("out-dir", help="the stage's folder (model.pt, train_log.csv, resume.pt)")
_TRANSLATOR = Arg("translator", help="translator.pt of the translator stage")
_CHECKPOINT = Arg("checkpoint", help="the model.pt (or model_best.pt) of the stage it reads")
_TRAINING = ("data", "model", "optim", "train")
_SPLIT = Arg("split", type=str, help="the semi-supervised split: 1-<n>, the labelled 1/n of target train")
_METRICS_ARGS = (Arg("out", help="metrics JSON to write"),
                 Arg("variant", type=str, required=False, default="main",
                     help="config variant the model belongs to ('main' or an ablation)"),
                 Arg("kind", type=str, required=False, default="last", choices=("last", "best"),
                     help="which checkpoint: the last iteration's or the best on val"))

STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("translator", "diga.train.translator:train_translator",
          "train the source-to-target image translator",
          reads=("data", "stages.translator", "train"), args=(_OUT_DIR,), trains=True, domains=("source", "target"),
          batches={"batch": ("source", "target")}, stream=1, order=-1, bench=True),
    Stage("source_only", "diga.train.supervised:train_source_only", "CE on source only (baseline)",
          reads=(*_TRAINING, "stages.source_only"), args=(_OUT_DIR,), trains=True, domains=("source",),
          batches={"batch": ("source",)}, stream=2, label="source-only", order=0, colour="#9e9e9e"),
    Stage("oracle", "diga.train.supervised:train_oracle", "CE on target-train labels (upper bound; ToyCity only)",
          reads=(*_TRAINING, "stages.oracle"), args=(_OUT_DIR,), trains=True, domains=("target",),
          batches={"batch": ("target",)}, stream=4, label="oracle (target labels)", order=3, colour="#2ca02c"),
    Stage("warmup", "diga.train.warmup:train_warmup",
          "warm-up: source CE + symmetric distillation with the cross-domain mixture",
          reads=(*_TRAINING, "ema", "augment", "stages.warmup"), args=(_TRANSLATOR, _OUT_DIR), trains=True,
          domains=("source",), batches={"batch": ("source",)}, stream=3, label="warm-up", order=1,
          colour="#1f77b4", bench=True),
    Stage("dg_warmup", "diga.train.warmup:train_dg_warmup",
          "domain generalisation: source CE + symmetric distillation with the photometric view (no target data)",
          reads=(*_TRAINING, "ema", "augment", "stages.dg_warmup"), args=(_OUT_DIR,), trains=True,
          domains=("source",), batches={"batch": ("source",)}, stream=6, label="DG: SKD on source only", order=1,
          colour="#9467bd"),
    Stage("pseudolabels", "diga.infer.pseudolabel:make_pseudolabels",
          "offline pseudo-labels of target train from a stage's model",
          reads=("data", "evaluate", *INFERENCE), seeded=False,
          args=(_CHECKPOINT, Arg("out-dir", help="the folder of pseudo-label PNGs to write"),
                Arg("summary", help="the summary JSON to write"))),
    Stage("centroids", "diga.infer.centroids:compute_centroids",
          "class feature centroids on target train from a stage's model",
          reads=("data", "centroids", *INFERENCE), seeded=False,
          args=(_CHECKPOINT, Arg("out", help="centroids.pt to write"))),
    Stage("selftrain", "diga.train.selftrain:train_selftrain",
          "one self-training round with bilateral-consensus selection",
          reads=("data", "optim", "ema", "augment", "centroids", "train", "stages.selftrain"),
          args=(Arg("round", type=int, help="the round, 1 for the first"),
                Arg("init", help="checkpoint of the previous stage"), _TRANSLATOR,
                Arg("pseudolabels", help="the folder of pseudo-label PNGs"),
                Arg("centroids", help="centroids.pt of the stage that made them"), _OUT_DIR),
          trains=True, domains=("source", "target"),
          batches={"batch_source": ("source",), "batch_target": ("target",)}, stream=5, rounds=True,
          label="self-training round {round}", order=2, bench=True),
    # Semi-supervised segmentation (`snakemake semisup`), one run per labelled split of target train: the stages
    # draw labelled batches from the split's labelled part and unlabelled ones from the rest (semisup_settings).
    Stage("semisup_split", "diga.data.splits:write_split_command",
          "write a semi-supervised split's labelled and unlabelled lists of target train",
          reads=("data", "semisup"), seeded=False, args=(_SPLIT, Arg("out", help="the split's record (JSON)"))),
    Stage("semisup_supervised", "diga.train.semisup:train_semisup_supervised",
          "semi-supervised baseline: CE on the split's labelled images only",
          reads=(*_TRAINING, "stages.semisup_supervised"), args=(_SPLIT, _OUT_DIR), trains=True,
          domains=("target",), batches={"batch": ("target",)}, stream=7, label="supervised-only", order=0,
          colour="#9e9e9e"),
    Stage("semisup_warmup", "diga.train.semisup:train_semisup_warmup",
          "semi-supervised warm-up: CE on labelled images + symmetric distillation with their photometric view",
          reads=(*_TRAINING, "ema", "augment", "stages.semisup_warmup"), args=(_SPLIT, _OUT_DIR), trains=True,
          domains=("target",), batches={"batch": ("target",)}, stream=8, label="warm-up", order=1,
          colour="#1f77b4", bench=True),
    Stage("semisup_selftrain", "diga.train.semisup:train_semisup_selftrain",
          "one semi-supervised self-training round: labelled classes pasted onto unlabelled images",
          reads=("data", "optim", "ema", "augment", "centroids", "train", "stages.semisup_selftrain"),
          args=(_SPLIT, Arg("round", type=int, help="the round, 1 for the first"),
                Arg("init", help="checkpoint of the previous stage"),
                Arg("pseudolabels", help="the folder of pseudo-label PNGs"),
                Arg("centroids", help="centroids.pt of the stage that made them"), _OUT_DIR),
          trains=True, domains=("target",), batches={"batch_source": ("target",), "batch_target": ("target",)},
          stream=9, rounds=True, label="self-training round {round}", order=2, bench=True),
    Stage("evaluate", "diga.infer.evaluate:evaluate_checkpoint",
          "per-class IoU and mIoU of a stage's model on target val",
          reads=("data", "evaluate", *INFERENCE),
          args=(_CHECKPOINT, Arg("stage", type=str, help="the stage folder the model belongs to (selftrain2)"),
                *_METRICS_ARGS),
          bench=True),
    Stage("evaluate_dg", "diga.infer.evaluate:evaluate_on_dg_target",
          "per-class IoU and mIoU of a stage's model on one dataset of dg.targets (domain generalisation)",
          reads=("data.num_classes", "evaluate", "dg.targets", *INFERENCE),
          args=(_CHECKPOINT, Arg("stage", type=str, help="the stage folder the model belongs to (dg_warmup)"),
                Arg("target", type=str, help="the name of the dg.targets entry to evaluate on"), *_METRICS_ARGS)),
)}

TRAINING_STAGES = tuple(name for name, stage in STAGES.items() if stage.trains)
BENCH_STAGES = tuple(name for name, stage in STAGES.items() if stage.bench)
# What `diga bench` and `diga bench-memory` time by default: the adaptation setting's (semi-supervised: by name).
BENCH_DEFAULT = tuple(name for name in BENCH_STAGES if not name.startswith("semisup_"))


def with_leak(domains: tuple[str, ...], section: dict) -> tuple[str, ...]:
    """The official BatchNorm leak (`target_bn_leak`, warm-up) also forwards target images through the student."""
    return domains + ("target",) if section.get("target_bn_leak") and "target" not in domains else domains


def batch_keys(settings: dict) -> list[tuple[str, Any, tuple[str, ...]]]:
    """(key, value, domains it draws from) of every per-iteration batch of the training stages."""
    given = settings.get("stages", {})  # a job's slice holds its own stage only
    return [(f"stages.{name}.{key}", given[name][key], with_leak(domains, given[name]))
            for name in TRAINING_STAGES if name in given for key, domains in STAGES[name].batches.items()
            if key in given[name]]


def gpus(name: str, settings: dict) -> int:
    """The processes (GPUs) a stage's job runs on: stages.<name>.gpus for a training stage, else one."""
    return settings["stages"][name]["gpus"] if STAGES[name].trains else 1


# A stage's folder: its name, and the round for the stages that run once per round (selftrain2).
_FOLDER = re.compile(r"(?P<name>[a-z_]+?)(?P<round>\d*)")


def folder(name: str, round_index: int | None = None) -> str:
    return f"{name}{round_index}" if STAGES[name].rounds else name


def parse_folder(text: str) -> tuple[Stage, int | None]:
    """'selftrain2' -> (the selftrain record, 2); 'warmup' -> (the warm-up record, None)."""
    match = _FOLDER.fullmatch(text)
    stage = STAGES.get(match["name"]) if match else None
    if stage is None or stage.rounds != bool(match["round"]):
        raise ValueError(f"{text!r} names no stage (stages: {', '.join(STAGES)}; rounds as selftrain1, selftrain2)")
    return stage, int(match["round"]) if match["round"] else None


def label(text: str) -> str:
    """A stage folder's row label in the tables and figures."""
    stage, round_index = parse_folder(text)
    return (stage.label or stage.name).format(round=round_index)


def order(text: str) -> tuple[int, int]:
    """Where a stage folder sorts in the tables and figures (rounds in their order)."""
    stage, round_index = parse_folder(text)
    return stage.order, round_index or 0
