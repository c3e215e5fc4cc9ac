"""Data-parallel training with torch.distributed on CPU (gloo, 2 processes through torchrun): the outputs have the
single-process format, and a run stopped by SIGTERM resumes to exactly the uninterrupted run's state."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import REPO, TINY_CONFIG
from diga import config as config_module
from diga.data.toycity import ToyCitySpec, write_toycity
from diga.train.resume import RESUME_FILE


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    settings = config_module.validate(yaml.safe_load(TINY_CONFIG.read_text()), str(TINY_CONFIG))
    write_toycity(ToyCitySpec(**settings["toycity"]), root / "resources" / "tiny", progress=False)
    settings["stages"]["source_only"].update(gpus=2, iterations=30)
    settings["train"].update(device="cpu", checkpoint_every=1000)  # only the checkpoint saved on SIGTERM
    (root / "ddp.json").write_text(json.dumps(settings))
    return root


def command(out_dir) -> list[str]:
    return [sys.executable, "-m", "diga", "--threads", "1", "source-only", "--config", "ddp.json", "--seed", "0",
            "--out-dir", str(out_dir)]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def test_two_processes_train_and_resume_bit_identically(workdir):
    straight = subprocess.run(command("straight"), cwd=workdir, env=env(), capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-4000:]
    assert "2 processes" in straight.stderr
    with open(workdir / "straight" / "train_log.csv") as handle:
        header, *rows = handle.read().splitlines()
    assert header == "iteration,loss,ce,lr" and len(rows) == 30
    checkpoint = torch.load(workdir / "straight" / "model.pt", weights_only=False)
    assert {"stage", "model_config", "student", "teacher", "provenance", "seed"} <= set(checkpoint)

    process = subprocess.Popen(command("resumed"), cwd=workdir, env=env(), stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if "[source_only] it" in line:
            break
    process.send_signal(signal.SIGTERM)  # to torchrun, which passes it on to both processes
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0, err[-3000:]
    saved = torch.load(workdir / "resumed" / RESUME_FILE, weights_only=False)
    assert len(saved["ranks"]) == 2 and 0 < saved["iteration"] < 30, err[-3000:]

    again = subprocess.run(command("resumed"), cwd=workdir, env=env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-4000:]
    assert f"at iteration {saved['iteration']}/30" in again.stderr
    assert (workdir / "resumed" / "train_log.csv").read_text() == (workdir / "straight" / "train_log.csv").read_text()
    resumed = torch.load(workdir / "resumed" / "model.pt", weights_only=False)
    for name, tensor in checkpoint["student"].items():
        assert torch.equal(tensor, resumed["student"][name]), name
    assert not (workdir / "resumed" / RESUME_FILE).exists()


def test_single_process_is_the_default(tiny_settings):
    settings = copy.deepcopy(tiny_settings)
    from diga.cli import processes_for

    assert all(processes_for(c, settings) == 1 for c in ("translator", "source-only", "oracle", "warmup", "selftrain"))
    settings["stages"]["warmup"]["gpus"] = 4
    assert processes_for("warmup", settings) == 4 and processes_for("evaluate", settings) == 1
