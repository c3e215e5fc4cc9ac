"""Load and validate a run configuration against the workflow's JSON schema, filling defaults."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

from diga.errors import ConfigError

# Shipped inside the package (package data), so an installed wheel validates configs as the source tree does;
# the Snakefile validates against the same file.
SCHEMA_NAME = "config.schema.yaml"
SCHEMA_LOCATION = f"diga/schema/{SCHEMA_NAME}"


def schema_text() -> str:
    """The config schema (YAML) as shipped with the package."""
    return (resources.files("diga") / "schema" / SCHEMA_NAME).read_text(encoding="utf-8")


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


def _schema() -> dict[str, Any]:
    import yaml
    return yaml.safe_load(schema_text())


def _errors(validator, settings: Any, source: str, prefix: str = "") -> None:
    """Raise ConfigError listing every schema problem of `settings` (at `prefix` in the whole config)."""
    errors = sorted(validator.iter_errors(settings), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  - {prefix}{'/'.join(map(str, e.absolute_path)) or ('<top>' if not prefix else '')}: {e.message}"
                 for e in errors]
        raise ConfigError(
            f"{source} does not match {SCHEMA_NAME}:\n" + "\n".join(lines)
            + f"\nFix these keys (their meaning and allowed values are in {SCHEMA_LOCATION})."
        )


def validate(settings: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Return a validated copy of `settings` with defaults filled; raise ConfigError naming each problem."""
    import jsonschema
    if "translator" in settings:
        raise ConfigError(f"{source}: the translator's settings moved under stages: write "
                          "`stages: {translator: ...}` instead of a top-level `translator:` section")
    settings = copy.deepcopy(settings)
    validator = _with_defaults(jsonschema.Draft202012Validator)(_schema())
    # Two passes: defaults create nested objects whose own defaults the second pass fills.
    for _ in range(2):
        _errors(validator, settings, source)
    check_batches(settings, source)
    check_official_switches(settings, source)
    check_toycity(settings, source)
    return settings


def check_toycity(settings: dict[str, Any], source: str = "config") -> None:
    """The toycity section as the generator reads it (its shift range depends on its version)."""
    if "toycity" in settings:
        from diga.data.toycity.spec import ToyCitySpec
        try:
            ToyCitySpec(**settings["toycity"])
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None


class Slice(dict):
    """The part of a config one job was given: reading a key it was not given is an error naming the key, so a job
    never silently runs with a default in place of the user's value."""

    def __init__(self, data: dict[str, Any] = (), path: str = ""):
        super().__init__({key: Slice(value, f"{path}{key}.") if isinstance(value, dict) else value
                          for key, value in dict(data).items()})
        self.path = path

    def __missing__(self, key: str):
        raise ConfigError(f"this job was not given the config key {self.path}{key}: the sections a job reads are "
                          "listed in its stage's record (diga/stages.py) or its rule's slice (workflow/rules/"
                          "common.smk); add the section there")


def validate_slice(picked: dict[str, Any], sections: list[str], source: str = "config slice") -> Slice:
    """Validate a job's slice: exactly `sections` ("section" or "section.key", plus benchmark and seeds), each
    against its part of the schema with its defaults filled, and nothing else filled in."""
    import jsonschema
    schema = _schema()
    picked = copy.deepcopy(picked)
    expected = {"benchmark", "seeds", *sections}
    given = set(_paths(picked, expected))
    if given != expected:
        raise ConfigError(f"{source}: the slice holds {sorted(given)} but its sections are {sorted(expected)}")
    for section in ["benchmark", "seeds", *sections]:
        path = section.split(".")
        subschema, value = schema, picked
        for key in path:
            subschema, value = subschema["properties"][key], value[key]
        standalone = _inline_property_refs({**subschema, "$defs": schema.get("$defs", {})}, schema)
        validator = _with_defaults(jsonschema.Draft202012Validator)(standalone)
        for _ in range(2):
            _errors(validator, value, source, prefix=".".join(path) + "/")
    check_batches(picked, source)
    check_official_switches(picked, source)
    return Slice(picked)


def pick(settings: dict[str, Any], sections: list[str], seeds: list[int] | None = None) -> dict[str, Any]:
    """A job's slice of a validated config: the benchmark, the seeds and exactly `sections` ("section" or
    "section.key"), with the list of them under "sections" (what `diga --config` recognises a slice by)."""
    picked = {"benchmark": settings["benchmark"], "seeds": settings["seeds"] if seeds is None else seeds,
              "sections": list(sections)}
    for section in sections:
        *outer, key = section.split(".")
        source, target = settings, picked
        for part in outer:
            source, target = source[part], target.setdefault(part, {})
        target[key] = copy.deepcopy(source[key])
    return picked


def _inline_property_refs(node: Any, root: dict[str, Any]) -> Any:
    """`node` with each `$ref` into the root's properties ("#/properties/augment/...") replaced by what it points
    at, so that a section's schema validates on its own ($defs travel with it)."""
    if isinstance(node, list):
        return [_inline_property_refs(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    if ref.startswith("#/properties/"):
        target = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        node = {**_inline_property_refs(target, root), **{k: v for k, v in node.items() if k != "$ref"}}
    return {key: _inline_property_refs(value, root) for key, value in node.items()}


def _paths(value: dict[str, Any], expected: set[str], prefix: str = ""):
    """The section paths a slice holds: a key that is a section, or the parts of one given in parts."""
    for key, inner in value.items():
        path = prefix + key
        if path not in expected and isinstance(inner, dict) and any(e.startswith(path + ".") for e in expected):
            yield from _paths(inner, expected, path + ".")
        else:
            yield path


def replace(settings: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `settings` (or of one of its sections) with some keys replaced, as strict as the original."""
    merged = {**settings, **changes}
    return Slice(merged, settings.path) if isinstance(settings, Slice) else merged


def plain(settings: dict[str, Any]) -> dict[str, Any]:
    """Plain dicts again (for YAML, and checkpoints that must not depend on this module)."""
    return json.loads(json.dumps(settings))


def check_official_switches(settings: dict[str, Any], source: str = "config") -> None:
    """Switches that need another setting: the centroid pass's size is a prepared stream, best needs val_every."""
    problems = []
    size = settings["centroids"]["size"] if "centroids" in settings and "data" in settings else None
    streams = [list(s) for s in settings["data"]["target"]["streams"]] if size is not None else []
    if size is not None and list(size) not in streams:
        problems.append(f"  - centroids.size is {list(size)} but data.target.streams is {streams}: the centroid pass "
                        "reads a prepared resize stream; give one of them, or null for the images' own size")
    evaluate = settings.get("evaluate", {})
    if evaluate.get("continue_from") == "best" and evaluate.get("val_every") == 0:
        problems.append("  - evaluate.continue_from is 'best' but evaluate.val_every is 0, so no best-on-val "
                        "checkpoint is kept: set evaluate.val_every (the official code: 1000) or continue_from: last")
    if problems:
        raise ConfigError(f"{source}:\n" + "\n".join(problems))


def check_batches(settings: dict[str, Any], source: str = "config") -> None:
    """A batch given per stream (a list) needs one count per stream of every domain it draws from."""
    from diga.data.streams import domain_streams
    from diga.stages import batch_keys

    problems = []
    for key, batch, domains in batch_keys(settings) if "data" in settings else []:
        for domain in domains:
            n_streams = len(domain_streams(settings["data"][domain]))
            if isinstance(batch, list) and len(batch) != n_streams:
                configured = f"has {n_streams} stream(s)" if settings["data"][domain]["streams"] else \
                    "is empty (one stream, the prepared images at their own size)"
                problems.append(f"  - {key} lists {len(batch)} count(s) but data.{domain}.streams {configured}; "
                                f"give {n_streams} count(s), one per stream in the order of data.{domain}.streams, "
                                "or an integer total")
    for name, section in settings.get("stages", {}).items():  # gradient accumulation (the translator's)
        if "accumulate" not in section or "batch" not in section:  # a job's slice may hold neither
            continue
        parts, batch = section["accumulate"], section["batch"]
        images = sum(batch) if isinstance(batch, list) else batch
        if images % parts:
            problems.append(f"  - stages.{name}.accumulate is {parts} but stages.{name}.batch is {images} image(s) "
                            f"per domain; set stages.{name}.accumulate to a divisor of the batch (equal parts give "
                            "the full batch's loss)")
    if problems:
        raise ConfigError(f"{source}: inconsistent batch compositions:\n" + "\n".join(problems))


def load(*specs: str) -> dict[str, Any]:
    """Load a config from YAML/JSON file paths, or from an inline JSON object (what the Snakemake rules pass).

    Several files are merged in order, a later one's keys over an earlier one's (nested mappings key by key), as
    Snakemake merges its --configfile arguments: `config/gta5_to_cityscapes.yaml config/gpu_24gb.yaml`.
    """
    import yaml

    if len(specs) == 1 and specs[0].lstrip().startswith("{") and "sections" in json.loads(specs[0]):
        picked = json.loads(specs[0])
        return validate_slice(picked, picked.pop("sections"), "this job's config slice")
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
