"""Synthetic speech at scale (voices.py, `asr-cli synth --text`): voices, noise, reverberation, parallel and resumable
runs, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_cli.config import ConfigError, VoicesConfig
from asr_cli.errors import AsrCliError
from asr_cli.manifest import load_manifest
from asr_cli.voices import espeak_voices, noise_at_snr, resolve_voices, reverberant, synthesise
from tests.helpers import refused, run_cli

LINES = [
    "the cat sat on the mat",
    "a dog ran home",
    "one",
    "she sells sea shells by the sea shore today",
    "call 911 now",
    "a caf\u00e9 au lait",
]  # the last two: characters outside the default set


@pytest.fixture
def text(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text("\n".join(LINES) + "\n")
    return path


@pytest.fixture
def noise_folder(tmp_path) -> Path:
    folder = tmp_path / "noise"
    folder.mkdir()
    soundfile.write(folder / "hum.wav", 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    return folder


def test_many_voices_say_the_text_lines(tmp_path, text, noise_folder):
    config = VoicesConfig(num_utterances=6, noise_source=str(noise_folder), reverb_probability=0.5, seed=1)
    summary = synthesise([text], tmp_path / "out", config)
    utterances = load_manifest(tmp_path / "out" / "synth.jsonl")
    assert summary["utterances"] == len(utterances) == 6 and summary["voices"] == len(espeak_voices()) >= 800
    assert {u.text for u in utterances} <= set(LINES[:4]) - {"one"}  # too short, or digits and accents: left out
    assert len({u.speaker for u in utterances}) >= 5  # drawn from hundreds of voices
    for utterance in utterances:
        samples, rate_hz = soundfile.read(utterance.audio)
        assert rate_hz == 22050 and 0.3 < len(samples) / rate_hz == pytest.approx(utterance.duration, abs=0.01)
        assert np.abs(samples).max() == pytest.approx(0.9, abs=0.01)


def test_the_same_seed_makes_the_same_corpus_whatever_the_jobs_and_a_run_resumes(tmp_path, text):
    one = synthesise([text], tmp_path / "one", VoicesConfig(num_utterances=5, jobs=1))
    synthesise([text], tmp_path / "two", VoicesConfig(num_utterances=5, jobs=2))
    records = [
        [(u.id, u.text, u.speaker) for u in load_manifest(tmp_path / name / "synth.jsonl")] for name in ("one", "two")
    ]
    assert records[0] == records[1] and one["written"] == 5
    (tmp_path / "one" / "synth.jsonl").unlink()  # as if interrupted: some audio written, no manifest yet
    (tmp_path / "one" / "audio" / "synth-0000003.flac").unlink()
    again = synthesise([text], tmp_path / "one", VoicesConfig(num_utterances=7, jobs=2))
    assert again["written"] == 3 and again["utterances"] == 7  # 3 and 5, 6 made; the rest kept
    assert [(u.id, u.text, u.speaker) for u in load_manifest(tmp_path / "one" / "synth.jsonl")][:5] == records[0]
    with pytest.raises(AsrCliError, match="other settings \\(seed\\)"):
        synthesise([text], tmp_path / "one", VoicesConfig(num_utterances=7, seed=3))


def test_hours_stop_the_run(tmp_path, text):
    summary = synthesise([text], tmp_path / "out", VoicesConfig(hours=5 / 3600))
    assert 5 <= summary["hours"] * 3600 < 12 and summary["utterances"] >= 2


def test_noise_is_mixed_at_the_drawn_snr():
    rng = np.random.default_rng(0)
    speech = np.sin(np.arange(16000) / 5.0).astype(np.float32)
    noise = noise_at_snr(speech, [rng.standard_normal(5000).astype(np.float32)], 10.0, rng)
    assert len(noise) == len(speech)
    assert 10 * np.log10(np.mean(speech**2) / np.mean(noise**2)) == pytest.approx(10.0, abs=0.3)


def test_reverberation_rings_on_and_decays():
    rng = np.random.default_rng(0)
    click = np.zeros(8000, np.float32)
    click[100] = 1.0
    wet = reverberant(click, 16000, 0.4, rng)
    assert len(wet) > len(click)
    early, late = np.mean(wet[200:1200] ** 2), np.mean(wet[5000:6000] ** 2)
    assert early > 100 * late > 0  # 60 dB in 0.4 s: about 45 dB between these two windows


def test_bad_texts_folders_voices_and_ranges_are_refused(tmp_path, text):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(AsrCliError, match="empty.txt: no line of 2 words"):
        synthesise([empty], tmp_path / "a", VoicesConfig(num_utterances=1))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(AsrCliError, match="latin1.txt: not valid UTF-8"):
        synthesise([latin1], tmp_path / "b", VoicesConfig(num_utterances=1))
    with pytest.raises(AsrCliError, match="no such folder"):
        synthesise([text], tmp_path / "c", VoicesConfig(num_utterances=1, noise_source=str(tmp_path / "none")))
    with pytest.raises(AsrCliError, match="no voice 'xx-yy'"):
        synthesise([text], tmp_path / "d", VoicesConfig(num_utterances=1, voices="xx-yy"))
    with pytest.raises(ConfigError):
        synthesise([text], tmp_path / "e", VoicesConfig())  # neither a count nor hours
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("mine")
    with pytest.raises(AsrCliError, match="not empty"):
        synthesise([text], tmp_path / "busy", VoicesConfig(num_utterances=1))
    refused("synth", tmp_path / "f", "--text", text, "--utterances", "2", "--rate-wpm", "200:150", names="--rate-wpm")
    refused(
        "synth", tmp_path / "f", "--text", text, "--utterances", "2", "--noise-snr-db", "loud", names="--noise-snr-db"
    )
    refused("synth", tmp_path / "f", "--text", text, names="--utterances")


def test_flite_voices_need_flite(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AsrCliError, match="apt-get install flite"):
        resolve_voices("flite")
    with pytest.raises(AsrCliError, match="apt-get install flite"):
        resolve_voices("en-us+m3,flite:slt")
    assert "flite" not in " ".join(resolve_voices("all"))


def test_cli_writes_a_manifest_that_prepare_reads(tmp_path, text):
    result = run_cli(
        "synth", tmp_path / "out", "--text", text, "--utterances", "4", "--voices", "en-us+m3,en+Mr serious"
    )
    assert "4 utterances" in result.stdout
    records = [json.loads(line) for line in (tmp_path / "out" / "synth.jsonl").read_text().splitlines()]
    assert {record["speaker"] for record in records} == {"en-us+m3", "en+Mr_serious"}  # no white space in speakers
    run_cli("prepare", tmp_path / "out" / "synth.jsonl", "-o", tmp_path / "store", "--no-progress")
    assert (tmp_path / "store").is_dir()


@pytest.mark.skipif(
    __import__("shutil").which("flite") is None, reason="flite is not installed (apt-get install flite)"
)
def test_flite_voices_say_the_lines_at_16_khz(tmp_path, text):
    synthesise([text], tmp_path / "out", VoicesConfig(num_utterances=3, voices="flite", reverb_probability=0.0))
    utterances = load_manifest(tmp_path / "out" / "synth.jsonl")
    assert {u.speaker.split(":")[0] for u in utterances} == {"flite"} and "flite:awb_time" not in resolve_voices(
        "flite"
    )
    for utterance in utterances:
        assert soundfile.info(utterance.audio).samplerate == 16000 and utterance.duration > 0.5
