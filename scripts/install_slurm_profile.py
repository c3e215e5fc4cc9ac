#!/usr/bin/env python3
"""Install the repository's Slurm profile (slurm/config.yaml) as your own, with your cluster's values filled in.

    python3 scripts/install_slurm_profile.py --account myproj --partition gpu [--gpu-model a100]
    snakemake --profile ~/.config/snakemake/slurm all

Only the lines marked CLUSTER-SPECIFIC in slurm/config.yaml change. Snakemake looks for `--profile slurm` in the
current directory first, then in ~/.config/snakemake: from the repository root, `--profile slurm` is the
repository's copy (cluster defaults), so name the installed one by its path there.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "slurm" / "config.yaml"
FIELDS = {"account": "slurm_account", "partition": "slurm_partition", "gpu_model": "gpu_model"}


def fill(text: str, values: dict[str, str]) -> str:
    """Set `key: ""` placeholders (each appears once in the template) to the given values."""
    for option, key in FIELDS.items():
        value = values.get(option)
        if value is None:
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.,\-]+", value):
            raise SystemExit(f"--{option.replace('_', '-')} {value!r}: only letters, digits and _ . , - allowed")
        pattern = re.compile(rf'^(\s*{key}: )""', re.MULTILINE)
        text, count = pattern.subn(rf'\g<1>"{value}"', text)
        if count != 1:
            raise SystemExit(f"{TEMPLATE}: expected one '{key}: \"\"' line, found {count}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--account", help="Slurm account (sbatch -A); default: the plugin guesses yours")
    parser.add_argument("--partition", help="partition for every job (sbatch -p); default: the cluster's default")
    parser.add_argument("--gpu-model", help="GPU type for GPU jobs (sbatch --gpus=<model>:N), e.g. a100")
    parser.add_argument("--dest", type=Path, default=Path.home() / ".config" / "snakemake" / "slurm",
                        help="profile folder to write (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing, different profile")
    args = parser.parse_args(argv)

    text = fill(TEMPLATE.read_text(), {"account": args.account, "partition": args.partition,
                                       "gpu_model": args.gpu_model})
    target = args.dest.expanduser() / "config.yaml"
    if target.exists() and target.read_text() != text and not args.force:
        print(f"{target} exists and differs; pass --force to replace it", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}\nrun: snakemake --profile {args.dest} all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
