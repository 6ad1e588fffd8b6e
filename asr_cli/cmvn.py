"""Mean and variance normalisation: the statistics, and the one policy for normalising a model's input.

A model trained with global CMVN holds its mean and deviation itself (model.AcousticModel). A model trained
with per-speaker CMVN (`--cmvn speaker`) gets input normalised outside it, and `SpeakerNormalizer` is the one
place that does it, in training and in every kind of decoding: each utterance by its speaker's statistics
(within its group: a store, or the inputs of one decoding run), and an utterance without a known speaker by
its own. A recording transcribed alone is its own speaker. Numpy only, so that stores open without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_CMVN_STD = 1e-3  # of log-mel or cepstral values: keeps constant (digital silence) dimensions finite


@dataclass
class CmvnStats:
    """Per-dimension sums for global mean and variance normalisation; stats from shards add up."""

    count: int
    sum: np.ndarray
    sum_sq: np.ndarray

    @classmethod
    def zeros(cls, dim: int) -> CmvnStats:
        return cls(0, np.zeros(dim, np.float64), np.zeros(dim, np.float64))

    def accumulate(self, features: np.ndarray) -> None:
        """Add the frames of one (num_frames, dim) array."""
        as_float32 = features.astype(np.float32, copy=False)
        self.count += int(features.shape[0])
        self.sum += as_float32.sum(axis=0, dtype=np.float64)
        self.sum_sq += np.square(as_float32).sum(axis=0, dtype=np.float64)

    def __add__(self, other: CmvnStats) -> CmvnStats:
        if self.sum.shape != other.sum.shape:
            raise ValueError(f"cannot combine CMVN stats of dimension {self.sum.shape[0]} and {other.sum.shape[0]}")
        return CmvnStats(self.count + other.count, self.sum + other.sum, self.sum_sq + other.sum_sq)

    def mean_and_std(self, min_std: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
        """Global mean and standard deviation per dimension (float32)."""
        if self.count == 0:
            raise ValueError("no frames were accumulated")
        mean = self.sum / self.count
        variance = np.maximum(self.sum_sq / self.count - np.square(mean), min_std**2)
        return mean.astype(np.float32), np.sqrt(variance).astype(np.float32)

    def to_dict(self) -> dict:
        return {"count": self.count, "sum": self.sum.tolist(), "sum_sq": self.sum_sq.tolist()}

    @classmethod
    def of(cls, features: np.ndarray) -> CmvnStats:
        """The statistics of one (num_frames, dim) array."""
        stats = cls.zeros(features.shape[1])
        stats.accumulate(features)
        return stats

    @classmethod
    def from_dict(cls, record: dict) -> CmvnStats:
        return cls(
            int(record["count"]), np.asarray(record["sum"], np.float64), np.asarray(record["sum_sq"], np.float64)
        )


def utterance_mean_and_std(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of one utterance's (num_frames, dim) frames (zeros and ones for
    no frames)."""
    if frames.shape[0] == 0:
        return np.zeros(frames.shape[1], np.float32), np.ones(frames.shape[1], np.float32)
    return CmvnStats.of(frames).mean_and_std(MIN_CMVN_STD)


class SpeakerNormalizer:
    """Per-speaker mean and variance normalisation of (num_frames, dim) frames; an utterance whose speaker has no
    statistics is normalised by its own. Picklable, for DataLoader workers.

    Statistics come in groups (one per store, or per decoding run): a speaker of two groups is two speakers.
    """

    def __init__(self, groups: Sequence[dict[str, CmvnStats]]) -> None:
        self.tables = [
            {speaker: stats.mean_and_std(MIN_CMVN_STD) for speaker, stats in by_speaker.items() if stats.count > 0}
            for by_speaker in groups
        ]

    @classmethod
    def of_stores(cls, stores: Sequence) -> SpeakerNormalizer:
        """The speakers of each feature store, from the statistics it keeps."""
        return cls([store.speaker_cmvn() for store in stores])

    @classmethod
    def of_frames(cls, frames_by_speaker: Iterable[tuple[str, np.ndarray]], dim: int) -> SpeakerNormalizer:
        """One group, accumulated from (speaker, frames) pairs: a first pass over audio inputs, or the segments of
        one recording taken as one speaker's."""
        stats: dict[str, CmvnStats] = {}
        for speaker, frames in frames_by_speaker:
            stats.setdefault(speaker, CmvnStats.zeros(dim)).accumulate(frames)
        return cls([stats])

    def __call__(
        self, frames: np.ndarray, speaker: str | None, group: int = 0, own: np.ndarray | None = None
    ) -> np.ndarray:
        """`frames` of an utterance of `speaker` (of `group`), normalised; an utterance whose speaker has no
        statistics by those of `own` (its frames in speech, say), or of all its frames."""
        table = self.tables[group]
        if speaker in table:
            mean, std = table[speaker]
        else:
            mean, std = utterance_mean_and_std(own if own is not None and len(own) else frames)
        return (frames - mean) / std


class OnlineCmvn:
    """Mean and variance normalisation that needs no future, as Kaldi's apply-cmvn-online: each frame by the
    statistics of the last `window_frames` frames up to it (itself included), topped up to `prior_frames` frames
    by a prior (the training data's statistics, which a model file records) while fewer have been seen. Carries
    its state from call to call: a stream normalised a few frames at a time gets the frames of normalising it
    at once (to rounding: the running sums start elsewhere). Numpy only, float64 sums."""

    def __init__(self, prior: CmvnStats | None, window_frames: int = 600, prior_frames: int = 200) -> None:
        if window_frames < 1 or prior_frames < 0:
            raise ValueError(f"online CMVN needs a window of at least 1 frame and a prior of at least 0 frames, not "
                             f"{window_frames} and {prior_frames}")  # fmt: skip
        self.prior, self.window_frames = prior, window_frames
        has_prior = prior is not None and prior.count > 0
        self.prior_frames = prior_frames if has_prior else 0
        self.prior_mean = prior.sum / prior.count if has_prior else 0.0
        self.prior_square = prior.sum_sq / prior.count if has_prior else 0.0
        self.recent: np.ndarray | None = None  # the last frames seen (at most window_frames), float64

    def fresh(self) -> OnlineCmvn:
        """The same normalisation from the start (nothing seen yet)."""
        return OnlineCmvn(self.prior, self.window_frames, self.prior_frames)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """The next (num_frames, dim) frames, normalised (float32)."""
        frames = np.asarray(frames, np.float64)
        recent = self.recent if self.recent is not None else np.zeros((0, frames.shape[1]))
        known = np.concatenate([recent, frames])
        sums = np.concatenate([np.zeros((1, known.shape[1])), np.cumsum(known, axis=0)])
        squares = np.concatenate([np.zeros((1, known.shape[1])), np.cumsum(np.square(known), axis=0)])
        ends = np.arange(len(recent) + 1, len(known) + 1)
        starts = np.maximum(ends - self.window_frames, 0)
        counts = (ends - starts)[:, None].astype(np.float64)
        weights = np.maximum(self.prior_frames - counts, 0.0)
        mean = (sums[ends] - sums[starts] + weights * self.prior_mean) / (counts + weights)
        square = (squares[ends] - squares[starts] + weights * self.prior_square) / (counts + weights)
        std = np.sqrt(np.maximum(square - np.square(mean), MIN_CMVN_STD**2))
        self.recent = known[-self.window_frames :]
        return ((frames - mean) / std).astype(np.float32)


class OnlineNormalizer:
    """SpeakerNormalizer's interface over online CMVN, to decode files as a stream normalises them: each
    utterance from the start (the prior only), whatever its speaker."""

    def __init__(self, cmvn: OnlineCmvn) -> None:
        self.cmvn = cmvn

    def __call__(self, frames: np.ndarray, speaker: str | None = None, group: int = 0, own=None) -> np.ndarray:
        return self.cmvn.fresh()(frames)
