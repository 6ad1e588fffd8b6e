"""Training for silence and noise: noise around, between and under the words, from three sources."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr_cli.config import ConfigError, FeatureConfig, NoiseConfig, NormalizeConfig, TrainConfig, parse_snr_range
from asr_cli.data import BatchDataset, build_examples, epoch_batch_seeds
from asr_cli.errors import AsrCliError
from asr_cli.noise import NoiseAugment, corpus_quiet_frames, frame_energies, noise_pool, require_filterbank
from asr_cli.store import FeatureStore
from asr_cli.text import Vocabulary
from tests.helpers import refused

FEATURES = FeatureConfig()
FRAME_SHIFT_S = 0.01


def utterance(num_frames: int = 200, seed: int = 0) -> torch.Tensor:
    """Speech-like log-mel frames: loud in the middle, a quiet floor at the edges and in a gap."""
    rng = np.random.default_rng(seed)
    level = np.full(num_frames, 2.0)
    level[20:90] = level[110:180] = 9.0
    return torch.from_numpy((level[:, None] + 0.3 * rng.standard_normal((num_frames, FEATURES.dim))).astype(np.float32))


def quiet_pool(num_frames: int = 500) -> np.ndarray:
    return (np.random.default_rng(1).standard_normal((num_frames, FEATURES.dim)) * 0.3 - 4.0).astype(np.float32)


def is_subsequence(inner: torch.Tensor, outer: torch.Tensor) -> bool:
    """Every frame of `inner` appears in `outer`, in order."""
    position = 0
    for frame in inner:
        while position < len(outer) and not torch.equal(outer[position], frame):
            position += 1
        if position == len(outer):
            return False
        position += 1
    return True


def test_edges_and_pauses_keep_the_words_in_order_and_sit_at_the_floor():
    config = NoiseConfig(noise_edges_s=1.0, noise_pauses_s=0.5, noise_probability=1.0)
    augment = NoiseAugment(config, quiet_pool(), FRAME_SHIFT_S)
    frames = utterance()
    lengths = []
    for seed in range(20):
        augmented = augment.augment(frames, torch.Generator().manual_seed(seed))
        assert is_subsequence(frames, augmented)
        added = len(augmented) - len(frames)
        assert 0 <= added <= 2 * 100 + 3 * 50
        lengths.append(added)
        # What was inserted is at the utterance's own floor, not the pool's (-4 + log(80) ~ 0.4).
        extra = augmented[[not any(torch.equal(row, frame) for frame in frames) for row in augmented]]
        if len(extra):
            floor = torch.quantile(frame_energies(frames), 0.1)
            assert abs(float(frame_energies(extra).mean() - floor)) < 0.5
    assert max(lengths) > 100 and len(set(lengths)) > 10  # random lengths, often long ones


def test_noise_under_the_utterance_is_at_the_drawn_snr():
    config = NoiseConfig(noise_snr_db=(10.0, 10.0), noise_probability=1.0)
    augment = NoiseAugment(config, quiet_pool(), FRAME_SHIFT_S)
    frames = utterance()
    augmented = augment.augment(frames, torch.Generator().manual_seed(0))
    assert augmented.shape == frames.shape
    noise_power = (augmented.double().exp() - frames.double().exp()).sum(dim=1).mean()
    energies = frame_energies(frames).double()
    speech_power = energies[energies >= energies.median()].exp().mean()
    assert 10 * torch.log10(speech_power / noise_power) == pytest.approx(10.0, abs=0.5)


def test_the_transform_is_seeded_and_leaves_unchosen_utterances_alone():
    config = NoiseConfig(noise_edges_s=0.5, noise_probability=0.5)
    augment = NoiseAugment(config, quiet_pool(), FRAME_SHIFT_S)
    batch = [utterance(seed=seed) for seed in range(16)]
    first = augment(batch, [None] * 16, torch.Generator().manual_seed(3))
    again = augment(batch, [None] * 16, torch.Generator().manual_seed(3))
    other = augment(batch, [None] * 16, torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(a.shape != b.shape for a, b in zip(first, other))
    unchanged = sum(torch.equal(a, b) for a, b in zip(first, batch))
    assert 2 <= unchanged <= 14  # about half chosen


def test_the_batch_the_model_sees_has_noise_from_other_recordings(tiny_stores):
    store = FeatureStore(tiny_stores[0])
    pool = corpus_quiet_frames([store], seed=0)
    assert 0 < len(pool) < sum(e.num_frames for e in store) / 5  # the quietest tenth of each utterance
    vocabulary = Vocabulary.from_texts(entry.text.lower() for entry in store)
    examples = build_examples([store], vocabulary, NormalizeConfig(), subsample=3, skip_oov=False).examples
    augment = NoiseAugment(NoiseConfig(noise_edges_s=2.0, noise_probability=1.0), pool, FRAME_SHIFT_S)
    batches = [list(range(len(examples)))]
    seeds = epoch_batch_seeds(0, 0, 1)
    zeros = np.zeros(store.dim, np.float32)
    plain = BatchDataset([store], examples, batches, zeros, seeds)[0]
    noisy = BatchDataset([store], examples, batches, zeros, seeds, [augment])[0]
    assert (noisy["lengths"] > plain["lengths"]).sum() >= len(examples) - 1
    assert torch.equal(noisy["targets"], plain["targets"])  # noise says nothing


def test_coloured_noise_and_a_folder_of_recordings_at_another_rate(tmp_path: Path):
    coloured = noise_pool(NoiseConfig(noise_source="coloured"), [], FEATURES, seed=0)
    assert coloured.shape[1] == FEATURES.dim and len(coloured) > 5000 and np.isfinite(coloured).all()
    folder = tmp_path / "noise"
    folder.mkdir()
    rng = np.random.default_rng(0)
    soundfile.write(folder / "fan.wav", 0.05 * rng.standard_normal(8000 * 2), 8000)  # 8 kHz: resampled
    soundfile.write(folder / "hum.flac", 0.05 * rng.standard_normal(16000), 16000)
    pool = noise_pool(NoiseConfig(noise_source=str(folder)), [], FEATURES, seed=0)
    assert pool.shape[1] == FEATURES.dim and abs(len(pool) - 300) < 10  # 2 s + 1 s of frames


def test_bad_noise_folders_are_named(tmp_path: Path):
    with pytest.raises(AsrCliError, match="no such folder"):
        noise_pool(NoiseConfig(noise_source=str(tmp_path / "missing")), [], FEATURES, seed=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AsrCliError, match="holds no files"):
        noise_pool(NoiseConfig(noise_source=str(empty)), [], FEATURES, seed=0)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    soundfile.write(mixed / "fan.wav", np.zeros(16000), 16000)
    (mixed / "notes.txt").write_text("recorded in the kitchen\n")
    with pytest.raises(AsrCliError, match="notes.txt"):
        noise_pool(NoiseConfig(noise_source=str(mixed)), [], FEATURES, seed=0)


def test_snr_ranges_and_other_options_are_checked():
    assert parse_snr_range("5:30") == (5.0, 30.0) and parse_snr_range("20") == (20.0, 20.0)
    for text in ("30:5", "loud", "5:", "1:2:3", "nan:5"):
        with pytest.raises(ConfigError, match="noise_snr_db"):
            parse_snr_range(text)
    with pytest.raises(ConfigError, match="noise_probability"):
        NoiseConfig(noise_probability=1.5)
    with pytest.raises(ConfigError, match="noise_edges_s"):
        NoiseConfig(noise_edges_s=-1)
    with pytest.raises(ConfigError, match="noise_edges_s"):
        require_filterbank(FeatureConfig(kind="mfcc"))
    assert not NoiseConfig().enabled and NoiseConfig(noise_edges_s=1).enabled
    saved = TrainConfig(noise=NoiseConfig(noise_snr_db=(5.0, 30.0)))
    assert TrainConfig.from_dict(json.loads(json.dumps(saved.to_dict()))) == saved


def test_the_cli_refuses_an_inverted_snr_range_naming_the_option(tmp_path: Path):
    refused("train", "--train", tmp_path / "t", "--valid", tmp_path / "v", "-o", tmp_path / "exp",
            "--noise-snr-db", "30:5", names="--noise-snr-db")  # fmt: skip


def test_training_with_noise_records_it_and_runs(tmp_path: Path, tiny_stores):
    from asr_cli.config import ModelConfig
    from asr_cli.train import train

    noise = NoiseConfig(noise_edges_s=0.5, noise_pauses_s=0.3, noise_snr_db=(10.0, 30.0))
    config = TrainConfig(epochs=1, batch_frames=1500, warmup_steps=2, num_workers=0, noise=noise)
    train([tiny_stores[0]], tiny_stores[1], tmp_path / "exp", ModelConfig(num_layers=1, hidden_size=16), config,
          show_progress=False)  # fmt: skip
    saved = json.loads((tmp_path / "exp" / "config.json").read_text())["train_config"]["noise"]
    assert saved["noise_edges_s"] == 0.5 and saved["noise_snr_db"] == [10.0, 30.0]
