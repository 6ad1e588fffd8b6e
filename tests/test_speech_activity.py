"""Speech activity at decode time: where speech is, and nothing written where it is not."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr_cli.config import ConfigError, DecodeConfig, FeatureConfig, SearchConfig, SpeechActivityConfig
from asr_cli.decode import decode_inputs
from asr_cli.errors import AsrCliError
from asr_cli.features import FeatureExtractor
from asr_cli.inference import Decoder
from asr_cli.model import load_model_file
from asr_cli.recognizer import load_model
from asr_cli.segment import frame_energies_db
from asr_cli.speech_activity import SpeechDetector, fbank_energies_db, silent_outputs, silero_available
from tests.helpers import refused, run_cli

RATE_HZ = 16000
ENERGY = SpeechActivityConfig(vad="energy")


def noise_with_a_burst(seconds: float = 3.0, burst_s: tuple[float, float] | None = (1.0, 1.6), seed: int = 0):
    """Room-like noise 40 dB below full scale, with a louder voiced-like burst (a 300 Hz tone with harmonics)."""
    rng = np.random.default_rng(seed)
    samples = 0.01 * rng.standard_normal(int(seconds * RATE_HZ)).astype(np.float32)
    if burst_s is not None:
        start, end = (int(t * RATE_HZ) for t in burst_s)
        time = np.arange(end - start) / RATE_HZ
        samples[start:end] += 0.3 * sum(np.sin(2 * np.pi * 300 * k * time) / k for k in range(1, 6))
    return samples


def fbank(samples: np.ndarray) -> np.ndarray:
    return FeatureExtractor(FeatureConfig())([samples])[0]


def test_the_energy_rule_finds_the_burst_from_the_filterbank_and_from_the_samples():
    samples = noise_with_a_burst()
    detector = SpeechDetector(ENERGY, "fbank", RATE_HZ)
    from_frames = detector.mask(fbank(samples), None)
    from_samples = SpeechDetector(ENERGY, "mfcc", RATE_HZ).mask(None, samples)
    for mask in (from_frames, from_samples):
        speech = np.flatnonzero(mask)
        assert len(speech) > 0
        # The burst (1.0-1.6 s) with 0.2 s of padding on both sides, to within a frame or two.
        assert abs(speech[0] - 80) <= 2 and abs(speech[-1] - 179) <= 2
        assert mask[:75].sum() == 0 and mask[185:].sum() == 0
    # The filterbank's total energy follows the samples' (up to a constant and the weighting of the mel bins).
    correlation = np.corrcoef(fbank_energies_db(fbank(samples))[:295], frame_energies_db(samples, RATE_HZ)[:295])
    assert correlation[0, 1] > 0.9


def test_noise_alone_has_no_speech_and_short_bursts_are_not_speech():
    detector = SpeechDetector(ENERGY, "fbank", RATE_HZ)
    assert detector.mask(fbank(noise_with_a_burst(burst_s=None)), None).sum() == 0
    click = noise_with_a_burst(burst_s=(1.0, 1.05))  # 50 ms: shorter than vad_min_speech_s
    assert detector.mask(fbank(click), None).sum() == 0
    assert SpeechDetector(SpeechActivityConfig(), "fbank", RATE_HZ).mask(fbank(click), None) is None


def test_output_frames_without_speech_are_silent():
    speech = np.zeros(100, dtype=bool)
    speech[41:43] = True  # 0.41-0.43 s
    silent = silent_outputs(speech, num_outputs=25, seconds_per_frame=0.04)
    assert np.flatnonzero(~silent).tolist() == [10]  # the output frame of 0.40-0.44 s
    silent = silent_outputs(speech, num_outputs=50, seconds_per_frame=0.02)
    assert np.flatnonzero(~silent).tolist() == [20, 21]
    assert silent_outputs(speech, num_outputs=60, seconds_per_frame=0.02)[50:].all()  # past the mask's end


@pytest.fixture
def chatty_model(tmp_path: Path, fixture_model: Path) -> Path:
    """The fixture model made to write "e" at every frame, whatever it hears."""
    loaded = torch.load(fixture_model, weights_only=True)
    state = loaded["state_dict"]
    state["output.bias"] = state["output.bias"].clone()
    state["output.bias"][loaded["vocabulary"].index("e") + 1] += 1000.0
    torch.save(loaded, tmp_path / "chatty.pt")
    return tmp_path / "chatty.pt"


def test_the_decoder_writes_nothing_outside_speech(chatty_model: Path):
    model = load_model_file(chatty_model)
    samples = noise_with_a_burst()
    frames = fbank(samples)
    mask = SpeechDetector(ENERGY, "fbank", RATE_HZ).mask(frames, None)
    for search in (SearchConfig(), SearchConfig(beam_size=4)):
        decoder = Decoder(model, search)
        everywhere, masked, nowhere = (
            decoder.hypotheses([frames], [speech])[0][0] for speech in (None, mask, np.zeros_like(mask))
        )
        assert len(everywhere.label_ids) >= 1 and min(everywhere.frames) < 10  # from the first frames on
        assert nowhere.label_ids == [] or len(nowhere.label_ids) == 0
        seconds = [frame * model.seconds_per_frame for frame in masked.frames]
        assert seconds and all(0.75 <= t <= 1.85 for t in seconds), seconds


def test_decode_and_transcribe_with_vad_write_nothing_into_noise(tmp_path: Path, chatty_model: Path):
    noise = tmp_path / "noise.wav"
    soundfile.write(noise, noise_with_a_burst(burst_s=None), RATE_HZ)
    for vad, expected_empty in (("none", False), ("energy", True)):
        options = DecodeConfig(show_progress=False, speech=SpeechActivityConfig(vad=vad))
        decode_inputs(chatty_model, [noise], tmp_path / f"{vad}.jsonl", options)
        text = json.loads((tmp_path / f"{vad}.jsonl").read_text())["text"]
        assert (text == "") == expected_empty, (vad, text)
    recognizer = load_model(chatty_model)
    assert recognizer.transcribe(noise, speech_activity=ENERGY).text == ""
    assert recognizer.transcribe(noise, speech_activity="energy").text == ""
    assert recognizer.transcribe(noise, speech_activity="none").text != ""
    if silero_available():  # the default, auto, is silero then, and finds no speech either
        assert recognizer.transcribe(noise).text == ""
    result = run_cli("transcribe", chatty_model, noise, "--vad", "energy")
    assert result.stdout.strip() == ""


def test_vad_options_are_checked(tmp_path: Path):
    with pytest.raises(ConfigError, match="vad"):
        SpeechActivityConfig(vad="loud")
    with pytest.raises(ConfigError, match="silero_threshold"):
        SpeechActivityConfig(silero_threshold=1.5)
    with pytest.raises(ConfigError, match="vad_padding_s"):
        SpeechActivityConfig(vad_padding_s=-1)
    message = refused("decode", tmp_path / "m.pt", tmp_path / "x.wav", "-o", tmp_path / "h.jsonl", "--vad", "loud",
                      names="--vad", code=2)  # fmt: skip
    assert "loud" in message


def test_a_detector_that_needs_audio_refuses_a_store():
    with pytest.raises(AsrCliError, match="needs the audio"):
        SpeechDetector(SpeechActivityConfig(vad="silero"), "fbank", RATE_HZ).mask(np.zeros((10, 80)), None)
    with pytest.raises(AsrCliError, match="needs the audio"):
        SpeechDetector(ENERGY, "encoder", RATE_HZ).mask(np.zeros((10, 512)), None)


def test_silero_finds_no_speech_in_noise():
    pytest.importorskip("silero_vad")
    pytest.importorskip("onnxruntime")
    threads = torch.get_num_threads()
    detector = SpeechDetector(SpeechActivityConfig(vad="silero"), "fbank", RATE_HZ)
    mask = detector.mask(None, noise_with_a_burst(burst_s=None))
    assert len(mask) == 300 and mask.sum() == 0
    assert torch.get_num_threads() == threads  # importing silero_vad does not take the model's threads away


def test_speaker_statistics_come_from_the_frames_in_speech():
    """With a detector on, a speaker's CMVN statistics count only the frames in speech, store or not."""
    from types import SimpleNamespace

    from asr_cli.cmvn import CmvnStats
    from asr_cli.inference import Source, input_normalizer

    rng = np.random.default_rng(0)
    frames = {name: rng.standard_normal((100, 4)).astype(np.float32) + offset for name, offset in (("a", 0), ("b", 5))}
    masks = {"a": np.arange(100) < 30, "b": np.zeros(100, dtype=bool)}  # b: nothing said
    model = SimpleNamespace(config=SimpleNamespace(speaker_cmvn=True), feature_config=FeatureConfig(num_mel_bins=4))
    sources = [Source(name, 100, 1.0, speaker="spk", store_position=i) for i, name in enumerate(frames)]
    normalizer = input_normalizer(
        model, sources, None, lambda source: frames[source.id], lambda source, _: masks[source.id]
    )
    mean, std = CmvnStats.of(frames["a"][:30]).mean_and_std()
    np.testing.assert_allclose(normalizer(frames["a"], "spk"), (frames["a"] - mean) / std, rtol=1e-5, atol=1e-5)


def test_auto_searches_a_store_whole_and_finds_the_speech_in_audio(monkeypatch):
    import asr_cli.speech_activity as speech_activity

    samples = noise_with_a_burst()
    frames = fbank(samples)
    auto = SpeechDetector(SpeechActivityConfig(vad="auto"), "fbank", RATE_HZ)
    assert auto.mask(frames, None, has_audio=False) is None  # a store: every frame, as before
    monkeypatch.setattr(speech_activity, "silero_available", lambda: False)
    assert auto.method(True) == "none" and auto.mask(frames, samples) is None  # said once, as a warning
    monkeypatch.setattr(speech_activity, "silero_available", lambda: True)
    assert auto.method(True) == "silero" and auto.method(False) == "none"
