"""What a training run records beside its model: the run's configuration, the metrics of every epoch, the
curves, and what the model was trained on (for `asr-cli info`)."""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .data import ExampleSet
from .experiment import ExperimentFolder
from .fileio import atomic_write, write_json, write_jsonl
from .store import FeatureStore


def write_run_config(folder: ExperimentFolder, record: dict) -> None:
    """config.json: the command, the data, every configuration, the vocabulary, what was left out, versions."""
    versions = {
        "asr_cli": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    write_json(folder.config_file, {"command": sys.argv, **record, "versions": versions})


def data_summary(
    train_stores: Sequence[FeatureStore], training: ExampleSet, valid_stores: Sequence[FeatureStore]
) -> dict:
    """What the model was trained on, for `asr-cli info`."""
    entries = [train_stores[e.store].entry(e.position) for e in training.examples]
    return {
        "train_stores": [str(store.path.resolve()) for store in train_stores],
        "train_utterances": len(entries),
        "train_hours": round(sum(e.duration for e in entries) / 3600, 3),
        "train_speakers": len({e.speaker for e in entries if e.speaker is not None}),
        "valid_store": str(valid_stores[0].path.resolve()),
    }


# Drawing the curves takes about half a second, longer than a small model's epoch: they are redrawn at most this
# often, and always when the run ends or stops.
CURVES_INTERVAL_S = 30.0


@dataclass
class HistoryWriter:
    """metrics.jsonl after every epoch (rewritten whole: a resumed run never duplicates an epoch); curves.png after
    the first epoch, then at most every `interval_s`, and at the end (`finish`)."""

    folder: ExperimentFolder
    interval_s: float = CURVES_INTERVAL_S
    drawn_epochs: int = 0  # how many records the curves on disk show
    drawn_at: float = -math.inf  # time.monotonic() of the last drawing

    def write(self, history: list[dict]) -> None:
        write_jsonl(self.folder.metrics_file, history)
        if time.monotonic() - self.drawn_at >= self.interval_s:
            self._draw(history)

    def finish(self, history: list[dict]) -> None:
        """Bring the curves up to date with the records (when the run ends, finished or stopped)."""
        if history and self.drawn_epochs != len(history):
            self._draw(history)

    def _draw(self, history: list[dict]) -> None:
        plot_curves(self.folder.curves_file, history)
        self.drawn_epochs, self.drawn_at = len(history), time.monotonic()


def plot_curves(path: Path, history: list[dict]) -> None:
    """Training/validation loss and validation CER per epoch, as a PNG (rewritten atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [record["epoch"] for record in history]
    figure, (loss_axes, cer_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    loss_axes.plot(epochs, [r["valid_loss"] for r in history], marker="o", label="validation")
    loss_axes.set(xlabel="epoch", ylabel="CTC loss per token", title="Loss")
    loss_axes.legend()
    cer_axes.plot(epochs, [100 * r["valid_cer"] for r in history], marker="o", color="tab:red")
    cer_axes.set(xlabel="epoch", ylabel="CER %", title="Validation CER (greedy)")
    for axes in (loss_axes, cer_axes):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
