import json
from pathlib import Path

import numpy as np
import pytest

from asr_cli.audio import load_audio
from asr_cli.config import FeatureConfig, PrepareConfig
from asr_cli.errors import AsrCliError
from asr_cli.features import FeatureExtractor
from asr_cli.manifest import Utterance, load_manifest, write_manifest
from asr_cli.prepare import change_speed, parse_speed_factors, prepare
from asr_cli.store import FeatureStore, combine_cmvn
from tests.helpers import SPEECHOCEAN, require, write_tone

QUIET = dict(show_progress=False)


def test_store_holds_what_was_computed(tmp_path: Path, small_manifest: Path):
    summary = prepare(small_manifest, tmp_path / "store", PrepareConfig(**QUIET))
    store = FeatureStore(tmp_path / "store")
    utterances = load_manifest(small_manifest)
    assert summary.num_utterances == len(store) == len(utterances) == 24
    assert [entry.id for entry in store] == [u.id for u in utterances]  # manifest order
    extractor = FeatureExtractor(store.feature_config)
    for position in (0, 5, 23):
        utterance = utterances[position]
        samples, _ = load_audio(utterance.audio)
        expected = extractor([samples])[0].astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(store.features(position), expected)
        np.testing.assert_array_equal(store.features(utterance.id), expected)
        entry = store.entry(utterance.id)
        assert (entry.text, entry.speaker) == (utterance.text, utterance.speaker)
        assert entry.duration == pytest.approx(len(samples) / 16000)
    assert store.features(0).dtype == np.float32
    cmvn = store.cmvn()
    assert cmvn.count == summary.num_frames == sum(entry.num_frames for entry in store)


def test_two_jobs_match_one_job_and_shards_combine(tmp_path: Path, small_manifest: Path):
    prepare(small_manifest, tmp_path / "one", PrepareConfig(**QUIET))
    prepare(small_manifest, tmp_path / "two", PrepareConfig(jobs=2, **QUIET))
    one, two = FeatureStore(tmp_path / "one"), FeatureStore(tmp_path / "two")
    assert len(two.metadata.array_frames) == 2
    assert [e.id for e in one] == [e.id for e in two]
    for entry in one:
        np.testing.assert_array_equal(one.features(entry.id), two.features(entry.id))
    shards = []
    for k in (1, 2, 3):
        prepare(small_manifest, tmp_path / f"shard{k}", PrepareConfig(shard_index=k, num_shards=3, **QUIET))
        shards.append(FeatureStore(tmp_path / f"shard{k}"))
    assert sorted(e.id for s in shards for e in s) == sorted(e.id for e in one)
    combined = combine_cmvn(shards)
    assert combined.count == one.cmvn().count
    np.testing.assert_allclose(combined.sum, one.cmvn().sum, rtol=1e-9)


def test_mfcc_with_deltas_in_float32(tmp_path: Path, small_manifest: Path):
    config = FeatureConfig.for_kind("mfcc", deltas=True)
    prepare(small_manifest, tmp_path / "s", PrepareConfig(feature_config=config, dtype="float32", **QUIET))
    store = FeatureStore(tmp_path / "s")
    assert store.dim == 39 and store.metadata.dtype == "float32"
    assert store.features(0).shape[1] == 39


def test_8k_audio_is_resampled_and_segments_are_cut(tmp_path: Path):
    write_tone(tmp_path / "a.wav", seconds=2.0, sample_rate_hz=8000)
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Utterance("whole", "a.wav"), Utterance("part", "a.wav", offset=0.5, duration=1.0)])
    prepare(manifest, tmp_path / "s", PrepareConfig(**QUIET))
    store = FeatureStore(tmp_path / "s")
    assert store.entry("whole").num_frames == FeatureConfig().num_frames(32000) == 198
    assert store.entry("part").num_frames == 98
    assert store.entry("part").duration == pytest.approx(1.0)


def test_existing_store_is_refused_unless_overwrite(tmp_path: Path, small_manifest: Path):
    prepare(small_manifest, tmp_path / "s", PrepareConfig(**QUIET))
    with pytest.raises(AsrCliError, match="already exists; pass --overwrite"):
        prepare(small_manifest, tmp_path / "s", PrepareConfig(**QUIET))
    prepare(small_manifest, tmp_path / "s", PrepareConfig(overwrite=True, dtype="float32", **QUIET))
    assert FeatureStore(tmp_path / "s").metadata.dtype == "float32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "small.jsonl"]


def _bad_manifest(tmp_path: Path) -> Path:
    """Two good utterances and one of each kind of bad input."""
    audio = tmp_path / "audio"
    audio.mkdir()
    write_tone(audio / "good1.wav")
    write_tone(audio / "good2.flac")
    write_tone(audio / "empty.wav", seconds=0.0)
    write_tone(audio / "tiny.wav", seconds=0.01)
    (audio / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    flac = (require(SPEECHOCEAN) / "audio/0001/000010011.flac").read_bytes()
    (audio / "truncated.flac").write_bytes(flac[: len(flac) // 2])  # header fine, body cut
    lines = [
        b'{"id": "good1", "audio": "audio/good1.wav", "text": "A"}',
        b'{"id": "missing", "audio": "audio/nope.wav"}',
        b'{"id": "corrupt", "audio": "audio/corrupt.wav"}',
        b'{"id": "empty", "audio": "audio/empty.wav"}',
        b'{"id": "tiny", "audio": "audio/tiny.wav"}',
        b'{"id": "truncated", "audio": "audio/truncated.flac"}',
        b'{"id": "good1", "audio": "audio/good2.flac"}',
        b'{"id": "broken", "audio": ',
        b'{"id": "latin1", "audio": "audio/good2.flac", "text": "caf\xe9"}',
        b'{"id": "noaudio"}',
        b'{"id": "good2", "audio": "audio/good2.flac", "text": "B"}',
    ]
    manifest = tmp_path / "bad.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    return manifest


EXPECTED_HEADER_PROBLEMS = [
    "line 7: duplicate id 'good1'",
    "line 8: malformed JSON",
    "line 9: not valid UTF-8",
    "line 10: missing required field(s): audio",
    "missing: ",
    "corrupt: ",
    "empty: ",
    "tiny: ",
]


def test_bad_input_fails_before_writing_and_lists_every_item(tmp_path: Path):
    manifest = _bad_manifest(tmp_path)
    with pytest.raises(AsrCliError) as raised:
        prepare(manifest, tmp_path / "store", PrepareConfig(**QUIET))
    message = str(raised.value)
    assert "8 bad item(s); nothing was written" in message and "--skip-bad" in message
    for expected in EXPECTED_HEADER_PROBLEMS:
        assert expected in message
    assert "file not found" in message and "zero-length audio" in message and "shorter than one 25 ms frame" in message
    assert not (tmp_path / "store").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".store")]


def test_audio_corrupt_past_its_header_fails_without_a_store(tmp_path: Path):
    manifest = tmp_path / "m.jsonl"
    write_tone(tmp_path / "ok.wav")
    flac = (require(SPEECHOCEAN) / "audio/0001/000010011.flac").read_bytes()
    (tmp_path / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    write_manifest(manifest, [Utterance("ok", "ok.wav"), Utterance("truncated", "truncated.flac")])
    for jobs in (1, 2):
        with pytest.raises(AsrCliError, match=r"1 bad item\(s\); the store was not written(.|\n)*truncated: .*corrupt"):
            prepare(manifest, tmp_path / "store", PrepareConfig(jobs=jobs, **QUIET))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl", "ok.wav", "truncated.flac"]


def test_skip_bad_writes_the_good_and_records_the_bad(tmp_path: Path):
    manifest = _bad_manifest(tmp_path)
    summary = prepare(manifest, tmp_path / "store", PrepareConfig(skip_bad=True, jobs=2, **QUIET))
    store = FeatureStore(tmp_path / "store")
    assert [entry.id for entry in store] == ["good1", "good2"]
    skipped = [f"{item['item']}: {item['reason']}" for item in store.metadata.skipped]
    assert len(skipped) == len(summary.skipped) == 9
    for expected in EXPECTED_HEADER_PROBLEMS + ["truncated: "]:
        assert any(line.startswith(expected) for line in skipped), expected
    assert "skipped: 9" in summary.describe()
    on_disk = json.loads((tmp_path / "store" / "store.json").read_text())
    assert on_disk["num_utterances"] == 2


def test_nothing_usable_is_an_error(tmp_path: Path):
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Utterance("x", "missing.wav")])
    with pytest.raises(AsrCliError, match="no usable utterances"):
        prepare(manifest, tmp_path / "s", PrepareConfig(skip_bad=True, **QUIET))


def test_bad_options_are_refused():
    with pytest.raises(AsrCliError, match="jobs must be at least 1"):
        PrepareConfig(jobs=0)
    with pytest.raises(AsrCliError, match="shard_index 3/2"):
        PrepareConfig(shard_index=3, num_shards=2)
    with pytest.raises(AsrCliError, match="dtype must be one of"):
        PrepareConfig(dtype="int8")
    with pytest.raises(AsrCliError, match="distinct"):
        PrepareConfig(speed_factors=(1.0, 1.0))
    with pytest.raises(AsrCliError, match="outside"):
        PrepareConfig(speed_factors=(0.9, 2.5))
    with pytest.raises(AsrCliError, match="comma-separated"):
        parse_speed_factors("0.9;1.1")
    assert parse_speed_factors("0.9,1.0,1.1") == (0.9, 1.0, 1.1)


def test_change_speed_scales_duration_and_pitch():
    sample_rate_hz = 16000
    t = np.arange(sample_rate_hz) / sample_rate_hz
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    for factor in (0.9, 1.1):
        changed = change_speed(tone, factor, sample_rate_hz)
        assert len(changed) == pytest.approx(len(tone) / factor, abs=2)
        spectrum = np.abs(np.fft.rfft(changed * np.hanning(len(changed))))
        peak_hz = np.argmax(spectrum) * sample_rate_hz / len(changed)
        assert peak_hz == pytest.approx(200 * factor, abs=2)
    assert change_speed(tone, 1.0, sample_rate_hz) is tone


def test_speed_perturbation_adds_named_copies_next_to_each_original(tmp_path: Path, small_manifest: Path):
    utterances = load_manifest(small_manifest)[:4]
    manifest = tmp_path / "four.jsonl"
    write_manifest(manifest, utterances)
    prepare(manifest, tmp_path / "plain", PrepareConfig(**QUIET))
    plain = FeatureStore(tmp_path / "plain")
    options = PrepareConfig(speed_factors=(0.9, 1.0, 1.1), jobs=2, **QUIET)
    summary = prepare(manifest, tmp_path / "sp", options)
    store = FeatureStore(tmp_path / "sp")
    assert summary.num_utterances == len(store) == 12
    expected_ids = [name for u in utterances for name in (f"sp0.9-{u.id}", u.id, f"sp1.1-{u.id}")]
    assert [entry.id for entry in store] == expected_ids
    for utterance in utterances:
        original = store.entry(utterance.id)
        np.testing.assert_array_equal(store.features(utterance.id), plain.features(utterance.id))
        for factor in (0.9, 1.1):
            copy = store.entry(f"sp{factor:g}-{utterance.id}")
            assert (copy.text, copy.speaker) == (utterance.text, f"sp{factor:g}-{utterance.speaker}")
            assert copy.duration == pytest.approx(original.duration / factor, abs=1e-3)
            assert copy.num_frames == pytest.approx(original.num_frames / factor, abs=2)
    assert store.metadata.speed_factors == [0.9, 1.0, 1.1]


@pytest.mark.slow
def test_whole_speechocean_train(tmp_path: Path, speechocean_utterances):
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, speechocean_utterances)
    summary = prepare(manifest, tmp_path / "store", PrepareConfig(jobs=2, **QUIET))
    store = FeatureStore(tmp_path / "store")
    assert summary.num_utterances == len(store) == 2500
    assert summary.duration_s / 3600 == pytest.approx(2.88, abs=0.01)
    config = store.feature_config
    for entry in store:
        assert entry.num_frames == config.num_frames(round(entry.duration * config.sample_rate_hz))
    extractor = FeatureExtractor(config)
    rng = np.random.default_rng(0)
    for position in rng.choice(len(store), size=10, replace=False):
        utterance = speechocean_utterances[position]
        expected = extractor([load_audio(utterance.audio)[0]])[0].astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(store.features(utterance.id), expected)
