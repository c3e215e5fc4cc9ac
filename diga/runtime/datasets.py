"""The datasets a stage reads (source train, target train, target val) and its batches, composed over a
domain's resize streams."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from diga.data.datasets import SegmentationList
from diga.data.loader import BatchStream
from diga.data.streams import Size, domain_streams, stream_counts, stream_list


def source_train(settings: dict, size: Size | None = None) -> SegmentationList:
    """Source train at its own size, or its resize stream of `size` (see diga.data.streams)."""
    data = settings["data"]
    return SegmentationList(data["source"]["root"], stream_list(data["source"]["train_list"], size),
                            data["num_classes"])


def target_train(settings: dict, with_labels: bool | None = None, pseudo_dir: str | None = None,
                 size: Size | None = None) -> SegmentationList:
    """Target train (at a stream's `size` if given; full-size pseudo-labels are then resized to it, nearest).

    `with_labels` None: the labels, where data.target.train_has_labels, as 'truth', for measurement only;
    True: as the training 'label' (the oracle alone); False: none."""
    data = settings["data"]
    labels = data["target"]["train_has_labels"] if with_labels is None else with_labels
    return SegmentationList(data["target"]["root"], stream_list(data["target"]["train_list"], size),
                            data["num_classes"], with_labels=labels, extra_label_dir=pseudo_dir,
                            resize_extra_labels=size is not None, truth_only=with_labels is None)


def target_val(settings: dict) -> SegmentationList:
    data = settings["data"]
    return SegmentationList(data["target"]["root"], data["target"]["val_list"], data["num_classes"])


class ComposedStream:
    """One batch from each of several streams (one per resize stream of a domain), concatenated in stream order.

    The parts draw in a fixed order from their generators, so it is as deterministic as they are; its state is
    theirs, in order.
    """

    def __init__(self, parts: list[BatchStream]):
        self.parts = parts

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        drawn = [next(part) for part in self.parts]
        return {key: torch.cat([batch[key] for batch in drawn]) for key in drawn[0]}

    def state_dict(self) -> dict[str, list]:
        return {"parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state: dict[str, list]) -> None:
        if len(state["parts"]) != len(self.parts):
            raise ValueError(f"a resume state of {len(state['parts'])} streams for {len(self.parts)} streams")
        for part, part_state in zip(self.parts, state["parts"], strict=True):
            part.load_state_dict(part_state)

    def close(self) -> None:
        """Stop the parts' loader workers (they also stop when the stream is garbage collected)."""
        for part in self.parts:
            part.close()


def domain_batches(settings: dict, domain: str, batch: int | list[int], generator: torch.Generator,
                   device: torch.device, **dataset_options) -> ComposedStream:
    """A stage's batches of one domain ('source' or 'target'): `batch` split over data.<domain>.streams, each
    stream's share drawn (scaled, cropped, flipped) by a BatchStream over that stream's list.

    `dataset_options` go to target_train (with_labels, pseudo_dir). With no streams configured this is one
    BatchStream over the plain list, drawing exactly as before streams existed.
    """
    sizes = domain_streams(settings["data"][domain])
    dataset = source_train if domain == "source" else target_train
    return ComposedStream([BatchStream(dataset(settings, size=size, **dataset_options), count, settings, generator,
                                       device)
                           for size, count in zip(sizes, stream_counts(batch, len(sizes)), strict=True) if count > 0])
