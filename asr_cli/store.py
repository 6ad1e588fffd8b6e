"""Feature stores: frames of many utterances packed in a few memory-mapped arrays.

A store is a folder:

    store.json     format version, feature config, dtype, dim, arrays, totals, skipped items
    index.jsonl    one line per utterance: id, array, start, num_frames, text, speaker, duration
    cmvn.json      per-dimension sums, sums of squares and frame count
    cmvn_speakers.json   the same per speaker (utterances without a speaker are in none)
    feats-NNN.bin  raw (num_frames, dim) arrays, one per writer

Reading an utterance is a slice of a memory map, never a file open.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .cmvn import CmvnStats
from .config import STORE_DTYPES, FeatureConfig
from .errors import AsrCliError, some_of

STORE_FORMAT_VERSION = 1
METADATA_FILE = "store.json"
INDEX_FILE = "index.jsonl"
CMVN_FILE = "cmvn.json"
SPEAKER_CMVN_FILE = "cmvn_speakers.json"


@dataclass(frozen=True)
class IndexEntry:
    """Where one utterance's frames lie, and what is known about it."""

    id: str
    array: int
    start: int
    num_frames: int
    text: str | None = None
    speaker: str | None = None
    duration: float = 0.0

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "array": self.array,
            "start": self.start,
            "num_frames": self.num_frames,
            "text": self.text,
            "speaker": self.speaker,
            "duration": round(self.duration, 6),
        }

    @classmethod
    def from_dict(cls, record: dict) -> IndexEntry:
        return cls(**record)


def array_file_name(array_index: int) -> str:
    return f"feats-{array_index:03d}.bin"


class ArrayWriter:
    """Appends utterances' frames to one array file of a store being built."""

    def __init__(self, folder: Path, array_index: int, dim: int, dtype: str) -> None:
        self.array_index = array_index
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.num_frames = 0
        self.cmvn = CmvnStats.zeros(dim)
        self._handle = open(folder / array_file_name(array_index), "wb")

    def append(self, features: np.ndarray) -> tuple[int, np.ndarray]:
        """Write (num_frames, dim) features; returns (start frame, the frames as stored)."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {features.shape}")
        stored = np.ascontiguousarray(features, dtype=self.dtype)
        try:
            # A file write, not ndarray.tofile: numpy reports a short write without errno ("No space left").
            self._handle.write(memoryview(stored).cast("B"))
        except OSError as error:  # a buffered write's error names no file
            raise OSError(error.errno, error.strerror or str(error), self._handle.name) from error
        # CMVN describes the frames a model will read back, so it is taken after the cast.
        self.cmvn.accumulate(stored)
        start = self.num_frames
        self.num_frames += stored.shape[0]
        return start, stored

    def close(self) -> None:
        self._handle.flush()
        self._handle.close()


@dataclass
class StoreMetadata:
    """Contents of store.json."""

    feature_config: FeatureConfig
    dtype: str
    array_frames: list[int]
    num_utterances: int = 0
    duration_s: float = 0.0
    skipped: list[dict] = field(default_factory=list)
    speed_factors: list[float] = field(default_factory=lambda: [1.0])
    format_version: int = STORE_FORMAT_VERSION
    created_by: str = f"asr-cli {__version__}"

    @property
    def dim(self) -> int:
        return self.feature_config.dim

    @property
    def num_frames(self) -> int:
        return sum(self.array_frames)

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "created_by": self.created_by,
            "feature_config": self.feature_config.to_dict(),
            "dtype": self.dtype,
            "dim": self.dim,
            "arrays": [{"file": array_file_name(i), "num_frames": n} for i, n in enumerate(self.array_frames)],
            "num_utterances": self.num_utterances,
            "num_frames": self.num_frames,
            "duration_s": round(self.duration_s, 3),
            "skipped": self.skipped,
            "speed_factors": self.speed_factors,
        }

    @classmethod
    def from_dict(cls, record: dict) -> StoreMetadata:
        """store.json's contents; a field of the wrong type or value is a ValueError naming it."""
        if record.get("dtype") not in STORE_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(STORE_DTYPES)}, not {record.get('dtype')!r}")
        frames = [array.get("num_frames") for array in record["arrays"]]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in frames):
            raise ValueError("each array's num_frames must be a whole number >= 0")
        return cls(
            feature_config=FeatureConfig.from_dict(record["feature_config"]),
            dtype=record["dtype"],
            array_frames=[array["num_frames"] for array in record["arrays"]],
            num_utterances=record["num_utterances"],
            duration_s=record["duration_s"],
            skipped=record.get("skipped", []),
            speed_factors=record.get("speed_factors", [1.0]),
            format_version=record["format_version"],
            created_by=record.get("created_by", ""),
        )


class FeatureStore:
    """Read access to a feature store; utterances by position or id, as float32.

    Memory maps are opened on first use and not pickled, so a store can be
    handed to DataLoader worker processes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        metadata_path = self.path / METADATA_FILE
        if not metadata_path.is_file():
            raise AsrCliError(
                f"{self.path} is not a feature store ({METADATA_FILE} not found); create one with `asr-cli prepare`"
            )
        try:
            self.metadata = StoreMetadata.from_dict(json.loads(metadata_path.read_text(encoding="utf-8")))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise AsrCliError(f"{metadata_path}: damaged store metadata ({error})") from error
        if self.metadata.format_version != STORE_FORMAT_VERSION:
            raise AsrCliError(
                f"{self.path}: store format {self.metadata.format_version} is not supported (expected {STORE_FORMAT_VERSION})"
            )
        self.entries = self._read_index()
        self._check_array_sizes()
        self._position_of = {entry.id: position for position, entry in enumerate(self.entries)}
        if len(self._position_of) != len(self.entries):
            repeated = sorted({e.id for e in self.entries if self.entries[self._position_of[e.id]] is not e})
            raise AsrCliError(f"{self.path / INDEX_FILE}: {len(repeated)} id(s) listed twice ({some_of(repeated)}); "
                              "the store is damaged: prepare it again")  # fmt: skip
        self._arrays: list[np.memmap] | None = None

    def _read_index(self) -> list[IndexEntry]:
        index_path = self.path / INDEX_FILE
        entries = []
        try:
            with open(index_path, encoding="utf-8") as handle:
                for line_number, line in enumerate(handle, start=1):
                    if line.strip():
                        entries.append(_index_entry(line, index_path, line_number))
        except UnicodeDecodeError as error:
            raise AsrCliError(
                f"{index_path}: not valid UTF-8 ({error.reason}); the store is damaged: prepare it again"
            ) from error
        except FileNotFoundError as error:
            raise AsrCliError(
                f"{self.path}: {INDEX_FILE} is missing; the store is damaged: prepare it again"
            ) from error
        return entries

    def _check_array_sizes(self) -> None:
        """A truncated array file would fail on the first read of its last utterances; say so at once."""
        itemsize = np.dtype(self.metadata.dtype).itemsize
        for array_index, num_frames in enumerate(self.metadata.array_frames):
            array_path = self.path / array_file_name(array_index)
            expected = num_frames * self.dim * itemsize
            actual = array_path.stat().st_size if array_path.is_file() else None
            if num_frames and actual != expected:
                found = "missing" if actual is None else f"{actual:,} bytes, expected {expected:,}"
                raise AsrCliError(
                    f"{array_path}: {found}; the store is damaged (truncated copy or full disk): prepare it again"
                )
        for entry in self.entries:
            if not (
                0 <= entry.array < len(self.metadata.array_frames)
                and 0 <= entry.start
                and entry.start + entry.num_frames <= self.metadata.array_frames[entry.array]
            ):
                raise AsrCliError(
                    f"{self.path / INDEX_FILE}: utterance {entry.id} points outside the arrays; "
                    "the store is damaged: prepare it again"
                )

    @property
    def feature_config(self) -> FeatureConfig:
        return self.metadata.feature_config

    @property
    def dim(self) -> int:
        return self.metadata.dim

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[IndexEntry]:
        return iter(self.entries)

    def __contains__(self, utterance_id: str) -> bool:
        return utterance_id in self._position_of

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def entry(self, key: int | str) -> IndexEntry:
        """Index entry by position or by utterance id."""
        if isinstance(key, str):
            if key not in self._position_of:
                raise KeyError(f"utterance {key!r} is not in {self.path}")
            return self.entries[self._position_of[key]]
        return self.entries[key]

    def features(self, key: int | str) -> np.ndarray:
        """Frames of one utterance, by position or id: float32 of shape (num_frames, dim). Frames that are not
        finite (a damaged or hand-made store) are an error naming the utterance."""
        entry = self.entry(key)
        array = self._memory_maps()[entry.array]
        frames = np.asarray(array[entry.start : entry.start + entry.num_frames], dtype=np.float32)
        if not np.isfinite(frames).all():
            raise AsrCliError(f"{self.path}: utterance {entry.id} has NaN or infinite frames; the store is damaged: "
                              "prepare it again")  # fmt: skip
        return frames

    def cmvn(self) -> CmvnStats:
        """The store's CMVN statistics (cmvn.json), checked: finite sums over a positive count of frames."""
        return _read_stats(self.path / CMVN_FILE, lambda record: CmvnStats.from_dict(record))

    def speaker_cmvn(self) -> dict[str, CmvnStats]:
        """CMVN statistics per speaker; utterances without a speaker count for none.

        Stores written before these were kept get them from their frames (a pass over the store).
        """
        path = self.path / SPEAKER_CMVN_FILE
        if path.is_file():
            return _read_stats(path, lambda records: {s: CmvnStats.from_dict(r) for s, r in records.items()})
        stats: dict[str, CmvnStats] = {}
        for position, entry in enumerate(self.entries):
            if entry.speaker is not None:
                stats.setdefault(entry.speaker, CmvnStats.zeros(self.dim)).accumulate(self.features(position))
        return stats

    def utterances_without_speaker(self) -> list[str]:
        return [entry.id for entry in self.entries if entry.speaker is None]

    def _memory_maps(self) -> list[np.memmap]:
        if self._arrays is None:
            self._arrays = [
                np.memmap(self.path / array_file_name(i), dtype=self.metadata.dtype, mode="r", shape=(n, self.dim))
                if n > 0
                else np.zeros((0, self.dim), self.metadata.dtype)
                for i, n in enumerate(self.metadata.array_frames)
            ]
        return self._arrays


def _index_entry(line: str, index_path: Path, line_number: int) -> IndexEntry:
    try:
        entry = IndexEntry.from_dict(json.loads(line))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
        raise AsrCliError(
            f"{index_path}, line {line_number}: damaged index entry ({error}); prepare the store again"
        ) from error
    problem = _entry_problem(entry)
    if problem:
        raise AsrCliError(f"{index_path}, line {line_number}: damaged index entry ({problem}); prepare the store again")
    return entry


def _entry_problem(entry: IndexEntry) -> str | None:
    """What is wrong with an index entry's types or values, or None."""
    counts = (entry.array, entry.start, entry.num_frames)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
        return "array, start and num_frames must be whole numbers >= 0"
    if not isinstance(entry.id, str) or not entry.id:
        return "id must be text"
    if not all(value is None or isinstance(value, str) for value in (entry.text, entry.speaker)):
        return "text and speaker must be text or null"
    duration_ok = isinstance(entry.duration, (int, float)) and not isinstance(entry.duration, bool)
    if not duration_ok or not math.isfinite(entry.duration) or entry.duration < 0:
        return "duration must be a number of seconds >= 0"
    return None


def _read_stats(path: Path, parse):
    """CMVN statistics from a JSON file of the store (one record, or one per speaker); damaged files and
    non-finite statistics are errors naming the file."""
    try:
        parsed = parse(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as error:
        raise AsrCliError(f"{path} is missing; the store is damaged: prepare it again") from error
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as error:
        raise AsrCliError(f"{path}: damaged CMVN statistics ({error}); prepare the store again") from error
    for stats in parsed.values() if isinstance(parsed, dict) else [parsed]:
        if stats.count < 0 or not (np.isfinite(stats.sum).all() and np.isfinite(stats.sum_sq).all()):
            raise AsrCliError(f"{path}: the CMVN statistics are not finite (NaN frames?); prepare the store again")
    return parsed


def combine_cmvn(stores: list[FeatureStore]) -> CmvnStats:
    """CMVN statistics over several stores (e.g. the shards of one corpus)."""
    if not stores:
        raise ValueError("no stores given")
    total = stores[0].cmvn()
    for store in stores[1:]:
        total = total + store.cmvn()
    return total
