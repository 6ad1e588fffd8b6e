"""What recognition returns, as typed values (no torch, no numba: transcript writers and scoring import them).

`Hypothesis` is one labelling from the search (label ids and the output frame each was first emitted in);
`WordTiming` a recognised word with start and end seconds; `Transcription` what a recording says;
`UtteranceResult` one line of `decode`'s output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hypothesis:
    """A labelling: label ids, the output frame where each was first emitted, and its log score."""

    label_ids: list[int]
    frames: list[int]
    score: float


@dataclass(frozen=True)
class WordTiming:
    """A word and where it was said, in seconds (from the start of the recording, or of the stream)."""

    word: str
    start: float
    end: float

    def to_dict(self) -> dict:
        return {"word": self.word, "start": self.start, "end": self.end}

    def shifted(self, offset_s: float) -> WordTiming:
        return WordTiming(self.word, round(self.start + offset_s, 3), round(self.end + offset_s, 3))


def rounded_score(score: float) -> float | None:
    """A score as written to JSON: rounded, and None (null) for a lexicon search whose every path broke the
    lexicon (-inf is not JSON)."""
    return round(score, 4) if math.isfinite(score) else None


@dataclass(frozen=True)
class Transcription:
    """What a recording says: its text, its words with times, and the search's log score."""

    text: str
    words: list[WordTiming] = field(default_factory=list)
    score: float = 0.0
    duration_s: float = 0.0


@dataclass(frozen=True)
class UtteranceResult:
    """One decoded utterance: the best text and score, the n-best (text, score) when asked, words when asked."""

    id: str
    text: str
    score: float
    nbest: list[tuple[str, float]] | None = None
    words: list[WordTiming] | None = None

    def to_record(self) -> dict:
        """The JSON line `decode` writes: {id, text, score} plus `nbest` and `words` when they were asked for."""
        record = {"id": self.id, "text": self.text, "score": rounded_score(self.score)}
        if self.nbest is not None:
            record["nbest"] = [{"text": text, "score": rounded_score(score)} for text, score in self.nbest]
        if self.words is not None:
            record["words"] = [word.to_dict() for word in self.words]
        return record


@dataclass(frozen=True)
class StreamSegment:
    """A finished segment of a stream: its text and words, times from the start of the stream."""

    text: str
    words: list[WordTiming]
    start_s: float
    end_s: float
    score: float = 0.0

    def to_record(self) -> dict:
        return {"start": self.start_s, "end": self.end_s, "text": self.text,
                "words": [word.to_dict() for word in self.words]}  # fmt: skip


@dataclass(frozen=True)
class StreamUpdate:
    """What changed after audio was given to a stream: the segments it finished, and the best text of the segment
    under way (its last word perhaps unfinished; it may still change)."""

    partial: str
    finished: list[StreamSegment] = field(default_factory=list)
