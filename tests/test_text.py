"""Text: normalisation (shared by training, LMs and scoring) and the model's character vocabulary."""

from pathlib import Path

import pytest

from asr_cli.config import NormalizeConfig
from asr_cli.errors import AsrCliError
from asr_cli.text import BLANK_INDEX, Vocabulary, normalize_text


def test_unicode_case_folding():
    assert normalize_text("Café  ÜBER Straße") == "café über strasse"


def test_apostrophes_inside_words_are_kept_and_quotes_go():
    assert normalize_text("Don\u2019t stop 'quoted' rock'n'roll, O'Neil!") == "don't stop quoted rock'n'roll o'neil"


def test_each_step_can_be_switched_off():
    assert normalize_text("Hello, World", NormalizeConfig(case_fold=False)) == "Hello World"
    assert normalize_text("a,b  c", NormalizeConfig(remove_punctuation=False)) == "a,b c"
    assert normalize_text(" a  b ", NormalizeConfig(collapse_whitespace=False)) == " a  b "
    assert NormalizeConfig(False, False, False).describe() == "none"


def test_vocabulary_from_texts_is_sorted_and_blank_is_zero():
    vocabulary = Vocabulary.from_texts(["ba c", "ab"])
    assert vocabulary.characters == (" ", "a", "b", "c") and vocabulary.size == 5
    assert vocabulary.encode("cab") == [4, 2, 3]
    assert vocabulary.decode([BLANK_INDEX, 4, BLANK_INDEX, 2, 3]) == "cab"  # blanks are not characters
    assert vocabulary.unknown_characters("abz!") == {"z", "!"}
    with pytest.raises(KeyError):
        vocabulary.encode("z")


def test_vocabulary_file(tmp_path: Path):
    (tmp_path / "vocab.txt").write_text("a\nb\n<space>\n'\n")
    vocabulary = Vocabulary.read(tmp_path / "vocab.txt")
    assert vocabulary.characters == ("a", "b", " ", "'") and vocabulary.size == 5
    assert vocabulary.decode(vocabulary.encode("ab 'a")) == "ab 'a"
    (tmp_path / "bad.txt").write_text("ab\n")
    with pytest.raises(AsrCliError, match="line 1: expected one character"):
        Vocabulary.read(tmp_path / "bad.txt")


def test_bad_vocabulary_files(tmp_path: Path):
    (tmp_path / "twice.txt").write_text("a\nb\na\n")
    with pytest.raises(AsrCliError, match="line 3: 'a' is listed twice"):
        Vocabulary.read(tmp_path / "twice.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(AsrCliError, match="the vocabulary is empty"):
        Vocabulary.read(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("é\n".encode("latin-1"))
    with pytest.raises(AsrCliError, match="not valid UTF-8"):
        Vocabulary.read(tmp_path / "latin1.txt")
    with pytest.raises(AsrCliError, match="cannot read the vocabulary"):
        Vocabulary.read(tmp_path / "missing.txt")


def test_invisible_format_characters_are_removed():
    from asr_cli.text import normalize_text

    assert normalize_text("wo\u2060rd\u200b and soft\u00adhyphen") == "word and softhyphen"
