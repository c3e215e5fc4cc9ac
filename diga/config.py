"""Load and validate a run configuration against the workflow's JSON schema, filling defaults."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

from diga.errors import DigaError

# Shipped inside the package (package data), so an installed wheel validates configs as the source tree does;
# the Snakefile validates against the same file.
SCHEMA_NAME = "config.schema.yaml"
SCHEMA_LOCATION = f"diga/schema/{SCHEMA_NAME}"


def schema_text() -> str:
    """The config schema (YAML) as shipped with the package."""
    return (resources.files("diga") / "schema" / SCHEMA_NAME).read_text(encoding="utf-8")


class ConfigError(DigaError, ValueError):
    """A configuration that does not match the schema, or settings that do not fit together or this run."""


def _with_defaults(validator_class):
    """A validator that also writes each property's `default` into the instance (as Snakemake's validate does)."""
    import jsonschema  # imported here: `diga --help` and argument errors need neither it nor yaml (~60 ms)
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate(settings: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Return a validated copy of `settings` with defaults filled; raise ConfigError naming each problem."""
    import jsonschema
    import yaml
    schema = yaml.safe_load(schema_text())
    settings = copy.deepcopy(settings)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    # Two passes: defaults create nested objects whose own defaults the second pass fills.
    for _ in range(2):
        errors = sorted(validator.iter_errors(settings), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"  - {'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]
            raise ConfigError(
                f"{source} does not match {SCHEMA_NAME}:\n" + "\n".join(lines)
                + f"\nFix these keys (their meaning and allowed values are in {SCHEMA_LOCATION})."
            )
    check_batches(settings, source)
    check_official_switches(settings, source)
    return settings


def check_official_switches(settings: dict[str, Any], source: str = "config") -> None:
    """Switches that need another setting: the centroid pass's size is a prepared stream, best needs val_every."""
    problems = []
    size = settings["centroids"]["size"]
    streams = [list(s) for s in settings["data"]["target"]["streams"]]
    if size is not None and list(size) not in streams:
        problems.append(f"  - centroids.size is {list(size)} but data.target.streams is {streams}: the centroid pass "
                        "reads a prepared resize stream; give one of them, or null for the images' own size")
    if settings["evaluate"]["continue_from"] == "best" and settings["evaluate"]["val_every"] == 0:
        problems.append("  - evaluate.continue_from is 'best' but evaluate.val_every is 0, so no best-on-val "
                        "checkpoint is kept: set evaluate.val_every (the official code: 1000) or continue_from: last")
    if problems:
        raise ConfigError(f"{source}:\n" + "\n".join(problems))


def batch_keys(settings: dict[str, Any]) -> list[tuple[str, Any, tuple[str, ...]]]:
    """(key, value, domains it draws from) of every per-iteration batch of the training stages."""
    stages = settings["stages"]
    warmup_domains = ("source", "target") if stages["warmup"]["target_bn_leak"] else ("source",)
    return [
        ("translator.batch", settings["translator"]["batch"], ("source", "target")),
        ("stages.source_only.batch", stages["source_only"]["batch"], ("source",)),
        ("stages.oracle.batch", stages["oracle"]["batch"], ("target",)),
        ("stages.warmup.batch", stages["warmup"]["batch"], warmup_domains),
        ("stages.selftrain.batch_source", stages["selftrain"]["batch_source"], ("source",)),
        ("stages.selftrain.batch_target", stages["selftrain"]["batch_target"], ("target",)),
    ]


def check_batches(settings: dict[str, Any], source: str = "config") -> None:
    """A batch given per stream (a list) needs one count per stream of every domain it draws from."""
    from diga.data.streams import domain_streams

    problems = []
    for key, batch, domains in batch_keys(settings):
        for domain in domains:
            n_streams = len(domain_streams(settings["data"][domain]))
            if isinstance(batch, list) and len(batch) != n_streams:
                configured = f"has {n_streams} stream(s)" if settings["data"][domain]["streams"] else \
                    "is empty (one stream, the prepared images at their own size)"
                problems.append(f"  - {key} lists {len(batch)} count(s) but data.{domain}.streams {configured}; "
                                f"give {n_streams} count(s), one per stream in the order of data.{domain}.streams, "
                                "or an integer total")
    parts, batch = settings["translator"]["accumulate"], settings["translator"]["batch"]
    images = sum(batch) if isinstance(batch, list) else batch
    if images % parts:
        problems.append(f"  - translator.accumulate is {parts} but translator.batch is {images} image(s) per domain; "
                        "set translator.accumulate to a divisor of the batch (equal parts give the full batch's loss)")
    if problems:
        raise ConfigError(f"{source}: inconsistent batch compositions:\n" + "\n".join(problems))


def load(*specs: str) -> dict[str, Any]:
    """Load a config from YAML/JSON file paths, or from an inline JSON object (what the Snakemake rules pass).

    Several files are merged in order, a later one's keys over an earlier one's (nested mappings key by key), as
    Snakemake merges its --configfile arguments: `config/gta5_to_cityscapes.yaml config/gpu_24gb.yaml`.
    """
    import yaml

    merged: dict[str, Any] = {}
    for spec in specs:
        inline = spec.lstrip().startswith("{")
        if not inline and not Path(spec).is_file():
            raise ConfigError(f"config file {spec} does not exist; pass --config config/config.yaml or another file")
        try:
            content = json.loads(spec) if inline else yaml.safe_load(Path(spec).read_text()) or {}
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise ConfigError(f"{'the inline config' if inline else spec} is not valid "
                              f"{'JSON' if inline else 'YAML'}: {error}") from None
        if not isinstance(content, dict):
            raise ConfigError(f"{'the inline config' if inline else spec} holds a {type(content).__name__}, "
                              "not a mapping of config keys")
        merged = _merge(merged, content)
    return validate(merged, " + ".join("inline config" if spec.lstrip().startswith("{") else spec for spec in specs))


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
