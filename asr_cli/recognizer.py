"""A trained recogniser from Python: `asr_cli.load_model("exp/model.pt").transcribe("speech.wav")`.

The same model file, features, normalisation and search as `asr-cli decode`,
for one recording at a time: a path, or samples as a numpy array or torch
tensor (resampled to the model's rate when `sample_rate` differs).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio import audio_info, load_audio, resample
from .data import MIN_CMVN_STD, utterance_mean_and_std
from .lm_tables import LanguageModelTables
from .config import DEFAULT_DEVICE, LM_BEAM_SIZE, DecodeConfig, SegmentationConfig, TranscribeConfig
from .decode_step import _decode_batch, output_text, search_tables, word_timings
from .errors import AsrCliError
from .features import CmvnStats, FeatureExtractor
from .fileio import atomic_write, write_json
from .lexicon import PhoneSet
from .lm import read_arpa
from .model import load_model_file, resolve_device
from .segment import file_energies_db, frame_energies_db, speech_segments

INT16_FULL_SCALE = 32768.0
SEGMENTS_PER_BATCH = 8  # of a long recording, through the acoustic model together
STORED = "stored"  # as `lm`: the LM stored beside the model
STORED_IF_ANY = object()  # as `lm` (the default): the stored LM when there is one, else none
STORED_DECODING_FILE = "decoding.json"
STORED_LM_FILE = "lm.arpa"
STORED_LEXICON_FILE = "lexicon.txt"


@dataclass(frozen=True)
class Transcription:
    """What a recording says: its text, its words with start/end seconds, and the search's log score."""

    text: str
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end"}, seconds from the recording's start
    score: float = 0.0
    duration_s: float = 0.0


class Recognizer:
    """A model file loaded once, ready to transcribe recordings one after another."""

    def __init__(self, model_path: str | Path, device: str = DEFAULT_DEVICE) -> None:
        self.device = resolve_device(device)
        loaded = load_model_file(model_path, self.device)
        self.model, self.feature_config, self.vocabulary, self.info = (loaded.model, loaded.feature_config,
                                                                       loaded.vocabulary, loaded.info)
        self._extractor = FeatureExtractor(self.feature_config)
        self._lms: dict[tuple, LanguageModelTables | None] = {}
        self.model_path = Path(model_path)
        self.stored_decoding = read_stored_decoding(self.model_path)

    @property
    def sample_rate_hz(self) -> int:
        return self.feature_config.sample_rate_hz

    def transcribe(self, audio, sample_rate: int | None = None, *, lm=STORED_IF_ANY,
                   lm_unit: str = TranscribeConfig.lm_unit, lexicon: str | Path | None = None,
                   segmentation: SegmentationConfig = SegmentationConfig(), **search_options) -> Transcription:
        """Transcribe one recording.

        `audio`: a file path, or samples (numpy array or torch tensor; 1-D, or (samples, channels)
        which is averaged to mono; floats in [-1, 1] or int16) at `sample_rate` Hz (default: the
        model's). `search_options` are those of `DecodeConfig` (beam_size=1 is greedy; with `lm`,
        a word or character ARPA file, the beam search fuses it: beam_size defaults to LM_BEAM_SIZE then).
        A recording longer than `segmentation.long_recording_s` is cut at pauses and decoded a few
        segments at a time (a file is read one segment at a time); times stay recording times.
        `lm`: by default the LM stored beside the model (`asr-cli pack`), with its weights, if there is
        one; `None` for none; "stored" to insist on the stored one; or an ARPA file's path.
        `lexicon`: a word list or Kaldi lexicon; the beam search then outputs only its words
        (`unlisted_word_penalty` in `search_options` allows others at that cost).
        """
        lm, lm_unit, search_options, lexicon = self._search_defaults(lm, lm_unit, search_options, lexicon)
        search = DecodeConfig(**search_options).with_beam(searching=lm is not None or lexicon is not None)
        options = TranscribeConfig(search=search,
                                    lm_path=str(lm) if lm is not None else None, lm_unit=lm_unit,
                                    lexicon_path=str(lexicon) if lexicon is not None else None)
        lm_tables = self._lm(options)
        spoken = lm_tables.spoken_words if lm_tables is not None else None  # a phone model's words
        duration_s, segments, load = self._recording(audio, sample_rate, segmentation)
        # One segment is normalised by its own statistics when decoded; several need a first pass for the recording's.
        speaker_mode = self.model.config.cmvn == "speaker"
        cmvn = self._recording_cmvn(segments, load) if speaker_mode and len(segments) > 1 else None
        texts, words, score = [], [], 0.0
        batch: list[tuple[float, np.ndarray]] = []
        for segment in [*segments, None]:  # None: flush the last batch
            if segment is not None:
                batch.append((segment[0], load(*segment)))
            if batch and (segment is None or len(batch) == SEGMENTS_PER_BATCH):
                for offset_s, hypothesis, piece_s in self._decode_pieces(batch, options, lm_tables, cmvn):
                    texts.append(output_text(hypothesis.label_ids, self.vocabulary, spoken))
                    words += [{**w, "start": round(w["start"] + offset_s, 3), "end": round(w["end"] + offset_s, 3)}
                              for w in word_timings(hypothesis, self.vocabulary, self._seconds_per_frame, piece_s,
                                                    spoken)]
                    score += float(hypothesis.score)
                batch = []
        return Transcription(" ".join(text for text in texts if text), words, score, duration_s)

    def _search_defaults(self, lm, lm_unit: str, search_options: dict, lexicon):
        """(LM path or None, its unit, search options, lexicon path or None) once the stored defaults are applied;
        a stored lexicon comes with the stored LM unless `lexicon` names another."""
        stored = self.stored_decoding
        if lm is STORED_IF_ANY:
            lm = STORED if stored is not None else None
        if not (isinstance(lm, str) and lm == STORED):
            return lm, lm_unit, search_options, lexicon
        if stored is None:
            raise AsrCliError(f"{self.model_path.parent} holds no stored LM ({STORED_DECODING_FILE}); store one with "
                              "`asr-cli pack MODEL --lm FILE`, or give an LM file")
        defaults = {"beam_size": stored.beam_size, "lm_weight": stored.lm_weight, "word_bonus": stored.word_bonus}
        if lexicon is None and stored.lexicon_file is not None:
            lexicon = self.model_path.parent / stored.lexicon_file
        return self.model_path.parent / stored.lm_file, stored.lm_unit, {**defaults, **search_options}, lexicon

    @property
    def _seconds_per_frame(self) -> float:
        return self.model.config.subsample * self.feature_config.frame_shift_ms / 1000

    def _decode_pieces(self, pieces: list[tuple[float, np.ndarray]], options: TranscribeConfig,
                       lm_tables: LanguageModelTables | None, cmvn: tuple[np.ndarray, np.ndarray] | None):
        """(offset s, best hypothesis, piece duration s) for each (offset s, samples) piece, in one batch.

        A model trained with per-speaker CMVN normalises every piece by `cmvn` (mean, std), or without it
        by the piece's own statistics.
        """
        features = []
        for _, samples in pieces:
            frames = self._extractor([samples])[0]
            if self.model.config.cmvn == "speaker":
                mean, std = cmvn if cmvn is not None else utterance_mean_and_std(frames)
                frames = (frames - mean) / std
            features.append(frames)
        decoded = _decode_batch(self.model, features, self.vocabulary, options, lm_tables, self.device)
        return [(offset_s, hypotheses[0], len(samples) / self.sample_rate_hz)
                for (offset_s, samples), hypotheses in zip(pieces, decoded)]

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

    def _recording_cmvn(self, segments: list[tuple[float, float]], load) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of a recording's frames (its segments'), taken as one unknown speaker's: a first pass
        that keeps only sums, so a long file stays out of memory."""
        stats = CmvnStats.zeros(self.feature_config.dim)
        for start, end in segments:
            stats.accumulate(self._extractor([load(start, end)])[0])
        if stats.count == 0:  # only pieces shorter than a frame
            return utterance_mean_and_std(np.zeros((0, self.feature_config.dim), np.float32))
        return stats.mean_and_std(MIN_CMVN_STD)

    def _samples(self, audio, sample_rate: int | None) -> np.ndarray:
        """Mono float32 samples at the model's rate from an array or a tensor."""
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

    def _lm(self, options: TranscribeConfig) -> LanguageModelTables | None:
        """The search tables (LM and lexicon), read once per (LM file, unit, lexicon, OOV penalty)."""
        key = (options.lm_path, options.lm_unit, options.lexicon_path, options.search.oov_penalty)
        if key not in self._lms:
            self._lms[key] = search_tables(options, self.vocabulary, self._phones)
        return self._lms[key]

    @property
    def _phones(self) -> PhoneSet | None:
        return PhoneSet(self.model.config.phones) if self.model.config.units == "phones" else None


@dataclass(frozen=True)
class StoredDecoding:
    """Search defaults kept beside a model file (`asr-cli pack`): an LM in the model's folder and its weights."""

    lm_file: str = STORED_LM_FILE
    lm_unit: str = TranscribeConfig.lm_unit
    lm_weight: float = DecodeConfig.lm_weight
    word_bonus: float = DecodeConfig.word_bonus
    beam_size: int = LM_BEAM_SIZE
    lexicon_file: str | None = None  # in the model's folder: the words the stored search may output

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_stored_decoding(model_path: Path) -> StoredDecoding | None:
    path = model_path.parent / STORED_DECODING_FILE
    if not path.is_file():
        return None
    try:
        stored = StoredDecoding(**json.loads(path.read_text(encoding="utf-8")))
    except (TypeError, ValueError) as error:
        raise AsrCliError(f"{path}: damaged stored decoding defaults ({error}); write them again with "
                          "`asr-cli pack`, or remove the file") from error
    for name in (stored.lm_file, stored.lexicon_file):
        if name is not None and not (model_path.parent / name).is_file():
            raise AsrCliError(f"{path} names {name}, which is not in {model_path.parent}")
    return stored


def pack(model_path: str | Path, lm_path: str | Path, stored: StoredDecoding,
         lexicon_path: str | Path | None = None) -> Path:
    """Store an LM (copied into the model's folder), optionally a lexicon, and their search settings beside a
    model file, so that `load_model(model).transcribe(...)` and `asr-cli transcribe MODEL` use them untold."""
    model_path, lm_path = Path(model_path), Path(lm_path)
    loaded = load_model_file(model_path)  # a model file it is
    read_arpa(lm_path, max_order=1)  # an LM it is
    if lexicon_path is not None:  # checked as decoding will check it
        options = TranscribeConfig(lm_path=str(lm_path), lm_unit=stored.lm_unit, lexicon_path=str(lexicon_path))
        phones = PhoneSet(loaded.config.phones) if loaded.config.units == "phones" else None
        search_tables(options, loaded.vocabulary, phones)
        stored = dataclasses.replace(stored, lexicon_file=STORED_LEXICON_FILE)
    target = model_path.parent / stored.lm_file
    _copy_into(lm_path, target)
    if lexicon_path is not None:
        _copy_into(Path(lexicon_path), model_path.parent / STORED_LEXICON_FILE)
    write_json(model_path.parent / STORED_DECODING_FILE, stored.to_dict())
    return target


def _copy_into(source: Path, target: Path) -> None:
    if source.resolve() != target.resolve():
        with open(source, "rb") as reader, atomic_write(target, "wb") as writer:
            shutil.copyfileobj(reader, writer)


def load_model(path: str | Path, device: str = DEFAULT_DEVICE) -> Recognizer:
    """A `Recognizer` for a model file (EXP_DIR/model.pt from `asr-cli train`)."""
    return Recognizer(path, device)


def transcribe(model: str | Path | Recognizer, audio, sample_rate: int | None = None, **options) -> Transcription:
    """One-shot: load `model` (unless it is a Recognizer already) and transcribe `audio` with it."""
    recognizer = model if isinstance(model, Recognizer) else load_model(model)
    return recognizer.transcribe(audio, sample_rate, **options)
