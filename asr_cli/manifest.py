"""Manifests: one utterance per JSON line, read lazily and validated item by item.

A line looks like
``{"id": "spk1-001", "audio": "wav/001.flac", "text": "HELLO", "speaker": "spk1",
"duration": 1.23, "offset": 0.0}``; only ``id`` and ``audio`` are required.
A relative ``audio`` path is relative to the manifest's folder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import SplitConfig
from .errors import AsrCliError, format_problems, require_file
from .fileio import atomic_writes, iter_json_lines, json_line, write_jsonl

REQUIRED_FIELDS = ("id", "audio")


@dataclass(frozen=True)
class Utterance:
    """One utterance: a whole audio file, or the segment [offset, offset + duration) seconds of it."""

    id: str
    audio: str
    text: str | None = None
    speaker: str | None = None
    duration: float | None = None
    offset: float = 0.0

    def to_dict(self) -> dict:
        """Plain dict without empty optional fields, as written to a manifest line."""
        record = {"id": self.id, "audio": self.audio}
        if self.text is not None:
            record["text"] = self.text
        if self.speaker is not None:
            record["speaker"] = self.speaker
        if self.duration is not None:
            record["duration"] = round(self.duration, 6)
        if self.offset:
            record["offset"] = round(self.offset, 6)
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Utterance:
        """Build from a manifest record; raises ValueError naming the bad field."""
        if not isinstance(record, dict):
            raise ValueError("a manifest line must be a JSON object")
        missing = [name for name in REQUIRED_FIELDS if record.get(name) in (None, "")]
        if missing:
            raise ValueError(f"missing required field(s): {', '.join(missing)}")
        for name in ("id", "audio", "text", "speaker"):
            _check_text_field(name, record.get(name))
        for name in ("duration", "offset"):
            _check_seconds_field(name, record.get(name))
        if record.get("duration") == 0:
            raise ValueError("duration is 0: the segment is empty")
        if any(character.isspace() for character in record["id"]) or any(
            character.isspace() for character in record.get("speaker") or ""
        ):
            raise ValueError("ids and speakers cannot contain white space (Kaldi text and CTM files are split at it)")
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        if values.get("offset") is None:  # null, as absent: from the start
            values.pop("offset", None)
        return cls(**values)

    def resolve_audio(self, base_dir: Path) -> Utterance:
        """Copy with ``audio`` made absolute against `base_dir` (the manifest's folder)."""
        audio_path = Path(self.audio)
        if audio_path.is_absolute():
            return self
        return dataclasses.replace(self, audio=str((base_dir / audio_path).resolve()))


@dataclass(frozen=True)
class ManifestLine:
    """One parsed line: either an utterance or the reason it is unusable."""

    line_number: int
    utterance: Utterance | None
    error: str | None


def scan_manifest(path: str | Path) -> Iterator[ManifestLine]:
    """Parse a manifest lazily, line by line, yielding a problem instead of raising.

    Blank lines are skipped. Audio paths come back absolute.
    """
    path = require_file(path, "manifest file")
    base_dir = path.resolve().parent
    for line_number, record, problem in iter_json_lines(path):
        if problem is not None:
            yield ManifestLine(line_number, None, problem)
            continue
        try:
            utterance = Utterance.from_dict(record).resolve_audio(base_dir)
        except ValueError as error:
            yield ManifestLine(line_number, None, str(error))
        else:
            yield ManifestLine(line_number, utterance, None)


def read_manifest(path: str | Path) -> Iterator[Utterance]:
    """Yield utterances lazily; the first unusable line raises an error naming it."""
    for line in scan_manifest(path):
        if line.error is not None:
            raise AsrCliError(f"{path}, line {line.line_number}: {line.error}")
        yield line.utterance


@dataclass(frozen=True)
class BadItem:
    """An unusable manifest line or utterance, and why."""

    item: str
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


def check_manifest(path: str | Path) -> tuple[list[Utterance], list[BadItem]]:
    """Read a whole manifest; returns the good utterances and every bad line or duplicate id."""
    utterances, problems = [], []
    first_line_of: dict[str, int] = {}
    for line in scan_manifest(path):
        if line.error is not None:
            problems.append(BadItem(f"line {line.line_number}", line.error))
            continue
        utterance_id = line.utterance.id
        if utterance_id in first_line_of:
            problems.append(
                BadItem(
                    f"line {line.line_number}",
                    f"duplicate id {utterance_id!r} (first on line {first_line_of[utterance_id]})",
                )
            )
            continue
        first_line_of[utterance_id] = line.line_number
        utterances.append(line.utterance)
    return utterances, problems


MAX_SECONDS = 1e7  # 116 days: more is no recording's offset or duration, but a typo or an overflow


def _check_text_field(name: str, value) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # JSON's \ud800 escapes decode to lone surrogates, which no file can hold
        raise ValueError(f"field {name!r} holds {value[error.start]!r}, which is not a Unicode character") from error


def _check_seconds_field(name: str, value) -> None:
    """A number of seconds, or absent (None); booleans are not numbers here."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"field {name!r} must be a non-negative number of seconds, not {value!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"field {name!r} is {value:g} s, more than any recording ({MAX_SECONDS:g} s)")


def load_manifest(path: str | Path) -> list[Utterance]:
    """Read a whole manifest; any bad line or duplicate id raises, listing all of them."""
    utterances, problems = check_manifest(path)
    if problems:
        raise AsrCliError(format_problems(f"{path}: {len(problems)} bad line(s):", [str(p) for p in problems]))
    return utterances


def write_manifests(outputs: Sequence[tuple[str | Path, Iterable[Utterance]]]) -> None:
    """Write several manifests that appear together or not at all (e.g. the two sides of a split)."""
    with atomic_writes([path for path, _ in outputs]) as handles:
        for handle, (_, utterances) in zip(handles, outputs):
            for utterance in utterances:
                handle.write(json_line(utterance.to_dict()))


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> int:
    """Write utterances as JSON lines, atomically; returns how many were written."""
    return write_jsonl(path, (utterance.to_dict() for utterance in utterances))


def split_by_speaker(
    utterances: list[Utterance], num_held_out_speakers: int, seed: int = SplitConfig.seed
) -> tuple[list[Utterance], list[Utterance]]:
    """(kept, held out): whole speakers chosen at random (seeded) go to the held-out part.

    No speaker appears on both sides; every utterance needs a speaker.
    """
    import random

    unlabelled = [u.id for u in utterances if u.speaker is None]
    if unlabelled:
        raise AsrCliError(
            f"{len(unlabelled)} utterance(s) have no speaker (e.g. {unlabelled[0]}); cannot split by speaker"
        )
    speakers = sorted({u.speaker for u in utterances})
    if not 0 < num_held_out_speakers < len(speakers):
        raise AsrCliError(f"cannot hold out {num_held_out_speakers} of {len(speakers)} speakers")
    held_out = set(random.Random(seed).sample(speakers, num_held_out_speakers))
    return [u for u in utterances if u.speaker not in held_out], [u for u in utterances if u.speaker in held_out]
