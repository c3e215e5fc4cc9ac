"""The table of stages, the jobs' strict config slices, and the package's layers."""

from __future__ import annotations

import ast
import collections
import json
import re

import pytest
import torch
import yaml

from conftest import REPO, TINY_CONFIG
from diga import config as config_module
from diga.cli import main
from diga.stages import STAGES, batch_keys, label, order, parse_folder

# The package's layers, top to bottom: a module imports only from layers below its own (or its own subpackage).
LAYERS = {"__main__": 8, "cli": 7, "bench": 6, "report": 6, "train": 5, "infer": 5, "runtime": 4, "method": 3,
          "models": 3, "config": 2, "data": 1, "atomic": 0, "provenance": 0, "stages": 0, "errors": 0, "progress": 0,
          "diga": -1}


def _imports() -> dict[str, set[str]]:
    """Each diga module -> the diga modules it imports anywhere in its body (function-level imports too)."""
    edges = collections.defaultdict(set)
    for path in (REPO / "diga").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "diga":
                edges[module].add(node.module)
            elif isinstance(node, ast.Import):
                edges[module].update(alias.name for alias in node.names if alias.name.split(".")[0] == "diga")
    return edges


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "diga"


def test_imports_only_run_down_the_layers():
    upward = sorted(f"{module} -> {imported}" for module, imports in _imports().items() for imported in imports
                    if _part(module) != _part(imported) and LAYERS[_part(imported)] >= LAYERS[_part(module)])
    assert upward == []  # in particular train/ and infer/ never import each other


def test_folders_parse_back_through_the_table():
    assert parse_folder("selftrain12") == (STAGES["selftrain"], 12)
    assert parse_folder("source_only") == (STAGES["source_only"], None)
    assert label("selftrain2") == "self-training round 2" and label("warmup") == "warm-up"
    assert sorted(["oracle", "selftrain2", "warmup", "selftrain1", "source_only", "translator"], key=order) == \
        ["translator", "source_only", "warmup", "selftrain1", "selftrain2", "oracle"]
    for bad in ("selftrain", "warmup2", "nothing"):
        with pytest.raises(ValueError, match="names no stage"):
            parse_folder(bad)


def test_batch_keys_come_from_the_records_and_the_leak_adds_the_target():
    settings = config_module.load(str(TINY_CONFIG))
    keys = {key: domains for key, _, domains in batch_keys(settings)}
    assert keys == {"stages.translator.batch": ("source", "target"), "stages.source_only.batch": ("source",),
                    "stages.oracle.batch": ("target",), "stages.warmup.batch": ("source",),
                    "stages.selftrain.batch_source": ("source",), "stages.selftrain.batch_target": ("target",),
                    "stages.dg_warmup.batch": ("source",),
                    # semi-supervised stages draw both their labelled and unlabelled batches from target train
                    "stages.semisup_supervised.batch": ("target",), "stages.semisup_warmup.batch": ("target",),
                    "stages.semisup_selftrain.batch_source": ("target",),
                    "stages.semisup_selftrain.batch_target": ("target",)}
    settings["stages"]["warmup"]["target_bn_leak"] = True
    assert dict((k, d) for k, _, d in batch_keys(settings))["stages.warmup.batch"] == ("source", "target")
    settings["stages"]["dg_warmup"]["target_bn_leak"] = True  # the DG warm-up's leak (the official DG code)
    assert dict((k, d) for k, _, d in batch_keys(settings))["stages.dg_warmup.batch"] == ("source", "target")


def _slice(settings: dict, stage: str) -> str:
    return json.dumps(config_module.pick(settings, list(STAGES[stage].sections(settings)), [0]))


def test_a_slice_fills_defaults_only_inside_its_sections_and_names_what_it_lacks():
    settings = config_module.load(str(TINY_CONFIG))
    settings["train"].update(loader_workers=0, compile=True)
    evaluate = config_module.load(_slice(settings, "evaluate"))
    # The inference slice carries the user's loader workers and compile switch (they were once left behind).
    assert evaluate["train"]["loader_workers"] == 0 and evaluate["train"]["compile"] is True
    assert set(evaluate) == {"benchmark", "seeds", "data", "evaluate", "train"}
    assert set(evaluate["train"]) == {"device", "precision", "inference_precision", "channels_last", "compile",
                                      "loader_workers"}
    with pytest.raises(config_module.ConfigError, match="not given the config key train.log_every"):
        evaluate["train"]["log_every"]
    with pytest.raises(config_module.ConfigError, match="not given the config key model"):
        evaluate["model"]
    # Inside a given section the schema's defaults are filled: a slice without ema.max_decay gets 0.999.
    picked = config_module.pick(settings, ["ema"], [0])
    del picked["ema"]["max_decay"]
    assert config_module.load(json.dumps(picked))["ema"]["max_decay"] == 0.999
    # A slice must hold exactly the sections it names.
    picked["optim"] = settings["optim"]
    with pytest.raises(config_module.ConfigError, match="the slice holds"):
        config_module.load(json.dumps(picked))


def test_every_stage_runs_on_exactly_its_own_slice(tmp_path, monkeypatch):
    """Each stage's command, in pipeline order, given only its record's sections (as the Snakemake rules give)."""
    from diga.data.toycity import ToyCitySpec, write_toycity

    raw = yaml.safe_load(TINY_CONFIG.read_text())
    root = tmp_path / "data"
    raw["data"].update(root=str(root), source=dict(raw["data"]["source"], root=str(root / "source")),
                       target=dict(raw["data"]["target"], root=str(root / "target")))
    settings = config_module.validate(raw)
    write_toycity(ToyCitySpec(**settings["toycity"]), root)
    run = tmp_path / "seed0"

    def command(stage: str, *args: str) -> None:
        seed = ["--seed", "0"] if STAGES[stage].seeded else []
        assert main([STAGES[stage].command, "--config", _slice(settings, stage), *seed, *map(str, args)]) == 0

    command("translator", "--out-dir", run / "translator")
    for stage in ("source_only", "oracle"):
        command(stage, "--out-dir", run / stage)
    command("warmup", "--translator", run / "translator" / "translator.pt", "--out-dir", run / "warmup")
    command("pseudolabels", "--checkpoint", run / "warmup" / "model.pt", "--out-dir", run / "warmup" / "pseudolabels",
            "--summary", run / "warmup" / "pseudolabels.json")
    command("centroids", "--checkpoint", run / "warmup" / "model.pt", "--out", run / "warmup" / "centroids.pt")
    command("selftrain", "--round", 1, "--init", run / "warmup" / "model.pt", "--translator",
            run / "translator" / "translator.pt", "--pseudolabels", run / "warmup" / "pseudolabels",
            "--centroids", run / "warmup" / "centroids.pt", "--out-dir", run / "selftrain1")
    command("evaluate", "--checkpoint", run / "selftrain1" / "model.pt", "--stage", "selftrain1",
            "--out", run / "selftrain1" / "metrics.json")
    metrics = json.loads((run / "selftrain1" / "metrics.json").read_text())
    assert metrics["stage"] == "selftrain1" and 0 <= metrics["miou"] <= 100
    # The checkpoint records the slice its stage was given, nothing more.
    recorded = torch.load(run / "warmup" / "model.pt", weights_only=False)["provenance"]["config"]
    assert set(recorded) == {"benchmark", "seeds", "data", "model", "optim", "ema", "augment", "train", "stages",
                             "evaluate"}
    assert set(recorded["stages"]) == {"warmup"} and recorded["evaluate"] == {"val_every": 0}


def test_each_stage_is_named_in_its_record_its_step_and_its_rule_only():
    """Outside tests and docs, a stage's name (as a string) appears in the table, in its step's module and in the
    workflow, apart from the benchmark harness (which builds one timed iteration per stage) and the sections of
    the config that share a name with a stage (centroids, evaluate)."""
    allowed = {"diga/stages.py", "diga/bench/harness.py", "diga/report/tables.py"}  # tables: the ablation rows
    for name, stage in STAGES.items():
        step_module = stage.step.split(":")[0].replace(".", "/") + ".py"
        found = set()
        for path in (REPO / "diga").rglob("*.py"):
            relative = str(path.relative_to(REPO))
            text = path.read_text()
            # A quoted name not used as a key lookup (settings["stages"]["translator"] reads a config section).
            if re.search(rf"(?<!\[)[\"']{name}[\"'{{0-9]", text):
                found.add(relative)
        if name in ("centroids", "evaluate"):  # also config sections: settings["evaluate"], settings["centroids"]
            continue
        # config.py names the translator once more: in the error for a config that still has it at the top level.
        moved = {"diga/config.py"} if name == "translator" else set()
        assert found <= allowed | moved | {step_module}, (name, found)
