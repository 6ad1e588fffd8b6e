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


# --- 3. CSV rows swallowed by a quote; field limits; delimiters ---


def test_a_quote_that_runs_over_line_ends_is_an_error_naming_the_line(tmp_path: Path):
    for name in ("good.wav", "two.wav", "three.wav"):
        write_tone(tmp_path / name)
    table = tmp_path / "t.csv"
    table.write_text('path,sentence\ngood.wav,"oops\ntwo.wav,second\nthree.wav,third\n')
    refused("import", "csv", table, "-o", tmp_path / "m.jsonl", names="t.csv, line 2: a quoted field runs on")
    table.write_text("path,sentence\ngood.wav,hello,extra\n")
    refused("import", "csv", table, "-o", tmp_path / "m.jsonl", names="line 2: 2 fields expected")
    table.write_text("path,sentence\ngood.wav," + "x" * 140_000 + "\n")
    refused("import", "csv", table, "-o", tmp_path / "m.jsonl", names="line 2: field larger than field limit")
    refused("import", "csv", table, "-o", tmp_path / "m.jsonl", "--delimiter", "ab",
            names="--delimiter must be one character")  # fmt: skip
    table.write_text('path,sentence\ngood.wav,"a ""quoted"" word"\n')
    run_cli("import", "csv", table, "-o", tmp_path / "m.jsonl")
    assert '"a \\"quoted\\" word"' in (tmp_path / "m.jsonl").read_text()
    run_cli("import", "csv", table, "-o", tmp_path / "none.jsonl", "--text-column", "none")  # documented
    assert '"text"' not in (tmp_path / "none.jsonl").read_text()
    assert not (tmp_path / "m.jsonl").read_text().count("\n") > 1


# --- 7, 10. manifest fields that crashed or were taken for numbers ---


@pytest.mark.parametrize("field, value, problem", [
    ("duration", "true", "must be a non-negative number of seconds, not True"),
    ("duration", "1e308", "more than any recording"),
    ("text", '"\\ud800"', "not a Unicode character"),
    ("offset", '"0"', "must be a non-negative number"),
])  # fmt: skip
def test_manifest_fields_that_are_not_what_they_claim(tmp_path: Path, field: str, value: str, problem: str):
    write_tone(tmp_path / "a.wav", seconds=2.0)
    (tmp_path / "m.jsonl").write_text(f'{{"id": "a", "audio": "a.wav", "{field}": {value}}}\n')
    refused("prepare", tmp_path / "m.jsonl", "-o", tmp_path / "store", "--no-progress", names=problem)
    refused("prepare", tmp_path / "m.jsonl", "-o", tmp_path / "store", "--skip-bad", "--no-progress",
            names="no usable utterances")  # fmt: skip


def test_a_null_offset_is_the_start(tmp_path: Path):
    write_tone(tmp_path / "a.wav", seconds=1.0)
    (tmp_path / "m.jsonl").write_text('{"id": "a", "audio": "a.wav", "offset": null, "text": "x"}\n')
    run_cli("prepare", tmp_path / "m.jsonl", "-o", tmp_path / "store", "--no-progress")


# --- 9. importers that dropped or duplicated data ---


def test_importers_refuse_duplicates_and_speakers_with_spaces(tmp_path: Path, kaldi_dir: Path):
    (kaldi_dir / "segments").write_text("s1 utt1 0.0 0.2\ns1 utt1 0.2 0.4\n")
    refused("import", "kaldi", kaldi_dir, "-o", tmp_path / "m.jsonl", names="segments, line 2: duplicate segment id")
    (kaldi_dir / "segments").unlink()
    (kaldi_dir / "utt2spk").write_text("utt1 spk 1\n")
    refused("import", "kaldi", kaldi_dir, "-o", tmp_path / "m.jsonl", names="cannot contain white space")
    for chapter in ("19/198", "19/199"):
        (tmp_path / "ls" / chapter).mkdir(parents=True)
        write_tone(tmp_path / "ls" / chapter / "19-198-0001.flac", format="FLAC")
        (tmp_path / "ls" / chapter / "x.trans.txt").write_text("19-198-0001 HELLO\n")
    refused("import", "librispeech", tmp_path / "ls", "-o", tmp_path / "ls.jsonl", names="'19-198-0001' is also on")
    assert not (tmp_path / "m.jsonl").exists() and not (tmp_path / "ls.jsonl").exists()


# --- 4. sizes without bounds ---


@pytest.mark.parametrize("command, option, value", [
    ("transcribe", "--beam-size", "100000000"),
    ("decode", "--beam-size", "1000000000"),
    ("decode", "--nbest", "100000"),
    ("prepare", "--sample-rate", "10000000000"),
    ("train", "--hidden-size", "10000000"),
    ("train", "--layers", "1000"),
    ("train", "--batch-frames", "100000000000"),
    ("train", "--dnn-context", "-1"),
    ("prepare", "--num-ceps", "0"),
])  # fmt: skip
def test_every_size_has_a_bound_checked_before_any_work(tmp_path: Path, command: str, option: str, value: str):
    missing = tmp_path / "missing"
    arguments = {
        "transcribe": ["transcribe", missing / "model.pt", missing / "a.wav"],
        "decode": ["decode", missing / "model.pt", missing / "dev.store", "-o", tmp_path / "hyp.jsonl"],
        "prepare": ["prepare", missing / "m.jsonl", "-o", tmp_path / "store", "--features", "mfcc"],
        "train": ["train", "--train", missing / "t.store", "--valid", missing / "d.store", "-o", tmp_path / "exp",
                  "--architecture", "dnn"],
    }[command]  # fmt: skip
    message = refused(*arguments, option, value, names=option)
    assert "not found" not in message and not (tmp_path / "exp").exists()
