"""Stopping training cleanly on a signal: Slurm sends SIGTERM at the time limit, on preemption and on scancel
(then SIGKILL after KillWait, 30 s by default), and SIGUSR1 ahead of time with `--signal=USR1@<seconds>`
(`slurm_extra` in the profile; without `B:`, so that it reaches the job step where training runs)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from diga.errors import DigaError

# EX_TEMPFAIL, "try again later". Any non-zero status makes Snakemake retry the job (with --retries).
INTERRUPTED_EXIT_CODE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingInterrupted(DigaError, RuntimeError):
    """Training stopped on a signal after saving a checkpoint; rerunning the stage resumes it."""

    exit_code = INTERRUPTED_EXIT_CODE


class StopFlag:
    """Set by SIGTERM/SIGUSR1 while training runs; the loop checks it between iterations."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handler(self, signum, frame) -> None:
        self.signal = signum


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Catch the stop signals for the duration of the block (main thread only; elsewhere they are left alone)."""
    flag = StopFlag()
    try:
        previous = {sig: signal.signal(sig, flag._handler) for sig in STOP_SIGNALS}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
