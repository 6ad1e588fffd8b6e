"""The inference core (inference.py): sources, frames, the normalisation policy, the decoder, word times."""

import json
from pathlib import Path

import numpy as np
import pytest

from asr_cli.errors import AsrCliError
from asr_cli.inference import Decoder, collect_sources, frame_reader, input_normalizer, word_timings
from asr_cli.manifest import write_manifest
from asr_cli.model import load_model_file
from asr_cli.results import Hypothesis, WordTiming
from asr_cli.store import FeatureStore
from tests.helpers import write_tone

CHARACTERS = ("a", "b", " ")  # labels 1, 2, 3


def test_word_times_of_a_known_hypothesis():
    """Each word runs from its first unit's output frame to the end of its last unit's, in seconds."""
    hypothesis = Hypothesis(label_ids=[1, 2, 3, 2, 2, 3, 1], frames=[2, 4, 6, 10, 12, 15, 20], score=-1.0)
    words = word_timings(hypothesis, CHARACTERS, seconds_per_frame=0.03, duration_s=0.62)
    assert words == [WordTiming("ab", 0.06, 0.15), WordTiming("bb", 0.3, 0.39), WordTiming("a", 0.6, 0.62)]
    spoken = word_timings(hypothesis, CHARACTERS, 0.03, 10.0, spoken_words={"bb": "bee"})
    assert [w.word for w in spoken] == ["ab", "bee", "a"] and spoken[2].end == 0.63
    assert word_timings(Hypothesis([], [], 0.0), CHARACTERS, 0.03, 1.0) == []


def test_sources_of_a_store_a_manifest_and_audio_files(
    tmp_path: Path, fixture_model: Path, fixture_stores, fixture_utterances
):
    model = load_model_file(fixture_model)
    store_sources, store = collect_sources([fixture_stores[1]], model.feature_config)
    assert [s.id for s in store_sources] == [e.id for e in FeatureStore(fixture_stores[1])] and store is not None
    write_manifest(tmp_path / "dev.jsonl", fixture_utterances[1])
    manifest_sources, none = collect_sources([tmp_path / "dev.jsonl"], model.feature_config)
    assert none is None and [s.num_frames for s in manifest_sources] == [s.num_frames for s in store_sources]
    assert [s.speaker for s in manifest_sources] == [s.speaker for s in store_sources]
    audio = [Path(u.audio) for u in fixture_utterances[1]]
    file_sources, _ = collect_sources(audio, model.feature_config)
    assert [s.id for s in file_sources] == [p.stem for p in audio]
    read = frame_reader(store, model)
    for from_store, from_audio in zip(store_sources, manifest_sources):
        np.testing.assert_allclose(read(from_audio), read(from_store), atol=0.02, rtol=0.002)  # float16 storage


def test_a_store_and_audio_together_are_refused_by_what_they_are(tmp_path: Path, fixture_model: Path, fixture_stores):
    write_tone(tmp_path / "tone.wav")
    model = load_model_file(fixture_model)
    with pytest.raises(AsrCliError, match=r"give one feature store.*\(store\).*tone.wav \(audio\)"):
        collect_sources([fixture_stores[1], tmp_path / "tone.wav"], model.feature_config)
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(AsrCliError, match="notes.txt is a text file, which cannot be a decoding input"):
        collect_sources([tmp_path / "notes.txt"], model.feature_config)


def test_the_normalisation_policy_follows_the_model(tmp_path: Path, fixture_model: Path, fixture_stores):
    model = load_model_file(fixture_model)
    sources, store = collect_sources([fixture_stores[1]], model.feature_config)
    assert not model.config.speaker_cmvn and input_normalizer(model, sources, store, frame_reader(store, model)) is None


def test_the_decoder_writes_what_decode_writes(tmp_path: Path, fixture_model: Path, fixture_stores):
    from asr_cli.config import DecodeConfig
    from asr_cli.decode import decode_inputs

    model = load_model_file(fixture_model)
    sources, store = collect_sources([fixture_stores[1]], model.feature_config)
    read = frame_reader(store, model)
    decoder = Decoder(model)
    texts = [decoder.text(decoder.hypotheses([read(source)])[0][0]) for source in sources]
    decode_inputs(fixture_model, [fixture_stores[1]], tmp_path / "hyp.jsonl", DecodeConfig(show_progress=False))
    assert texts == [json.loads(line)["text"] for line in (tmp_path / "hyp.jsonl").read_text().splitlines()]
