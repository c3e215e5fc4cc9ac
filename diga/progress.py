"""Progress bars on stderr (tqdm): redrawn in place on a terminal; in a log file, a few whole lines."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

LOG_INTERVAL_S = 15.0  # off a terminal: at most one progress line per this many seconds (and the final one)


class _Lines:
    """A stream taking tqdm's redraws (each starts with a carriage return, padded with spaces to cover the
    previous one) and writing each as a line of its own, so that a log file reads line by line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, **options) -> tqdm:
    """A tqdm bar on stderr; nothing when not `enabled`. On a terminal it is redrawn in place; elsewhere (a log
    file, a pipe) it is plain ASCII, one line when it starts, at most one per LOG_INTERVAL_S seconds, and one at
    the end. `options` go to tqdm (initial, unit_scale, ...)."""
    stream = sys.stderr
    if stream.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=not enabled, dynamic_ncols=True,
                    **options)
    return tqdm(total=total, desc=desc, unit=unit, file=_Lines(stream), disable=not enabled, ascii=True,
                mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, **options)
