"""The inference core: the one way from audio or stored frames to recognised words.

    inputs (a store, a manifest, audio files)  -> `collect_sources`
    -> frames (the store's, or the model's feature pipeline on the audio: `read_frames`)
    -> where the speech is (`speech_reader`: optional; the frames outside it are searched as blank)
    -> normalisation (`input_normalizer`: per speaker for a model trained so; else inside the model)
    -> batches of similar length -> the acoustic model -> the search (`Decoder`)
    -> typed results (results.py)

`decode` (hypothesis files) and `Recognizer` (the Python API and `transcribe`) are its clients; a streaming
recogniser is the next one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import AudioError, load_audio, usable_duration_s
from .batching import bucket_by_length, pad_batch
from .cmvn import SpeakerNormalizer
from .config import FeatureConfig, SearchConfig, SpeechActivityConfig
from .errors import AsrCliError, format_problems
from .inputs import AUDIO, MANIFEST, STORE, require_kind
from .lm_tables import LanguageModelTables, search_tables
from .manifest import Utterance, load_manifest
from .model import ModelFile
from .results import Hypothesis, WordTiming
from .search import beam_search, greedy_hypotheses
from .speech_activity import SpeechDetector, frames_in_speech, silent_outputs
from .store import FeatureStore
from .text import Vocabulary


@dataclass(frozen=True)
class Source:
    """One utterance to recognise: frames of a store, or audio to compute them from."""

    id: str
    num_frames: int
    duration_s: float
    speaker: str | None = None
    store_position: int | None = None
    utterance: Utterance | None = None


def collect_sources(
    inputs: Sequence[str | Path], feature_config: FeatureConfig, skipped: list[str] | None = None
) -> tuple[list[Source], FeatureStore | None]:
    """The utterances of a feature store, of an audio manifest, or of audio files (ids: file names without
    extension), with the store they come from (None for audio). A store must hold `feature_config`'s features.
    Audio whose header cannot be read is an error listing every such file, or, given `skipped`, left out and
    listed there."""
    inputs, kinds = _kinds(inputs, skipped)
    if STORE in kinds or MANIFEST in kinds:
        if len(inputs) != 1:
            raise AsrCliError(
                "give one feature store, or one manifest, or audio files: not "
                + ", ".join(f"{path} ({kind})" for path, kind in zip(inputs, kinds))
            )
        if kinds[0] == STORE:
            return _store_sources(FeatureStore(inputs[0]), feature_config)
        utterances = load_manifest(inputs[0])
    else:
        utterances = [Utterance(Path(p).stem, str(Path(p).resolve())) for p in inputs]
        duplicated = sorted(
            utterance_id for utterance_id, count in Counter(u.id for u in utterances).items() if count > 1
        )
        if duplicated:
            raise AsrCliError(f"audio files with the same name would get the same id: {', '.join(duplicated)}")
    return _audio_sources(utterances, feature_config, skipped), None


def _kinds(inputs: Sequence[str | Path], skipped: list[str] | None) -> tuple[list, list[str]]:
    """(the inputs, their kinds); with `skipped`, files that are missing or no input of decoding's kinds are
    left out and listed there (as --skip-bad leaves out audio that cannot be read)."""
    kept, kinds = [], []
    for path in inputs:
        try:
            kinds.append(require_kind(path, (STORE, MANIFEST, AUDIO), "a decoding input"))
        except AsrCliError as error:
            if skipped is None or Path(path).is_dir():
                raise
            skipped.append(str(error))
            continue
        kept.append(path)
    return kept, kinds


def _store_sources(store: FeatureStore, feature_config: FeatureConfig) -> tuple[list[Source], FeatureStore | None]:
    differing = store.feature_config.differences(feature_config)
    if differing:
        theirs, ours = store.feature_config.identity(), feature_config.identity()
        listed = "; ".join(f"{name}: store {theirs[name]!r}, model {ours[name]!r}" for name in differing)
        raise AsrCliError(
            f"{store.path} was prepared with other features than the model was trained on ({listed}); "
            "prepare the store with the model's options, or decode the audio manifest directly"
        )
    sources = [Source(e.id, e.num_frames, e.duration, e.speaker, store_position=i) for i, e in enumerate(store)]
    return sources, store if sources else None


def _audio_sources(
    utterances: Sequence[Utterance], feature_config: FeatureConfig, skipped: list[str] | None
) -> list[Source]:
    """Sources of audio, their lengths read from the headers; every unreadable file is listed at once."""
    sources, problems = [], []
    for utterance in utterances:
        try:
            duration_s = max(usable_duration_s(utterance.audio, utterance.offset, utterance.duration), 0.0)
        except AudioError as error:
            problems.append(f"{utterance.id}: {error}")
            continue
        num_frames = feature_config.num_frames(int(duration_s * feature_config.sample_rate_hz))
        sources.append(Source(utterance.id, num_frames, duration_s, utterance.speaker, utterance=utterance))
    if problems and skipped is None:
        raise AsrCliError(format_problems(f"{len(problems)} input(s) cannot be read (--skip-bad leaves them out):",
                                          problems))  # fmt: skip
    if skipped is not None:
        skipped += problems
    return sources


FrameReader = Callable[[Source], np.ndarray]


def frame_reader(store: FeatureStore | None, model: ModelFile, encoder_path: str | Path | None = None) -> FrameReader:
    """Reads a source's (num_frames, dim) frames: a slice of the store, or the model's features of its audio
    (raises AudioError for audio that cannot be decoded). The feature pipeline is loaded on first use."""
    extractors = []

    def read(source: Source) -> np.ndarray:
        if source.store_position is not None:
            return store.features(source.store_position)
        if not extractors:
            extractors.append(model.feature_extractor(encoder_path))
        utterance = source.utterance
        samples, _ = load_audio(
            utterance.audio, model.feature_config.sample_rate_hz, utterance.offset, utterance.duration
        )
        return extractors[0]([samples])[0]

    return read


SpeechReader = Callable[[Source, np.ndarray], "np.ndarray | None"]


def speech_reader(config: SpeechActivityConfig, model: ModelFile) -> SpeechReader | None:
    """Where a source's speech is (speech_activity.py), from its frames as read (before normalisation) or, for
    a detector that needs the samples, from its audio (read again); None with --vad none (auto: none on a
    store, silero on audio when installed)."""
    if config.vad == "none":
        return None
    feature_config = model.feature_config
    detector = SpeechDetector(config, feature_config.kind, feature_config.sample_rate_hz)

    found: dict[str, np.ndarray | None] = {}  # by source id: the normaliser's first pass and the decoding share

    def speech(source: Source, frames: np.ndarray) -> np.ndarray | None:
        if source.id not in found:
            found[source.id] = detect(source, frames)
        return found[source.id]

    def detect(source: Source, frames: np.ndarray) -> np.ndarray | None:
        samples, has_audio = None, source.utterance is not None
        if has_audio and detector.needs_audio(detector.method(has_audio)):
            utterance = source.utterance
            samples, _ = load_audio(
                utterance.audio, feature_config.sample_rate_hz, utterance.offset, utterance.duration
            )
        return detector.mask(frames, samples, has_audio)

    return speech


def speech_part(frames: np.ndarray, speech: np.ndarray | None, frame_shift_s: float) -> np.ndarray | None:
    """The frames (every `frame_shift_s`) in speech, or None without a speech mask."""
    return None if speech is None else frames[frames_in_speech(speech, len(frames), frame_shift_s)]


def input_normalizer(
    model: ModelFile,
    sources: Sequence[Source],
    store: FeatureStore | None,
    read: FrameReader,
    speech: SpeechReader | None = None,
) -> SpeakerNormalizer | None:
    """How a model trained with per-speaker CMVN gets its input normalised (None: the model normalises
    itself): by the statistics the store keeps per speaker, or for audio by a first pass over the frames of
    each speaker the inputs name; utterances without a speaker by their own. With `speech` (a detector that
    is on), the first pass counts only the frames in speech, store or not: the model was trained on speech,
    and a speaker's statistics should not change with how much room noise their recordings hold."""
    if not model.config.speaker_cmvn:
        return None
    if store is not None and speech is None:
        return SpeakerNormalizer.of_stores([store])
    return SpeakerNormalizer.of_frames(_speakers_frames(sources, read, speech, model), model.feature_config.dim)


def _speakers_frames(
    sources: Sequence[Source], read: FrameReader, speech: SpeechReader | None, model: ModelFile
) -> Iterator[tuple[str, np.ndarray]]:
    frame_shift_s = model.feature_config.frame_shift_ms / 1000
    for source in sources:
        if source.speaker is not None:
            try:
                frames = read(source)
                mask = speech(source, frames) if speech is not None else None
            except AudioError:  # reported (or skipped) when it is decoded
                continue
            if mask is not None:
                frames = speech_part(frames, mask, frame_shift_s)
            if len(frames):
                yield source.speaker, frames


def source_batches(sources: Sequence[Source], batch_frames: int) -> list[list[int]]:
    """Indices of sources in batches of similar length within `batch_frames` padded input frames."""
    return bucket_by_length([source.num_frames for source in sources], batch_frames)


class Decoder:
    """A model file with its search: batches of frames in, hypotheses and their words out.

    The search's tables (LM, lexicon) are read once, here, unless given (`tables`: a cache's).
    """

    def __init__(
        self,
        model: ModelFile,
        search: SearchConfig = SearchConfig(),
        device: str | torch.device = "cpu",
        tables: LanguageModelTables | None = None,
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.search = search.resolved()
        self.device = torch.device(device)
        self.tables = (
            tables if tables is not None else search_tables(self.search, model.vocabulary, model.phones, verbose)
        )
        self.spoken_words = self.tables.spoken_words if self.tables is not None else None

    def hypotheses(
        self, features: Sequence[np.ndarray], speech: Sequence[np.ndarray | None] | None = None
    ) -> list[list[Hypothesis]]:
        """The n-best (or the greedy best) hypotheses of each utterance's (num_frames, dim) normalised frames.
        `speech` (speech_activity.py): per utterance, where speech is (one boolean per 10 ms) or None; output
        frames that cover none of it are certain blanks."""
        padded, lengths = pad_batch([torch.from_numpy(f) for f in features], torch.zeros(self.model.config.input_dim))
        with torch.no_grad():
            log_probs, output_lengths = self.model.model(padded.to(self.device), lengths)
        blank_only = torch.full(log_probs.shape[-1:], -torch.inf, dtype=log_probs.dtype, device=log_probs.device)
        blank_only[0] = 0.0  # certain blank: no label is written at a frame without speech
        for row, mask in enumerate(speech or []):
            if mask is not None:
                silent = silent_outputs(mask, int(output_lengths[row]), self.model.seconds_per_frame)
                log_probs[row, : len(silent)][torch.from_numpy(silent).to(log_probs.device)] = blank_only
        if self.search.is_greedy:
            return [[hypothesis] for hypothesis in greedy_hypotheses(log_probs, output_lengths)]
        log_probs = log_probs.cpu().numpy()
        return [
            beam_search(log_probs[row, : int(output_lengths[row])], self.model.vocabulary, self.search, self.tables)
            for row in range(len(features))
        ]

    def text(self, hypothesis: Hypothesis) -> str:
        return hypothesis_text(hypothesis.label_ids, self.model.vocabulary, self.spoken_words)

    def words(self, hypothesis: Hypothesis, duration_s: float) -> list[WordTiming]:
        """Its words with start/end seconds: from the output frame of a word's first unit to the end of its last
        one's, within `duration_s`."""
        return word_timings(
            hypothesis, self.model.vocabulary.characters, self.model.seconds_per_frame, duration_s, self.spoken_words
        )


def hypothesis_text(label_ids: Sequence[int], vocabulary: Vocabulary, spoken_words: dict[str, str] | None) -> str:
    """A labelling as text: its characters, or for a phone model the words its phone spellings write (a
    spelling outside the lexicon, possible only with an unlisted-word penalty, as its phone characters)."""
    words = vocabulary.decode(label_ids).split()
    if spoken_words is not None:
        words = [spoken_words.get(word, word) for word in words]
    return " ".join(words)


def word_timings(
    hypothesis: Hypothesis,
    characters: Sequence[str],
    seconds_per_frame: float,
    duration_s: float,
    spoken_words: dict[str, str] | None = None,
) -> list[WordTiming]:
    """Words of a hypothesis over a vocabulary's `characters` (label k is characters[k - 1]), each from its first
    unit's output frame to the end of its last unit's, clipped to `duration_s`."""
    words, current, first_frame, last_frame = [], [], 0, 0
    for label, frame in [*zip(hypothesis.label_ids, hypothesis.frames), (None, None)]:
        character = characters[label - 1] if label is not None else " "
        if character != " ":
            first_frame = frame if not current else first_frame
            current.append(character)
            last_frame = frame
            continue
        if current:
            start = min(first_frame * seconds_per_frame, duration_s)
            end = min((last_frame + 1) * seconds_per_frame, duration_s)
            word = "".join(current)
            word = spoken_words.get(word, word) if spoken_words is not None else word
            words.append(WordTiming(word, round(start, 3), round(max(end, start), 3)))
        current = []
    return words
