"""Off a terminal, training writes plain log lines (every `log_every` iterations and at the end), and the
data tools' progress bars write a few whole lines."""

from __future__ import annotations

from diga import progress as progress_module
from diga.progress import progress_bar
from diga.train.loop import Progress


def test_plain_progress_lines_with_loss_and_eta(capsys):
    progress = Progress("warmup", total=5, every=2)
    for iteration in range(1, 6):
        progress.update({"iteration": iteration, "loss": 1.0 / iteration, "lr": 0.01})
    progress.close()
    lines = capsys.readouterr().err.splitlines()  # pytest's captured stderr is not a terminal
    assert [line.split()[2] for line in lines] == ["2/5", "4/5", "5/5"]
    assert lines[0].startswith("[warmup] it 2/5 loss 0.5 lr 0.01 elapsed") and " eta " in lines[0]


def test_bars_off_a_terminal_write_a_few_whole_lines(capsys, monkeypatch):
    with progress_bar(5000, "toycity", "img") as bar:
        for _ in range(5000):
            bar.update(1)
    lines = capsys.readouterr().err.split("\n")
    assert lines[-1] == "" and "\r" not in "".join(lines)  # a log file gets whole lines, no redraws
    assert lines[0].startswith("toycity:   0%|") and lines[1].startswith("toycity: 100%|##########| 5000/5000 [")
    assert len(lines) == 3
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.0)  # a line per update at the most
    with progress_bar(None, "[download] a.zip", "B", initial=2_000_000, unit_scale=True) as bar:
        for _ in range(3):
            bar.update(1_000_000)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[download] a.zip: 2.00MB") and lines[-1].startswith("[download] a.zip: 5.00MB")
    with progress_bar(3, "quiet", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
