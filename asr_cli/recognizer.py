"""A trained recogniser from Python: `asr_cli.load_model("exp/model.pt").transcribe("speech.wav")`.

A client of the inference core (inference.py), like `asr-cli decode`: the same model file, features,
normalisation and search, for one recording at a time: a path, or samples as a numpy array or torch tensor
(resampled to the model's rate when `sample_rate` differs). A long recording is cut at pauses (segment.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .audio import audio_info, load_audio, mono_samples, resample
from .cmvn import SpeakerNormalizer
from .config import DEFAULT_DEVICE, SearchConfig, SegmentationConfig, SpeechActivityConfig, StreamConfig
from .errors import AsrCliError
from .experiment import StoredDecoding
from .inference import Decoder, speech_part
from .lm_tables import LanguageModelTables, search_tables
from .model import load_model_file, resolve_device
from .results import Transcription
from .segment import file_energies_db, frame_energies_db, speech_segments
from .signals import raise_if_stopped
from .speech_activity import SpeechDetector

SEGMENTS_PER_BATCH = 8  # of a long recording, through the acoustic model together
STORED = "stored"  # as `lm`: the LM stored beside the model
STORED_IF_ANY = object()  # as `lm` (the default): the stored LM when there is one, else none
RECORDING = "recording"  # the speaker a recording's segments are normalised as, for per-speaker models


class Recognizer:
    """A model file loaded once, ready to transcribe recordings one after another."""

    def __init__(self, model_path: str | Path, device: str = DEFAULT_DEVICE, encoder: str | Path | None = None) -> None:
        """`encoder`: for a model on encoder features, the encoder's folder (default: where the model records it)."""
        self.device = resolve_device(device)
        self.model_file = load_model_file(model_path, self.device)
        self.model_path = Path(model_path)
        self.stored_decoding = StoredDecoding.read(self.model_path)
        self.encoder_path = encoder
        self._extractor = None
        self._tables: dict[tuple, LanguageModelTables | None] = {}

    @property
    def sample_rate_hz(self) -> int:
        return self.model_file.feature_config.sample_rate_hz

    @property
    def model(self):
        """The acoustic model (model.AcousticModel, eval mode, on its device)."""
        return self.model_file.model

    @property
    def feature_config(self):
        return self.model_file.feature_config

    @property
    def vocabulary(self):
        return self.model_file.vocabulary

    @property
    def info(self) -> dict:
        return self.model_file.info

    def transcribe(
        self,
        audio,
        sample_rate: int | None = None,
        *,
        lm=STORED_IF_ANY,
        lm_unit: str = SearchConfig.lm_unit,
        lexicon: str | Path | None = None,
        segmentation: SegmentationConfig = SegmentationConfig(),
        speech_activity: SpeechActivityConfig | str = SpeechActivityConfig(),
        **search_options,
    ) -> Transcription:
        """Transcribe one recording.

        `audio`: a file path, or samples (numpy array or torch tensor; 1-D, or (samples, channels)
        which is averaged to mono; floats in [-1, 1] or int16) at `sample_rate` Hz (default: the
        model's). `search_options` are those of `SearchConfig` (beam_size=1 is greedy; with `lm`,
        a word or character ARPA file, the beam search fuses it: beam_size defaults to LM_BEAM_SIZE then).
        A recording longer than `segmentation.long_recording_s` is cut at pauses and decoded a few
        segments at a time (a file is read one segment at a time); times stay recording times.
        `lm`: by default the LM stored beside the model (`asr-cli pack`), with its weights, if there is
        one; `None` for none; "stored" to insist on the stored one; or an ARPA file's path.
        `lexicon`: a word list or Kaldi lexicon; the beam search then outputs only its words
        (`unlisted_word_penalty` in `search_options` allows others at that cost).
        `speech_activity`: which frames hold speech (a SpeechActivityConfig, or its method: "energy" or
        "silero"); the others are searched as silence, so nothing is written into the noise around and between
        words, and a model trained per speaker is normalised by the statistics of the speech.
        """
        decoder = self.decoder(self.search_config(lm, lm_unit, lexicon, **search_options))
        if isinstance(speech_activity, str):
            speech_activity = SpeechActivityConfig(vad=speech_activity)
        feature_config = self.model_file.feature_config
        detector = SpeechDetector(speech_activity, feature_config.kind, feature_config.sample_rate_hz)
        found: dict[tuple[float, float], np.ndarray | None] = {}  # the normaliser's first pass finds them once

        def speech(segment: tuple[float, float], frames: np.ndarray, samples: np.ndarray) -> np.ndarray | None:
            if segment not in found:
                found[segment] = detector.mask(frames, samples)
            return found[segment]

        duration_s, segments, load = self._recording(audio, sample_rate, segmentation)
        normalize = self._normalizer(segments, load, detector.config.vad != "none", speech)
        texts, words, score = [], [], 0.0
        for start in range(0, len(segments), SEGMENTS_PER_BATCH):
            raise_if_stopped()
            batch = segments[start : start + SEGMENTS_PER_BATCH]
            pieces = [(segment[0], load(*segment)) for segment in batch]
            features = [self._features(samples) for _, samples in pieces]
            masks = [speech(segment, f, samples) for segment, f, (_, samples) in zip(batch, features, pieces)]
            if normalize is not None:
                features = [normalize(frames, RECORDING) for frames in features]
            for (offset_s, samples), hypotheses in zip(pieces, decoder.hypotheses(features, masks)):
                texts.append(decoder.text(hypotheses[0]))
                piece_s = len(samples) / self.sample_rate_hz
                words += [word.shifted(offset_s) for word in decoder.words(hypotheses[0], piece_s)]
                score += float(hypotheses[0].score)
        return Transcription(" ".join(text for text in texts if text), words, score, duration_s)

    def stream(
        self,
        *,
        lm=STORED_IF_ANY,
        lm_unit: str = SearchConfig.lm_unit,
        lexicon: str | Path | None = None,
        **options,
    ):
        """A `stream.Stream` for live recognition: `accept(samples)` as audio arrives, `finish()` at its end.
        `options`: those of `SearchConfig` (beam_size, lm_weight, ...) and of `StreamConfig` (chunk_s,
        right_context_s, endpointing, endpoint_silence_s, ...); `lm` and `lexicon` as for `transcribe`."""
        from .stream import Stream

        stream_fields = {item.name for item in dataclasses.fields(StreamConfig)}
        stream_options = {key: value for key, value in options.items() if key in stream_fields}
        search_options = {key: value for key, value in options.items() if key not in stream_fields}
        decoder = self.decoder(self.search_config(lm, lm_unit, lexicon, **search_options))
        return Stream(self.model_file, decoder.search, decoder.tables, StreamConfig(**stream_options),
                      decoder.spoken_words)  # fmt: skip

    def search_config(
        self, lm=STORED_IF_ANY, lm_unit: str = SearchConfig.lm_unit, lexicon: str | Path | None = None, **search_options
    ) -> SearchConfig:
        """The search `transcribe` runs: the stored one (`asr-cli pack`) unless `lm` says otherwise; a stored
        lexicon comes with the stored LM unless `lexicon` names another."""
        stored = self.stored_decoding
        if lm is STORED_IF_ANY:
            lm = STORED if stored is not None else None
        if isinstance(lm, str) and lm == STORED:
            if stored is None:
                raise AsrCliError(
                    f"{self.model_path.parent} holds no stored LM ({StoredDecoding.DECODING_FILE}); "
                    "store one with `asr-cli pack MODEL --lm FILE`, or give an LM file"
                )
            return stored.search(self.model_path.parent, lexicon, **search_options)
        return SearchConfig(
            **search_options,
            lm_path=str(lm) if lm is not None else None,
            lm_unit=lm_unit,
            lexicon_path=str(lexicon) if lexicon is not None else None,
        )

    def decoder(self, search: SearchConfig) -> Decoder:
        """A decoder for `search`; its tables are read once per (LM file, unit, backend, lexicon, OOV penalty)."""
        key = (search.lm_path, search.lm_unit, search.lm_backend, search.lexicon_path, search.oov_penalty)
        if key not in self._tables:
            self._tables[key] = search_tables(search, self.model_file.vocabulary, self.model_file.phones)
        return Decoder(self.model_file, search, self.device, tables=self._tables[key])

    def _features(self, samples: np.ndarray) -> np.ndarray:
        if self._extractor is None:
            self._extractor = self.model_file.feature_extractor(self.encoder_path)
        return self._extractor([samples])[0]

    def _normalizer(self, segments: list[tuple[float, float]], load, detecting: bool, speech):
        """For a model trained per speaker: the recording is one speaker; a single piece is normalised by its own
        statistics when decoded, several by the recording's (a first pass that keeps only sums, so a long file
        stays out of memory); with a speech detector on (`speech(segment, frames, samples)` says where), by the
        statistics of the frames in speech."""
        if not self.model_file.config.speaker_cmvn:
            return None
        if len(segments) == 1 and not detecting:
            return SpeakerNormalizer([{}])
        frame_shift_s = self.model_file.feature_config.frame_shift_ms / 1000

        def speech_frames(segment: tuple[float, float]) -> np.ndarray:
            samples = load(*segment)
            frames = self._features(samples)
            mask = speech(segment, frames, samples)
            return frames if mask is None else speech_part(frames, mask, frame_shift_s)

        pieces = ((RECORDING, speech_frames(segment)) for segment in segments)
        return SpeakerNormalizer.of_frames(
            (piece for piece in pieces if len(piece[1])), self.model_file.feature_config.dim
        )

    def _recording(self, audio, sample_rate: int | None, segmentation: SegmentationConfig):
        """(duration s, [(start s, end s)] to decode, load(start, end) -> samples at the model's rate): the whole
        recording, or for a long one its speech segments; a file's samples are read only when asked for."""
        rate_hz = self.sample_rate_hz
        if isinstance(audio, (str, Path)):
            if sample_rate is not None:
                raise AsrCliError("sample_rate is for arrays; a file's own rate is read from its header")
            native_rate_hz, num_samples = audio_info(audio)
            duration_s = num_samples / native_rate_hz
            long = duration_s > segmentation.long_recording_s
            segments = speech_segments(file_energies_db(audio)[0], segmentation) if long else [(0.0, duration_s)]
            return duration_s, segments, lambda start, end: load_audio(audio, rate_hz, start, end - start)[0]
        samples = self._samples(audio, sample_rate)
        duration_s = len(samples) / rate_hz
        long = duration_s > segmentation.long_recording_s
        segments = speech_segments(frame_energies_db(samples, rate_hz), segmentation) if long else [(0.0, duration_s)]
        return duration_s, segments, lambda start, end: samples[int(round(start * rate_hz)) : int(round(end * rate_hz))]

    def _samples(self, audio, sample_rate: int | None) -> np.ndarray:
        """Mono float32 samples at the model's rate from an array or a tensor."""
        samples = mono_samples(audio, "the audio given")
        return resample(samples, sample_rate or self.sample_rate_hz, self.sample_rate_hz)


def load_model(path: str | Path, device: str = DEFAULT_DEVICE, encoder: str | Path | None = None) -> Recognizer:
    """A `Recognizer` for a model file (EXP_DIR/model.pt from `asr-cli train`)."""
    return Recognizer(path, device, encoder)


def transcribe(model: str | Path | Recognizer, audio, sample_rate: int | None = None, **options) -> Transcription:
    """One-shot: load `model` (unless it is a Recognizer already) and transcribe `audio` with it."""
    recognizer = model if isinstance(model, Recognizer) else load_model(model)
    return recognizer.transcribe(audio, sample_rate, **options)
