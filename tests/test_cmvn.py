"""CMVN statistics and the one normalisation policy (cmvn.py): sums that add up across parts, and per-speaker
normalisation with its per-utterance fallback."""

import numpy as np

from asr_cli.cmvn import CmvnStats, SpeakerNormalizer, utterance_mean_and_std
from asr_cli.store import FeatureStore


def test_cmvn_stats_add_up_across_parts():
    rng = np.random.default_rng(0)
    frames = rng.normal(3.0, 2.0, size=(1000, 4))
    whole, first, second = CmvnStats.zeros(4), CmvnStats.zeros(4), CmvnStats.zeros(4)
    whole.accumulate(frames)
    first.accumulate(frames[:300])
    second.accumulate(frames[300:])
    combined = first + second
    assert combined.count == 1000
    np.testing.assert_allclose(combined.sum, whole.sum)
    mean, std = combined.mean_and_std()
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-4)
    assert CmvnStats.from_dict(combined.to_dict()).count == 1000


def test_speaker_cmvn_normalises_each_speaker_and_lone_utterances(tiny_stores):
    store = FeatureStore(tiny_stores[0])
    normalise = SpeakerNormalizer.of_stores([store])
    normalised = np.concatenate([normalise(store.features(i), entry.speaker) for i, entry in enumerate(store)])
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(normalised.std(axis=0), 1, atol=1e-3)
    alone = normalise(store.features(0), "a speaker the store does not know")
    np.testing.assert_allclose(alone.mean(axis=0), 0, atol=1e-3)
    assert not np.allclose(alone, normalised[: len(alone)])
    silence = np.full((20, store.dim), -15.9, np.float32)  # digital silence: constant log floor, finite result
    assert np.isfinite(normalise(silence, None)).all()
    assert utterance_mean_and_std(silence[:0])[1].tolist() == [1.0] * store.dim


def test_frames_of_one_speaker_accumulated_in_pieces_normalise_like_the_whole():
    rng = np.random.default_rng(1)
    pieces = [rng.normal(5.0, 3.0, size=(n, 6)).astype(np.float32) for n in (40, 7, 90)]
    normalise = SpeakerNormalizer.of_frames((("recording", piece) for piece in pieces), dim=6)
    whole = np.concatenate([normalise(piece, "recording") for piece in pieces])
    np.testing.assert_allclose(whole.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(whole.std(axis=0), 1, atol=1e-4)
    lone = normalise(pieces[1], None)  # no speaker: normalised by itself
    np.testing.assert_allclose(lone.mean(axis=0), 0, atol=1e-4)
    assert not np.allclose(lone, normalise(pieces[1], "recording"))
