"""The diga command: one sub-command per pipeline stage (each Snakemake rule calls one)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from diga import config as config_module
from diga import stages
from diga.data.labels import DATASET_IDS
from diga.errors import DigaError, UsageError
from diga.stages import STAGES
from diga.train.stop import TrainingInterrupted

logger = logging.getLogger(__name__)

STAGE_COMMANDS = {stage.command: stage for stage in STAGES.values()}


def _common(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    parser.add_argument("--config", required=True, nargs="+",
                        help="config YAML/JSON file(s), merged in order (a later file's keys win), or an inline JSON "
                             "object (what the Snakemake rules pass)")
    if seed:
        parser.add_argument("--seed", type=int, required=True, help="training seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diga", description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-toy", help="generate the ToyCity benchmark (source and target domains)")
    _common(p, seed=False)
    p.add_argument("--out", default=None, help="dataset folder to (re)create (default: the config's data.root)")
    p.add_argument("--style", default=None,
                   help="generate only this unseen domain of domain generalisation (val images), e.g. dusk")

    p = sub.add_parser("fetch", help="acquire a real dataset (extracted folder, archives or download; checksums; "
                                     "extraction) as datasets.<dataset> in the config says")
    _common(p, seed=False)
    p.add_argument("--dataset", required=True, choices=list(DATASET_IDS))
    p.add_argument("--out", required=True, type=Path, help="the receipt JSON to write (the rule's output)")
    p.add_argument("--identity", default=None,
                   help="the workflow's token for the archives' state when the job started, recorded in the receipt")

    p = sub.add_parser("prepare", help="convert an acquired dataset to trainId labels, list files, manifest, report")
    _common(p, seed=False)
    p.add_argument("--dataset", required=True, choices=list(DATASET_IDS))
    p.add_argument("--receipt", required=True, type=Path, help="the receipt `diga fetch` wrote")
    p.add_argument("--out", required=True, type=Path, help="the prepared folder, e.g. resources/gta5")
    p.add_argument("--workers", type=int, default=1, help="processes converting labels")
    p.add_argument("--domain", choices=["source", "target"],
                   help="the data.<domain> this folder is: its train_list is also stored at each of its streams")

    p = sub.add_parser("check-weights", help="find the initial weights the config names (before any training)")
    _common(p, seed=False)
    p.add_argument("--out", required=True, type=Path, help="JSON recording the files and their sha256")

    for stage in STAGES.values():
        p = sub.add_parser(stage.command, help=stage.help)
        _common(p, seed=stage.seeded)
        for arg in stage.args:
            p.add_argument(f"--{arg.name}", type=arg.type, required=arg.required, default=arg.default,
                           choices=arg.choices, help=arg.help)

    p = sub.add_parser("table", help="main results table (.md, .csv, .tex): stages x classes, published rows")
    _common(p, seed=False)
    p.add_argument("--metrics", nargs="+", required=True, type=Path)
    p.add_argument("--references", type=Path, help="published results (config/references.yaml)")
    p.add_argument("--out-stem", required=True, type=Path, help="output path without suffix")

    p = sub.add_parser("ablation-table", help="ablation table (.md, .csv, .tex)")
    _common(p, seed=False)
    p.add_argument("--metrics", nargs="+", required=True, type=Path)
    p.add_argument("--final-stage", required=True)
    p.add_argument("--out-stem", required=True, type=Path)

    p = sub.add_parser("dg-table", help="domain generalisation table (.md, .csv, .tex): models x unseen targets")
    _common(p, seed=False)
    p.add_argument("--metrics", nargs="+", required=True, type=Path, help="<stage>/dg/<target>/metrics*.json files")
    p.add_argument("--references", type=Path, help="published results (config/references.yaml)")
    p.add_argument("--out-stem", required=True, type=Path)

    p = sub.add_parser("semisup-table", help="semi-supervised table (.md, .csv, .tex): models x labelled splits")
    _common(p, seed=False)
    p.add_argument("--metrics", nargs="+", required=True, type=Path,
                   help="semisup/<split>/seed<k>/<stage>/metrics*.json files")
    p.add_argument("--references", type=Path, help="published results (config/references.yaml)")
    p.add_argument("--out-stem", required=True, type=Path)

    p = sub.add_parser("pseudolabel-table", help="pseudo-label quality per self-training round (.md, .csv, .tex)")
    _common(p, seed=False)
    p.add_argument("--train-logs", nargs="+", required=True, type=Path, help="selftrain<r>/train_log.csv files")
    p.add_argument("--summaries", nargs="+", required=True, type=Path,
                   help="the pseudolabels.json each round learned from, in the same order")
    p.add_argument("--out-stem", required=True, type=Path)

    p = sub.add_parser("run-info", help="the run's full config, code version and software versions (Markdown)")
    _common(p, seed=False)
    p.add_argument("--out", required=True, type=Path)

    p = sub.add_parser("bench", help="time each stage's iteration in each precision mode (fp32 baseline side by "
                                     "side); print a table and write a CSV")
    _common(p, seed=False)
    p.add_argument("--stages", nargs="+", default=list(stages.BENCH_DEFAULT), choices=stages.BENCH_STAGES,
                   help=f"default: {' '.join(stages.BENCH_DEFAULT)} (the loader: diga bench-data)")
    p.add_argument("--modes", nargs="+", default=None,
                   help="fp32 tf32 bf16 bf16+cl bf16+cl+compile (default: all on CUDA; fp32 bf16 bf16+cl on CPU)")
    p.add_argument("--iterations", type=int, default=10, help="timed iterations per (stage, mode)")
    p.add_argument("--fp32-iterations", type=int, default=None,
                   help="timed iterations of the fp32 baseline (default: --iterations; seconds each on a GPU)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first (compilation, allocator)")
    p.add_argument("--eval-size", nargs=2, type=int, default=None, metavar=("H", "W"),
                   help="image size of the evaluate stage (default: the config's crop)")
    p.add_argument("--crop", nargs=2, type=int, default=None, metavar=("H", "W"), help="override data.crop")
    p.add_argument("--sync-debug", action="store_true",
                   help="CUDA: warn at every host-device synchronisation (torch.cuda.set_sync_debug_mode), to find "
                        "the ones left inside an iteration")
    p.add_argument("--out", required=True, type=Path, help="CSV to write")

    p = sub.add_parser("bench-memory", help="peak tensor memory of each stage's iteration, measured on the CPU at "
                                            "small crops and extrapolated to the paper's crop (fits 24 GB?)")
    _common(p, seed=False)
    p.add_argument("--stages", nargs="+", default=list(stages.BENCH_DEFAULT), choices=stages.BENCH_STAGES)
    p.add_argument("--modes", nargs="+", default=["fp32", "bf16+cl"], help="see diga bench --modes")
    p.add_argument("--crops", nargs="+", type=_size, default=[(64, 112), (128, 224)], metavar="HxW",
                   help="crops measured (at least two areas); for evaluate, image sizes")
    p.add_argument("--at", nargs=2, type=int, default=None, metavar=("H", "W"),
                   help="crop to extrapolate to (default: data.crop)")
    p.add_argument("--eval-size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"),
                   help="evaluated image size to extrapolate the evaluate stage to (as diga bench --eval-size)")
    p.add_argument("--out", required=True, type=Path, help="CSV to write")

    p = sub.add_parser("bench-numerics", help="bf16 against fp32 on the same random batch: logits, loss, gradient")
    _common(p, seed=False)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--mode", default="bf16+cl", help="the mode compared with fp32 (see diga bench --modes)")
    p.add_argument("--out", required=True, type=Path, help="JSON to write")

    p = sub.add_parser("bench-data", help="crops per second through the training loader (decode, rescale, crop, "
                                          "flip, crop filter, collate) per number of loader workers; table and CSV")
    _common(p, seed=False)
    p.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="loader worker counts to time")
    p.add_argument("--batches", type=int, default=100, help="timed batches per worker count (after a warm-up)")
    p.add_argument("--batch-size", type=int, default=None, help="default: stages.warmup.batch")
    p.add_argument("--split", choices=["train", "val"], default="train",
                   help="train: augmented crops of source train; val: whole target-val images in order (evaluation)")
    p.add_argument("--out", required=True, type=Path, help="CSV to write")

    p = sub.add_parser("figures", help="training curves, per-class IoU, qualitative grid, confusion matrix")
    _common(p, seed=False)
    p.add_argument("--metrics", nargs="+", required=True, type=Path)
    p.add_argument("--logs", nargs="+", required=True, metavar="STAGE=CSV", help="training logs of one seed")
    p.add_argument("--models", nargs="+", required=True, metavar="STAGE=PT", help="models for the qualitative grid")
    p.add_argument("--final-stage", required=True)
    p.add_argument("--qualitative-images", type=int, default=4)
    p.add_argument("--out-dir", required=True, type=Path)
    return parser


def _size(text: str) -> tuple[int, int]:
    """'512x896' -> (512, 896)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size as HxW, such as 512x896, not {text!r}") from None
    return height, width


def _pairs(items: list[str]) -> dict[str, Path]:
    """['STAGE=path', ...] -> {'STAGE': Path('path')}."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected STAGE=PATH, got {item!r}")
        pairs[key] = Path(value)
    return pairs


def processes_for(command: str, settings: dict) -> int:
    """How many processes (GPUs) a command runs on: `gpus` in its stage's config section."""
    stage = STAGE_COMMANDS.get(command)
    return stages.gpus(stage.name, settings) if stage else 1


def run_stage(stage: stages.Stage, settings: dict, args: argparse.Namespace) -> None:
    """Call the stage's step with the settings, the seed and its arguments in the record's order."""
    from importlib import import_module

    module, function = stage.step.split(":")
    values = ([args.seed] if stage.seeded else []) + [getattr(args, arg.dest) for arg in stage.args]
    getattr(import_module(module), function)(settings, *values)


def run(args: argparse.Namespace, argv: list[str]) -> None:
    settings = config_module.load(*args.config)
    command = args.command
    processes = processes_for(command, settings)
    if processes > 1:
        from diga.runtime import distributed

        if not distributed.launched():
            # Re-run this very command under torchrun, one process per GPU; it takes over this process.
            launch = distributed.relaunch_command(processes, argv)
            logger.info("%d processes: %s ...", processes, " ".join(launch[:5]))
            os.execv(launch[0], launch)
        distributed.init(settings["train"]["device"])
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if command in STAGE_COMMANDS:
        run_stage(STAGE_COMMANDS[command], settings, args)
    elif command == "make-toy":
        from diga.data.toycity import ToyCitySpec, write_toycity, write_toycity_style

        if args.style:
            if not args.out:
                raise UsageError("make-toy --style needs --out, the folder of that domain")
            write_toycity_style(ToyCitySpec(**settings["toycity"]), args.style, args.out)
        else:
            write_toycity(ToyCitySpec(**settings["toycity"]), args.out or settings["data"]["root"])
    elif command == "fetch":
        from diga.data.ingest import acquire

        acquire(args.dataset, settings["datasets"][args.dataset], settings["data"]["root"], args.out,
                identity=args.identity)
    elif command == "prepare":
        import json

        from diga.data.labels import raw_ids_from_classes
        from diga.data.prepare import prepare

        receipt = json.loads(args.receipt.read_text())
        domain = settings["data"][args.domain] if args.domain else {"streams": [], "train_list": "lists/train.txt"}
        label_map = settings["datasets"]["mapillary_label_map"] if args.dataset == "mapillary" else None
        prepare(args.dataset, receipt["tree"], args.out, settings["data"]["num_classes"], workers=args.workers,
                strict_counts=settings["datasets"]["strict_counts"], streams=domain["streams"],
                stream_lists=[domain["train_list"]], receipt=receipt,
                raw_ids=raw_ids_from_classes(label_map) if label_map else None)
    elif command == "check-weights":
        from diga.atomic import write_json
        from diga.models.weights import describe_initial_weights

        write_json(args.out, describe_initial_weights(settings))
    elif command == "table":
        from diga.report.tables import write_main_table

        write_main_table(args.metrics, args.out_stem, settings["benchmark"], args.references)
    elif command == "ablation-table":
        from diga.report.tables import write_ablation_table

        write_ablation_table(args.metrics, args.out_stem, settings["benchmark"], args.final_stage,
                             settings["ablations"]["descriptions"])
    elif command == "dg-table":
        from diga.report.tables import write_dg_table

        write_dg_table(args.metrics, args.out_stem, settings["benchmark"],
                       [entry["name"] for entry in settings["dg"]["targets"]], args.references,
                       settings["ablations"]["descriptions"])
    elif command == "semisup-table":
        from diga.report.tables import write_semisup_table

        write_semisup_table(args.metrics, args.out_stem, settings["benchmark"], settings["semisup"]["splits"],
                            args.references)
    elif command == "pseudolabel-table":
        from diga.report.tables import write_pseudolabel_table

        write_pseudolabel_table(args.train_logs, args.summaries, args.out_stem, settings["benchmark"])
    elif command == "run-info":
        from diga.report.run_info import write_run_info

        write_run_info(settings, args.out)
    elif command == "bench":
        run_bench_command(settings, args)
    elif command == "bench-memory":
        import torch

        from diga.bench.memory import estimate_memory

        target = tuple(args.at or settings["data"]["crop"])
        rows = estimate_memory(settings, args.stages, args.modes, args.crops, target, tuple(args.eval_size))
        _report_bench(rows, settings, torch.device("cpu"), args.out)
    elif command == "bench-data":
        run_bench_data_command(settings, args)
    elif command == "bench-numerics":
        import json

        from diga.atomic import write_json
        from diga.bench.harness import describe_device
        from diga.bench.numerics import compare_bf16
        from diga.runtime.device import device_for

        device = device_for(settings)
        result = {"device": describe_device(device), "mode": args.mode, "batch": args.batch,
                  "crop": settings["data"]["crop"], **compare_bf16(settings, device, args.batch, args.mode)}
        print(json.dumps(result, indent=1))
        write_json(args.out, result)
    elif command == "figures":
        from diga.report.figures import make_figures

        make_figures(settings, args.metrics, _pairs(args.logs), _pairs(args.models), args.out_dir,
                     args.final_stage, args.qualitative_images)


def run_bench_command(settings: dict, args: argparse.Namespace) -> None:
    import torch

    from diga.bench import harness
    from diga.runtime.device import device_for

    device = device_for(settings)
    if args.crop:
        settings["data"]["crop"] = list(args.crop)
    modes = args.modes or (list(harness.MODES) if device.type == "cuda" else ["fp32", "bf16", "bf16+cl"])
    if args.sync_debug and device.type == "cuda":
        torch.cuda.set_sync_debug_mode("warn")
    eval_size = tuple(args.eval_size or settings["data"]["crop"])
    rows = harness.run_bench(settings, args.stages, modes, device, args.iterations,
                             args.warmup, eval_size, args.fp32_iterations)
    _report_bench(rows, settings, device, args.out, eval_size="x".join(map(str, eval_size)))


def run_bench_data_command(settings: dict, args: argparse.Namespace) -> None:
    from diga.bench.data import bench_loader
    from diga.runtime.device import device_for

    device = device_for(settings)
    batch_size = args.batch_size or settings["stages"]["warmup"]["batch"]  # an integer, or one count per stream
    rows = bench_loader(settings, args.workers, args.batches, batch_size, device, args.split)
    _report_bench(rows, settings, device, args.out)


def _report_bench(rows: list[dict], settings: dict, device, out: Path, **extra: str) -> None:
    """Print a benchmark's rows as a table and write them as CSV, each with the run's context."""
    import datetime

    import torch

    from diga.bench import harness
    from diga.provenance import git_commit

    context = {"device": harness.describe_device(device), "torch": torch.__version__,
               "date": datetime.date.today().isoformat(), "benchmark": settings["benchmark"],
               "crop": "x".join(map(str, settings["data"]["crop"])), **extra, "commit": git_commit()}
    print(f"{context['device']}, torch {context['torch']}, {context['benchmark']}, crop {context['crop']}")
    print(harness.format_table(rows))
    harness.write_rows(rows, out, context)
    print(f"wrote {out}")


OUT_OF_MEMORY_HINT = (
    "CUDA ran out of memory (traceback below). On a 24 GB card add the overlay config/gpu_24gb.yaml after the paper "
    "config (snakemake --configfile config/gta5_to_cityscapes.yaml config/gpu_24gb.yaml); otherwise lower this "
    "stage's batch (stages.<stage>.batch, translator.batch) or data.crop. `diga bench-memory` estimates each "
    "stage's peak memory."
)


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is PyTorch's out-of-memory error of a GPU."""
    torch = sys.modules.get("torch")  # not imported: the error cannot come from it
    if torch is None:
        return False
    kind = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(error, kind) or (isinstance(error, RuntimeError) and "CUDA out of memory" in str(error))


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is at each message (a test or a tool may have replaced it since)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(command: str) -> None:
    """The package's messages (INFO and above) go to stderr as `diga <command>: <message>`."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"diga {command}: %(message)s"))
    package = logging.getLogger("diga")
    package.handlers = [handler]  # once per call: main() may run several times in one process (tests)
    package.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    configure_logging(args.command)
    try:
        run(args, argv)
    except TrainingInterrupted as stopped:
        # SIGTERM (Slurm's time limit, preemption, scancel): a checkpoint is saved; a non-zero status makes
        # Snakemake retry the job (--retries), and the rerun resumes from the checkpoint.
        logger.warning("%s", stopped)
        return stopped.exit_code
    except DigaError as error:
        # A problem the user fixes, named with its fix in the message: one line, no traceback.
        logger.error("error: %s", error)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C: every output is written through a temporary name, so nothing half-written is left to explain.
        resumes = " (a partial download resumes)" if args.command == "fetch" else ""
        logger.warning("interrupted (Ctrl-C); nothing was half-written, rerun to continue%s", resumes)
        return 130
    except Exception as error:
        # Anything else is a bug or the machine's failure: it keeps its traceback. Out of GPU memory gets a hint.
        if out_of_memory(error):
            logger.error("%s", OUT_OF_MEMORY_HINT)
        raise
    finally:
        if "diga.runtime.distributed" in sys.modules:  # leave the process group of a multi-process run
            sys.modules["diga.runtime.distributed"].shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
