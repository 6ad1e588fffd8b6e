"""The decode step: a model file and inputs (a feature store, an audio manifest, or audio files)
in, one JSON line per utterance out, optionally with n-best lists, word timings and a CTM file.

Utterances are decoded in batches of similar length; features for audio are
computed with the model's own feature configuration.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .audio import AudioError, load_audio, usable_duration_s
from .data import SpeakerCmvn, bucket_by_length, pad_batch
from .decode import Hypothesis, beam_search, greedy_hypotheses
from .lm_tables import (WORD_LM, LanguageModelTables, build_lm_tables, empty_lm_tables, restrict_to_lexicon,
    scorer_lm_tables, sequence_hash)
from .config import CHARACTER_UNITS, PHONE_UNITS, ConfigError, FeatureConfig, TranscribeConfig
from .errors import AsrCliError, format_problems
from .features import CmvnStats, FeatureExtractor
from .fileio import atomic_write, write_jsonl
from .lm import KenlmScorer, is_kenlm_binary, read_arpa
from .lexicon import Lexicon, PhoneSet, check_units, load_lexicon
from .manifest import Utterance, load_manifest
from .model import load_model_file, resolve_device
from .store import FeatureStore
from .report import log, progress_bar
from .text import Vocabulary
from .threads import ThreadGovernor

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".sph", ".opus", ".aiff", ".aif"}
COMPARED_FEATURE_FIELDS = ("kind", "sample_rate_hz", "num_mel_bins", "num_ceps", "deltas", "frame_shift_ms",
                           "frame_length_ms")



@dataclass(frozen=True)
class Source:
    """One utterance to decode: features from a store, or audio to featurise."""

    id: str
    num_frames: int
    duration_s: float
    store_position: int | None = None
    utterance: Utterance | None = None


def collect_sources(inputs: Sequence[Path], config: FeatureConfig) -> tuple[list[Source], FeatureStore | None]:
    """Sources of a feature store, an audio manifest, or audio files (ids: file names without extension)."""
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        store = FeatureStore(inputs[0])
        _check_feature_match(store.feature_config, config, store.path)
        sources = [Source(e.id, e.num_frames, e.duration, store_position=i) for i, e in enumerate(store)]
        return sources, None if not sources else store
    if len(inputs) == 1 and Path(inputs[0]).suffix == ".jsonl":
        utterances = load_manifest(inputs[0])
    else:
        unknown = [str(p) for p in inputs if Path(p).suffix.lower() not in AUDIO_SUFFIXES]
        if unknown:
            raise AsrCliError(f"not a feature store, a .jsonl manifest or an audio file: {', '.join(unknown)}")
        utterances = [Utterance(Path(p).stem, str(Path(p).resolve())) for p in inputs]
        duplicated = {utterance_id for utterance_id, count in Counter(u.id for u in utterances).items() if count > 1}
        if duplicated:
            raise AsrCliError(f"audio files with the same name would get the same id: {', '.join(sorted(duplicated))}")
    sources, problems = [], []
    for utterance in utterances:
        try:
            duration_s = max(usable_duration_s(utterance.audio, utterance.offset, utterance.duration), 0.0)
        except AudioError as error:
            problems.append(str(error))
            continue
        sources.append(Source(utterance.id, config.num_frames(int(duration_s * config.sample_rate_hz)), duration_s,
                              utterance=utterance))
    if problems:
        raise AsrCliError(format_problems(f"{len(problems)} input(s) cannot be read:", problems))
    return sources, None


def _check_feature_match(store_config: FeatureConfig, model_config: FeatureConfig, path: Path) -> None:
    differing = [f"{name}: store {getattr(store_config, name)!r}, model {getattr(model_config, name)!r}"
                 for name in COMPARED_FEATURE_FIELDS if getattr(store_config, name) != getattr(model_config, name)]
    if differing:
        raise AsrCliError(
            f"{path} was prepared with other features than the model was trained on ({'; '.join(differing)}); "
            "prepare the store with the model's options, or decode the audio manifest directly"
        )


def decode_inputs(model_path: str | Path, inputs: Sequence[str | Path], output: str | Path,
               options: TranscribeConfig = TranscribeConfig(), ctm_path: str | Path | None = None) -> dict:
    """Decode every input utterance into `output` (JSONL, in input order); returns a summary.

    A CTM file needs word timings, so asking for one turns them on.
    """
    if ctm_path is not None and not options.timestamps:
        options = dataclasses.replace(options, timestamps=True)
    searching = options.lm_path is not None or options.lexicon_path is not None
    options = dataclasses.replace(options, search=options.search.with_beam(searching))
    device = resolve_device(options.device)
    loaded = load_model_file(model_path, device)
    model, feature_config, vocabulary = loaded.model, loaded.feature_config, loaded.vocabulary
    governor = ThreadGovernor(options.threads)
    phones = PhoneSet(model.config.phones) if model.config.units == "phones" else None
    lm_tables = search_tables(options, vocabulary, phones, verbose=True)
    sources, store = collect_sources([Path(p) for p in inputs], feature_config)
    if not sources:
        raise AsrCliError("nothing to decode: the inputs hold no utterances")
    extractor = FeatureExtractor(feature_config)
    speaker_cmvn = _speaker_cmvn(sources, store, extractor, feature_config) if model.config.cmvn == "speaker" else None
    seconds_per_frame = model.config.subsample * feature_config.frame_shift_ms / 1000
    results: dict[int, dict] = {}
    warnings, skipped = [], []
    with progress_bar(len(sources), "decode", options.show_progress, unit="utt") as bar:
        for batch in bucket_by_length([source.num_frames for source in sources], options.batch_frames):
            governor.update()
            bar.update(len(batch))
            batch, features = _batch_features(batch, sources, store, extractor, feature_config, options, skipped)
            if speaker_cmvn is not None:
                features = [speaker_cmvn(0, _speaker(sources[i], store), f) for i, f in zip(batch, features)]
            decoded = _decode_batch(model, features, vocabulary, options, lm_tables, device) if batch else []
            for index, utterance_features, hypotheses in zip(batch, features, decoded):
                if utterance_features.shape[0] == 0:
                    warnings.append(f"{sources[index].id}: shorter than one frame; its hypothesis is empty")
                results[index] = _result(sources[index], hypotheses, vocabulary, seconds_per_frame, options,
                                         lm_tables.spoken_words if lm_tables is not None else None)
    for warning in warnings + [f"left out (--skip-bad): {problem}" for problem in skipped]:
        log.warning(warning)
    ordered = [results[index] for index in range(len(sources)) if index in results]
    write_jsonl(output, ordered)
    if ctm_path is not None:
        write_ctm(ctm_path, ordered)
    summary = {"utterances": len(ordered), "output": str(output), "warnings": len(warnings), "skipped": skipped}
    if lm_tables is not None and lm_tables.lm_tokens:
        summary["lm_oov_rate"] = lm_tables.oov_rate
    return summary


def _load_lm(options: TranscribeConfig, vocabulary: Vocabulary, spellings: dict[str, list[str]] | None = None,
             verbose: bool = True) -> LanguageModelTables:
    tables = _lm_tables(options, vocabulary, spellings)
    if not verbose:
        return tables
    if is_kenlm_binary(options.lm_path):  # its vocabulary cannot be listed
        log.info(f"LM {options.lm_path}: KenLM binary, order {tables.arrays.order} (no OOV rate, no look-ahead for unfinished "
                 "words: pass the ARPA file for those)")
        return tables
    what = "words" if options.lm_unit == "word" else "tokens"
    cannot = ("have no pronunciation in the lexicon" if spellings is not None
              else "use characters the model cannot produce")
    log.info(f"LM {options.lm_path}: {len(tables.lm_tokens):,} {what}; {100 * tables.oov_rate:.1f}% of them {cannot}"
             + (f" (e.g. {', '.join(tables.unreachable[:5])})" if tables.unreachable else ""))
    if tables.unmodelled:
        log.warning(f"the character LM has no probability for model characters {tables.unmodelled!r}")
    if not tables.lm_tokens:
        raise AsrCliError(f"{options.lm_path}: the LM has no {what} besides <s>, </s> and <unk>")
    if tables.oov_rate > 0.5:
        log.warning("most of the LM's vocabulary is out of reach of the model: was it built on other text "
                    "or with other normalisation?")
    return tables


def search_tables(options: TranscribeConfig, vocabulary: Vocabulary, phones: PhoneSet | None = None,
                  verbose: bool = False) -> LanguageModelTables | None:
    """The LM and the lexicon of `options` as search tables; None for a plain search.

    A phone model (`phones`) needs a lexicon: it spells the LM's words and the output words in phones.
    """
    if phones is not None and options.lexicon_path is None:
        raise AsrCliError("this is a phone model: it writes words through a pronunciation lexicon; give --lexicon "
                          "(a Kaldi lexicon.txt, or cmudict)")
    lexicon = None
    if options.lexicon_path is not None:
        lexicon = load_lexicon(options.lexicon_path, PHONE_UNITS if phones is not None else CHARACTER_UNITS)
        lexicon = _in_phone_characters(lexicon, phones) if phones is not None else lexicon
        check_units(lexicon, set(vocabulary.characters))
    spellings = ({word: ["".join(units) for units in forms] for word, forms in lexicon.pronunciations.items()}
                 if phones is not None else None)
    lm_tables = _load_lm(options, vocabulary, spellings, verbose) if options.lm_path is not None else None
    if lexicon is None:
        return lm_tables
    lm_words = set(lm_tables.lm_tokens) if lm_tables is not None and lm_tables.arrays.mode == WORD_LM else set()
    if lm_words and not lm_words & set(lexicon.words):
        raise AsrCliError(f"{options.lexicon_path} shares no word with the LM {options.lm_path}: were they written "
                          "for the same language, with the same normalisation?")
    if verbose:
        unknown = f"; {len(set(lexicon.words) - lm_words):,} of them unknown to the LM" if lm_words else ""
        log.info(f"lexicon {options.lexicon_path}: {len(lexicon.words):,} words{unknown}")
    base = lm_tables if lm_tables is not None else empty_lm_tables(vocabulary.size)
    tables = restrict_to_lexicon(base, lexicon, vocabulary, options.search.oov_penalty)
    if phones is not None:
        tables = dataclasses.replace(tables, spoken_words=_spoken_words(lexicon, vocabulary, tables))
    return tables


def _in_phone_characters(lexicon: Lexicon, phones: PhoneSet) -> Lexicon:
    """The lexicon with each pronunciation spelt in the model's phone characters; refuses unknown phones."""
    unknown = {unit for forms in lexicon.pronunciations.values() for units in forms for unit in units} - set(phones.names)
    if unknown:
        raise AsrCliError(f"{lexicon.source} uses phones the model lacks: {', '.join(sorted(unknown)[:10])} (the "
                          f"model's: {' '.join(phones.names)})")
    spelled = Lexicon(source=lexicon.source)
    for word, forms in lexicon.pronunciations.items():
        for units in forms:
            spelled.add(word, tuple(phones.spell(units)))
    return spelled


def _spoken_words(lexicon: Lexicon, vocabulary: Vocabulary, tables: LanguageModelTables) -> dict[str, str]:
    """Phone spelling -> the word to write: the homophone the search scored (the LM's likelier one), else the
    first the lexicon lists."""
    spoken: dict[str, str] = {}
    for word, forms in lexicon.pronunciations.items():
        for units in forms:
            spelling = "".join(units)
            scored = tables.arrays.word_of_hash.get(sequence_hash(vocabulary.encode(spelling)), -1)
            if scored >= 0 and tables.lm_vocabulary is not None:
                spoken[spelling] = tables.lm_vocabulary[scored]
            else:
                spoken.setdefault(spelling, word)
    return spoken


def output_text(label_ids: Sequence[int], vocabulary: Vocabulary, spoken_words: dict[str, str] | None) -> str:
    """A hypothesis as text: its characters, or for a phone model the words its phone spellings write
    (a spelling outside the lexicon, possible only with an unlisted-word penalty, as its phone characters)."""
    words = vocabulary.decode(label_ids).split()
    if spoken_words is not None:
        words = [spoken_words.get(word, word) for word in words]
    return " ".join(words)


def _lm_tables(options: TranscribeConfig, vocabulary: Vocabulary,
               spellings: dict[str, list[str]] | None = None) -> LanguageModelTables:
    """The LM through the chosen backend: our ARPA reader, or KenLM (ARPA or binary files); `spellings` spell
    its words for a phone model (see `build_lm_tables`)."""
    binary = Path(options.lm_path).is_file() and is_kenlm_binary(options.lm_path)
    if spellings is not None and (options.lm_backend == "kenlm" or binary or options.lm_unit != "word"):
        raise AsrCliError("a phone model takes a word LM in ARPA form, read by the built-in reader (--lm-backend arpa)")
    if options.lm_backend == "arpa" or (options.lm_backend == "auto" and not binary):
        return build_lm_tables(read_arpa(options.lm_path), vocabulary, options.lm_unit, spellings)
    if options.lm_unit != "word":
        raise ConfigError("lm_backend", "{0} kenlm serves word LMs; read a character LM's ARPA file with {0} arpa")
    scorer = KenlmScorer(options.lm_path)
    return scorer_lm_tables(scorer, vocabulary, None if binary else read_arpa(options.lm_path, max_order=1))


def _speaker(source: Source, store: FeatureStore | None) -> str | None:
    return store.entry(source.store_position).speaker if source.store_position is not None else source.utterance.speaker


def _speaker_cmvn(sources: Sequence[Source], store: FeatureStore | None, extractor: FeatureExtractor,
                  config: FeatureConfig) -> SpeakerCmvn:
    """For a model trained with per-speaker CMVN: statistics of each speaker the inputs name (a store keeps
    them; audio takes a first pass over its features); utterances without a speaker are normalised alone."""
    if store is not None:
        return SpeakerCmvn.of_stores([store])
    stats: dict[str, CmvnStats] = {}
    for source in sources:
        if source.utterance.speaker is not None:
            try:
                frames = _features(source, None, extractor, config)
            except AudioError:  # reported (or skipped) when it is decoded
                continue
            stats.setdefault(source.utterance.speaker, CmvnStats.zeros(config.dim)).accumulate(frames)
    return SpeakerCmvn([{speaker: s for speaker, s in stats.items() if s.count > 0}])


def _batch_features(batch: list[int], sources: Sequence[Source], store: FeatureStore | None,
                    extractor: FeatureExtractor, config: FeatureConfig, options: TranscribeConfig,
                    skipped: list[str]) -> tuple[list[int], list[np.ndarray]]:
    """(the decodable sources of a batch, their features); audio that cannot be decoded (corrupt, NaN samples)
    is an error, or with `skip_bad` left out and listed in `skipped`."""
    kept, features = [], []
    for index in batch:
        try:
            features.append(_features(sources[index], store, extractor, config))
        except AudioError as error:
            if not options.skip_bad:
                raise AsrCliError(f"{sources[index].id}: {error}; pass --skip-bad to leave such inputs out") from error
            skipped.append(f"{sources[index].id}: {error}")
            continue
        kept.append(index)
    return kept, features


def _features(source: Source, store: FeatureStore | None, extractor: FeatureExtractor, config: FeatureConfig) -> np.ndarray:
    """Frames of a store entry, or of audio (AudioError if it cannot be decoded)."""
    if source.store_position is not None:
        return store.features(source.store_position)
    utterance = source.utterance
    samples, _ = load_audio(utterance.audio, config.sample_rate_hz, utterance.offset, utterance.duration)
    return extractor([samples])[0]


def _decode_batch(model, features: list[np.ndarray], vocabulary: Vocabulary, options: TranscribeConfig,
                  lm_tables: LanguageModelTables | None, device: torch.device) -> list[list[Hypothesis]]:
    padded, lengths = pad_batch([torch.from_numpy(f) for f in features], torch.zeros(model.config.input_dim))
    with torch.no_grad():
        log_probs, output_lengths = model(padded.to(device), lengths)
    if options.search.beam_size == 1 and lm_tables is None:
        return [[hypothesis] for hypothesis in greedy_hypotheses(log_probs, output_lengths)]
    log_probs = log_probs.cpu().numpy()
    return [beam_search(log_probs[row, : int(output_lengths[row])], vocabulary, options.search, lm_tables)
            for row in range(len(features))]


def _result(source: Source, hypotheses: list[Hypothesis], vocabulary: Vocabulary, seconds_per_frame: float,
            options: TranscribeConfig, spoken_words: dict[str, str] | None) -> dict:
    best = hypotheses[0]
    record = {"id": source.id, "text": output_text(best.label_ids, vocabulary, spoken_words), "score": _score(best)}
    if options.search.nbest > 1:
        record["nbest"] = [{"text": output_text(h.label_ids, vocabulary, spoken_words), "score": _score(h)}
                           for h in hypotheses]
    if options.timestamps:
        record["words"] = word_timings(best, vocabulary, seconds_per_frame, source.duration_s, spoken_words)
    return record


def _score(hypothesis: Hypothesis) -> float | None:
    """The rounded score; None (JSON null) for a lexicon search whose every path broke the lexicon."""
    return round(hypothesis.score, 4) if math.isfinite(hypothesis.score) else None


def word_timings(hypothesis: Hypothesis, vocabulary: Vocabulary, seconds_per_frame: float, duration_s: float,
                 spoken_words: dict[str, str] | None = None) -> list[dict]:
    """Words with start/end seconds: from the first character's frame to the end of the last one's."""
    words, current, first_frame, last_frame = [], [], 0, 0
    for label, frame in list(zip(hypothesis.label_ids, hypothesis.frames)) + [(None, None)]:
        character = vocabulary.characters[label - 1] if label is not None else " "
        if character == " ":
            if current:
                start = min(first_frame * seconds_per_frame, duration_s)
                end = min((last_frame + 1) * seconds_per_frame, duration_s)
                word = "".join(current)
                word = spoken_words.get(word, word) if spoken_words is not None else word
                words.append({"word": word, "start": round(start, 3), "end": round(max(end, start), 3)})
            current = []
            continue
        if not current:
            first_frame = frame
        current.append(character)
        last_frame = frame
    return words


def write_ctm(path: str | Path, records: list[dict]) -> None:
    """NIST CTM: `utterance channel start duration word`, one word per line."""
    with atomic_write(path) as handle:
        for record in records:
            for word in record.get("words", []):
                handle.write(f"{record['id']} 1 {word['start']:.3f} {word['end'] - word['start']:.3f} {word['word']}\n")
