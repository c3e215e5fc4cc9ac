"""Dataset archives: sha256 checks, resumable downloads, and extraction into a folder renamed into place.

Standard library only (urllib with HTTP Range for resume, zipfile, tarfile); RAR archives go through a
Debian extractor (`bsdtar` from libarchive-tools, or `unar`), since no free Python package reads them.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from diga.atomic import atomic_dir
from diga.errors import DigaError
from diga.progress import progress_bar

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


class ArchiveError(DigaError, RuntimeError):
    """An archive that is wrong, truncated or cannot be extracted; the message names the file and the fix."""


class ChecksumError(ArchiveError):
    """An archive whose sha256 differs from the one recorded in the config (or at first ingest)."""


class DownloadError(DigaError, RuntimeError):
    """A download that failed after every retry."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str | None) -> str:
    """Return the archive's sha256; raise ChecksumError if `expected` is given and differs."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise ChecksumError(
            f"{path}: sha256 {actual} does not match the recorded {expected}. The file is corrupted, truncated or "
            "a different version: delete it and download it again (or, if you trust this copy, replace the "
            "sha256 recorded in the config / checksums file with the new value)."
        )
    return actual


# ----------------------------------------------------------------------------------------------
# Download with resume, retries and progress
# ----------------------------------------------------------------------------------------------


def download(url: str, dest: str | Path, retries: int = 5, timeout: float = 60.0, backoff: float = 2.0,
             progress: bool = True) -> Path:
    """Download `url` to `dest` through `dest.part`, resuming a partial file with an HTTP Range request.

    A cut connection is retried (`retries` times, exponential back-off) from where it stopped; a server that
    ignores Range restarts from zero. `dest` appears only once the whole body has arrived.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        start = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = response.status
                if start and status == 200:     # Range ignored: start again
                    if progress:
                        logger.warning("[download] %s: the server ignored the request to resume at %d bytes (it "
                                       "sent the whole file); downloading again from the start", dest.name, start)
                    start = 0
                length = response.headers.get("Content-Length")
                total = start + int(length) if length is not None else None
                with (progress_bar(total, f"[download] {dest.name}", "B", progress, initial=start, unit_scale=True)
                      as bar, open(part, "ab" if start else "wb") as handle):
                    for block in iter(lambda: response.read(CHUNK), b""):
                        handle.write(block)
                        bar.update(len(block))
            size = part.stat().st_size
            if total is not None and size != total:
                raise http.client.IncompleteRead(b"", total - size)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as error:
            if error.code == 416 and part.exists():  # range beyond the end: the part file is complete or bad
                part.unlink()
            elif error.code in (401, 403, 404):
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}; check the URL in the config") from None
            last_error = error
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as error:
            last_error = error
        if attempt < retries:
            wait = backoff ** attempt
            logger.warning("[download] %s: %r; retry %d/%d in %.0fs (resuming at %d bytes)", dest.name, last_error,
                           attempt + 1, retries, wait, part.stat().st_size if part.exists() else 0)
            time.sleep(wait)
    kept = (f"; the partial file {part} ({part.stat().st_size} bytes) is kept, so rerunning resumes it"
            if part.exists() and part.stat().st_size else "; rerun to try again")
    raise DownloadError(f"{url}: download failed after {retries + 1} tries ({last_error!r}){kept}")


# ----------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------


def archive_kind(path: str | Path) -> str:
    name = Path(path).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    if name.endswith(".rar"):
        return "rar"
    raise ArchiveError(f"{path}: unknown archive type; expected .zip, .tar(.gz/.bz2/.xz) or .rar")


def rar_extractor() -> list[str] | None:
    """The command prefix of an installed RAR extractor (bsdtar, else unar), or None."""
    if shutil.which("bsdtar"):
        return ["bsdtar", "-xf"]
    if shutil.which("unar"):
        return ["unar", "-q", "-f", "-D", "-o"]
    return None


def _safe_relative(name: str) -> Path:
    rel = Path(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise ArchiveError(f"archive member {name!r} points outside the extraction folder; refusing to extract")
    return rel


def fix_backslash_names(root: Path) -> int:
    """Rename files named like 'RAND_CITYSCAPES\\\\RGB\\\\0000001.png' (Windows archives) into real folders."""
    moved = 0
    for path in sorted(root.rglob("*")):
        if "\\" in path.name and path.is_file():
            target = path.parent / _safe_relative(path.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved += 1
    return moved


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)).replace("\\", "/") for p in root.rglob("*") if p.is_file()}


def _extract_into(archive: Path, tmp: Path) -> list[str]:
    """Extract one archive into `tmp`; return its files' paths (relative, '/'-separated)."""
    kind = archive_kind(archive)
    if kind == "zip":
        try:
            with zipfile.ZipFile(archive) as handle:
                members = handle.infolist()
                for member in members:
                    _safe_relative(member.filename)
                handle.extractall(tmp)
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise ArchiveError(f"{archive}: not a readable zip ({error}); it is truncated or damaged. Delete "
                               f"{archive} and download it again.") from None
        return [m.filename.replace("\\", "/") for m in members if not m.is_dir()]
    if kind == "tar":
        try:
            with tarfile.open(archive) as handle:
                members = handle.getmembers()
                for member in members:
                    _safe_relative(member.name)
                handle.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            raise ArchiveError(f"{archive}: not a readable tar ({error}); it is truncated or damaged. Delete "
                               f"{archive} and download it again.") from None
        return [m.name.replace("\\", "/") for m in members if m.isfile()]
    before = _files_under(tmp)  # an external tool gives no member list: what appeared is what it held
    command = rar_extractor()
    if command is None:
        raise ArchiveError(
            f"{archive}: extracting .rar needs bsdtar or unar (Debian/Ubuntu: `apt-get install "
            "libarchive-tools` or `apt-get install unar`); or extract it yourself and use the extracted folder "
            "(the dataset's `way: folder` and `folder` in the config)")
    args = [*command, str(archive), "-C", str(tmp)] if command[0] == "bsdtar" else [*command, str(tmp),
                                                                                     str(archive)]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise ArchiveError(f"{archive}: {command[0]} failed ({result.stderr.strip()[-500:]}); the archive is "
                           f"truncated or damaged. Delete {archive} and download it again.")
    return sorted(_files_under(tmp) - before)


def extract(archives: list[str | Path], dest: str | Path,
            finish: Callable[[Path, dict[str, list[str]]], None] | None = None) -> Path:
    """Extract every archive into one temporary sibling folder, fix backslash names, then rename it to `dest`.

    `finish(tmp, members)` runs before the rename, with each archive's file paths by archive name (e.g. to write an
    index into the folder that appears with it).
    """
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        members = {}
        for archive in archives:
            logger.info("[extract] %s", archive)
            members[Path(archive).name] = _extract_into(Path(archive), tmp)
        fix_backslash_names(tmp)
        if finish is not None:
            finish(tmp, members)
    return dest
