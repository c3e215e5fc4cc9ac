"""The package works installed as a wheel, away from the source tree: the config schema travels inside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from diga import config as config_module

# Each config file and how the README and the docs use it: a run config on its own, or an overlay after a base.
BASES = ["config.yaml", "gta5_to_cityscapes.yaml", "synthia_to_cityscapes.yaml", "dg_gta5.yaml",
         "semisup_cityscapes.yaml"]
OVERLAYS = {
    "toycity_seeds.yaml": ["config.yaml"],
    "toycity_v1.yaml": ["config.yaml"],
    "clean.yaml": BASES,  # usable after any config
    "gpu_24gb.yaml": ["gta5_to_cityscapes.yaml", "synthia_to_cityscapes.yaml"],  # the paper configs
}
NOT_RUN_CONFIGS = {"references.yaml"}  # the published rows of the tables, not a run config

COMBINATIONS = [[base] for base in BASES] + [[base, overlay] for overlay, bases in OVERLAYS.items() for base in bases]

# Run by the venv's interpreter: where diga comes from, and every combination loaded and validated.
LOAD_EVERY_CONFIG = """
import json, sys
import diga, diga.config, diga.data.splits
combinations = json.loads(sys.argv[1])
loaded = [diga.config.load(*combination) for combination in combinations]
splits = {n: len(diga.data.splits.standard_labelled(n)) for n in diga.data.splits.STANDARD_FRACTIONS}
print(json.dumps({"module": diga.__file__, "loaded": loaded, "splits": splits}))
"""


def test_every_config_file_is_covered():
    names = {path.name for path in (REPO / "config").glob("*.yaml")}
    assert names == set(BASES) | set(OVERLAYS) | NOT_RUN_CONFIGS, "classify the new config file here"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the package installed from a wheel built from a copy of its sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so the build leaves nothing in the repository and sees nothing else in it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "diga", source / "diga", ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = ["-m", "pip", "--quiet"]
    subprocess.run([sys.executable, *pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp / "dist"), str(source)], check=True, cwd=tmp, env=env)
    wheel, = (tmp / "dist").glob("diga-*.whl")
    assert "diga/schema/config.schema.yaml" in zipfile.ZipFile(wheel).namelist()
    # The dependencies (torch, snakemake, ...) come from this interpreter's site-packages, as does pip; the package
    # itself is installed into the venv (--ignore-installed: the shared editable install stays as it is).
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), *pip, "install", "--no-deps", "--no-index", "--ignore-installed",
                    str(wheel)], check=True, cwd=tmp, env=env)
    return venv


def run_in_venv(venv: Path, *command: str) -> subprocess.CompletedProcess:
    """Run from outside the repository with PYTHONPATH unset, so only the venv's copy of diga can be imported."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(command, cwd=venv.parent, env=env, capture_output=True, text=True, check=True)


def test_installed_wheel_loads_every_config(venv):
    configs = [[str(REPO / "config" / name) for name in combination] for combination in COMBINATIONS]
    result = run_in_venv(venv, str(venv / "bin" / "python"), "-c", LOAD_EVERY_CONFIG, json.dumps(configs))
    out = json.loads(result.stdout)
    site_packages = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                         "print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    assert Path(out["module"]).parent == site_packages / "diga"  # neither the source tree nor an editable install
    for combination, loaded in zip(configs, out["loaded"], strict=True):
        assert loaded == config_module.load(*combination), combination  # the same defaults as from the sources
    assert out["splits"] == {"16": 186, "8": 372, "4": 744, "2": 1488}  # the shipped semi-supervised lists


def test_installed_command_runs(venv):
    result = run_in_venv(venv, str(venv / "bin" / "diga"), "--help")
    assert "make-toy" in result.stdout and "selftrain" in result.stdout
