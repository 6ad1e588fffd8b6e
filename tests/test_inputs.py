"""What kind of input a path is (inputs.py), and the modules that must import without torch."""

import subprocess
import sys
from pathlib import Path

import pytest

from asr_cli import inputs
from asr_cli.errors import AsrCliError


def test_kinds_of_input(tmp_path: Path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "store.json").write_text("{}")
    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "hyp.txt").write_text('\n{"id": "x", "text": "y"}\n')
    (tmp_path / "speech.FLAC").write_bytes(b"")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "text").write_text("utt1 HELLO\n")
    (tmp_path / "data" / "wav.scp").write_text("utt1 a.wav\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    kinds = {
        name: inputs.input_kind(tmp_path / name)
        for name in ("store", "a.jsonl", "hyp.txt", "speech.FLAC", "data/text", "notes.txt")
    }
    assert kinds == {
        "store": inputs.STORE,
        "a.jsonl": inputs.MANIFEST,
        "hyp.txt": inputs.MANIFEST,
        "speech.FLAC": inputs.AUDIO,
        "data/text": inputs.KALDI_TEXT,
        "notes.txt": inputs.TEXT,
    }
    with pytest.raises(AsrCliError, match="is a folder but not a feature store"):
        inputs.input_kind(tmp_path / "data")
    with pytest.raises(AsrCliError, match="LM text not found"):
        inputs.require_kind(tmp_path / "missing.txt", (inputs.TEXT,), "LM text")


@pytest.mark.parametrize(
    "module",
    [
        "store",
        "score",
        "lm",
        "writers",
        "results",
        "inputs",
        "cmvn",
        "config",
        "manifest",
        "importers",
        "text",
        "lexicon",
    ],
)
def test_light_modules_import_without_torch(module):
    code = (
        f"import sys, asr_cli.{module}; loaded = [m for m in ('torch', 'numba') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
