"""Print the wall time per stage of a finished run, from Snakemake's benchmark files.

Usage: python3 scripts/stage_times.py results/toycity [--total-wall SECONDS]
The per-job times come from each rule's `benchmark:` TSV (column `s`). Jobs may run in parallel, so the
sum over jobs can exceed the run's wall time; pass the measured wall time to print it beside the sum.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def stage_of(job_file: Path) -> str:
    """'evaluate_warmup.tsv' -> 'evaluate'; 'selftrain2.tsv' -> 'selftrain2'."""
    name = job_file.stem
    for prefix in ("evaluate_", "pseudolabels_", "centroids_"):
        if name.startswith(prefix):
            return prefix.rstrip("_")
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results/<benchmark>")
    parser.add_argument("--total-wall", type=float, help="measured wall time of the whole run, in seconds")
    args = parser.parse_args()
    files = sorted((args.results / "benchmarks").rglob("*.tsv"))
    if not files:
        raise SystemExit(f"no benchmark files under {args.results / 'benchmarks'}; run the pipeline first")
    per_stage: dict[str, list[float]] = defaultdict(list)
    for path in files:
        with open(path) as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        per_stage[stage_of(path)] += [float(row["s"]) for row in rows]
    print(f"{'stage':<14}{'jobs':>6}{'seconds':>10}{'per job':>10}")
    for stage, times in sorted(per_stage.items(), key=lambda item: -sum(item[1])):
        print(f"{stage:<14}{len(times):>6}{sum(times):>10.1f}{sum(times) / len(times):>10.1f}")
    total = sum(sum(times) for times in per_stage.values())
    print(f"{'sum of jobs':<20}{total:>10.1f} s")
    if args.total_wall:
        print(f"{'measured wall time':<20}{args.total_wall:>10.1f} s")


if __name__ == "__main__":
    main()
