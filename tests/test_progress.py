"""Off a terminal, training writes plain log lines (every `log_every` iterations and at the end)."""

from __future__ import annotations

from diga.train.loop import Progress


def test_plain_progress_lines_with_loss_and_eta(capsys):
    progress = Progress("warmup", total=5, every=2)
    for iteration in range(1, 6):
        progress.update({"iteration": iteration, "loss": 1.0 / iteration, "lr": 0.01})
    progress.close()
    lines = capsys.readouterr().err.splitlines()  # pytest's captured stderr is not a terminal
    assert [line.split()[2] for line in lines] == ["2/5", "4/5", "5/5"]
    assert lines[0].startswith("[warmup] it 2/5 loss 0.5 lr 0.01 elapsed") and " eta " in lines[0]
