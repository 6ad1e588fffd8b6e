"""Transcripts in the formats people use: plain text, JSON, SubRip, WebVTT, TSV, Kaldi `text`, NIST CTM.

Each writer turns one recording's `results.Transcription` into the text of a file;
times are seconds from the start of the recording. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .fileio import json_line
from .results import Transcription, WordTiming, rounded_score

MAX_CUE_WORDS = 12
MAX_CUE_S = 6.0


def subtitle_cues(transcription: Transcription) -> list[tuple[float, float, str]]:
    """(start s, end s, text) cues of at most MAX_CUE_WORDS words and MAX_CUE_S seconds."""
    cues, current = [], []
    for word in transcription.words:
        if current and (len(current) == MAX_CUE_WORDS or word.end - current[0].start > MAX_CUE_S):
            cues.append(current)
            current = []
        current.append(word)
    if current:
        cues.append(current)
    return [(cue[0].start, cue[-1].end, " ".join(w.word for w in cue)) for cue in cues]


def _timestamp(seconds: float, decimal_marker: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d}{decimal_marker}{milliseconds:03d}"


def format_txt(transcription: Transcription, recording_id: str) -> str:
    return transcription.text + "\n"


def format_json(transcription: Transcription, recording_id: str) -> str:
    record = {
        "id": recording_id,
        "text": transcription.text,
        "score": rounded_score(transcription.score),
        "duration": round(transcription.duration_s, 3),
        "words": [w.to_dict() for w in transcription.words],
    }
    return json_line(record)


def format_srt(transcription: Transcription, recording_id: str) -> str:
    blocks = [
        f"{number}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n"
        for number, (start, end, text) in enumerate(subtitle_cues(transcription), start=1)
    ]
    return "\n".join(blocks)


def format_vtt(transcription: Transcription, recording_id: str) -> str:
    blocks = [
        f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n"
        for start, end, text in subtitle_cues(transcription)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def format_tsv(transcription: Transcription, recording_id: str) -> str:
    """Whisper's TSV: start and end in integer milliseconds, then the text, one cue per line."""
    rows = [f"{round(1000 * start)}\t{round(1000 * end)}\t{text}" for start, end, text in subtitle_cues(transcription)]
    return "start\tend\ttext\n" + "".join(row + "\n" for row in rows)


def format_kaldi(transcription: Transcription, recording_id: str) -> str:
    """A Kaldi `text` line: the recording id, then the words."""
    return f"{recording_id} {transcription.text}".rstrip() + "\n"


def format_ctm(transcription: Transcription, recording_id: str) -> str:
    return ctm_lines(recording_id, transcription.words)


def ctm_lines(recording_id: str, words: Sequence[WordTiming]) -> str:
    """NIST CTM: `recording channel start duration word`, one word per line (decode's CTM files too)."""
    return "".join(f"{recording_id} 1 {w.start:.3f} {w.end - w.start:.3f} {w.word}\n" for w in words)


WRITERS: dict[str, tuple[str, Callable[[Transcription, str], str]]] = {
    "txt": ("txt", format_txt),
    "json": ("json", format_json),
    "srt": ("srt", format_srt),
    "vtt": ("vtt", format_vtt),
    "tsv": ("tsv", format_tsv),
    "kaldi": ("text", format_kaldi),
    "ctm": ("ctm", format_ctm),
}
