"""The folders that training and `pack` write, each with one owner of its file names.

`ExperimentFolder` is what `asr-cli train -o EXP_DIR` writes (checkpoints, model.pt, metrics, curves, the run's
configuration and summary). `StoredDecoding` is what `asr-cli pack` adds beside a model file (an LM, a lexicon
and their search settings), which `transcribe` and `load_model(...).transcribe` then use untold. A training
run writes only into a folder that holds nothing but these files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import LM_BEAM_SIZE, ConfigError, SearchConfig
from .errors import AsrCliError
from .fileio import atomic_write, ensure_writable_dir, write_json


@dataclass(frozen=True)
class StoredDecoding:
    """Search defaults kept beside a model file (`asr-cli pack`): an LM in the model's folder and its weights."""

    DECODING_FILE = "decoding.json"
    LM_FILE = "lm.arpa"
    LEXICON_FILE = "lexicon.txt"

    lm_file: str = LM_FILE
    lm_unit: str = SearchConfig.lm_unit
    lm_weight: float = SearchConfig.lm_weight
    word_bonus: float = SearchConfig.word_bonus
    beam_size: int = LM_BEAM_SIZE
    lexicon_file: str | None = None  # in the model's folder: the words the stored search may output

    @classmethod
    def files(cls) -> tuple[str, ...]:
        return cls.DECODING_FILE, cls.LM_FILE, cls.LEXICON_FILE

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, model_path: str | Path) -> StoredDecoding | None:
        """The stored decoding beside `model_path`, or None; damaged or dangling records are errors."""
        folder = Path(model_path).parent
        path = folder / cls.DECODING_FILE
        if not path.is_file():
            return None
        try:
            stored = cls(**json.loads(path.read_text(encoding="utf-8")))
        except (TypeError, ValueError) as error:
            raise AsrCliError(
                f"{path}: damaged stored decoding defaults ({error}); write them again with "
                "`asr-cli pack`, or remove the file"
            ) from error
        for name in (stored.lm_file, stored.lexicon_file):
            if name is not None and not (folder / name).is_file():
                raise AsrCliError(f"{path} names {name}, which is not in {folder}")
        return stored

    def search(self, folder: Path, lexicon: str | Path | None = None, **overrides) -> SearchConfig:
        """The stored search of a model in `folder`; `lexicon` replaces the stored one, `overrides` its settings."""
        lexicon_path = lexicon if lexicon is not None else (folder / self.lexicon_file if self.lexicon_file else None)
        settings = {"beam_size": self.beam_size, "lm_weight": self.lm_weight, "word_bonus": self.word_bonus}
        return SearchConfig(
            **{**settings, **overrides},
            lm_path=str(folder / self.lm_file),
            lm_unit=self.lm_unit,
            lexicon_path=str(lexicon_path) if lexicon_path is not None else None,
        )


def pack(
    model_path: str | Path, lm_path: str | Path, stored: StoredDecoding, lexicon_path: str | Path | None = None
) -> Path:
    """Store an LM (copied into the model's folder), optionally a lexicon, and their search settings beside a
    model file, each checked as decoding will check it; returns the stored LM's path."""
    from .lm import read_arpa
    from .lm_tables import search_tables
    from .model import load_model_file

    model_path, lm_path = Path(model_path), Path(lm_path)
    loaded = load_model_file(model_path)  # a model file it is
    read_arpa(lm_path, max_order=1)  # an LM it is, quickly, before the whole of it is read below
    lexicon = str(lexicon_path) if lexicon_path is not None else None
    search = SearchConfig(lm_path=str(lm_path), lm_unit=stored.lm_unit, lexicon_path=lexicon)
    search_tables(search, loaded.vocabulary, loaded.phones, verbose=True)  # decode's checks and warnings
    if lexicon_path is not None:
        stored = dataclasses.replace(stored, lexicon_file=StoredDecoding.LEXICON_FILE)
    folder = model_path.parent
    target = folder / stored.lm_file
    _copy_into(lm_path, target)
    if lexicon_path is not None:
        _copy_into(Path(lexicon_path), folder / StoredDecoding.LEXICON_FILE)
    write_json(folder / StoredDecoding.DECODING_FILE, stored.to_dict())
    return target


def _copy_into(source: Path, target: Path) -> None:
    if source.resolve() != target.resolve():
        copy_file(source, target)


def copy_file(source: Path, target: Path) -> None:
    """Copy a file atomically (the target appears whole or not at all)."""
    with open(source, "rb") as reader, atomic_write(target, "wb") as writer:
        shutil.copyfileobj(reader, writer)


def _in_folder(name: str) -> property:
    """A path of the folder's, as a read-only attribute."""
    return property(lambda folder: folder.path / name, doc=f"EXP_DIR/{name}")


class ExperimentFolder:
    """An experiment folder (`asr-cli train -o EXP_DIR`) and the names of everything in it."""

    LAST_CHECKPOINT = "checkpoint.last.pt"
    BEST_CHECKPOINT = "checkpoint.best.pt"
    MODEL_FILE = "model.pt"
    METRICS_FILE = "metrics.jsonl"
    CURVES_FILE = "curves.png"
    CONFIG_FILE = "config.json"
    SUMMARY_FILE = "summary.json"
    RECIPE_EVALUATIONS = "dev_eval"  # what the recipes write beside a model

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def owned_names(cls) -> frozenset[str]:
        """Everything training, `pack` and the recipes put in an experiment folder."""
        training = (
            cls.LAST_CHECKPOINT,
            cls.BEST_CHECKPOINT,
            cls.MODEL_FILE,
            cls.METRICS_FILE,
            cls.CURVES_FILE,
            cls.CONFIG_FILE,
            cls.SUMMARY_FILE,
            cls.RECIPE_EVALUATIONS,
        )
        return frozenset(training + StoredDecoding.files())

    last_checkpoint = _in_folder(LAST_CHECKPOINT)
    best_checkpoint = _in_folder(BEST_CHECKPOINT)
    model_file = _in_folder(MODEL_FILE)
    metrics_file = _in_folder(METRICS_FILE)
    curves_file = _in_folder(CURVES_FILE)
    config_file = _in_folder(CONFIG_FILE)
    summary_file = _in_folder(SUMMARY_FILE)

    def owned_paths(self) -> list[Path]:
        """The paths of everything a run, pack or a recipe may have put in the folder."""
        return [self.path / name for name in sorted(self.owned_names())]

    def foreign_names(self) -> list[str]:
        """Names in the folder that no training run, `pack` or recipe wrote."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name not in self.owned_names())

    def check_for_training(self, resume: bool) -> None:
        """A run writes into a new or empty folder, or its own (with `resume`): never over another folder's files."""
        foreign = self.foreign_names()
        if foreign:
            raise AsrCliError(
                f"{self.path} holds files that are not a training run's (e.g. {', '.join(foreign[:3])}); "
                "choose a new or empty experiment folder"
            )
        ensure_writable_dir(self.path, "experiment folder")
        if resume and not self.last_checkpoint.is_file():
            raise ConfigError("resume", f"{{0}}: no checkpoint in {self.path} ({self.LAST_CHECKPOINT} not found)")
        if not resume and self.last_checkpoint.is_file():
            raise AsrCliError(
                f"{self.path} holds a training run already; pass --resume to continue it, or use a new folder"
            )
