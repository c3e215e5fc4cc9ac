"""The batch stream: the same batches whatever the number of loader workers, resumable from the last batch handed
out, and no worker left running."""

from __future__ import annotations

import functools
import gc
import multiprocessing

import pytest
import torch

from diga.data.loader import BatchStream, loader_workers
from diga.data.loader import BatchStream as batches
from diga.data.toycity import ToyCitySpec, write_toycity
from diga.runtime.datasets import source_train


@pytest.fixture
def settings(tiny_settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_toycity(ToyCitySpec(**tiny_settings["toycity"]), "resources/tiny", progress=False)
    return tiny_settings


def _stream(settings, workers, seed=0, batch_size=2):
    generator = torch.Generator().manual_seed(seed)
    return BatchStream(source_train(settings), batch_size, settings, generator, torch.device("cpu"), workers=workers)


def _draw(stream, count):
    return [next(stream) for _ in range(count)]


def _assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert set(a) == set(b) == {"image", "label"}
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_same_batches_for_any_number_of_workers(settings):
    # 12 source images in batches of 5: 7 batches cross two reshuffles and a batch spanning two epochs.
    reference = _draw(_stream(settings, 0, batch_size=5), 7)
    assert reference[0]["image"].shape == (5, 3, 32, 64) and reference[0]["label"].shape == (5, 32, 64)
    for workers in (1, 2):
        with _stream(settings, workers, batch_size=5) as stream:
            _assert_same_batches(_draw(stream, 7), reference)
    other = _draw(_stream(settings, 0, seed=1, batch_size=5), 1)[0]
    assert not torch.equal(other["image"], reference[0]["image"])


def test_loading_ahead_leaves_the_stage_generator_alone(settings):
    stage = torch.Generator().manual_seed(0)
    with BatchStream(source_train(settings), 2, settings, stage, torch.device("cpu"), workers=2) as stream:
        _draw(stream, 3)
        expected = torch.Generator().manual_seed(0)
        torch.randint(2**62, (), generator=expected)  # the stream's one draw, for its own seed
        assert torch.equal(stage.get_state(), expected.get_state())


def test_state_is_the_last_batch_handed_out(settings):
    straight = _draw(_stream(settings, 0), 9)
    with _stream(settings, 2) as stream:
        _draw(stream, 4)
        state = stream.state_dict()  # by now the workers have loaded batches beyond the fourth
        _assert_same_batches(_draw(stream, 2), straight[4:6])
        stream.load_state_dict(state)  # back to after batch 4: the loaded-ahead batches are dropped
        _assert_same_batches(_draw(stream, 5), straight[4:9])
    for workers in (0, 1):  # a fresh stream (another seed even) resumes there, with any number of workers
        resumed = _stream(settings, workers, seed=7)
        resumed.load_state_dict(state)
        _assert_same_batches(_draw(resumed, 5), straight[4:9])
        resumed.close()


def _workers_started_by(action):
    before = set(multiprocessing.active_children())
    action()
    return set(multiprocessing.active_children()) - before


def test_workers_stop_on_close_error_and_garbage_collection(settings):
    stream = _stream(settings, 2)
    workers = _workers_started_by(lambda: next(stream))
    assert len(workers) == 2
    stream.close()
    assert not any(p.is_alive() for p in workers)
    _draw(stream, 1)  # a closed stream restarts its workers

    started = []
    with pytest.raises(KeyError), _stream(settings, 2) as inside:
        started += _workers_started_by(lambda: next(inside))
        raise KeyError("a failing step")
    assert len(started) == 2 and not any(p.is_alive() for p in started)

    dropped = _stream(settings, 2)
    workers = _workers_started_by(functools.partial(next, dropped))
    del dropped  # the finaliser stops its workers
    gc.collect()
    assert len(workers) == 2 and not any(p.is_alive() for p in workers)
    stream.close()


def test_auto_workers_none_on_cpu_some_per_gpu_process(monkeypatch):
    assert loader_workers("auto", torch.device("cpu")) == 0
    assert loader_workers(3, torch.device("cpu")) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert loader_workers("auto", torch.device("cuda")) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 4 cores per process: 3 workers and the process itself
    assert loader_workers("auto", torch.device("cuda")) == 3


def test_stages_still_import_the_stream_from_common():
    assert batches is BatchStream


def test_bench_data_times_each_worker_count(settings, tmp_path):
    import csv
    import json

    from diga.cli import main

    out = tmp_path / "loader.csv"
    assert main(["bench-data", "--config", json.dumps(settings), "--workers", "0", "1", "--batches", "3",
                 "--batch-size", "2", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [row["workers"] for row in rows] == ["0", "1"]
    for row in rows:
        assert row["batches"] == "3" and row["benchmark"] == "tiny" and row["crop"] == "32x64"
        # The two figures are the same measurement: 2 crops per batch.
        assert float(row["images_per_s"]) == pytest.approx(2000 / float(row["ms_per_batch"]), rel=0.01)
    assert rows[0]["speedup_vs_0"] == "1.0"
    # --split val: one pass over the 6 whole target-val images per worker count.
    assert main(["bench-data", "--config", json.dumps(settings), "--split", "val", "--workers", "0", "2",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(row["workers"], row["images"], row["size"]) for row in rows] == [("0", "6", "32x64"), ("2", "6", "32x64")]
    for row in rows:
        assert float(row["images_per_s"]) == pytest.approx(1000 / float(row["ms_per_image"]), rel=0.01)


def test_in_order_gives_every_item_in_order_with_or_without_workers(settings):
    from diga.data.loader import in_order
    from diga.runtime.datasets import target_val

    dataset = target_val(settings)  # 6 images
    assert len(dataset) == 6
    inline = list(in_order(dataset, 4, torch.device("cpu"), 0))
    parallel = list(in_order(dataset, 4, torch.device("cpu"), 2))
    assert [len(items) for items in inline] == [len(items) for items in parallel] == [4, 2]
    for mine, theirs in zip(sum(inline, []), sum(parallel, []), strict=True):
        assert torch.equal(mine["image"], theirs["image"]) and torch.equal(mine["label"], theirs["label"])
    assert torch.equal(inline[1][1]["image"], dataset[5]["image"])
    assert not multiprocessing.active_children()  # the workers are gone once the pass is over


def test_evaluation_counts_the_same_pixels_with_loader_workers(settings):
    from diga.runtime.checkpoints import new_segmenter
    from diga.runtime.validation import confusion_on_val

    torch.manual_seed(0)
    model = new_segmenter(settings, torch.device("cpu")).eval()
    counts = {}
    for workers in (0, 2):
        with_workers = dict(settings, train=dict(settings["train"], loader_workers=workers))
        counts[workers] = confusion_on_val(with_workers, model, torch.device("cpu"))
    from diga.data.labels import IGNORE_INDEX
    from diga.runtime.datasets import target_val

    labelled = sum(int((item["label"] != IGNORE_INDEX).sum()) for item in target_val(settings))
    assert counts[0].sum() == labelled > 0  # every labelled val pixel, once
    assert (counts[0] == counts[2]).all()
