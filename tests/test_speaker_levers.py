"""Levers for speaker generalisation: per-speaker CMVN, VTLP and the convolutional front-end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_cli.cmvn import CmvnStats
from asr_cli.config import DecodeConfig, FeatureConfig, ModelConfig, SpeechActivityConfig, TrainConfig
from asr_cli.data import Vtlp
from asr_cli.decode import decode_inputs
from asr_cli.errors import AsrCliError
from asr_cli.features import FeatureExtractor, vtlp_source_bins
from asr_cli.manifest import Utterance
from asr_cli.model import AcousticModel, load_model_file, stack_and_subsample
from asr_cli.store import SPEAKER_CMVN_FILE, FeatureStore
from asr_cli.train import compute_loss, ctc_loss, train
from tests.helpers import make_store

TINY_TRAINING = TrainConfig(epochs=1, batch_frames=1500, warmup_steps=2, num_workers=0)


def by_speaker(store: FeatureStore) -> dict[str, np.ndarray]:
    frames: dict[str, list[np.ndarray]] = {}
    for position, entry in enumerate(store):
        frames.setdefault(entry.speaker, []).append(store.features(position))
    return {speaker: np.concatenate(arrays) for speaker, arrays in frames.items()}


def test_store_keeps_per_speaker_statistics_of_its_frames(tmp_path: Path, small_manifest: Path):
    from asr_cli.config import PrepareConfig
    from asr_cli.prepare import prepare

    prepare(small_manifest, tmp_path / "store", PrepareConfig(show_progress=False, jobs=2))
    store = FeatureStore(tmp_path / "store")
    kept = store.speaker_cmvn()
    frames = by_speaker(store)
    assert sorted(kept) == sorted(frames) and len(kept) == 2
    for speaker, stats in kept.items():  # shares of two workers add up to the speaker's frames
        mean, std = stats.mean_and_std()
        np.testing.assert_allclose(mean, frames[speaker].mean(axis=0), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(std, frames[speaker].std(axis=0), rtol=1e-4, atol=1e-4)
    total = sum(kept.values(), CmvnStats.zeros(store.dim))
    assert total.count == store.cmvn().count
    np.testing.assert_allclose(total.sum, store.cmvn().sum, rtol=1e-9)
    # A store written before the statistics were kept computes the same from its frames.
    (tmp_path / "store" / SPEAKER_CMVN_FILE).unlink()
    for speaker, stats in FeatureStore(tmp_path / "store").speaker_cmvn().items():
        np.testing.assert_allclose(stats.sum_sq, kept[speaker].sum_sq, rtol=1e-9)


def test_vtlp_moves_a_tone_where_a_warped_tone_lies():
    config = FeatureConfig()
    extractor = FeatureExtractor(config)
    t = np.arange(16000) / 16000

    def peak_bin(features: np.ndarray) -> float:
        return float(features.mean(axis=0).argmax())

    tone = extractor([0.5 * np.sin(2 * np.pi * 1000 * t)])[0]
    np.testing.assert_allclose(vtlp_source_bins(config, 1.0), np.arange(80), atol=1e-4)
    vtlp = Vtlp(config, 0.1)
    for factor in (0.9, 1.1):
        warped = vtlp.warp(torch.from_numpy(tone), factor).numpy()
        # The filter centred at f now reads f / factor: content at 1 kHz appears at factor x 1 kHz.
        expected = extractor([0.5 * np.sin(2 * np.pi * 1000 * factor * t)])[0]
        assert abs(peak_bin(warped) - peak_bin(expected)) <= 1
        assert peak_bin(warped) != peak_bin(tone)
    with pytest.raises(AsrCliError, match="fbank"):
        Vtlp(FeatureConfig.for_kind("mfcc"), 0.1)


@pytest.mark.parametrize("subsample", [2, 3, 4])
def test_conv_frontend_lengths_and_padding_invariance(subsample):
    torch.manual_seed(0)
    config = ModelConfig(
        num_layers=1,
        hidden_size=16,
        frontend="conv",
        conv_channels=4,
        subsample=subsample,
        input_dim=20,
        vocab_size=5,
        dropout=0.0,
    )
    model = AcousticModel(config).eval()
    lengths = torch.tensor([23, 9])
    features = torch.randn(2, 23, 20)
    with torch.no_grad():
        batch_log_probs, output_lengths = model(features, lengths)
        alone, alone_lengths = model(features[1:, :9], lengths[1:])
    assert output_lengths.tolist() == [math.ceil(23 / subsample), math.ceil(9 / subsample)]
    torch.testing.assert_close(batch_log_probs[1, : alone_lengths[0]], alone[0], atol=1e-5, rtol=0)


def test_bad_model_options_are_refused():
    with pytest.raises(ValueError, match="frontend must be one of stack, conv"):
        ModelConfig(frontend="transformer")
    with pytest.raises(ValueError, match="cmvn must be one of global, speaker"):
        ModelConfig(cmvn="utterance")
    with pytest.raises(ValueError, match="recurrent"):
        ModelConfig(architecture="dnn", frontend="conv")
    with pytest.raises(AsrCliError, match="vtlp_warp must be in"):
        TrainConfig(vtlp_warp=0.7)


def test_train_and_decode_with_speaker_cmvn_vtlp_and_conv(tmp_path: Path, tiny_stores, speechocean_utterances):
    train_store, valid_store = tiny_stores
    model_config = ModelConfig(num_layers=1, hidden_size=24, frontend="conv", conv_channels=4, cmvn="speaker")
    config = TrainConfig(epochs=1, batch_frames=1500, warmup_steps=2, num_workers=0, vtlp_warp=0.1)
    train([train_store], valid_store, tmp_path / "exp", model_config, config, show_progress=False)
    model = load_model_file(tmp_path / "exp" / "model.pt").model
    assert model.config.cmvn == "speaker" and model.config.frontend == "conv"
    assert model.cmvn_mean.abs().max() == 0 and (model.cmvn_std == 1).all()
    # The store keeps its speakers' statistics; a manifest with speakers gets them from a first pass: same result.
    valid_ids = {entry.id for entry in FeatureStore(valid_store)}
    manifest = tmp_path / "valid.jsonl"
    manifest.write_text("".join(json.dumps(u.to_dict()) + "\n" for u in speechocean_utterances if u.id in valid_ids))
    options = DecodeConfig(show_progress=False, speech=SpeechActivityConfig(vad="none"))  # every frame, both
    decode_inputs(tmp_path / "exp" / "model.pt", [valid_store], tmp_path / "from_store.jsonl", options)
    decode_inputs(tmp_path / "exp" / "model.pt", [manifest], tmp_path / "from_manifest.jsonl", options)
    from_store = [json.loads(line) for line in (tmp_path / "from_store.jsonl").read_text().splitlines()]
    from_manifest = [json.loads(line) for line in (tmp_path / "from_manifest.jsonl").read_text().splitlines()]
    assert [(r["id"], r["text"]) for r in from_store] == [(r["id"], r["text"]) for r in from_manifest]
    # Stores hold float16 frames, features from audio are float32: path scores (sums over hundreds of frames) agree
    # to a few parts per million.
    np.testing.assert_allclose([r["score"] for r in from_store], [r["score"] for r in from_manifest], rtol=1e-5)


def test_speaker_cmvn_needs_speakers_in_training(tmp_path: Path, speechocean_utterances, tiny_stores):
    anonymous = [Utterance(u.id, u.audio, u.text) for u in speechocean_utterances[:8]]
    store = make_store(tmp_path / "anonymous", anonymous)
    with pytest.raises(AsrCliError, match="without a speaker.*--cmvn global"):
        train(
            [store],
            tiny_stores[1],
            tmp_path / "exp",
            ModelConfig(num_layers=1, hidden_size=8, cmvn="speaker"),
            TINY_TRAINING,
            show_progress=False,
        )


def test_intermediate_ctc_reads_the_middle_layer_through_the_output_layer(tmp_path: Path, tiny_stores):
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(num_layers=2, hidden_size=8, input_dim=80, vocab_size=29, dropout=0.0)).eval()
    features, lengths = torch.randn(2, 30, 80), torch.tensor([30, 21])
    with torch.no_grad():
        log_probs, output_lengths, intermediate = model(features, lengths, intermediate_layer=1)
        padding = torch.arange(30)[None, :, None] >= lengths[:, None, None]
        hidden, _ = stack_and_subsample(features.masked_fill(padding, 0), lengths, 3, 3)  # CMVN is the identity
        first_layer = model.layers[0](hidden, output_lengths)
        torch.testing.assert_close(intermediate, model.output(first_layer).log_softmax(-1), atol=1e-6, rtol=0)
        torch.testing.assert_close(log_probs, model(features, lengths)[0])
    config = TrainConfig(epochs=1, batch_frames=1500, warmup_steps=2, num_workers=0, intermediate_ctc=0.3)
    batch = {
        "features": features,
        "lengths": lengths,
        "targets": torch.tensor([1, 2, 3, 4, 5, 6]),
        "target_lengths": torch.tensor([4, 2]),
    }
    device = torch.device("cpu")
    with torch.no_grad():
        mixed = compute_loss(model, batch, device, config)  # what train_step minimises
        final_only = compute_loss(model, batch, device, config, intermediate=False)  # what validation reports
        main, middle = (ctc_loss(outputs, output_lengths, batch, device) / 6 for outputs in (log_probs, intermediate))
    torch.testing.assert_close(final_only.value, main)
    torch.testing.assert_close(mixed.value, 0.7 * main + 0.3 * middle)
    assert abs(float(mixed.value - final_only.value)) > 1e-3
    train(
        [tiny_stores[0]],
        tiny_stores[1],
        tmp_path / "exp",
        ModelConfig(num_layers=2, hidden_size=16),
        config,
        show_progress=False,
    )
    assert json.loads((tmp_path / "exp" / "config.json").read_text())["train_config"]["intermediate_ctc"] == 0.3
    with pytest.raises(AsrCliError, match="intermediate_ctc needs a recurrent model with num_layers at least 2"):
        train(
            [tiny_stores[0]],
            tiny_stores[1],
            tmp_path / "one",
            ModelConfig(num_layers=1, hidden_size=8),
            config,
            show_progress=False,
        )
