"""The workflow on a real Slurm cluster (the single-node one .ci/slurm.sh starts), through the CI Slurm profile.

Skipped, with the reason, where no Slurm answers; with CI=true (as .ci/run sets it) they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, TINY_CONFIG

PROFILE = REPO / "slurm" / "ci"
GPU_RULES = {"translator", "source_only", "oracle", "warmup", "selftrain", "pseudolabels", "centroids", "evaluate"}
CPU_RULES = {"make_toy", "table", "pseudolabel_table", "figures", "run_info"}
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: .*/rule_(\w+?)/")


def slurm_problem() -> str | None:
    """Why Slurm cannot run jobs here, or None when a node is up."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (sinfo not found); .ci/slurm.sh starts a single-node cluster"
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    states = result.stdout.split()
    if result.returncode != 0 or not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
        return f"Slurm is not up (sinfo: {(result.stdout + result.stderr).strip() or 'no nodes'})"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_up():
    problem = slurm_problem()
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the Slurm tests: {problem}")
        pytest.skip(problem)


def snakemake_command(workdir: Path, config: Path, *targets: str) -> list[str]:
    # SIGINT, not SIGTERM, stops snakemake with jobs in flight; `timeout` guards against a hang.
    return ["timeout", "-s", "INT", "-k", "30", "420", sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
            "--profile", str(PROFILE), *targets, "--configfile", str(config)]


def job_env() -> dict[str, str]:
    """Slurm jobs inherit the environment: make them import this checkout's diga."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def submitted_jobs(output: str) -> list[tuple[str, str]]:
    """(Slurm job id, rule) for each submission in a snakemake log."""
    return [(m.group(1), m.group(2)) for m in SUBMITTED.finditer(output)]


def slurm_job(job_id: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return dict(field.split("=", 1) for field in text.split() if "=" in field)


def write_config(path: Path, **changes) -> Path:
    settings = yaml.safe_load(TINY_CONFIG.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = settings
        for name in parents:
            node = node.setdefault(name, {})
        node[key] = value
    path.write_text(yaml.safe_dump(settings))
    return path


def test_dag_runs_on_slurm_with_gpu_requests(tmp_path):
    # One self-training round keeps every rule of the DAG and saves two levels of Slurm polling.
    config = write_config(tmp_path / "tiny.yaml", **{"stages.selftrain.rounds": 1})
    start = time.monotonic()
    result = subprocess.run(snakemake_command(tmp_path, config, "all"), cwd=tmp_path, env=job_env(),
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    print(f"ToyCity (tiny) DAG on Slurm: {time.monotonic() - start:.0f} s")

    jobs = submitted_jobs(output)
    assert {rule for _, rule in jobs} == GPU_RULES | CPU_RULES, jobs
    for job_id, rule in jobs:
        job = slurm_job(job_id)
        assert job.get("JobState") == "COMPLETED", (rule, job)
        assert f"rule_{rule}" in job.get("Comment", ""), (rule, job)
        gpus = job.get("TresPerJob", "")
        if rule in GPU_RULES:
            assert re.search(r"gpu:1\b", gpus), f"{rule} (job {job_id}) asked for no GPU: {gpus!r}"
        else:
            assert "gpu" not in gpus, f"{rule} (job {job_id}) asked for a GPU: {gpus!r}"

    results = tmp_path / "results" / "tiny"
    stages = ["source_only", "warmup", "selftrain1", "oracle"]
    expected = [results / "table.md", results / "table.csv", results / "seed0" / "translator" / "translator.pt",
                results / "seed0" / "warmup" / "centroids.pt", results / "seed0" / "warmup" / "pseudolabels.json"]
    expected += [results / "seed0" / stage / name for stage in stages
                 for name in ("model.pt", "train_log.csv", "metrics.json")]
    missing = [str(p.relative_to(tmp_path)) for p in expected if not p.is_file()]
    assert not missing, missing
    assert not list(results.rglob("resume.pt")), "checkpoints are removed once a stage's outputs are written"
    logs = sorted((results / "logs" / "seed0").glob("*.log"))
    assert {p.stem for p in logs} >= {"translator", "warmup", "selftrain1", "evaluate_warmup"}


def running_job(rule: str) -> str | None:
    lines = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True).stdout
    for line in lines.splitlines():
        job_id, _, comment = line.partition(" ")
        if comment.strip().startswith(f"rule_{rule}"):
            return job_id
    return None


def test_cancelled_training_job_resumes_with_identical_results(tmp_path):
    """scancel a training job mid-run; Snakemake resubmits it (retries) and it resumes from its checkpoint."""
    changes = {"stages.source_only.iterations": 100, "train.checkpoint_every": 2}
    target = "results/tiny/seed0/source_only/metrics.json"

    # The uninterrupted reference, run locally with one thread like the Slurm jobs (same seed, same CPU code).
    local = tmp_path / "local"
    local.mkdir()
    config = write_config(tmp_path / "long.yaml", **changes)
    reference = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1",
                                target, "--configfile", str(config)], cwd=local, env=job_env(),
                               capture_output=True, text=True)
    assert reference.returncode == 0, (reference.stdout + reference.stderr)[-4000:]

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    run = subprocess.Popen(snakemake_command(cluster, config, target), cwd=cluster, env=job_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = cluster / "results" / "tiny" / "seed0" / "source_only" / "resume.pt"
    job_id, deadline = None, time.monotonic() + 300
    try:
        while time.monotonic() < deadline and run.poll() is None:
            job_id = job_id or running_job("source_only")
            if job_id and checkpoint.is_file():
                break
            time.sleep(0.2)
        assert job_id and checkpoint.is_file(), "the source_only job never wrote a checkpoint"
        subprocess.run(["scancel", job_id], check=True)
        output, _ = run.communicate(timeout=400)
    except BaseException:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
        raise
    assert run.returncode == 0, output[-6000:]

    attempts = [job for job, rule in submitted_jobs(output) if rule == "source_only"]
    assert len(attempts) == 2 and attempts[0] == job_id, output[-4000:]
    assert slurm_job(job_id).get("JobState") == "CANCELLED"
    # The resubmission is attempt 2: the profile's runtime and memory grow with the attempt.
    first, second = slurm_job(attempts[0]), slurm_job(attempts[1])
    assert (first.get("TimeLimit"), second.get("TimeLimit")) == ("00:10:00", "00:20:00")
    log = (cluster / "results" / "tiny" / "logs" / "seed0" / "source_only.log").read_text()
    resumed = re.search(r"resumed from \S+ at iteration (\d+)/100", log)
    assert resumed and 0 < int(resumed.group(1)) < 100, log[-2000:]
    print(f"cancelled job {job_id}; the resubmitted job resumed at iteration {resumed.group(1)}/100")

    ours, theirs = (d / "results" / "tiny" / "seed0" / "source_only" for d in (cluster, local))
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (ours, theirs)]
    for key in ("miou", "pixel_accuracy", "per_class_iou", "confusion"):
        assert metrics[0][key] == metrics[1][key], key
    assert (ours / "train_log.csv").read_text() == (theirs / "train_log.csv").read_text()
    weights = [torch.load(d / "model.pt", weights_only=False)["student"] for d in (ours, theirs)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])
    assert not checkpoint.exists()
