"""Training checkpoints (resumed exactly: weights, optimiser, schedule, run state, random state) and the
model files a run writes, both saved atomically and loaded without running code (weights_only)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from . import __version__
from .config import ConfigError
from .errors import AsrCliError, first_line
from .experiment import ExperimentFolder
from .fileio import atomic_write
from .model import AcousticModel, model_file_contents
from .text import Vocabulary

CHECKPOINT_FORMAT_VERSION = 1
MODEL_INFO_KEYS = ("train_stores", "train_utterances", "train_hours", "train_speakers", "valid_store")


def save_torch_atomically(path: Path, obj: dict) -> None:
    """torch.save to a temporary sibling, then rename: a full disk leaves the previous file intact."""
    try:
        with atomic_write(path, "wb") as handle:
            torch.save(obj, handle)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else first_line(error)
        raise AsrCliError(
            f"could not write {path} ({reason}); the previous version, if any, "
            "is intact. Free some disk space and resume with --resume"
        ) from error


def checkpoint_contents(
    model: AcousticModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict,
    vocabulary: Vocabulary,
    train_config: dict,
    fingerprint: str,
) -> dict:
    """Everything a resumed run needs to carry on exactly (the random state of this process included)."""
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": state,
        "rng": rng_state(),
        "vocabulary": list(vocabulary.characters),
        "model_config": model.config.to_dict(),
        "train_config": train_config,
        "data_fingerprint": fingerprint,
    }


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by `save_torch_atomically(checkpoint_contents(...))`; damaged files are errors that
    point at the best checkpoint."""
    best = path.with_name(ExperimentFolder.BEST_CHECKPOINT)
    if not path.is_file():
        raise ConfigError("resume", f"{{0}}: checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the one-line error below says it
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise AsrCliError(
            f"{path} is damaged or not a checkpoint ({type(error).__name__}); try {best}, or start anew"
        ) from error
    if not isinstance(checkpoint, dict):
        raise AsrCliError(f"{path} is not an asr-cli training checkpoint; try {best}, or start anew")
    if checkpoint.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise AsrCliError(f"{path}: checkpoint format {checkpoint.get('format_version')} is not supported")
    return checkpoint


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, rank: int) -> None:
    """The saved random state; processes other than the first (which saved none of their own) get a distinct,
    reproducible one."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if rank:
        torch.manual_seed(int(torch.randint(0, 2**62, (1,))) + rank)


def save_model(
    path: Path, model: AcousticModel, feature_config: dict, vocabulary: Vocabulary, record: dict, input_statistics=None
) -> None:
    """The model file of an epoch: the model, and from `record` its validation scores and training data;
    `input_statistics` (the training features' CmvnStats) for streaming."""
    info = {
        "epoch": record["epoch"],
        "valid_cer": record["valid_cer"],
        "valid_wer": record["valid_wer"],
        "asr_cli_version": __version__,
        "torch_version": str(torch.__version__),
        **{key: record[key] for key in MODEL_INFO_KEYS if key in record},
    }
    contents = model_file_contents(model, feature_config, list(vocabulary.characters), info, input_statistics)
    save_torch_atomically(path, contents)
