"""Hostile input, second pass (issue 22): one test per cause, each of which failed before its fix. Every case
runs through the command line and checks the exit code, that the message names the problem, and that no
input is damaged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from asr_cli.manifest import Utterance, write_manifest
from tests.helpers import refused, run_cli, write_tone


def checksums(*paths: Path) -> dict[str, str]:
    digests = {}
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digests.update({str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files})
    return digests


@pytest.fixture
def kaldi_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    write_tone(folder / "a.wav")
    (folder / "wav.scp").write_text("utt1 a.wav\n")
    (folder / "text").write_text("utt1 HELLO WORLD\n")
    (folder / "utt2spk").write_text("utt1 spk1\n")
    return folder


# --- 1. An output inside an input folder ---


def test_an_output_among_an_input_folders_files_is_refused(tmp_path: Path, kaldi_dir: Path, fixture_model: Path,
                                                            fixture_stores):  # fmt: skip
    store = fixture_stores[1]
    before = checksums(kaldi_dir, store, fixture_model.parent)
    refused("import", "kaldi", kaldi_dir, "-o", kaldi_dir / "text", names="is a file of the input")
    refused("lm", store, "-o", store / "index.jsonl", names="is inside the input")
    refused("decode", fixture_model, store, "-o", store / "hyp.jsonl", "--no-progress", names="is inside the input")
    refused("decode", fixture_model, store, "-o", tmp_path / "hyp.jsonl", "--ctm", store / "hyp.ctm",
            "--no-progress", names="is inside the input")  # fmt: skip
    refused("decode", fixture_model, store, "-o", fixture_model.parent / "config.json", "--no-progress",
            names="config.json: writing it would destroy the input")  # fmt: skip
    refused("score", store, store, "--json", store / "score.json", names="is inside the input")
    refused("lm", kaldi_dir / "text", "-o", kaldi_dir / "utt2spk", names="is a file of the input")
    assert checksums(kaldi_dir, store, fixture_model.parent) == before
    run_cli("import", "kaldi", kaldi_dir, "-o", kaldi_dir / "all.jsonl")  # a new file beside the Kaldi files is fine


def test_an_output_inside_a_librispeech_tree_or_one_of_a_manifests_audio_files(tmp_path: Path, fixture_model: Path):
    chapter = tmp_path / "LibriSpeech" / "19" / "198"
    chapter.mkdir(parents=True)
    write_tone(chapter / "19-198-0000.flac", format="FLAC")
    (chapter / "19-198.trans.txt").write_text("19-198-0000 HELLO\n")
    before = checksums(tmp_path / "LibriSpeech")
    refused("import", "librispeech", tmp_path / "LibriSpeech", "-o", chapter / "19-198.trans.txt",
            names="is inside the input")  # fmt: skip
    assert checksums(tmp_path / "LibriSpeech") == before
    write_manifest(tmp_path / "m.jsonl", [Utterance("x", str(chapter / "19-198-0000.flac"))])
    refused("decode", fixture_model, tmp_path / "m.jsonl", "-o", chapter / "19-198-0000.flac", "--no-progress",
            names="is the input")  # fmt: skip
    assert checksums(tmp_path / "LibriSpeech") == before


# --- 2. transcribe's outputs of the same name ---


def test_transcripts_that_would_get_one_name_are_refused_before_any_work(tmp_path: Path, fixture_model: Path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_tone(tmp_path / folder / "good.wav")
    refused("transcribe", fixture_model, tmp_path / "a" / "good.wav", tmp_path / "b" / "good.wav", "--output-format",
            "txt", "--output-dir", tmp_path / "out", names="two outputs are the same file")  # fmt: skip
    assert not (tmp_path / "out").exists()
    refused("transcribe", fixture_model, tmp_path / "a" / "good.wav", "--output-dir", tmp_path / "out",
            names="--output-dir is where --output-format files go")  # fmt: skip


def test_two_formats_on_standard_output_and_a_binary_one_are_refused(tmp_path: Path, fixture_model: Path,
                                                                     fixture_stores):  # fmt: skip
    refused(
        "decode",
        fixture_model,
        fixture_stores[1],
        "-o",
        "-",
        "--ctm",
        "-",
        names="--output - and --ctm - would interleave",
    )
    refused("export", fixture_model, "-o", "-", names="a TorchScript file is binary")
    assert not Path("-").exists()
