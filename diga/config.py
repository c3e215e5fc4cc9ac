"""Load and validate a run configuration against the workflow's JSON schema, filling defaults."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that does not match the schema."""


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
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    settings = copy.deepcopy(settings)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    # Two passes: defaults create nested objects whose own defaults the second pass fills.
    for _ in range(2):
        errors = sorted(validator.iter_errors(settings), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"  - {'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]
            raise ConfigError(
                f"{source} does not match {SCHEMA_PATH.name}:\n" + "\n".join(lines)
                + "\nFix these keys (their meaning and allowed values are in workflow/schemas/config.schema.yaml)."
            )
    return settings


def load(spec: str) -> dict[str, Any]:
    """Load a config from a YAML/JSON file path, or from an inline JSON object (what the Snakemake rules pass)."""
    import yaml
    if spec.lstrip().startswith("{"):
        return validate(json.loads(spec), "inline config")
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass --config config/config.yaml or another file")
    return validate(yaml.safe_load(path.read_text()) or {}, str(path))
