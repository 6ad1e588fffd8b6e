"""Pretrained encoders as a feature kind (encoder.py): tiny real encoders of both backends, built at test time
(randomly initialised transformers models, one converted by CTranslate2's own converter), their input, their
identity in stores and models, the same frames on every path, and bad inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_cli.config import EncoderConfig, FeatureConfig
from asr_cli.encoder import (
    SpeechEncoder,
    inspect_encoder,
    slaney_mel_filters,
    whisper_log_mel,
    windows,
)
from asr_cli.errors import AsrCliError
from asr_cli.manifest import write_manifest
from asr_cli.store import FeatureStore
from tests.helpers import make_store, refused, run_cli

transformers = pytest.importorskip("transformers", reason="the encoder extra (pip install 'asr-cli[encoder]')")


def _tiny_whisper(folder: Path, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    config = transformers.WhisperConfig(
        vocab_size=60, num_mel_bins=80, d_model=16, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=1500,
        max_target_positions=32, decoder_start_token_id=1, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    transformers.WhisperForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def whisper_hf(tmp_path_factory) -> Path:
    return _tiny_whisper(tmp_path_factory.mktemp("encoders") / "tiny-whisper")


@pytest.fixture(scope="module")
def whisper_ct2(whisper_hf, tmp_path_factory) -> Path:
    """The same weights in faster-whisper's format, written by CTranslate2's own converter."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    folder = tmp_path_factory.mktemp("encoders") / "tiny-whisper-ct2"
    ctranslate2.converters.TransformersConverter(str(whisper_hf)).convert(str(folder))
    return folder


@pytest.fixture(scope="module")
def wav2vec2(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("encoders") / "tiny-wav2vec2"
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    return folder


def _speech(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 220 * t * (1 + 0.3 * np.sin(t))) + 0.02 * rng.standard_normal(len(t))).astype(
        np.float32
    )


# --- Whisper's input ---


def test_the_log_mel_input_is_whispers(tmp_path: Path):
    """Against an independent computation with librosa (centred reflect-padded STFT, Slaney mel, log10 clamped
    8 below the maximum), and against faster-whisper's own extractor where it is installed."""
    import librosa

    samples = _speech(2.5)
    ours = whisper_log_mel(samples).numpy()
    padded = np.pad(samples, (0, 160))
    power = np.abs(librosa.stft(padded, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect"))
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power[:, :-1] ** 2
    log_mel = np.log10(np.maximum(mel, 1e-10))
    expected = (np.maximum(log_mel, log_mel.max() - 8.0) + 4.0) / 4.0
    assert ours.shape == (80, len(samples) // 160 + 1)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    np.testing.assert_allclose(slaney_mel_filters(16000, 400, 80), librosa.filters.mel(sr=16000, n_fft=400, n_mels=80),
                               atol=1e-6)  # fmt: skip
    try:
        from faster_whisper.feature_extractor import FeatureExtractor
    except ImportError:
        return
    np.testing.assert_allclose(ours, FeatureExtractor()(samples), atol=1e-4)


def test_windows_cover_each_state_once_with_context():
    assert windows(100, 1500, 250) == [windows(100, 1500, 250)[0]] and windows(100, 1500, 250)[0].length == 100
    chosen = windows(4000, 1500, 250)
    covered = [state for window in chosen for state in range(window.first, window.last)]
    assert covered == list(range(4000))
    for window in chosen:
        assert 0 <= window.start and window.start + window.length <= 4000 and window.length == 1500
        assert window.start <= window.first and window.last <= window.start + window.length
        if 0 < window.first and window.last < 4000:
            assert window.first - window.start >= 250 and window.start + window.length - window.last >= 250


# --- the two backends ---


def test_both_backends_give_the_same_states_and_record_who_they_are(whisper_hf, whisper_ct2):
    ct2, hf = inspect_encoder(whisper_ct2), inspect_encoder(whisper_hf)
    assert (ct2.backend, hf.backend) == ("ctranslate2", "transformers")
    assert ct2.model_type == hf.model_type == "whisper" and ct2.dim == hf.dim == 16 and ct2.num_layers == 2
    assert len(ct2.sha256) == 64 and ct2.sha256 != hf.sha256 and ct2.frame_shift_ms == 20.0
    samples = _speech()
    states = SpeechEncoder(ct2)([samples])[0]
    assert states.shape == (ct2.num_frames(len(samples)), 16) == (150, 16)
    np.testing.assert_allclose(states, SpeechEncoder(hf)([samples])[0], atol=1e-4)


def test_a_block_of_a_transformers_encoder(whisper_hf, whisper_ct2):
    outputs = [SpeechEncoder(inspect_encoder(whisper_hf, layer))([_speech()])[0] for layer in (0, 1, 2, -1)]
    assert all(o.shape == (150, 16) for o in outputs)
    assert not np.allclose(outputs[1], outputs[2]) and not np.allclose(outputs[2], outputs[3])  # -1: layer-normed
    with pytest.raises(AsrCliError, match="encoder_layer: a CTranslate2 model gives its encoder's output only"):
        inspect_encoder(whisper_ct2, layer=1)
    with pytest.raises(AsrCliError, match="layer must be -1"):
        inspect_encoder(whisper_hf, layer=3)


def test_long_input_is_encoded_in_overlapping_windows(whisper_ct2):
    identity = inspect_encoder(whisper_ct2)
    samples = np.tile(_speech(5.0), 9)  # 45 s: two windows of 30 s
    states = SpeechEncoder(identity)([samples])[0]
    assert states.shape == (identity.num_frames(len(samples)), 16) == (2250, 16)
    # States far from a window's edge are what that window gives alone: the first 20 s come from the first window.
    first_window = SpeechEncoder(identity)._encode_window(whisper_log_mel(samples)[:, :3000])
    np.testing.assert_allclose(states[:1000], first_window[:1000], atol=1e-5)


def test_padding_to_thirty_seconds_changes_the_states_not_their_number(whisper_ct2):
    samples = _speech()
    plain = SpeechEncoder(inspect_encoder(whisper_ct2))([samples])[0]
    padded = SpeechEncoder(inspect_encoder(whisper_ct2, pad_to_window=True))([samples])[0]
    assert padded.shape == plain.shape and not np.allclose(padded, plain, atol=1e-3)


def test_a_waveform_encoder_gives_a_state_every_20_ms(wav2vec2):
    identity = inspect_encoder(wav2vec2, layer=1)
    assert identity.model_type == "wav2vec2" and identity.frame_shift_ms == 20.0 and identity.num_layers == 2
    for seconds in (0.5, 3.0, 3.013):
        samples = _speech(seconds)
        states = SpeechEncoder(identity)([samples])[0]
        assert states.shape == (identity.num_frames(len(samples)), 16)
    assert identity.num_frames(399) == 0 and identity.num_frames(400) == 1


# --- identity: stores, models, and the wrong encoder ---


def test_features_from_audio_are_the_stores_on_every_path(tmp_path: Path, whisper_ct2, fixture_utterances):
    """prepare, decode from audio, transcribe and a long recording's segments compute the same frames; the
    store and the model record the encoder; the model refuses another encoder and says which it expects."""
    import asr_cli
    from asr_cli.audio import load_audio
    from asr_cli.inference import collect_sources, frame_reader
    from asr_cli.model import load_model_file

    train_utts, dev_utts = fixture_utterances
    # float32 stores: the decodes from the store and from the audio below must see the same frames to rounding (a
    # float16 store's 1e-3 differences flipped a near tie of this barely trained model's greedy path, 1 run in 7).
    options = ["--features", "encoder", "--encoder", whisper_ct2, "--dtype", "float32", "--no-progress"]
    for name, utterances in (("train", train_utts), ("dev", dev_utts)):
        write_manifest(tmp_path / f"{name}.jsonl", utterances)
        run_cli("prepare", tmp_path / f"{name}.jsonl", "-o", tmp_path / f"{name}.store", *options)
    store = FeatureStore(tmp_path / "dev.store")
    assert store.feature_config.encoder.sha256 == inspect_encoder(whisper_ct2).sha256 and store.dim == 16
    run_cli("train", "--train", tmp_path / "train.store", "--valid", tmp_path / "dev.store", "-o", tmp_path / "exp",
            "--epochs", "1", "--layers", "1", "--hidden-size", "16", "--stack-frames", "1", "--subsample", "2",
            "--num-workers", "0", "--no-progress")  # fmt: skip
    model_path = tmp_path / "exp" / "model.pt"
    model = load_model_file(model_path)
    assert model.feature_config.encoder == store.feature_config.encoder
    sources, _ = collect_sources([tmp_path / "dev.jsonl"], model.feature_config)
    read = frame_reader(None, model)
    recognizer = asr_cli.load_model(model_path)
    for source in sources:
        from_audio = read(source)
        np.testing.assert_allclose(from_audio, store.features(source.id), atol=1e-5, rtol=1e-5)
        samples, _ = load_audio(source.utterance.audio, 16000)
        # Equal to rounding: CTranslate2 sums in an order that depends on its thread count, which may differ.
        np.testing.assert_allclose(recognizer._features(samples), from_audio, atol=1e-5, rtol=1e-5)
    _segments_have_the_frames_of_their_stretch_of_audio(tmp_path, recognizer, read, dev_utts)
    run_cli("decode", model_path, tmp_path / "dev.store", "-o", tmp_path / "from_store.jsonl", "--no-progress")
    # The same frames, searched alike (--vad auto would search only the speech of the audio).
    run_cli("decode", model_path, tmp_path / "dev.jsonl", "-o", tmp_path / "from_audio.jsonl", "--vad", "none",
            "--no-progress")  # fmt: skip
    texts = [[json.loads(line)["text"] for line in (tmp_path / f"{n}.jsonl").read_text().splitlines()]
             for n in ("from_store", "from_audio")]  # fmt: skip
    assert texts[0] == texts[1] and len(texts[0]) == len(dev_utts)
    assert "encoder states: tiny-whisper-ct2" in run_cli("info", model_path).stdout
    other = _tiny_whisper(tmp_path / "other-whisper", seed=1)
    refused(
        "decode",
        model_path,
        tmp_path / "dev.jsonl",
        "-o",
        tmp_path / "x.jsonl",
        "--encoder",
        other,
        names="holds another encoder",
    )
    message = refused("transcribe", model_path, dev_utts[0].audio, "--encoder", tmp_path / "nowhere",
                      names="which is not at")  # fmt: skip
    assert "tiny-whisper-ct2" in message and "--encoder" in message


def _segments_have_the_frames_of_their_stretch_of_audio(tmp_path: Path, recognizer, read, utterances) -> None:
    """A long recording's segments (cut at pauses by transcribe) get the frames `decode` computes for the same
    stretch given as a manifest segment (offset, duration)."""
    from asr_cli.audio import load_audio
    from asr_cli.config import SegmentationConfig
    from asr_cli.inference import Source
    from asr_cli.manifest import Utterance

    pieces = [load_audio(u.audio, 16000)[0] for u in utterances] * 4
    soundfile.write(str(tmp_path / "long.wav"), np.concatenate(pieces), 16000)
    duration_s, segments, load = recognizer._recording(tmp_path / "long.wav", None, SegmentationConfig())
    assert duration_s > 30 and len(segments) > 1
    for start, end in segments[:3]:
        stretch = Utterance("long", str(tmp_path / "long.wav"), offset=start, duration=end - start)
        np.testing.assert_allclose(
            recognizer._features(load(start, end)),
            read(Source("long", 0, 0.0, utterance=stretch)),
            atol=1e-5,
            rtol=1e-5,
        )


def test_stores_of_two_encoders_are_other_features(tmp_path: Path, whisper_ct2, whisper_hf, fixture_utterances):
    utterances = fixture_utterances[1][:2]
    ct2 = make_store(tmp_path / "ct2", utterances, feature_config=_encoder_features(whisper_ct2))
    hf = make_store(tmp_path / "hf", utterances, feature_config=_encoder_features(whisper_hf))
    differences = FeatureStore(ct2).feature_config.differences(FeatureStore(hf).feature_config)
    assert differences == ["encoder"]
    moved = FeatureStore(ct2).feature_config.encoder
    assert EncoderConfig.from_dict({**moved.to_dict(), "path": "/elsewhere"}).identity() == moved.identity()


def _encoder_features(folder: Path) -> FeatureConfig:
    identity = inspect_encoder(folder)
    return FeatureConfig(kind="encoder", frame_shift_ms=identity.frame_shift_ms, encoder=identity)


# --- bad inputs ---


def test_folders_that_are_not_encoders(tmp_path: Path, whisper_hf):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AsrCliError, match="is not an encoder folder: it holds neither a CTranslate2"):
        inspect_encoder(tmp_path / "empty")
    with pytest.raises(AsrCliError, match="encoder folder not found"):
        inspect_encoder(tmp_path / "missing")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(AsrCliError, match="is a file; give the encoder's folder"):
        inspect_encoder(tmp_path / "file.bin")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(AsrCliError, match="model type 'bert' is not a speech encoder"):
        inspect_encoder(tmp_path / "bert")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.bin").write_bytes(b"\x06\x00")
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(AsrCliError, match="truncated CTranslate2 model file"):
        inspect_encoder(tmp_path / "broken")


def test_an_encoder_whose_weights_changed_is_refused(tmp_path: Path, whisper_ct2):
    import shutil

    identity = inspect_encoder(whisper_ct2)
    copy = Path(shutil.copytree(whisper_ct2, tmp_path / "copy"))
    with open(copy / "model.bin", "r+b") as handle:  # one byte of the weights
        handle.seek(-3, 2)
        byte = handle.read(1)
        handle.seek(-3, 2)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(AsrCliError, match="holds another encoder.*than the features were computed with"):
        SpeechEncoder(identity, copy)


def test_an_encoder_without_its_package_says_how_to_get_it(whisper_ct2, whisper_hf, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    with pytest.raises(AsrCliError, match=r"needs the ctranslate2 package \(pip install 'asr-cli\[encoder\]'\)"):
        SpeechEncoder(inspect_encoder(whisper_ct2))
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(AsrCliError, match="needs the transformers package"):
        SpeechEncoder(inspect_encoder(whisper_hf))


def test_audio_at_another_rate_is_resampled_and_the_input_options_are_fixed(tmp_path: Path, whisper_ct2):
    from asr_cli.audio import load_audio
    from asr_cli.manifest import Utterance

    samples = _speech(2.0)
    soundfile.write(str(tmp_path / "low.wav"), samples[::2], 8000)
    write_manifest(tmp_path / "low.jsonl", [Utterance("low", str(tmp_path / "low.wav"))])
    run_cli("prepare", tmp_path / "low.jsonl", "-o", tmp_path / "low.store", "--features", "encoder", "--encoder",
            whisper_ct2, "--no-progress")  # fmt: skip
    resampled, _ = load_audio(tmp_path / "low.wav", 16000)
    expected = SpeechEncoder(inspect_encoder(whisper_ct2))([resampled])[0]
    np.testing.assert_allclose(FeatureStore(tmp_path / "low.store").features("low"), expected, atol=2e-3, rtol=1e-3)
    refused(
        "prepare",
        tmp_path / "low.jsonl",
        "-o",
        tmp_path / "x.store",
        "--features",
        "encoder",
        "--encoder",
        whisper_ct2,
        "--sample-rate",
        "8000",
        names="--sample-rate cannot be set for encoder features",
    )
    refused(
        "prepare",
        tmp_path / "low.jsonl",
        "-o",
        tmp_path / "x.store",
        "--features",
        "encoder",
        names="--features encoder and --encoder FOLDER go together",
    )
    with pytest.raises(AsrCliError, match="too few for Whisper's input"):
        whisper_log_mel(np.zeros(100, np.float32))
