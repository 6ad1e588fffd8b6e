"""Run records: the metrics of every epoch, and curves redrawn no more often than they are worth."""

from pathlib import Path

import asr_cli.records as records
from asr_cli.experiment import ExperimentFolder
from asr_cli.records import HistoryWriter


def epoch_record(epoch: int) -> dict:
    return {"epoch": epoch, "train_loss": 2.0 / epoch, "valid_loss": 2.5 / epoch, "valid_cer": 0.5 / epoch}


def test_metrics_every_epoch_curves_at_the_first_and_at_the_end(tmp_path: Path, monkeypatch):
    drawn: list[int] = []
    monkeypatch.setattr(records, "plot_curves", lambda path, history: drawn.append(len(history)))
    writer = HistoryWriter(ExperimentFolder(tmp_path), interval_s=3600)
    history: list[dict] = []
    for epoch in range(1, 6):
        history.append(epoch_record(epoch))
        writer.write(history)
        assert len(writer.folder.metrics_file.read_text().splitlines()) == epoch
    assert drawn == [1]  # the first epoch's, then none within the interval
    writer.finish(history)
    assert drawn == [1, 5]
    writer.finish(history)  # already up to date: not drawn again
    assert drawn == [1, 5]


def test_curves_are_redrawn_once_the_interval_has_passed(tmp_path: Path, monkeypatch):
    drawn: list[int] = []
    monkeypatch.setattr(records, "plot_curves", lambda path, history: drawn.append(len(history)))
    writer = HistoryWriter(ExperimentFolder(tmp_path), interval_s=0.0)
    history = [epoch_record(1), epoch_record(2)]
    writer.write(history[:1])
    writer.write(history)
    assert drawn == [1, 2]


def test_the_curves_are_a_png(tmp_path: Path):
    writer = HistoryWriter(ExperimentFolder(tmp_path))
    writer.write([epoch_record(1)])
    assert writer.folder.curves_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
