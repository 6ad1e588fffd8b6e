"""The `decode` step: a model file and inputs (a feature store, an audio manifest, or audio files) in, one JSON
line per utterance out (results.UtteranceResult), optionally with n-best lists, word timings and a CTM file.

A client of the inference core (inference.py): utterances are decoded in batches of similar length, from a
store's frames or from the model's own features of the audio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from .audio import AudioError
from .cmvn import OnlineNormalizer
from .config import ConfigError, DecodeConfig, StreamConfig
from .errors import AsrCliError
from .fileio import atomic_write, check_distinct_paths, write_jsonl
from .inference import (
    Decoder,
    Source,
    collect_sources,
    frame_reader,
    input_normalizer,
    source_batches,
    speech_part,
    speech_reader,
)
from .logs import log, progress_bar
from .model import load_model_file, resolve_device
from .results import UtteranceResult
from .signals import raise_if_stopped
from .stream import latency_controlled, online_cmvn
from .threads import ThreadGovernor
from .writers import ctm_lines


def decode_inputs(
    model_path: str | Path,
    inputs: Sequence[str | Path],
    output: str | Path,
    options: DecodeConfig = DecodeConfig(),
    ctm_path: str | Path | None = None,
) -> dict:
    """Decode every input utterance into `output` (JSONL, in input order); returns a summary.

    A CTM file needs word timings, so asking for one turns them on.
    """
    if ctm_path is not None and not options.timestamps:
        options = dataclasses.replace(options, timestamps=True)
    device = resolve_device(options.device)
    model = load_model_file(model_path, device)
    if options.chunk_s is not None or options.right_context_s is not None:
        model = latency_controlled(
            model, StreamConfig(chunk_s=options.chunk_s, right_context_s=options.right_context_s)
        )
    governor = ThreadGovernor(options.threads)
    decoder = Decoder(model, options.search, device, verbose=True)
    skipped: list[str] = []
    sources, store = collect_sources(list(inputs), model.feature_config, skipped if options.skip_bad else None)
    if not sources:
        raise AsrCliError("nothing to decode: the inputs hold no utterances"
                          + (f" that can be read ({len(skipped)} left out)" if skipped else ""))  # fmt: skip
    audio = [source.utterance.audio for source in sources if source.utterance is not None]
    check_distinct_paths(audio, [output, ctm_path])  # a manifest's audio is an input too
    read = frame_reader(store, model, options.encoder_path)
    speech = speech_reader(options.speech, model)
    normalize = (
        _online_normalizer(model) if options.online_cmvn else input_normalizer(model, sources, store, read, speech)
    )
    frame_shift_s = model.feature_config.frame_shift_ms / 1000
    results: dict[int, UtteranceResult] = {}
    warnings = []
    with progress_bar(len(sources), "decode", options.show_progress, unit="utt") as bar:
        for batch in source_batches(sources, options.batch_frames):
            raise_if_stopped()
            governor.update()
            bar.update(len(batch))
            batch, features = _read_batch(batch, sources, read, options.skip_bad, skipped)
            masks = [speech(sources[i], f) if speech is not None else None for i, f in zip(batch, features)]
            if normalize is not None:
                features = [normalize(f, sources[i].speaker, own=speech_part(f, m, frame_shift_s))
                            for i, f, m in zip(batch, features, masks)]  # fmt: skip
            decoded = decoder.hypotheses(features, masks) if batch else []
            for index, frames, hypotheses in zip(batch, features, decoded):
                if frames.shape[0] == 0:
                    warnings.append(f"{sources[index].id}: shorter than one frame; its hypothesis is empty")
                results[index] = _result(sources[index], hypotheses, decoder, options)
    for warning in warnings + [f"left out (--skip-bad): {problem}" for problem in skipped]:
        log.warning(warning)
    ordered = [results[index] for index in range(len(sources)) if index in results]
    write_jsonl(output, (result.to_record() for result in ordered))
    if ctm_path is not None:
        with atomic_write(ctm_path) as handle:
            handle.writelines(ctm_lines(result.id, result.words) for result in ordered)
    summary = {"utterances": len(ordered), "output": str(output), "warnings": len(warnings), "skipped": skipped}
    if decoder.tables is not None and decoder.tables.lm_tokens:
        summary["lm_oov_rate"] = decoder.tables.oov_rate
    return summary


def _online_normalizer(model) -> OnlineNormalizer:
    if not model.config.speaker_cmvn:
        raise ConfigError("online_cmvn", "{0} is for models trained per speaker (--cmvn speaker); this one holds its "
                          "training data's CMVN, which needs no future already")  # fmt: skip
    return OnlineNormalizer(online_cmvn(model))


def _read_batch(batch: list[int], sources: Sequence[Source], read, skip_bad: bool, skipped: list[str]):
    """(the decodable sources of a batch, their frames); audio that cannot be decoded (corrupt, NaN samples) is
    an error, or with `skip_bad` left out and listed in `skipped`."""
    kept, features = [], []
    for index in batch:
        try:
            features.append(read(sources[index]))
        except AudioError as error:
            if not skip_bad:
                raise AsrCliError(f"{sources[index].id}: {error}; pass --skip-bad to leave such inputs out") from error
            skipped.append(f"{sources[index].id}: {error}")
            continue
        kept.append(index)
    return kept, features


def _result(source: Source, hypotheses, decoder: Decoder, options: DecodeConfig) -> UtteranceResult:
    best = hypotheses[0]
    nbest = [(decoder.text(h), h.score) for h in hypotheses] if options.search.nbest > 1 else None
    words = decoder.words(best, source.duration_s) if options.timestamps else None
    return UtteranceResult(source.id, decoder.text(best), best.score, nbest, words)
