"""Turn common corpus layouts into manifests: Kaldi data directories, LibriSpeech, CSV/TSV."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path

from .config import CsvImportConfig
from .errors import AsrCliError, format_problems, require_file
from .fileio import has_undecodable_bytes
from .manifest import Utterance


def read_kaldi_table(path: Path) -> Iterator[tuple[int, str, str]]:
    """Yield (line number, key, rest of line) from a Kaldi-style `key value...` text file."""
    with open(path, "rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            try:
                line = raw_line.decode("utf-8").strip()
            except UnicodeDecodeError as error:
                raise AsrCliError(f"{path}, line {line_number}: not valid UTF-8 ({error.reason})") from error
            if line:
                key, *rest = line.split(maxsplit=1)
                yield line_number, key, rest[0] if rest else ""


def _read_map(path: Path) -> dict[str, str]:
    """Read `key value` lines into a dict; a repeated key is an error naming its line."""
    mapping: dict[str, str] = {}
    for line_number, key, value in read_kaldi_table(path):
        if key in mapping:
            raise AsrCliError(f"{path}, line {line_number}: duplicate key {key!r}")
        mapping[key] = value
    return mapping


def _read_wav_scp(data_dir: Path) -> dict[str, str]:
    """Recording id -> absolute audio path; piped and archive entries are refused by line."""
    path = data_dir / "wav.scp"
    recordings: dict[str, str] = {}
    for line_number, recording_id, audio in read_kaldi_table(path):
        if not audio:
            raise AsrCliError(f"{path}, line {line_number}: no audio path for {recording_id!r}")
        if audio.rstrip().endswith("|"):
            raise AsrCliError(
                f"{path}, line {line_number}: piped command {audio!r} is not supported; "
                "convert the audio to files first (e.g. with sox) and list their paths"
            )
        if audio.endswith("]") or ".ark:" in audio:
            raise AsrCliError(f"{path}, line {line_number}: archive entry {audio!r} is not supported; list plain paths")
        if recording_id in recordings:
            raise AsrCliError(f"{path}, line {line_number}: duplicate recording id {recording_id!r}")
        audio_path = Path(audio)
        recordings[recording_id] = str(audio_path if audio_path.is_absolute() else (data_dir / audio_path).resolve())
    return recordings


def _read_segments(path: Path, recordings: dict[str, str]) -> dict[str, tuple[str, float, float | None]]:
    """Segment id -> (recording id, offset s, duration s or None to the end)."""
    segments: dict[str, tuple[str, float, float | None]] = {}
    for line_number, segment_id, rest in read_kaldi_table(path):
        fields = [segment_id] + rest.split()
        if len(fields) != 4:
            raise AsrCliError(f"{path}, line {line_number}: expected 'segment recording start end'")
        recording_id = fields[1]
        try:
            start_s, end_s = float(fields[2]), float(fields[3])
        except ValueError as error:
            raise AsrCliError(f"{path}, line {line_number}: start and end must be numbers") from error
        if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0:
            raise AsrCliError(
                f"{path}, line {line_number}: start must be a number >= 0 and end a number "
                f"(-1 for the end of the recording), not {fields[2]!r} and {fields[3]!r}"
            )
        if recording_id not in recordings:
            raise AsrCliError(f"{path}, line {line_number}: recording {recording_id!r} is not in wav.scp")
        if end_s >= 0 and end_s <= start_s:
            raise AsrCliError(f"{path}, line {line_number}: end {end_s} is not after start {start_s}")
        if segment_id in segments:
            raise AsrCliError(f"{path}, line {line_number}: duplicate segment id {segment_id!r}")
        segments[segment_id] = (recording_id, start_s, None if end_s < 0 else end_s - start_s)
    return segments


def import_kaldi(data_dir: str | Path) -> list[Utterance]:
    """Read a Kaldi data directory (`wav.scp`, optional `text`, `utt2spk`, `segments`)."""
    data_dir = Path(data_dir)
    if not (data_dir / "wav.scp").is_file():
        raise AsrCliError(f"{data_dir} is not a Kaldi data directory: wav.scp not found")
    recordings = _read_wav_scp(data_dir)
    if not recordings:
        raise AsrCliError(f"{data_dir / 'wav.scp'} lists no recordings")
    if (data_dir / "segments").is_file():
        segments = _read_segments(data_dir / "segments", recordings)
    else:
        segments = {recording_id: (recording_id, 0.0, None) for recording_id in recordings}
    texts = _read_map(data_dir / "text") if (data_dir / "text").is_file() else {}
    speakers = _read_map(data_dir / "utt2spk") if (data_dir / "utt2spk").is_file() else {}
    for name, mapping in (("text", texts), ("utt2spk", speakers)):
        unknown = sorted(set(mapping) - set(segments))
        if unknown:
            raise AsrCliError(format_problems(f"{data_dir / name}: {len(unknown)} id(s) with no audio entry:", unknown))
    return [
        _checked(
            {
                "id": utterance_id,
                "audio": recordings[recording_id],
                "text": texts.get(utterance_id),
                "speaker": speakers.get(utterance_id),
                "duration": duration_s,
                "offset": offset_s,
            },
            data_dir,
        )  # fmt: skip
        for utterance_id, (recording_id, offset_s, duration_s) in segments.items()
    ]


def _checked(record: dict, source: Path) -> Utterance:
    """An imported utterance, validated as a manifest line is (ids and speakers without spaces, text that is
    Unicode, ...); an error naming the utterance and where it came from."""
    try:
        return Utterance.from_dict(record)
    except ValueError as error:
        raise AsrCliError(f"{source}: utterance {record['id']!r}: {error}") from error


def import_librispeech(root: str | Path) -> list[Utterance]:
    """Read a LibriSpeech-style tree: `SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt` beside `.flac` files."""
    root = Path(root)
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise AsrCliError(f"no *.trans.txt files under {root}: not a LibriSpeech tree")
    utterances, missing = [], []
    undecodable = [repr(os.fsencode(path)) for path in transcripts if has_undecodable_bytes(str(path))]
    if undecodable:
        raise AsrCliError(
            format_problems(
                f"{len(undecodable)} path(s) under {root} are not valid UTF-8; rename them (manifests are UTF-8 JSON):",
                undecodable,
            )
        )
    where: dict[str, str] = {}  # utterance id -> the transcript line it is on
    for transcript in transcripts:
        for line_number, utterance_id, text in read_kaldi_table(transcript):
            if utterance_id in where:
                raise AsrCliError(f"{transcript}, line {line_number}: utterance {utterance_id!r} is also on "
                                  f"{where[utterance_id]}")  # fmt: skip
            where[utterance_id] = f"{transcript}, line {line_number}"
            audio_path = transcript.parent / f"{utterance_id}.flac"
            if not audio_path.is_file():
                missing.append(str(audio_path))
                continue
            record = {"id": utterance_id, "audio": str(audio_path.resolve()), "text": text,
                      "speaker": utterance_id.split("-")[0]}  # fmt: skip
            utterances.append(_checked(record, transcript))
    if missing:
        raise AsrCliError(format_problems(f"{len(missing)} transcribed utterance(s) have no audio file:", missing))
    return utterances


def import_csv(
    path: str | Path, columns: CsvImportConfig = CsvImportConfig(), audio_dir: str | Path | None = None
) -> list[Utterance]:
    """Read a CSV/TSV with a header row (Common Voice's TSVs work with `audio_dir=clips`).

    The columns' defaults fit Common Voice; ids default to the audio file's name without extension;
    relative audio paths resolve against `audio_dir`, by default the table's folder.
    """
    path = require_file(path, "table file")
    delimiter = columns.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    base_dir = Path(audio_dir) if audio_dir is not None else path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not a column
            reader = csv.DictReader(
                handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
            )
            header = reader.fieldnames or []
            wanted = [
                c
                for c in (columns.audio_column, columns.text_column, columns.id_column, columns.speaker_column)
                if c is not None
            ]
            absent = [c for c in wanted if c not in header]
            if absent:
                raise AsrCliError(f"{path}: no column(s) {', '.join(absent)}; the header has: {', '.join(header)}")
            utterances, first_line_of = [], {}
            line_number = 1  # of the row's first line: a quoted field may run over several
            for row in _rows(reader, path):
                line_number, last_line = line_number + 1, reader.line_num
                if last_line != line_number:
                    raise AsrCliError(
                        f"{path}, line {line_number}: a quoted field runs on over the line's end (to line "
                        f"{last_line}); close its quote, or quote the field's quotes by doubling them"
                    )
                if None in row.values() or None in row:
                    raise AsrCliError(
                        f"{path}, line {line_number}: {len(header)} fields expected (the header's), "
                        f"got {sum(v is not None for v in row.values()) + len(row.get(None) or [])}"
                    )
                utterance = _utterance_from_row(row, line_number, path, base_dir, columns)
                if utterance.id in first_line_of:
                    raise AsrCliError(
                        f"{path}, line {line_number}: id {utterance.id!r} is also on line "
                        f"{first_line_of[utterance.id]}"
                        + (
                            ""
                            if columns.id_column
                            else " (ids are audio file names without extension: pass --id-column)"
                        )
                    )
                first_line_of[utterance.id] = line_number
                utterances.append(utterance)
            return utterances
    except UnicodeDecodeError as error:
        raise AsrCliError(f"{path}: not valid UTF-8 ({error.reason})") from error


def _rows(reader: csv.DictReader, path: Path):
    """The table's rows; the csv module's own complaints (a field over its size limit, an unclosed quote at the
    end) as errors naming the line."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise AsrCliError(f"{path}, line {reader.line_num + 1}: {error}") from error  # the line being read


def _utterance_from_row(row: dict, line_number: int, path: Path, base_dir: Path, columns: CsvImportConfig) -> Utterance:
    audio = (row.get(columns.audio_column) or "").strip()
    if not audio:
        raise AsrCliError(f"{path}, line {line_number}: empty {columns.audio_column!r}")
    audio_path = Path(audio)
    if not audio_path.is_absolute():
        audio_path = (base_dir / audio_path).resolve()
    record = {
        "id": (row.get(columns.id_column) or "").strip() if columns.id_column else audio_path.stem,
        "audio": str(audio_path),
        "text": row.get(columns.text_column) if columns.text_column else None,
        "speaker": (row.get(columns.speaker_column) or None) if columns.speaker_column else None,
    }
    try:
        return Utterance.from_dict(record)
    except ValueError as error:
        raise AsrCliError(f"{path}, line {line_number}: {error}") from error
