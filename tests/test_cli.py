"""The command line: help for every option, import and prepare end to end, errors as one line."""

import json
from pathlib import Path

import pytest
import typer

from asr_cli.cli import app, command_tree
from tests.helpers import SPEECHOCEAN, require, run_cli


def test_every_command_and_option_has_help():
    root = typer.main.get_command(app)
    names = {path for path, _ in command_tree(root)}
    assert {("prepare",), ("import", "kaldi"), ("import", "librispeech"), ("import", "csv")} <= names
    for path, command in command_tree(root):
        assert command.help, f"{' '.join(path)} has no help text"
        for param in command.params:
            assert getattr(param, "help", None), f"{' '.join(path)}: {param.name} has no help"


def test_help_lists_every_command():
    output = run_cli("--help").stdout
    registered = set(typer.main.get_command(app).commands)
    assert (
        len(registered) >= 12
    )  # import, split, prepare, train, decode, score, transcribe, export, pack, info, lm, synth
    for name in registered:
        assert f" {name} " in output, f"{name} missing from --help"
    listed = [
        line.split()[1] for line in output.splitlines() if len(line.split()) > 2 and line.split()[1] in registered
    ]
    assert listed == [
        "import",
        "split",
        "prepare",
        "train",
        "lm",
        "decode",
        "score",
        "transcribe",
        "stream",
        "pack",
        "info",
        "export",
        "synth",
        "perplexity",
    ]  # in the order a user meets them
    assert {"kaldi", "librispeech", "csv"} <= set(run_cli("import", "--help").stdout.split())


def test_import_and_prepare_from_the_command_line(tmp_path: Path):
    require(SPEECHOCEAN)
    run_cli("import", "kaldi", str(SPEECHOCEAN), "-o", str(tmp_path / "all.jsonl"))
    lines = (tmp_path / "all.jsonl").read_text().splitlines()
    assert len(lines) == 2500
    (tmp_path / "few.jsonl").write_text("\n".join(lines[:6]) + "\n")
    result = run_cli(
        "prepare",
        str(tmp_path / "few.jsonl"),
        "-o",
        str(tmp_path / "store"),
        "--no-progress",
        "--features",
        "mfcc",
        "--jobs",
        "2",
    )
    assert "6 utterances" in result.stdout and "skipped: 0" in result.stdout
    metadata = json.loads((tmp_path / "store" / "store.json").read_text())
    assert metadata["feature_config"]["kind"] == "mfcc" and metadata["dim"] == 13


def test_user_errors_are_one_clear_message(tmp_path: Path):
    result = run_cli("prepare", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "s"), check=False)
    assert result.code == 1
    assert result.stderr.startswith("error: manifest file not found")
    assert "Traceback" not in result.stderr
    (tmp_path / "wav.scp").write_text("a sox a.wav -t wav - |\n")
    result = run_cli("import", "kaldi", str(tmp_path), "-o", str(tmp_path / "m.jsonl"), check=False)
    assert result.code == 1 and "line 1: piped command" in result.stderr
    assert not (tmp_path / "m.jsonl").exists()


@pytest.mark.parametrize("shard", ["3", "a/b", "0/2"])
def test_bad_shard_option(tmp_path: Path, shard: str):
    (tmp_path / "m.jsonl").write_text("")
    result = run_cli("prepare", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "s"), "--shard", shard, check=False)
    assert result.code == 1 and "--shard" in result.stderr


def test_help_shows_extras_in_brackets(monkeypatch):
    """Typer's rich markup eats an unescaped [name]: `pip install 'asr-cli[vad]'` must reach the reader whole."""
    monkeypatch.setenv("COLUMNS", "300")
    assert "pip install 'asr-cli[vad]'" in run_cli("decode", "--help").stdout
    assert "pip install 'asr-cli[microphone]'" in run_cli("stream", "--help").stdout
    assert "pip install 'asr-cli[encoder]'" in run_cli("prepare", "--help").stdout
