"""Resize streams: each domain's training list read at fixed [height, width] sizes (the paper's low-scale and
full-scale loaders), and how a stage's batch is split over them.

`prepare` writes a stream's files under `streams/<H>x<W>/` of the prepared folder, with the list
`streams/<H>x<W>/<train_list>` whose lines are relative to the prepared folder (so SegmentationList reads it
with the same root). No streams configured means one stream: the plain list at the images' own size.
"""

from __future__ import annotations

Size = tuple[int, int]


def size_name(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def stream_list(train_list: str, size: Size | None) -> str:
    """The list file of one stream, relative to the prepared folder (None: the native-size list itself)."""
    return train_list if size is None else f"streams/{size_name(size)}/{train_list}"


def domain_streams(domain: dict) -> list[Size | None]:
    """The stream sizes of a data.<domain> section; [None] (native size) when none are configured."""
    return [tuple(size) for size in domain.get("streams") or []] or [None]


def stream_counts(batch: int | list[int], n_streams: int) -> list[int]:
    """Images per stream: a list is taken as is; an integer total is split as evenly as possible, earlier
    streams taking the remainder (5 over 2 streams: [3, 2])."""
    if isinstance(batch, list):
        if len(batch) != n_streams:
            raise ValueError(f"{len(batch)} counts for {n_streams} stream(s)")
        return list(batch)
    return [batch // n_streams + (1 if i < batch % n_streams else 0) for i in range(n_streams)]
