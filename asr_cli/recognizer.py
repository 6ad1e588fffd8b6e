"""A trained recogniser from Python: `asr_cli.load_model("exp/model.pt").transcribe("speech.wav")`.

The same model file, features, normalisation and search as `asr-cli decode`,
for one recording at a time: a path, or samples as a numpy array or torch
tensor (resampled to the model's rate when `sample_rate` differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio import load_audio, resample
from .data import utterance_mean_and_std
from .decode import DecodeOptions, LanguageModelTables
from .decode_step import TranscribeOptions, _decode_batch, _lm_tables, word_timings
from .errors import AsrCliError
from .features import FeatureConfig, FeatureExtractor
from .model import load_model_file
from .text import Vocabulary

INT16_FULL_SCALE = 32768.0


@dataclass(frozen=True)
class Transcription:
    """What a recording says: its text, its words with start/end seconds, and the search's log score."""

    text: str
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end"}, seconds from the recording's start
    score: float = 0.0
    duration_s: float = 0.0


class Recognizer:
    """A model file loaded once, ready to transcribe recordings one after another."""

    def __init__(self, model_path: str | Path, device: str = "auto") -> None:
        device_name = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if device_name.startswith("cuda") and not torch.cuda.is_available():
            raise AsrCliError("device cuda: no CUDA device is available; use device='cpu'")
        self.device = torch.device(device_name)
        self.model, contents = load_model_file(model_path, self.device)
        self.feature_config = FeatureConfig.from_dict(contents["feature_config"])
        self.vocabulary = Vocabulary(tuple(contents["vocabulary"]))
        self.info = contents.get("info", {})
        self._extractor = FeatureExtractor(self.feature_config)
        self._lms: dict[tuple[str, str], LanguageModelTables] = {}

    @property
    def sample_rate_hz(self) -> int:
        return self.feature_config.sample_rate_hz

    def transcribe(self, audio, sample_rate: int | None = None, *, lm: str | Path | None = None,
                   lm_unit: str = "word", **search_options) -> Transcription:
        """Transcribe one recording.

        `audio`: a file path, or samples (numpy array or torch tensor; 1-D, or (samples, channels)
        which is averaged to mono; floats in [-1, 1] or int16) at `sample_rate` Hz (default: the
        model's). `search_options` are those of `DecodeOptions` (beam_size=1 is greedy; with `lm`,
        a word or character ARPA file, the beam search fuses it: beam_size defaults to 16 then).
        """
        samples = self._samples(audio, sample_rate)
        frames = self._extractor([samples])[0]
        if self.model.config.cmvn == "speaker":  # one recording of an unknown speaker: its own statistics
            mean, std = utterance_mean_and_std(frames)
            frames = (frames - mean) / std
        if lm is not None:
            search_options.setdefault("beam_size", 16)
        options = TranscribeOptions(search=DecodeOptions(**{"beam_size": 1, **search_options}),
                                    lm_path=str(lm) if lm is not None else None, lm_unit=lm_unit)
        hypothesis = _decode_batch(self.model, [frames], self.vocabulary, options, self._lm(options), self.device)[0][0]
        duration_s = len(samples) / self.sample_rate_hz
        seconds_per_frame = self.model.config.subsample * self.feature_config.frame_shift_ms / 1000
        return Transcription(
            text=" ".join(self.vocabulary.decode(hypothesis.label_ids).split()),
            words=word_timings(hypothesis, self.vocabulary, seconds_per_frame, duration_s),
            score=float(hypothesis.score), duration_s=duration_s,
        )

    def _samples(self, audio, sample_rate: int | None) -> np.ndarray:
        """Mono float32 samples at the model's rate from a path, an array or a tensor."""
        if isinstance(audio, (str, Path)):
            if sample_rate is not None:
                raise AsrCliError("sample_rate is for arrays; a file's own rate is read from its header")
            return load_audio(audio, self.sample_rate_hz)[0]
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        samples = np.asarray(audio)
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) / INT16_FULL_SCALE
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating):
            raise AsrCliError(f"audio must be a path or 1-D (or samples x channels) float or int16 samples, "
                              f"not an array of shape {samples.shape} and type {samples.dtype}")
        if not np.all(np.isfinite(samples)):
            raise AsrCliError("audio holds NaN or infinite samples")
        return resample(samples.astype(np.float32), sample_rate or self.sample_rate_hz, self.sample_rate_hz)

    def _lm(self, options: TranscribeOptions) -> LanguageModelTables | None:
        """The LM tables, read once per (file, unit)."""
        if options.lm_path is None:
            return None
        key = (options.lm_path, options.lm_unit)
        if key not in self._lms:
            self._lms[key] = _lm_tables(options, self.vocabulary)
        return self._lms[key]


def load_model(path: str | Path, device: str = "auto") -> Recognizer:
    """A `Recognizer` for a model file (EXP_DIR/model.pt from `asr-cli train`)."""
    return Recognizer(path, device)


def transcribe(model: str | Path | Recognizer, audio, sample_rate: int | None = None, **options) -> Transcription:
    """One-shot: load `model` (unless it is a Recognizer already) and transcribe `audio` with it."""
    recognizer = model if isinstance(model, Recognizer) else load_model(model)
    return recognizer.transcribe(audio, sample_rate, **options)
