"""Atomic file writes: a finished output is either complete or absent, never partial."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The host is part of a temporary name so that a job on another node sharing the folder is never taken for dead.
HOST = socket.gethostname().replace("/", "_") or "localhost"


def temp_sibling(final: Path) -> Path:
    """The temporary sibling of `final` owned by this process: `.<name>.tmp-<host>-<pid>`."""
    return final.with_name(f".{final.name}.tmp-{HOST}-{os.getpid()}")


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process whose parent has not collected it yet (a container's init may never): it writes nothing more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or it just went away
        return False
    return stat[stat.rfind(")") + 2:].startswith("Z")  # the state letter follows the parenthesised command name


def remove_stale_temps(final: str | Path) -> list[Path]:
    """Remove the temporary siblings of `final` left by killed processes of this host; return them.

    A temporary name ends in `-<pid>` (older versions wrote `.tmp-<pid>` without the host): it is removed only
    when it was made on this host and no process with that pid is running, so a live job's folder is never touched.
    """
    final = Path(final)
    prefix = f".{final.name}.tmp-"
    removed = []
    for sibling in Path(final.parent).glob(glob.escape(prefix) + "*"):
        host, _, pid = sibling.name[len(prefix):].rpartition("-")
        if host not in ("", HOST) or not pid.isdigit() or _running(int(pid)):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed.append(sibling)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    tmp = temp_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; replace `path` with it only if the block succeeds.

    Temporary folders of earlier runs that were killed (SIGKILL, power loss) are removed first.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temps(final):
        logger.info("removed %s, left by a killed run", stale)
    tmp = temp_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_torch(path: str | Path, payload: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
