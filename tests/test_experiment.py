"""Experiment folders and stored decodings (experiment.py): one owner of their file names."""

import json
from pathlib import Path

import pytest

from asr_cli.errors import AsrCliError
from asr_cli.experiment import ExperimentFolder, StoredDecoding
from tests.helpers import run_cli


def _words_of(store: Path) -> list[str]:
    from asr_cli.store import FeatureStore
    from asr_cli.text import normalize_text

    return sorted({word for entry in FeatureStore(store) for word in normalize_text(entry.text).split()})


def test_a_packed_run_is_still_a_run_that_can_be_trained_on(tmp_path: Path, fixture_stores):
    """The README's sequence: train, pack an LM and a lexicon beside the model, then train on to more epochs
    (once refused: the folder's lexicon.txt was not on a hand-kept list of a run's files)."""
    train_store, dev_store = fixture_stores
    exp = tmp_path / "exp"
    train = [
        "train",
        "--train",
        train_store,
        "--valid",
        dev_store,
        "-o",
        exp,
        "--layers",
        "1",
        "--hidden-size",
        "16",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    run_cli(*train, "--epochs", "1")
    run_cli("lm", train_store, "-o", tmp_path / "words.arpa", "--order", "2")
    (tmp_path / "words.txt").write_text("\n".join(_words_of(train_store)) + "\n")
    run_cli("pack", exp / "model.pt", "--lm", tmp_path / "words.arpa", "--lexicon", tmp_path / "words.txt")
    assert {"lm.arpa", "decoding.json", "lexicon.txt"} <= {p.name for p in exp.iterdir()}
    run_cli(*train, "--resume", "--epochs", "2")
    epochs = [json.loads(line)["epoch"] for line in (exp / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert StoredDecoding.read(exp / "model.pt").lexicon_file == "lexicon.txt"


def test_every_file_a_run_pack_or_recipe_writes_is_owned():
    owned = ExperimentFolder.owned_names()
    for name in (
        ExperimentFolder.MODEL_FILE,
        ExperimentFolder.LAST_CHECKPOINT,
        ExperimentFolder.SUMMARY_FILE,
        *StoredDecoding.files(),
    ):
        assert name in owned


def test_a_damaged_or_dangling_stored_decoding_is_an_error(tmp_path: Path):
    (tmp_path / "model.pt").write_bytes(b"")
    assert StoredDecoding.read(tmp_path / "model.pt") is None
    (tmp_path / "decoding.json").write_text('{"lm_weight": "heavy", "nonsense": 1}')
    with pytest.raises(AsrCliError, match="damaged stored decoding"):
        StoredDecoding.read(tmp_path / "model.pt")
    (tmp_path / "decoding.json").write_text(json.dumps(StoredDecoding().to_dict()))
    with pytest.raises(AsrCliError, match="names lm.arpa, which is not in"):
        StoredDecoding.read(tmp_path / "model.pt")
    (tmp_path / "lm.arpa").write_text("")
    stored = StoredDecoding.read(tmp_path / "model.pt")
    search = stored.search(tmp_path, beam_size=4)
    assert search.lm_path == str(tmp_path / "lm.arpa") and search.beam_size == 4 and search.lexicon_path is None
