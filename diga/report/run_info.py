"""A Markdown page with what made a run: the full config, the code version and the software versions."""

from __future__ import annotations

from pathlib import Path

import yaml

from diga.atomic import write_text
from diga.provenance import provenance


def write_run_info(settings: dict, out: Path) -> None:
    info = provenance(settings)
    versions = "\n".join(f"| {name} | {version} |" for name, version in info["versions"].items())
    text = (f"# Run: {settings['benchmark']}\n\n"
            f"- code: `{info['git_commit']}`\n- config hash: `{info['config_hash']}`\n\n"
            f"## Software\n\n| package | version |\n|---|---|\n{versions}\n\n"
            f"## Configuration (defaults filled in)\n\n```yaml\n{yaml.safe_dump(settings, sort_keys=False)}```\n")
    write_text(out, text)
