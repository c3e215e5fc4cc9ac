"""Time the pipeline: run it from scratch and print the wall time, total and per stage.

  python3 scripts/benchmark_pipeline.py                      # default config, fresh scratch folder, 2 cores
  python3 scripts/benchmark_pipeline.py --configfile config/config.yaml config/toycity_seeds.yaml
  python3 scripts/benchmark_pipeline.py --report results/toycity   # only report a finished run

Per-stage times come from each rule's `benchmark:` TSV (column `s`); jobs can overlap, so their sum can
differ from the measured wall time of the whole run.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage_of(job_file: Path) -> str:
    """'evaluate_warmup.tsv' -> 'evaluate'; 'selftrain2.tsv' -> 'selftrain2'."""
    name = job_file.stem
    for prefix in ("evaluate_", "pseudolabels_", "centroids_"):
        if name.startswith(prefix):
            return prefix.rstrip("_")
    return name


def run_pipeline(configfiles: list[str], cores: int, workdir: Path) -> float:
    """Run `snakemake all` in `workdir`; return its wall time in seconds."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", str(cores), "all",
               "--configfile", *[str(Path(c).resolve()) for c in configfiles]]
    print("running:", " ".join(command), f"(in {workdir})", flush=True)
    start = time.monotonic()
    subprocess.run(command, cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def report(results: Path, wall: float | None) -> None:
    files = sorted((results / "benchmarks").rglob("*.tsv"))
    if not files:
        raise SystemExit(f"no benchmark files under {results / 'benchmarks'}; run the pipeline first")
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
    if wall is not None:
        print(f"{'measured wall time':<20}{wall:>10.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="where to run (default: a new temporary folder)")
    parser.add_argument("--report", type=Path, help="only report the finished run in this results/<benchmark>")
    args = parser.parse_args()
    if args.report:
        report(args.report, None)
        return
    import yaml

    benchmark = None
    for path in args.configfile:  # later files override earlier ones, as in Snakemake
        benchmark = (yaml.safe_load(Path(path).read_text()) or {}).get("benchmark", benchmark)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="diga-benchmark-"))
    wall = run_pipeline(args.configfile, args.cores, workdir)
    report(workdir / "results" / benchmark, wall)
    print(f"results: {workdir / 'results' / benchmark}")


if __name__ == "__main__":
    main()
