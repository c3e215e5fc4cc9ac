"""The config schema's shared definitions ($defs): keys that refer to one still get their defaults."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.utils import validate as snakemake_validate

from conftest import REPO
from diga import config as config_module

SCHEMA = REPO / "diga" / "schema" / "config.schema.yaml"
MINIMAL = {"benchmark": "toy", "seeds": [0],
           "data": {"root": "r", "source": {"root": "s", "train_list": "a"},
                    "target": {"root": "t", "train_list": "a", "val_list": "b"}}}


def test_shared_definitions_carry_no_default():
    # Both validators fill a default from a property's own schema only, so it belongs beside the $ref.
    definitions = yaml.safe_load(SCHEMA.read_text())["$defs"]
    assert [name for name, definition in definitions.items() if "default" in definition] == []


def test_keys_with_a_shared_definition_get_their_defaults():
    ours = config_module.validate(MINIMAL)
    theirs = copy.deepcopy(MINIMAL)
    snakemake_validate(theirs, str(SCHEMA))  # what the Snakefile does
    assert ours == theirs
    stages = ours["stages"]
    assert [stages[name]["gpus"] for name in stages] == [1] * 9  # $defs/gpus (the nine training stages)
    assert ours["data"]["crop"] == [64, 128] and ours["data"]["source"]["streams"] == []  # $defs/size
    assert ours["centroids"]["size"] is None
    assert ours["data"]["scale"] == [0.75, 1.5] and stages["warmup"]["scale"] is None  # $defs/scale_range
    assert ours["augment"]["jitter_p"] == 0.5 and ours["optim"]["ohem_thresh"] == 0.7  # $defs/fraction
    assert stages["selftrain"]["confidence_threshold"] == 0.9 and ours["model"]["dropout"] == 0.1
    assert ours["train"]["precision"] == "auto" and ours["train"]["inference_precision"] is None  # $defs/precision
    assert stages["translator"]["batch"] == 2 and stages["selftrain"]["batch_target"] == 4  # $defs/batch


def test_shared_definitions_still_check_values():
    bad = config_module._merge(MINIMAL, {"data": {"crop": [4, 128], "scale": [0, 1]},
                                         "train": {"precision": "fp16"}, "stages": {"oracle": {"gpus": 0}}})
    with pytest.raises(config_module.ConfigError) as error:
        config_module.validate(bad)
    message = str(error.value)
    assert "data/crop/0: 4 is less than the minimum of 8" in message
    assert "data/scale/0: 0 is less than or equal to the minimum of 0" in message
    assert "train/precision: 'fp16' is not one of" in message
    assert "stages/oracle/gpus: 0 is less than the minimum of 1" in message


def test_toycity_shift_range_follows_the_generator_version():
    base = str(REPO / "config" / "config.yaml")
    with pytest.raises(config_module.ConfigError, match=r"shift=1.5 is outside \[0, 1\] for version 1"):
        config_module.load(base, '{"toycity": {"shift": 1.5, "version": 1}}')
    loaded = config_module.load(base, '{"toycity": {"shift": 1.5, "version": 2}}')
    assert loaded["toycity"]["version"] == 2 and loaded["toycity"]["shift"] == 1.5
    with pytest.raises(config_module.ConfigError, match="toycity.version"):
        config_module.load(base, '{"toycity": {"version": 3}}')
