"""Same config and seed give the same numbers on the CPU; a different seed gives different ones."""

from __future__ import annotations

import torch

from diga.data.toycity import ToyCitySpec, write_toycity
from diga.train.supervised import train_supervised


def _train(settings, seed, out_dir):
    train_supervised(settings, seed, "source_only", out_dir)
    return torch.load(out_dir / "model.pt", weights_only=False)["student"], (out_dir / "train_log.csv").read_text()


def test_training_is_reproducible_per_seed(tiny_settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_toycity(ToyCitySpec(**tiny_settings["toycity"]), "resources/tiny", progress=False)
    first, first_log = _train(tiny_settings, 0, tmp_path / "a")
    again, again_log = _train(tiny_settings, 0, tmp_path / "b")
    other, _ = _train(tiny_settings, 1, tmp_path / "c")
    assert first_log == again_log
    for name, tensor in first.items():
        assert torch.equal(tensor, again[name]), name
    assert not torch.equal(first["head.classifier.weight"], other["head.classifier.weight"])
