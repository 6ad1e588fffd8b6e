"""Hostile input, second pass (issue 22): one test per cause, each of which failed before its fix. Every case
runs through the command line and checks the exit code, that the message names the problem, and that no
input is damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from asr_cli.manifest import Utterance, write_manifest
from tests.helpers import checksums, refused, run_cli, write_tone


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


# --- 5. a signal raised inside a finaliser ---


def test_a_stop_swallowed_by_a_finaliser_is_raised_again_by_the_work_loop():
    """Python prints "Exception ignored in ..." for an exception raised in __del__, and carries on: the handler
    records the signal first, and the loops' raise_if_stopped() stops the work all the same."""
    import subprocess
    import sys

    code = """
import os, signal, sys, time
from asr_cli import signals
signals.install()

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here, inside the finaliser, and its exception is swallowed

Finalised()
print("carried on", flush=True)
try:
    for step in range(3):
        signals.raise_if_stopped()
        print("worked", step, flush=True)
except signals.Terminated:
    sys.exit(143)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["carried on"]  # the first exception was swallowed by the finaliser
    assert result.returncode == 143 and "Traceback" not in result.stderr  # ... and not reported as ignored


# --- 6. NaN and degenerate numbers ---


def test_nan_frames_and_statistics_are_refused_where_they_enter(tmp_path: Path, fixture_model: Path, fixture_stores):
    import numpy as np

    store = Path(shutil.copytree(fixture_stores[1], tmp_path / "nan.store"))
    frames = np.memmap(store / "feats-000.bin", dtype=np.float16, mode="r+")
    frames[:10] = np.nan
    frames.flush()
    del frames
    refused("decode", fixture_model, store, "-o", tmp_path / "hyp.jsonl", "--no-progress",
            names="has NaN or infinite frames")  # fmt: skip
    assert not (tmp_path / "hyp.jsonl").exists()
    (store / "cmvn.json").write_text('{"count": 10, "sum": [NaN], "sum_sq": [1.0]}')
    refused("train", "--train", store, "--valid", fixture_stores[1], "-o", tmp_path / "exp", "--no-progress",
            names="CMVN statistics are not finite")  # fmt: skip
    (store / "cmvn.json").write_text("not json")
    refused("train", "--train", store, "--valid", fixture_stores[1], "-o", tmp_path / "exp", "--no-progress",
            names="damaged CMVN statistics")  # fmt: skip


@pytest.mark.parametrize("damage, problem", [
    (lambda c: c["state_dict"]["output.weight"].fill_(float("nan")), "output.weight holds NaN"),
    (lambda c: c["state_dict"]["cmvn_std"].fill_(0.0), "CMVN standard deviations are not all positive"),
    (lambda c: c.__setitem__("vocabulary", [c["vocabulary"][0]] * len(c["vocabulary"])), "lists a unit twice"),
])  # fmt: skip
def test_model_files_with_unusable_numbers_are_refused(tmp_path: Path, fixture_model: Path, fixture_stores, damage,
                                                       problem):  # fmt: skip
    import torch

    contents = torch.load(fixture_model, weights_only=True)
    damage(contents)
    (tmp_path / "exp").mkdir()
    torch.save(contents, tmp_path / "exp" / "model.pt")
    bad = tmp_path / "exp" / "model.pt"
    refused("decode", bad, fixture_stores[1], "-o", tmp_path / "hyp.jsonl", "--no-progress", names=problem)
    refused("export", bad, "-o", tmp_path / "model.ts", names=problem)
    refused("train", "--train", fixture_stores[0], "--valid", fixture_stores[1], "-o", tmp_path / "tuned",
            "--init-from", bad, "--epochs", "1", "--no-progress", names=problem)  # fmt: skip
    assert not (tmp_path / "model.ts").exists() and not (tmp_path / "tuned" / "model.pt").exists()


def test_a_run_whose_every_step_was_skipped_fails_without_a_model(tmp_path: Path, fixture_stores, monkeypatch):
    import asr_cli.train as train_module

    real = train_module.compute_loss

    def nan_loss(*args, **kwargs):
        loss = real(*args, **kwargs)
        return train_module.Loss(loss.value * float("nan"), loss.tokens, loss.log_probs, loss.output_lengths)

    monkeypatch.setattr(train_module, "compute_loss", nan_loss)
    refused("train", "--train", fixture_stores[0], "--valid", fixture_stores[1], "-o", tmp_path / "exp",
            "--epochs", "1", "--layers", "1", "--hidden-size", "8", "--num-workers", "0", "--no-progress",
            names="every step's loss was NaN or infinite")  # fmt: skip
    assert not (tmp_path / "exp" / "model.pt").exists()


# --- 12. train's interrupt at the edges ---


def test_a_stop_during_the_last_validation_lets_the_run_finish_whole(tmp_path: Path, fixture_stores, monkeypatch):
    import signal

    import asr_cli.train as train_module

    real = train_module.evaluate
    monkeypatch.setattr(
        train_module, "evaluate", lambda *a, **k: (signal.raise_signal(signal.SIGINT), real(*a, **k))[1]
    )
    arguments = ["train", "--train", fixture_stores[0], "--valid", fixture_stores[1], "-o", tmp_path / "exp",
                 "--layers", "1", "--hidden-size", "8", "--num-workers", "0", "--no-progress"]  # fmt: skip
    result = run_cli(*arguments, "--epochs", "2", check=False)  # stopped after epoch 1's validation
    assert result.code == 130 and "resume" in result.stderr
    assert len((tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()) == 1
    result = run_cli(*arguments, "--epochs", "2", "--resume", check=False)  # the stop comes in the last validation
    assert result.code == 0 and "the run has finished" in result.stderr
    assert (tmp_path / "exp" / "summary.json").is_file()
    assert len((tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()) == 2


# --- 7, 8. damaged stores, model files and LMs: one-line errors ---


@pytest.mark.parametrize("damage, problem", [
    (lambda s: s["store.json"].update(dtype="float128"), "dtype must be one of float16, float32"),
    (lambda s: s["store.json"]["arrays"][0].update(num_frames="many"), "num_frames must be a whole number"),
    (lambda s: s["index"][0].update(num_frames=-5), "num_frames must be whole numbers >= 0"),
    (lambda s: s["index"][0].update(text=5), "text and speaker must be text or null"),
    (lambda s: s["index"].append(dict(s["index"][0])), "listed twice"),
])  # fmt: skip
def test_a_damaged_store_is_refused_naming_the_file(tmp_path: Path, fixture_model: Path, fixture_stores, damage,
                                                    problem):  # fmt: skip
    import json

    store = Path(shutil.copytree(fixture_stores[1], tmp_path / "store"))
    parts = {"store.json": json.loads((store / "store.json").read_text()),
             "index": [json.loads(line) for line in (store / "index.jsonl").read_text().splitlines()]}  # fmt: skip
    damage(parts)
    (store / "store.json").write_text(json.dumps(parts["store.json"]))
    (store / "index.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in parts["index"]))
    refused("decode", fixture_model, store, "-o", tmp_path / "hyp.jsonl", "--no-progress", names=problem)


def test_model_files_and_lms_of_the_wrong_shape(tmp_path: Path, fixture_model: Path, fixture_stores):
    import torch

    (tmp_path / "empty.pt").write_bytes(b"")
    refused("decode", tmp_path / "empty.pt", fixture_stores[1], "-o", tmp_path / "h.jsonl", names="not a readable")
    contents = torch.load(fixture_model, weights_only=True)
    contents["feature_config"] = {"kind": "fbank", "num_mel_bins": "eighty"}
    torch.save(contents, tmp_path / "typed.pt")
    refused("decode", tmp_path / "typed.pt", fixture_stores[1], "-o", tmp_path / "h.jsonl", names="inconsistent")
    (tmp_path / "zero.arpa").write_text("\\data\\\nngram 0=1\n\n\\end\\\n")
    for command in (["decode", fixture_model, fixture_stores[1], "-o", tmp_path / "h.jsonl", "--lm", tmp_path / "zero.arpa"],
                    ["pack", fixture_model, "--lm", tmp_path / "zero.arpa"]):  # fmt: skip
        refused(*command, names="n-gram order 0 is not between 1 and")
    (tmp_path / "over.arpa").write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-99\t<s>\n-1\t</s>\n0.5\ta\n\n\\end\\\n")
    refused("decode", fixture_model, fixture_stores[1], "-o", tmp_path / "h.jsonl", "--lm", tmp_path / "over.arpa",
            names="above 0 (a probability over 1)")  # fmt: skip


# --- 11. decode --skip-bad ---


def test_decode_skip_bad_leaves_out_missing_and_unreadable_audio(tmp_path: Path, fixture_model: Path):
    import json

    write_tone(tmp_path / "good.wav")
    (tmp_path / "broken.wav").write_bytes(b"RIFF....not audio")
    run_cli("decode", fixture_model, tmp_path / "good.wav", tmp_path / "broken.wav", tmp_path / "missing.wav",
            "-o", tmp_path / "hyp.jsonl", "--skip-bad", "--no-progress")  # fmt: skip
    assert [json.loads(line)["id"] for line in (tmp_path / "hyp.jsonl").read_text().splitlines()] == ["good"]
    refused("decode", fixture_model, tmp_path / "good.wav", tmp_path / "missing.wav", "-o", tmp_path / "x.jsonl",
            "--no-progress", names="missing.wav")  # fmt: skip


# --- 13. an interrupted synth ---


def test_an_interrupted_synth_leaves_nothing(tmp_path: Path, monkeypatch):
    from asr_cli import synth

    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    real = synth._synthesise
    monkeypatch.setattr(synth, "_synthesise", interrupted)
    result = run_cli("synth", tmp_path / "corpus", "--num-train", "5", "--num-dev", "1", "--num-test", "1",
                     "--no-progress", check=False)  # fmt: skip
    assert result.code == 130 and "partial outputs were removed" in result.stderr
    assert not list(tmp_path.iterdir())  # no corpus, no temporary folder, no WAV files


# --- 14. the smaller ones ---


def test_options_that_would_be_ignored_or_misread(tmp_path: Path, fixture_model: Path, fixture_stores, caplog):
    refused("split", tmp_path / "m.jsonl", "--train-output", "-", "--dev-output", tmp_path / "d.jsonl",
            names="standard output (-) is neither")  # fmt: skip
    assert not Path("-").exists()
    refused("decode", fixture_model, fixture_stores[1], "-o", tmp_path / "h.jsonl", "--unlisted-word-penalty", "2",
            names="--unlisted-word-penalty is the cost of a word outside --lexicon")  # fmt: skip
    small = ["--epochs", "1", "--layers", "1", "--hidden-size", "8", "--num-workers", "0", "--no-progress"]
    result = run_cli("train", "--train", fixture_stores[0], "--train", fixture_stores[0], "--valid", fixture_stores[0],
                     "-o", tmp_path / "exp", *small)  # fmt: skip
    assert "more than once: its utterances count that many times" in result.stderr
    assert "is also a --train store: its scores measure memorisation" in result.stderr


def test_audio_that_cannot_be_speech_and_samples_beyond_full_scale(tmp_path: Path, fixture_model: Path, caplog):
    import numpy as np
    import soundfile

    soundfile.write(str(tmp_path / "slow.wav"), np.zeros(100, np.float32), 100)
    refused("transcribe", fixture_model, tmp_path / "slow.wav", names="100 Hz audio cannot hold speech")
    loud = (1000 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    soundfile.write(str(tmp_path / "loud.wav"), loud, 16000, subtype="FLOAT")
    result = run_cli("transcribe", fixture_model, tmp_path / "loud.wav")
    assert "samples reach 1000, beyond [-1, 1]" in result.stderr
