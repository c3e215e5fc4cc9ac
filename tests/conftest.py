"""Shared fixtures: the repository, the tiny ToyCity config, and a helper to run Snakemake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diga import config as config_module

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


def run_snakemake(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile from `cwd` (outputs land there)."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a Snakemake dry run into {rule: count}."""
    lines = dry_run_output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3:]:
        fields = line.split()
        if len(fields) != 2 or fields[0] == "total":
            break
        counts[fields[0]] = int(fields[1])
    return counts


def job_threads(dry_run_output: str) -> dict[str, int]:
    """{rule: threads} from a dry run's job blocks (Snakemake prints `threads:` only above 1)."""
    threads, rule = {}, None
    for line in dry_run_output.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            threads.setdefault(rule, 1)
        elif rule and line.strip().startswith("threads:"):
            threads[rule] = int(line.split()[1])
    return threads


@pytest.fixture
def tiny_settings() -> dict:
    """The tiny config, validated, with data paths left relative (tests chdir into a tmp folder)."""
    return config_module.validate(yaml.safe_load(TINY_CONFIG.read_text()), str(TINY_CONFIG))
