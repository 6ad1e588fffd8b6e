from pathlib import Path

import numpy as np
import pytest

from asr_cli.audio import AudioError, audio_info, load_audio, resample
from tests.helpers import FSDD, SPEECHOCEAN, require, write_tone


def test_flac_from_speechocean_loads_as_mono_float32():
    path = require(SPEECHOCEAN) / "audio/0001/000010011.flac"
    samples, rate_hz = load_audio(path)
    assert rate_hz == 16000 and samples.dtype == np.float32 and samples.ndim == 1
    assert audio_info(path) == (16000, len(samples))


def test_segment_reads_only_its_samples():
    path = require(SPEECHOCEAN) / "audio/0001/000010011.flac"
    whole, _ = load_audio(path)
    segment, _ = load_audio(path, offset_s=0.5, duration_s=1.0)
    np.testing.assert_array_equal(segment, whole[8000:24000])


def test_stereo_is_downmixed_by_mean(tmp_path: Path):
    samples = write_tone(tmp_path / "stereo.wav", channels=2, subtype="FLOAT")
    mono, _ = load_audio(tmp_path / "stereo.wav")
    np.testing.assert_allclose(mono, samples.mean(axis=1), atol=1e-7)


def test_fsdd_8k_is_resampled_to_16k():
    path = require(FSDD) / "recordings/0_george_0.wav"
    native, native_rate = load_audio(path)
    resampled, rate = load_audio(path, sample_rate_hz=16000)
    assert native_rate == 8000 and rate == 16000
    assert len(resampled) == 2 * len(native)
    # The resampled signal keeps the same energy (a band-limited upsampling).
    assert np.mean(resampled**2) == pytest.approx(np.mean(native**2), rel=0.05)


@pytest.mark.parametrize("num_samples", [7, 8001, 12345])
@pytest.mark.parametrize("from_rate_hz", [8000, 22050, 44100, 48000])
def test_resampling_is_librosas_soxr_hq(num_samples: int, from_rate_hz: int):
    """Resampling calls soxr itself and gives librosa's samples, length included (at 7 samples from 22,050 or
    48,000 Hz soxr alone comes out a sample short): features are those of stores prepared with librosa."""
    import librosa

    samples = np.random.default_rng(num_samples).standard_normal(num_samples).astype(np.float32) * 0.1
    expected = librosa.resample(samples, orig_sr=from_rate_hz, target_sr=16000, res_type="soxr_hq")
    np.testing.assert_array_equal(resample(samples, from_rate_hz, 16000), expected)


def test_ogg_and_nist_sphere(tmp_path: Path):
    write_tone(tmp_path / "a.ogg", format="OGG", subtype="VORBIS")
    write_tone(tmp_path / "a.sph", format="NIST", subtype="PCM_16")
    for name in ("a.ogg", "a.sph"):
        samples, rate = load_audio(tmp_path / name)
        assert rate == 16000 and abs(len(samples) - 8000) < 200


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage that is not audio"), "unreadable"),
        (lambda p: write_tone(p, seconds=0.0), "no audio samples"),
    ],
    ids=["missing", "corrupt", "empty"],
)
def test_bad_audio_names_the_file(tmp_path: Path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as raised:
        load_audio(path)
    assert str(path) in str(raised.value)
