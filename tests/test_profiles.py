"""The Slurm profiles: found from the repository root, valid for Snakemake, and installable with the user's values."""

from __future__ import annotations

import subprocess
import sys

import yaml

from conftest import REPO, job_counts

TRAINING_RULES = {"translator", "source_only", "oracle", "warmup", "selftrain", "dg_warmup"}


def test_profile_slurm_resolves_from_the_repository_root():
    # --forceall: the whole DAG is listed even where results already exist in the checkout
    command = [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "--forceall", "all"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Using profile slurm for setting default command line arguments" in output
    assert job_counts(result.stdout)["warmup"] == 1


def test_profiles_scale_time_and_memory_with_the_attempt():
    for path in (REPO / "slurm" / "config.yaml", REPO / "slurm" / "ci" / "config.yaml"):
        profile = yaml.safe_load(path.read_text())
        assert profile["executor"] == "slurm" and profile["retries"] >= 1
        assert TRAINING_RULES <= set(profile["set-resources"]), path
        for resources in [profile["default-resources"], *profile["set-resources"].values()]:
            for key in ("runtime", "mem_mb"):
                assert "attempt" in str(resources.get(key, "attempt")), (path, key)


def test_install_fills_in_account_partition_and_gpu_model(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "install_slurm_profile.py"), "--account", "proj1",
                             "--partition", "gpu", "--gpu-model", "a100", "--dest", str(tmp_path / "slurm")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    profile = yaml.safe_load((tmp_path / "slurm" / "config.yaml").read_text())
    assert profile["default-resources"]["slurm_account"] == "proj1"
    assert profile["default-resources"]["slurm_partition"] == "gpu"
    assert all(profile["set-resources"][rule]["gpu_model"] == "a100" for rule in TRAINING_RULES)
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "install_slurm_profile.py"), "--account", "other",
                            "--dest", str(tmp_path / "slurm")], capture_output=True, text=True)
    assert again.returncode == 1 and "--force" in again.stderr
