"""What made a result: the config hash, the code version and the package versions."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import diga

_REPO = Path(__file__).resolve().parents[1]


def config_hash(settings: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a config (key order does not matter)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def git_commit() -> str:
    """The commit of the code tree, with '-dirty' when there are uncommitted changes; 'unknown' outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no", "--", "diga", "workflow"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "diga": diga.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        # The CPU kernels torch picked (AVX2, AVX512, ...): on a CPU, the same config and seed give the same numbers
        # only on the same kind; an AVX2 and an AVX-512 machine round differently and end a run with other floats.
        "torch_cpu_kernels": torch.backends.cpu.get_cpu_capability(),
    }


def provenance(settings: dict[str, Any]) -> dict[str, Any]:
    """The block every result file carries."""
    return {
        "config_hash": config_hash(settings),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "config": json.loads(json.dumps(settings)),  # plain dicts: a checkpoint must not need diga's classes
    }
