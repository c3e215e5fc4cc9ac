"""Compare two finished ToyCity runs that differ only in train.precision (fp32 and bf16, same seed).

  snakemake --cores 2 all -d /tmp/fp32 --configfile config/config.yaml
  snakemake --cores 2 all -d /tmp/bf16 --configfile config/config.yaml benchmarks/bf16.yaml
  python3 benchmarks/compare_precision.py /tmp/fp32/results/toycity /tmp/bf16/results/toycity

Prints, per training stage, how far the bf16 loss curve is from the fp32 one over the first 200 iterations
(raw and as a 20-iteration moving average), and each stage's final mIoU in both runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

STAGES = ("source_only", "warmup", "selftrain1", "selftrain2", "oracle")


def losses(run: Path, stage: str, seed: int) -> list[float]:
    with open(run / f"seed{seed}" / stage / "train_log.csv") as log:
        return [float(row["loss"]) for row in csv.DictReader(log)]


def moving_average(values: list[float], window: int) -> list[float]:
    return [statistics.mean(values[i:i + window]) for i in range(len(values) - window + 1)]


def relative(a: list[float], b: list[float]) -> list[float]:
    return [abs(x - y) / abs(x) for x, y in zip(a, b, strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fp32", type=Path)
    parser.add_argument("bf16", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--window", type=int, default=20)
    args = parser.parse_args()
    print(f"| stage | raw loss: max / mean rel. diff (first {args.iterations}) | {args.window}-it moving average: "
          "max / mean | mIoU fp32 | mIoU bf16 |")
    print("|---|---|---|---|---|")
    for stage in STAGES:
        if not (args.fp32 / f"seed{args.seed}" / stage).is_dir():
            continue
        a = losses(args.fp32, stage, args.seed)[: args.iterations]
        b = losses(args.bf16, stage, args.seed)[: args.iterations]
        raw = relative(a, b)
        smooth = relative(moving_average(a, args.window), moving_average(b, args.window))
        miou = [json.loads((run / f"seed{args.seed}" / stage / "metrics.json").read_text())["miou"]
                for run in (args.fp32, args.bf16)]
        print(f"| {stage} | {max(raw):.3f} / {statistics.mean(raw):.3f} | {max(smooth):.3f} / "
              f"{statistics.mean(smooth):.3f} | {miou[0]:.1f} | {miou[1]:.1f} |")


if __name__ == "__main__":
    main()
