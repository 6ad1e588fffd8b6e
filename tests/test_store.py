"""The feature store: what prepare writes reads back exactly, by position and id; damage is named, never read."""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from asr_cli.cmvn import CmvnStats
from asr_cli.errors import AsrCliError
from asr_cli.store import INDEX_FILE, METADATA_FILE, ArrayWriter, FeatureStore, combine_cmvn


def test_entries_and_frames_by_position_and_id(fixture_stores, fixture_utterances):
    store = FeatureStore(fixture_stores[0])
    utterances = fixture_utterances[0]
    assert len(store) == len(utterances) and [entry.id for entry in store] == [u.id for u in utterances]
    for position, utterance in enumerate(utterances):
        entry = store.entry(utterance.id)
        assert entry == store.entry(position) and utterance.id in store
        assert (entry.text, entry.speaker) == (utterance.text, utterance.speaker)
        frames = store.features(utterance.id)
        assert frames.dtype == np.float32 and frames.shape == (entry.num_frames, store.dim) == (entry.num_frames, 80)
        assert entry.num_frames == store.feature_config.num_frames(int(round(utterance.duration * 16000)))
    with pytest.raises(KeyError, match="'nobody' is not in"):
        store.entry("nobody")


def test_cmvn_statistics_are_those_of_the_stored_frames(fixture_stores):
    store = FeatureStore(fixture_stores[0])
    frames = np.concatenate([store.features(i) for i in range(len(store))])
    mean, std = store.cmvn().mean_and_std()
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-3, atol=1e-3)
    per_speaker = store.speaker_cmvn()
    assert set(per_speaker) == {entry.speaker for entry in store}
    assert sum(stats.count for stats in per_speaker.values()) == store.cmvn().count == len(frames)


def test_combined_cmvn_weighs_stores_by_their_frames(fixture_stores):
    train, dev = FeatureStore(fixture_stores[0]), FeatureStore(fixture_stores[1])
    combined = combine_cmvn([train, dev])
    frames = np.concatenate([store.features(i) for store in (train, dev) for i in range(len(store))])
    assert combined.count == len(frames)
    np.testing.assert_allclose(combined.mean_and_std()[0], frames.mean(axis=0), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="no stores"):
        combine_cmvn([])


def test_a_store_survives_pickling_for_dataloader_workers(fixture_stores):
    store = FeatureStore(fixture_stores[1])
    store.features(0)  # memory maps open: they must not travel
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy.features(1), store.features(1))


def test_array_writer_refuses_the_wrong_shape_and_counts_what_it_stored(tmp_path: Path):
    writer = ArrayWriter(tmp_path, 0, dim=3, dtype="float16")
    start, stored = writer.append(np.full((4, 3), 1.0001, np.float32))
    assert start == 0 and stored.dtype == np.float16 and writer.num_frames == 4
    assert writer.append(np.zeros((2, 3), np.float32))[0] == 4
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        writer.append(np.zeros((2, 4), np.float32))
    writer.close()
    assert (tmp_path / "feats-000.bin").stat().st_size == 6 * 3 * 2
    assert writer.cmvn.count == 6 and isinstance(writer.cmvn, CmvnStats)


@pytest.fixture
def copy_of_store(tmp_path: Path, fixture_stores) -> Path:
    return Path(shutil.copytree(fixture_stores[1], tmp_path / "store"))


def test_damaged_metadata_index_and_arrays_are_named(copy_of_store: Path):
    index = copy_of_store / INDEX_FILE
    lines = index.read_text().splitlines()
    index.write_text("\n".join([lines[0], "{not json", *lines[2:]]) + "\n")
    with pytest.raises(AsrCliError, match=r"index.jsonl, line 2: damaged index entry"):
        FeatureStore(copy_of_store)
    record = json.loads(lines[1])
    index.write_text("\n".join([lines[0], json.dumps({**record, "start": 10**9}), *lines[2:]]) + "\n")
    with pytest.raises(AsrCliError, match=f"utterance {record['id']} points outside the arrays"):
        FeatureStore(copy_of_store)
    index.write_text("\n".join(lines) + "\n")
    (copy_of_store / METADATA_FILE).write_text('{"dtype": "float16"}')
    with pytest.raises(AsrCliError, match="damaged store metadata"):
        FeatureStore(copy_of_store)


def test_not_a_store(tmp_path: Path):
    with pytest.raises(AsrCliError, match="not a feature store"):
        FeatureStore(tmp_path)
