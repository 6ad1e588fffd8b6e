"""Training data: length-bucketed batches, DDP shares, padding, examples from stores, and the transforms a
training batch passes through (speaker normalisation, VTLP, SpecAugment), each alone and in a BatchDataset."""

import numpy as np
import pytest
import torch

from asr_cli.batching import bucket_by_length, pad_batch, padding_waste
from asr_cli.cmvn import SpeakerNormalizer
from asr_cli.config import FeatureConfig, NormalizeConfig, SpecAugmentConfig
from asr_cli.data import (
    BatchDataset,
    SpeakerNormalization,
    SpecAugment,
    Vtlp,
    apply_spec_augment,
    build_examples,
    epoch_batch_seeds,
    make_batches,
    rank_batches,
)
from asr_cli.store import FeatureStore
from asr_cli.text import Vocabulary


def test_batches_respect_the_budget_and_cover_every_example():
    lengths = np.random.default_rng(0).integers(100, 1000, size=300).tolist()
    batches = make_batches(lengths, 4000, seed=0, epoch=0)
    assert sorted(i for batch in batches for i in batch) == list(range(300))
    assert all(max(lengths[i] for i in batch) * len(batch) <= 4000 for batch in batches)
    assert batches == make_batches(lengths, 4000, seed=0, epoch=0)
    assert batches != make_batches(lengths, 4000, seed=0, epoch=1)
    assert padding_waste(batches, lengths) < 0.1
    assert make_batches([5000, 10], 4000, 0, 0, shuffle=False) == [[1], [0]]  # too long: a batch of its own


def test_every_epoch_trains_on_every_utterance_and_processes_stay_in_step():
    # Epochs pack into different numbers of batches; training once kept only epoch 0's count of them.
    lengths = np.random.default_rng(1).integers(100, 1000, size=300).tolist()
    counts = {len(make_batches(lengths, 4000, seed=0, epoch=epoch)) for epoch in range(20)}
    assert len(counts) > 1  # the case that lost utterances exists
    for epoch in range(20):
        batches = make_batches(lengths, 4000, seed=0, epoch=epoch)
        for world_size in (1, 2, 3):
            shares = [rank_batches(batches, rank, world_size) for rank in range(world_size)]
            assert len({len(share) for share in shares}) == 1
            covered = sorted(i for share in shares for batch in share for i in batch)
            assert covered == list(range(300))  # each utterance once: only splitting, no repeats needed here
            assert all(max(lengths[i] for i in batch) * len(batch) <= 4000 for share in shares for batch in share)
    assert rank_batches([[0], [1], [2]], 1, 2) == [[1], [1]]  # a short share of single utterances repeats one
    assert rank_batches([[0, 1]], 1, 2) == [[0, 1]]  # more processes than batches: each still steps
    assert rank_batches([], 0, 2) == []


def test_spec_augment_masks_within_limits_and_is_seeded():
    features = torch.randn(3, 200, 80)
    lengths = torch.tensor([200, 120, 50])
    fill = torch.full((80,), -7.0)
    config = SpecAugmentConfig(freq_masks=2, freq_width=10, time_masks=2, time_width=40)
    masked = apply_spec_augment(features, lengths, fill, config, torch.Generator().manual_seed(3))
    again = apply_spec_augment(features, lengths, fill, config, torch.Generator().manual_seed(3))
    assert torch.equal(masked, again)
    is_masked = masked == -7.0
    assert is_masked.any()
    bins_masked = is_masked.all(dim=1).sum(dim=1)  # bins masked over every frame
    assert (bins_masked <= 20).all()
    frames_masked = is_masked.all(dim=2).sum(dim=1)
    assert frames_masked[2] <= 2 * 10  # at most 20% of 50 frames per mask


def test_bucketing_in_length_order_fills_each_batch_to_the_budget():
    lengths = [30, 10, 20, 50, 40]
    assert bucket_by_length(lengths, 60) == [[1, 2], [0], [4], [3]]  # adding 0: 3 x 30 = 90 > 60
    assert make_batches(lengths, 60, 0, 0, shuffle=False) == bucket_by_length(lengths, 60)
    assert bucket_by_length(lengths, 100, order=[3, 4, 0, 1, 2]) == [[3, 4], [0, 1, 2]]  # the order given is kept
    assert bucket_by_length([], 10) == []


def test_padding_fills_past_each_utterance_and_keeps_at_least_one_frame():
    fill = torch.tensor([7.0, -7.0])
    frames = [torch.ones(3, 2), torch.zeros(1, 2)]
    features, lengths = pad_batch(frames, fill)
    assert features.shape == (2, 3, 2) and lengths.tolist() == [3, 1]
    assert torch.equal(features[0], torch.ones(3, 2)) and torch.equal(features[1, 0], torch.zeros(2))
    assert torch.equal(features[1, 1:], fill.repeat(2, 1))
    empty, empty_lengths = pad_batch([torch.zeros(0, 2)], fill)  # too short for a frame: one padding frame
    assert empty.shape == (1, 1, 2) and empty_lengths.tolist() == [0]


def test_spec_augment_time_masks_stay_inside_each_utterance():
    features = torch.randn(4, 300, 20)
    lengths = torch.tensor([300, 120, 40, 7])
    fill = torch.full((20,), -9.0)
    config = SpecAugmentConfig(freq_masks=0, freq_width=0, time_masks=3, time_width=100)
    masked_any = torch.zeros(4, dtype=torch.bool)
    for seed in range(50):
        masked = apply_spec_augment(features, lengths, fill, config, torch.Generator().manual_seed(seed))
        for row, length in enumerate(lengths.tolist()):
            assert torch.equal(masked[row, length:], features[row, length:])  # padding is never a mask's
            frames_masked = int((masked[row, :length] == fill).all(dim=1).sum())
            assert frames_masked <= config.time_masks * int(config.max_time_fraction * length)
            masked_any[row] |= frames_masked > 0
    assert masked_any.all()


def test_examples_skip_utterances_too_short_for_their_labels(fixture_stores):
    store = FeatureStore(fixture_stores[0])
    texts = [entry.text for entry in store]
    vocabulary = Vocabulary.from_texts(texts)
    examples = build_examples([store], vocabulary, NormalizeConfig(), subsample=3, skip_oov=False)
    assert len(examples.examples) == len(store) and not any(examples.skipped.values())
    # At a frame rate 1/50 of the features', no utterance has an output frame per label: every one is left out.
    starved = build_examples([store], vocabulary, NormalizeConfig(), subsample=50, skip_oov=False)
    assert not starved.examples and sum(len(ids) for ids in starved.skipped.values()) == len(store)
    example = examples.examples[0]
    assert vocabulary.decode(example.labels) == texts[0].lower()
    assert example.num_frames == store.entry(example.position).num_frames


def _dataset(store: FeatureStore, examples, utterance_transforms=(), batch_transforms=()) -> BatchDataset:
    batches = [list(range(len(examples)))]
    return BatchDataset(
        [store],
        examples,
        batches,
        np.zeros(store.dim, np.float32),
        epoch_batch_seeds(0, 0, 1),
        utterance_transforms,
        batch_transforms,
    )


def _examples(store: FeatureStore):
    vocabulary = Vocabulary.from_texts(entry.text.lower() for entry in store)
    examples = build_examples([store], vocabulary, NormalizeConfig(), subsample=3, skip_oov=False).examples
    assert len(examples) == len(store) > 2
    return examples


def test_the_batch_the_model_sees_is_normalised_per_speaker(tiny_stores):
    store = FeatureStore(tiny_stores[0])
    examples = _examples(store)
    assert {e.speaker for e in examples} == {"0001"}
    plain = _dataset(store, examples)[0]
    normalised = _dataset(store, examples, [SpeakerNormalization(SpeakerNormalizer.of_stores([store]))])[0]
    lengths = normalised["lengths"]
    frames = torch.cat([normalised["features"][row, :length] for row, length in enumerate(lengths.tolist())])
    torch.testing.assert_close(frames.mean(dim=0), torch.zeros(store.dim), atol=1e-3, rtol=0)
    torch.testing.assert_close(frames.std(dim=0, unbiased=False), torch.ones(store.dim), atol=1e-3, rtol=0)
    assert plain["features"].mean().abs() > 1  # log-mel values: the transform did the normalising


def test_vtlp_in_a_batch_warps_each_utterance_by_its_own_seeded_factor(tiny_stores):
    store = FeatureStore(tiny_stores[0])
    examples = _examples(store)
    vtlp = Vtlp(store.feature_config, 0.1)
    warped = _dataset(store, examples, [vtlp])[0]
    again = _dataset(store, examples, [vtlp])[0]
    plain = _dataset(store, examples)[0]
    assert torch.equal(warped["features"], again["features"])
    generator = torch.Generator().manual_seed(epoch_batch_seeds(0, 0, 1)[0] + Vtlp.seed_offset)
    factors = 1 + 0.1 * (2 * torch.rand(len(examples), generator=generator) - 1)
    for row, (example, factor) in enumerate(zip(examples, factors.tolist())):
        expected = vtlp.warp(torch.from_numpy(store.features(example.position)), factor)
        torch.testing.assert_close(warped["features"][row, : example.num_frames], expected)
        assert not torch.equal(
            warped["features"][row, : example.num_frames], plain["features"][row, : example.num_frames]
        )


def test_spec_augment_in_a_batch_masks_spans_with_the_fill_inside_each_utterance(tiny_stores):
    store = FeatureStore(tiny_stores[0])
    examples = _examples(store)
    fill = torch.full((store.dim,), -99.0)
    augment = SpecAugment(SpecAugmentConfig(freq_masks=0, freq_width=0, time_masks=2, time_width=20), fill)
    batch = _dataset(store, examples, batch_transforms=[augment])[0]
    plain = _dataset(store, examples)[0]
    masked_frames = (batch["features"] == -99.0).all(dim=2)
    assert masked_frames.any()
    for row, length in enumerate(batch["lengths"].tolist()):
        assert torch.equal(batch["features"][row, length:], plain["features"][row, length:])
        unmasked = ~masked_frames[row]
        assert torch.equal(batch["features"][row][unmasked], plain["features"][row][unmasked])


def test_vtlp_needs_plain_filterbanks():
    with pytest.raises(ValueError, match="fbank"):
        Vtlp(FeatureConfig.for_kind("mfcc"), 0.1)
