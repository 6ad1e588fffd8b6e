import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from asr_cli.audio import load_audio
from asr_cli.config import FeatureConfig
from asr_cli.features import FeatureExtractor, add_deltas
from tests.helpers import SPEECHOCEAN, require

SPEECHOCEAN_FILES = ["0001/000010011.flac", "0001/000010035.flac", "0003/000030012.flac"]


def _real_waveforms() -> list[np.ndarray]:
    root = require(SPEECHOCEAN) / "audio"
    return [load_audio(root / name)[0] for name in SPEECHOCEAN_FILES if (root / name).exists()]


def _kaldi_native(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
    if config.kind == "fbank":
        options = knf.FbankOptions()
    else:
        options = knf.MfccOptions()
        options.num_ceps = config.num_ceps
        options.cepstral_lifter = config.cepstral_lifter
    options.mel_opts.num_bins = config.num_mel_bins
    options.frame_opts.dither = 0.0
    options.frame_opts.snip_edges = True
    options.frame_opts.samp_freq = config.sample_rate_hz
    computer = knf.OnlineFbank(options) if config.kind == "fbank" else knf.OnlineMfcc(options)
    computer.accept_waveform(config.sample_rate_hz, (waveform * 32768).tolist())
    computer.input_finished()
    return np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])


@pytest.mark.parametrize("kind", ["fbank", "mfcc"])
def test_matches_kaldi_native_fbank_on_real_speech(kind):
    waveforms = _real_waveforms()
    assert len(waveforms) >= 2
    config = FeatureConfig.for_kind(kind)
    ours = FeatureExtractor(config)(waveforms)
    for waveform, features in zip(waveforms, ours):
        reference = _kaldi_native(waveform, config)
        assert features.shape == reference.shape == (config.num_frames(len(waveform)), config.dim)
        difference = np.abs(features - reference)
        assert difference.mean() <= 1e-3
        assert difference.max() <= 1e-2


def test_batch_gives_the_same_features_as_one_at_a_time():
    waveforms = _real_waveforms()
    extractor = FeatureExtractor(FeatureConfig())
    batched = extractor(waveforms)
    for waveform, features in zip(waveforms, batched):
        np.testing.assert_array_equal(extractor([waveform])[0], features)


def test_frame_count_follows_kaldi_snip_edges():
    config = FeatureConfig()
    assert [config.num_frames(n) for n in (0, 399, 400, 559, 560, 16000)] == [0, 0, 1, 1, 2, 98]
    features = FeatureExtractor(config)([np.zeros(399, np.float32), np.zeros(16000, np.float32)])
    assert features[0].shape == (0, 80) and features[1].shape == (98, 80)


def test_silence_hits_the_log_floor_and_dither_lifts_it():
    silence = np.zeros(4000, np.float32)
    plain = FeatureExtractor(FeatureConfig())([silence])[0]
    assert np.allclose(plain, np.log(np.finfo(np.float32).eps))
    dithered = FeatureExtractor(FeatureConfig(dither=1.0))
    first, again = dithered([silence], seeds=[7])[0], dithered([silence], seeds=[7])[0]
    np.testing.assert_array_equal(first, again)
    assert first.mean() > plain.mean() + 5


def test_deltas_of_a_ramp():
    ramp = torch.arange(20, dtype=torch.float32)[:, None].repeat(1, 3) * 2.0
    with_deltas = add_deltas(ramp)
    assert with_deltas.shape == (20, 9)
    # Interior frames: slope 2 and zero curvature; the edges are repeated as in Kaldi.
    np.testing.assert_allclose(with_deltas[4:-4, 3:6], 2.0, atol=1e-5)
    np.testing.assert_allclose(with_deltas[4:-4, 6:9], 0.0, atol=1e-5)
    assert with_deltas[0, 3] < 2.0
    config = FeatureConfig(deltas=True)
    assert FeatureExtractor(config)([np.random.default_rng(0).standard_normal(8000).astype(np.float32)])[0].shape == (
        48,
        240,
    )


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="kind must be one of fbank, mfcc, encoder"):
        FeatureConfig(kind="plp")
    with pytest.raises(ValueError, match="num_ceps"):
        FeatureConfig(kind="mfcc", num_mel_bins=10, num_ceps=13)


def test_mel_scale_is_librosas_htk_scale():
    import librosa

    from asr_cli.features import hz_to_mel

    frequencies = np.array([0.0, 20.0, 700.0, 4000.0, 8000.0])
    np.testing.assert_allclose(hz_to_mel(frequencies), librosa.hz_to_mel(frequencies, htk=True), rtol=1e-5)
