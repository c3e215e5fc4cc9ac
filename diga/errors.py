"""The base of every error the package raises on purpose, and the few kinds that have no module of their own.

A `DigaError` is a problem the user fixes (a config key, a missing or wrong file, a command-line argument): its
message names the problem and the fix, and the `diga` command prints it on one line, without a traceback. Any other
exception is a bug, or a failure of the machine (CUDA out of memory, a full disk), and keeps its traceback.

The other errors live beside the code that raises them: `MissingDatasetError`
(diga.data.datasets), `ArchiveError`, `ChecksumError` and `DownloadError`
(diga.data.archives), `AcquisitionError` (diga.data.ingest), `PreparationError` (diga.data.prepare),
`NonFiniteLossError` (diga.train.loop) and `TrainingInterrupted` (diga.train.stop). Each also derives from the
builtin exception it was before (ValueError, RuntimeError, FileNotFoundError), so existing handlers still catch it.
"""

from __future__ import annotations


class DigaError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(DigaError, ValueError):
    """A configuration that does not match the schema, or settings that do not fit together or this run."""


class UsageError(DigaError, ValueError):
    """Command-line arguments that do not fit together or are malformed."""


class DatasetError(DigaError, ValueError):
    """A prepared dataset whose content is wrong: a list-file line, a label's ids, shape or size."""


class WeightsError(DigaError, ValueError):
    """An initial weights file that does not fit the network (a file of another network)."""


class MissingWeightsError(DigaError, FileNotFoundError):
    """Initial weights that are not where the config says."""
