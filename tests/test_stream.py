"""Streaming: features, normalisation, stacking, the layers and the search carried across chunk edges give what the
whole recording gives offline; endpointing; the Stream's bad inputs; what cannot stream."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import asr_cli
from asr_cli.audio import load_audio
from asr_cli.cmvn import CmvnStats, OnlineCmvn, OnlineNormalizer
from asr_cli.config import FeatureConfig, SearchConfig, StreamConfig
from asr_cli.errors import AsrCliError
from asr_cli.features import FeatureExtractor, FeatureStream
from asr_cli.inference import Decoder
from asr_cli.model import load_model_file, stack_and_subsample
from asr_cli.stream import FrameStacker, Stream, latency_controlled, online_cmvn
from tests.helpers import FSDD, random_model_file, require, tone_bursts, tone_detector_model_file

CHUNKINGS = (1, 160, 2560, "random")
NO_ENDPOINTS = StreamConfig(endpointing=False)


def chunks(samples: np.ndarray, chunking, seed: int = 0):
    """`samples` cut into pieces of a fixed size, or of random sizes from 1 sample to 0.25 s."""
    rng = np.random.default_rng(seed)
    start = 0
    while start < len(samples):
        size = int(rng.integers(1, 4000)) if chunking == "random" else chunking
        yield samples[start : start + size]
        start += size


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Four real recordings one after another (about 2 s of speech)."""
    paths = sorted((require(FSDD) / "recordings").glob("*.wav"))[:4]
    return np.concatenate([load_audio(path, 16000)[0] for path in paths])


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory) -> Path:
    """A word 3-gram over three-letter words of the random models' characters."""
    from asr_cli.kneser_ney import build_kneser_ney
    from asr_cli.lm import write_arpa

    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("stream_lm")
    sentences = [["".join(rng.choice(list("abcdefghij"), 3)) for _ in range(5)] for _ in range(200)]
    write_arpa(build_kneser_ney(sentences, 3), folder / "words.arpa")
    return folder / "words.arpa"


def streamed(model, samples, chunking, search=SearchConfig(beam_size=1), tables=None, config=NO_ENDPOINTS):
    stream = Stream(model, search, tables, config)
    finished = []
    for piece in chunks(samples, chunking):
        finished += stream.accept(piece).finished
    return finished + stream.finish().finished


# --- the pieces ---


@pytest.mark.parametrize("options", [{}, {"deltas": True}, {"kind": "mfcc", "deltas": True}])
def test_frames_across_chunk_edges_equal_the_whole_signals(digits, options):
    config = FeatureConfig(**options)
    whole = FeatureExtractor(config)([digits])[0]
    assert len(whole) > 100
    for chunking in CHUNKINGS:
        stream = FeatureStream(config)
        frames = np.concatenate([stream.push(piece) for piece in chunks(digits, chunking)] + [stream.finish()])
        assert frames.shape == whole.shape, chunking
        np.testing.assert_allclose(frames, whole, rtol=0, atol=2e-4, err_msg=str(chunking))


@pytest.mark.parametrize("stack, subsample", [(3, 3), (1, 2), (2, 3), (4, 2), (1, 1)])
def test_stacking_across_chunk_edges_equals_stacking_the_whole(stack, subsample):
    frames = torch.randn(50, 4)
    whole, _ = stack_and_subsample(frames[None], torch.tensor([50]), stack, subsample)
    rng = np.random.default_rng(stack * 10 + subsample)
    stacker, pieces, start = FrameStacker(stack, subsample, 4), [], 0
    while start < 50:
        size = int(rng.integers(0, 6))
        pieces.append(stacker.push(frames[start : start + size]))
        start += size
    pieces.append(stacker.finish())
    assert torch.equal(torch.cat(pieces), whole[0])


def test_online_cmvn_in_pieces_equals_at_once_and_starts_from_the_prior():
    rng = np.random.default_rng(0)
    frames = rng.normal(5.0, 2.0, (900, 3))
    prior = CmvnStats.of(rng.normal(5.0, 2.0, (5000, 3)))
    at_once = OnlineCmvn(prior, window_frames=300, prior_frames=100)(frames)
    cmvn = OnlineCmvn(prior, window_frames=300, prior_frames=100)
    pieces = np.concatenate([cmvn(frames[start : start + 37]) for start in range(0, 900, 37)])
    np.testing.assert_allclose(pieces, at_once, atol=1e-5)
    assert abs(at_once[200:].mean()) < 0.2 and abs(at_once[200:].std() - 1) < 0.1  # normalised by the stream
    first = (frames[0] - prior.sum / prior.count) / np.sqrt(prior.sum_sq / prior.count - (prior.sum / prior.count) ** 2)
    np.testing.assert_allclose(at_once[0], first, atol=0.05)  # 1 frame against 99 of the prior
    shifted = frames.copy()
    shifted[:500] += 100.0  # beyond the 300-frame window of every frame from 800 on
    np.testing.assert_allclose(OnlineCmvn(prior, 300, 100)(shifted)[800:], at_once[800:], atol=1e-6)


# --- the whole stream against offline decoding ---


def offline_words(model, samples, search=SearchConfig(beam_size=1), normalize=None):
    decoder = Decoder(model, search)
    frames = model.feature_extractor()([samples])[0]
    if normalize is not None:
        frames = normalize(frames)
    return decoder, decoder.words(decoder.hypotheses([frames])[0][0], len(samples) / 16000)


@pytest.mark.parametrize(
    "model_options",
    [
        {"architecture": "lstm"},
        {"architecture": "lstm", "projection_size": 16},
        {"architecture": "lstm", "projection_size": 16, "peepholes": True, "deltas": True},
    ],  # fmt: skip
)
def test_a_unidirectional_stream_in_any_chunks_gives_the_offline_words(tmp_path, digits, word_lm, model_options):
    model = load_model_file(random_model_file(tmp_path / "model.pt", **model_options))
    for search in (SearchConfig(beam_size=1), SearchConfig(beam_size=8, lm_path=str(word_lm))):
        decoder, expected = offline_words(model, digits, search)
        assert sum(len(word.word) for word in expected) >= 3  # the model writes: the comparison means something
        for chunking in (160, 2560, "random"):
            segments = streamed(model, digits, chunking, decoder.search, decoder.tables)
            assert [word for segment in segments for word in segment.words] == expected, (search.beam_size, chunking)


def test_a_stream_fed_one_sample_at_a_time_gives_the_offline_words(tmp_path, digits, word_lm):
    model = load_model_file(random_model_file(tmp_path / "model.pt", architecture="lstm", projection_size=16))
    excerpt = digits[:12000]
    for search in (SearchConfig(beam_size=1), SearchConfig(beam_size=8, lm_path=str(word_lm))):
        decoder, expected = offline_words(model, excerpt, search)
        assert expected
        segments = streamed(model, excerpt, 1, decoder.search, decoder.tables)
        assert [word for segment in segments for word in segment.words] == expected, search.beam_size


def test_a_per_speaker_model_streams_as_offline_online_cmvn_decodes(tmp_path, digits):
    model = load_model_file(random_model_file(tmp_path / "model.pt", architecture="lstm", cmvn="speaker"))
    model = dataclasses.replace(model, input_statistics=CmvnStats.of(model.feature_extractor()([digits[::-1]])[0]))
    _, expected = offline_words(model, digits, normalize=OnlineNormalizer(online_cmvn(model)))
    _, whole_utterance = offline_words(
        model, digits, normalize=lambda frames: (frames - frames.mean(0)) / frames.std(0)
    )
    assert expected and expected != whole_utterance  # online CMVN is not the utterance's own
    for chunking in (160, "random"):
        assert [w for s in streamed(model, digits, chunking) for w in s.words] == expected


def test_a_bidirectional_stream_is_the_latency_controlled_decode(tmp_path, digits):
    model = load_model_file(random_model_file(tmp_path / "model.pt", architecture="blstm", num_layers=2))
    config = StreamConfig(endpointing=False, chunk_s=0.3, right_context_s=0.21)
    _, expected = offline_words(latency_controlled(model, config), digits)
    _, full_context = offline_words(model, digits)
    assert expected and expected != full_context  # a right context of 7 frames is not the whole future
    for chunking in (1, 2560, "random"):
        assert [w for s in streamed(model, digits, chunking, config=config) for w in s.words] == expected


def test_the_layers_state_is_carried_from_window_to_window(tmp_path):
    model = load_model_file(random_model_file(tmp_path / "model.pt", architecture="lstm")).model
    hidden = torch.randn(1, 40, model.config.input_dim * model.config.stack_frames)
    whole, _ = model.window_log_probs(hidden, 40, [None, None])
    first, states = model.window_log_probs(hidden[:, :15], 15, [None, None])
    carried, _ = model.window_log_probs(hidden[:, 15:], 25, states)
    fresh, _ = model.window_log_probs(hidden[:, 15:], 25, [None, None])
    torch.testing.assert_close(torch.cat([first, carried], 1), whole)
    assert not torch.allclose(fresh, whole[:, 15:], atol=1e-3)


# --- endpointing ---


def test_segments_end_after_silence_with_stream_times(tmp_path):
    model = asr_cli.load_model(tone_detector_model_file(tmp_path / "tone.pt"))
    audio = tone_bursts([("quiet", 0.5), ("tone", 0.3), ("quiet", 1.0), ("tone", 0.2), ("quiet", 0.2), ("tone", 0.2),
                         ("quiet", 1.0)])  # fmt: skip
    for chunking in (160, 1600, "random"):
        stream, finished, heard_at = model.stream(), [], []
        for piece in chunks(audio, chunking):
            update = stream.accept(piece)
            finished += update.finished
            heard_at += [stream.time_s] * len(update.finished)
        finished += stream.finish().finished
        assert [segment.text for segment in finished] == ["a", "aa"], chunking
        assert finished[0].start_s == pytest.approx(0.5, abs=0.05)
        assert finished[1].start_s == pytest.approx(1.8, abs=0.05)  # stream time, not segment time
        assert heard_at[0] == pytest.approx(1.3, abs=0.2)  # final 0.5 s after the tone, not at the end
        assert heard_at[1] == pytest.approx(2.9, abs=0.2)


def test_a_long_silence_is_forgotten_and_a_long_segment_is_cut(tmp_path):
    model = asr_cli.load_model(tone_detector_model_file(tmp_path / "tone.pt"))
    stream = model.stream(idle_s=2.0)
    for piece in chunks(tone_bursts([("quiet", 7.0)]), 1600):
        assert stream.accept(piece).finished == []
    assert stream.search.num_frames * model.model_file.seconds_per_frame < 2.1  # bounded: restarted at 2 s
    stream = model.stream(max_segment_s=1.0)
    finished = []
    for piece in chunks(tone_bursts([("tone", 2.5), ("quiet", 0.5)]), 1600):
        finished += stream.accept(piece).finished
    finished += stream.finish().finished
    assert [segment.text for segment in finished] == ["a", "a", "a"]
    assert [segment.start_s for segment in finished] == pytest.approx([0.0, 1.0, 2.0], abs=0.05)


def test_without_endpointing_one_segment_holds_everything(tmp_path):
    model = asr_cli.load_model(tone_detector_model_file(tmp_path / "tone.pt"))
    stream = model.stream(endpointing=False)
    audio = tone_bursts([("tone", 0.3), ("quiet", 1.0), ("tone", 0.3), ("quiet", 0.2)])
    assert all(not stream.accept(piece).finished for piece in chunks(audio, 1600))
    assert [segment.text for segment in stream.finish().finished] == ["aa"]


def test_partials_show_the_words_before_the_segment_ends(tmp_path):
    model = asr_cli.load_model(tone_detector_model_file(tmp_path / "tone.pt"))
    stream = model.stream()
    partials = [stream.accept(piece).partial for piece in chunks(tone_bursts([("tone", 0.3), ("quiet", 0.2)]), 800)]
    assert "a" in partials[:8]  # within 0.4 s of the tone's start


# --- input and refusals ---


def test_other_sample_rates_are_resampled_as_they_arrive(tmp_path):
    import soxr

    model = asr_cli.load_model(tone_detector_model_file(tmp_path / "tone.pt"))
    audio = tone_bursts([("quiet", 0.3), ("tone", 0.3), ("quiet", 1.0)])
    stream = model.stream()
    finished = []
    for piece in chunks(soxr.resample(audio, 16000, 8000).astype(np.float32), 400):
        finished += stream.accept(piece, sample_rate=8000).finished
    with pytest.raises(AsrCliError, match="began at 8000 Hz and cannot change to 16000 Hz"):
        stream.accept(np.zeros(100, np.float32))
    finished += stream.finish().finished
    assert [segment.text for segment in finished] == ["a"]
    assert finished[0].start_s == pytest.approx(0.3, abs=0.05)
    assert stream.time_s == pytest.approx(1.6, abs=0.01)


def test_int16_samples_are_taken_and_bad_samples_refused(tmp_path):
    model = asr_cli.load_model(tone_detector_model_file(tmp_path / "tone.pt"))
    stream = model.stream()
    stream.accept((tone_bursts([("tone", 0.2)]) * 32767).astype(np.int16))
    assert stream.accept(np.zeros(160, np.float32)).partial == "a"
    with pytest.raises(AsrCliError, match="NaN or infinite"):
        stream.accept(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AsrCliError, match="1-D"):
        stream.accept(np.zeros((2, 2, 2), np.float32))
    stream.finish()
    with pytest.raises(AsrCliError, match="stream was finished"):
        stream.accept(np.zeros(160, np.float32))
    assert stream.finish().finished == []


@pytest.mark.parametrize(
    "model_options, reason",
    [({"architecture": "dnn"}, "DNN"), ({"architecture": "lstm", "frontend": "conv"}, "convolutional front-end")],
)
def test_models_that_cannot_stream_are_refused_with_the_reason(tmp_path, model_options, reason):
    model = asr_cli.load_model(random_model_file(tmp_path / "model.pt", **model_options))
    with pytest.raises(AsrCliError, match=f"cannot stream: .*{reason}"):
        model.stream()


def test_a_model_trained_in_chunks_decodes_and_streams_in_them(tmp_path, tiny_stores):
    from asr_cli.config import ModelConfig, TrainConfig
    from asr_cli.train import train

    train([tiny_stores[0]], tiny_stores[1], tmp_path / "exp", ModelConfig(num_layers=2, hidden_size=16, chunk_frames=6,
          right_context_frames=4), TrainConfig(epochs=1, batch_frames=1500, num_workers=0), show_progress=False)  # fmt: skip
    model = load_model_file(tmp_path / "exp" / "model.pt")
    assert (model.config.chunk_frames, model.config.right_context_frames) == (6, 4)
    assert model.input_statistics is not None and model.input_statistics.count > 1000  # for online CMVN
    stream = Stream(model)
    assert (stream.chunk_frames, stream.right_context) == (6, 4)  # streams in the windows it was trained in
    features, lengths = torch.randn(2, 200, 80), torch.tensor([200, 130])
    with torch.no_grad():
        chunked, _ = model.model.chunked_log_probs(*model.model.front(features, lengths), 6, 4)
        full_context, _ = model.model.chunked_log_probs(*model.model.front(features, lengths), 200, 0)
        by_default, _ = model.model(features, lengths)
    torch.testing.assert_close(by_default[1, :44], chunked[1, :44])  # its forward is the chunked one
    torch.testing.assert_close(by_default[0], chunked[0])
    assert not torch.allclose(by_default[0], full_context[0], atol=1e-3)


# --- asr-cli stream ---


def wav_bytes(samples: np.ndarray, sample_rate_hz: int = 16000, subtype: str = "PCM_16") -> bytes:
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate_hz, subtype=subtype, format="WAV")
    return buffer.getvalue()


@pytest.fixture
def stdin_bytes(monkeypatch):
    """Give the in-process CLI these bytes on standard input."""
    import io
    import sys
    import types

    def give(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data), isatty=lambda: False))

    return give


TWO_TONES = [("quiet", 0.3), ("tone", 0.3), ("quiet", 1.0), ("tone", 0.3), ("quiet", 0.8)]


def test_cli_streams_a_file_and_wav_or_raw_pcm_on_stdin(tmp_path, stdin_bytes):
    import json

    import soundfile

    from tests.helpers import run_cli

    model = tone_detector_model_file(tmp_path / "tone.pt")
    audio = tone_bursts(TWO_TONES)
    soundfile.write(tmp_path / "two.flac", audio, 16000)
    assert run_cli("stream", model, tmp_path / "two.flac").stdout == "a\na\n"
    stdin_bytes(wav_bytes(audio))
    lines = run_cli("stream", model, "-", "--output-format", "json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [record["text"] for record in records] == ["a", "a"]
    assert records[1]["start"] == pytest.approx(1.6, abs=0.05) and records[1]["words"][0]["word"] == "a"
    stdin_bytes((audio * 32767).astype("<i2").tobytes())
    assert run_cli("stream", model, "-").stdout == "a\na\n"
    stdin_bytes((tone_bursts(TWO_TONES, 8000) * 32767).astype("<i2").tobytes())  # raw at another rate
    assert run_cli("stream", model, "-", "--sample-rate", "8000").stdout == "a\na\n"
    stdin_bytes(wav_bytes(tone_bursts(TWO_TONES, 22050), 22050, "FLOAT"))  # a float WAV at another rate
    assert run_cli("stream", model, "-").stdout == "a\na\n"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"hello, this is not audio at all\n", "looks like text"),
        (b"fLaC\x00\x00\x00\x22" + bytes(100), "is FLAC data, not raw PCM or WAV: decode it first"),
        (b"", "ended before any audio arrived"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "ended inside its WAV header"),
    ],
)
def test_cli_refuses_a_stream_that_is_not_audio(tmp_path, stdin_bytes, data, message):
    from tests.helpers import refused

    stdin_bytes(data)
    refused("stream", tone_detector_model_file(tmp_path / "tone.pt"), "-", names=message)


def test_cli_refuses_a_wav_of_another_width(tmp_path, stdin_bytes):
    from tests.helpers import refused

    stdin_bytes(wav_bytes(tone_bursts(TWO_TONES), subtype="PCM_24"))
    refused("stream", tone_detector_model_file(tmp_path / "tone.pt"), "-", names="24-bit integer PCM samples")


def test_cli_keeps_what_it_heard_from_a_cut_or_odd_stream(tmp_path, stdin_bytes):
    from tests.helpers import run_cli

    model = tone_detector_model_file(tmp_path / "tone.pt")
    audio = tone_bursts(TWO_TONES)
    stdin_bytes((audio * 32767).astype("<i2").tobytes() + b"\x01")
    result = run_cli("stream", model, "-")
    assert result.stdout == "a\na\n" and "1 byte(s) that make no whole sample" in result.stderr
    streamed = bytearray(wav_bytes(audio))
    streamed[40:44] = (0x7FFFFFFF).to_bytes(4, "little")  # a pipe's placeholder length: until the stream ends
    stdin_bytes(bytes(streamed))
    result = run_cli("stream", model, "-")
    assert result.stdout == "a\na\n" and "warning" not in result.stderr
    stdin_bytes(wav_bytes(audio)[: 44 + 2 * 16000])  # the header announces 2.7 s; 1 s arrives
    result = run_cli("stream", model, "-")
    assert result.stdout == "a\n" and "ended after 1.00 s, before the 2.70 s its WAV header announced" in result.stderr


def test_cli_stream_bad_options_and_models(tmp_path):
    from tests.helpers import refused

    model = tone_detector_model_file(tmp_path / "tone.pt")
    refused("stream", model, names="one of them")
    refused("stream", model, "-", "--microphone", names="one of them")
    refused("stream", model, tmp_path / "missing.wav", names="missing.wav")
    (tmp_path / "text.wav").write_text("not audio")
    refused("stream", model, tmp_path / "text.wav", names="text.wav")
    dnn = random_model_file(tmp_path / "dnn.pt", architecture="dnn")
    refused("stream", dnn, tmp_path / "text.wav", names="cannot stream: it is a DNN")
    refused("stream", model, "-", "--endpoint-silence-s", "0", names="--endpoint-silence-s")


def test_cli_microphone_without_sounddevice_says_how_to_get_it(tmp_path, monkeypatch):
    import sys

    from tests.helpers import refused

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if not installed
    refused("stream", tone_detector_model_file(tmp_path / "tone.pt"), "--microphone", names="pip install")


def test_ctrl_c_finishes_the_segment_under_way_and_exits_130(tmp_path):
    import signal

    import soundfile

    from tests.helpers import start_cli

    model = tone_detector_model_file(tmp_path / "tone.pt")
    soundfile.write(tmp_path / "long.wav", tone_bursts([("quiet", 0.5), ("tone", 0.3), ("quiet", 8.0)]), 16000)
    process = start_cli("stream", model, tmp_path / "long.wav", "--realtime", "--show-partial",
                        "--endpoint-silence-s", "6")  # fmt: skip
    heard = ""
    while "a" not in heard:  # the partial: the tone is heard, its segment not yet final
        character = process.stderr.read(1)
        assert character, process.stdout.read()
        heard += character
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stdout == "a\n"


def test_a_closed_stdout_stops_the_stream_with_a_message(tmp_path):
    import soundfile

    from tests.helpers import start_cli

    model = tone_detector_model_file(tmp_path / "tone.pt")
    pattern = [("quiet", 0.3)] + [("tone", 0.2), ("quiet", 0.7)] * 4
    soundfile.write(tmp_path / "many.wav", tone_bursts(pattern), 16000)
    process = start_cli("stream", model, tmp_path / "many.wav", "--realtime")  # a segment every 0.9 s
    assert process.stdout.readline() == "a\n"
    process.stdout.close()  # the reader goes away
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 1, stderr
    assert "standard output was closed" in stderr and "Traceback" not in stderr
