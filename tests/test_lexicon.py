"""Lexicon-constrained search: reading lexicons, exhaustive-search checks, and bad lexicons through decode."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from asr_cli.cli import run
from asr_cli.config import PHONE_UNITS, SearchConfig
from asr_cli.errors import AsrCliError
from asr_cli.kneser_ney import build_kneser_ney
from asr_cli.lexicon import Lexicon, check_units, read_lexicon
from asr_cli.lm import SENTENCE_END, SENTENCE_START, read_arpa, write_arpa
from asr_cli.lm_tables import build_lm_tables, empty_lm_tables, restrict_to_lexicon
from asr_cli.recognizer import load_model
from asr_cli.search import beam_search
from asr_cli.store import FeatureStore
from asr_cli.text import normalize_text
from tests.helpers import (
    EXHAUSTIVE,
    SPACE,
    VOCABULARY,
    certain_labels,
    labelling_probabilities,
    random_log_probs,
    refused,
)


def words_of(labelling: tuple) -> list[str]:
    return VOCABULARY.decode(labelling).split()


def lexicon_of(*words: str) -> Lexicon:
    lexicon = Lexicon()
    for word in words:
        lexicon.add(word, tuple(word))
    return lexicon


@pytest.mark.parametrize("seed", range(10))
def test_wide_lexicon_search_finds_the_best_labellings_made_of_lexicon_words(seed):
    rng = np.random.default_rng(seed)
    log_probs = random_log_probs(rng, int(rng.integers(2, 7)))
    lexicon = lexicon_of(*rng.choice(["a", "b", "ab", "ba", "bb", "aab"], size=3, replace=False))
    tables = restrict_to_lexicon(empty_lm_tables(VOCABULARY.size), lexicon, VOCABULARY, oov_penalty=10.0)
    exact = labelling_probabilities(log_probs.astype(np.float64))
    allowed = sorted(
        (
            (labelling, log_prob)
            for labelling, log_prob in exact.items()
            if all(word in lexicon.pronunciations for word in words_of(labelling))
        ),
        key=lambda x: -x[1],
    )
    hypotheses = beam_search(log_probs, VOCABULARY, EXHAUSTIVE, tables)
    for hypothesis, (labelling, log_prob) in zip(hypotheses, allowed):
        assert tuple(hypothesis.label_ids) == labelling
        assert hypothesis.score == pytest.approx(log_prob, abs=1e-4)


def _lm_score(lm, words: list[str], weight: float, bonus: float) -> float:
    """Natural-log word-LM score of a sentence as the search adds it: weight * ln P per word and </s>, bonus per word."""
    context, total = [SENTENCE_START], 0.0
    for word in [*words, SENTENCE_END]:
        total += weight * lm.log10_prob(word, context[-(lm.order - 1) :]) * math.log(10)
        total += bonus if word != SENTENCE_END else 0.0
        context.append(word)
    return total


@pytest.mark.parametrize("seed", range(6))
def test_wide_lexicon_search_with_a_word_lm_ranks_like_brute_force(tmp_path: Path, seed):
    write_arpa(build_kneser_ney([["ab", "ba"], ["ab"], ["ba", "ba", "ab"], ["a", "b"]], 2), tmp_path / "words.arpa")
    lm = read_arpa(tmp_path / "words.arpa")
    lexicon = lexicon_of("ab", "ba", "a")  # "b" is known to the LM but not allowed
    tables = restrict_to_lexicon(build_lm_tables(lm, VOCABULARY, "word"), lexicon, VOCABULARY, oov_penalty=10.0)
    options = SearchConfig(**{**EXHAUSTIVE.__dict__, "lm_weight": 0.7, "word_bonus": 0.5})
    log_probs = random_log_probs(np.random.default_rng(seed), 6)
    exact = labelling_probabilities(log_probs.astype(np.float64))
    expected = sorted(
        (
            (labelling, log_prob + _lm_score(lm, words_of(labelling), 0.7, 0.5))
            for labelling, log_prob in exact.items()
            if all(word in lexicon.pronunciations for word in words_of(labelling))
        ),
        key=lambda x: -x[1],
    )
    hypotheses = beam_search(log_probs, VOCABULARY, options, tables)
    for hypothesis, (labelling, score) in zip(hypotheses, expected):
        assert words_of(tuple(hypothesis.label_ids)) == words_of(labelling)
        assert hypothesis.score == pytest.approx(score, abs=1e-4)


def test_words_outside_the_lexicon_are_refused_or_cost_the_unlisted_penalty():
    tables = restrict_to_lexicon(empty_lm_tables(VOCABULARY.size), lexicon_of("ab"), VOCABULARY, oov_penalty=10.0)
    # The acoustics prefer "bb" (P .486) to "ab" (P .257).
    log_probs = np.log(
        np.array([[0.05, 0.3, 0.6, 0.05], [0.9, 0.02, 0.03, 0.05], [0.04, 0.03, 0.9, 0.03]], dtype=np.float32)
    )

    def best(**options) -> str:
        return VOCABULARY.decode(
            beam_search(log_probs, VOCABULARY, SearchConfig(beam_size=8, **options), tables)[0].label_ids
        )

    assert best() == "ab"
    assert best(unlisted_word_penalty=0.0) == "bb"
    assert best(unlisted_word_penalty=0.5) == "bb"  # ln(.486 / .257) = 0.64 > 0.5
    assert best(unlisted_word_penalty=1.0) == "ab"
    with pytest.raises(AsrCliError, match="unlisted_word_penalty"):
        SearchConfig(unlisted_word_penalty=-1.0)


def test_a_lexicon_search_survives_frames_where_pruning_leaves_only_forbidden_tokens():
    tables = restrict_to_lexicon(empty_lm_tables(VOCABULARY.size), lexicon_of("a", "ab"), VOCABULARY, oov_penalty=10.0)
    # "a b ": pruning tries only the certain token, and "b" begins no lexicon word; a blank still waits it out.
    hypothesis = beam_search(certain_labels(1, SPACE, 2, SPACE), VOCABULARY, SearchConfig(beam_size=4), tables)[0]
    assert words_of(tuple(hypothesis.label_ids)) == ["a"] and math.isfinite(hypothesis.score)


def test_a_search_whose_every_prefix_ends_in_mid_word_keeps_only_lexicon_words():
    tables = restrict_to_lexicon(empty_lm_tables(VOCABULARY.size), lexicon_of("aab"), VOCABULARY, oov_penalty=10.0)
    hypothesis = beam_search(certain_labels(1, 1), VOCABULARY, SearchConfig(beam_size=1), tables)[0]
    assert hypothesis.score == -math.inf and hypothesis.label_ids == []


def test_reading_word_lists_and_kaldi_lexicons(tmp_path: Path):
    words = tmp_path / "words.txt"
    words.write_text("HELLO\nworld\n\nHello\n", encoding="utf-8")
    assert read_lexicon(words).pronunciations == {"hello": [tuple("hello")], "world": [tuple("world")]}
    kaldi = tmp_path / "lexicon.txt"
    kaldi.write_text("READ R IY D\nREAD R EH D\nA AH\nA 0.5 EY\n", encoding="utf-8")
    assert read_lexicon(kaldi, PHONE_UNITS).pronunciations == {
        "read": [("R", "IY", "D"), ("R", "EH", "D")],
        "a": [("AH",), ("EY",)],
    }
    assert read_lexicon(kaldi).pronunciations == {"read": [tuple("read")], "a": [("a",)]}  # characters: the spelling


@pytest.mark.parametrize(
    "content, problem",
    [
        ("", "has no words"),
        ("\n  \n", "has no words"),
        ("hello\n!!!\n", "line 2"),
        ("hello\nhello world\n", None),  # a Kaldi line: "world" is hello's (one-unit) pronunciation
    ],
)
def test_bad_lexicon_files_are_refused_with_their_line(tmp_path: Path, content: str, problem):
    path = tmp_path / "lexicon.txt"
    path.write_text(content, encoding="utf-8")
    if problem is None:
        assert read_lexicon(path).words == ["hello"]
        return
    with pytest.raises(AsrCliError, match=problem):
        read_lexicon(path)


def test_a_phone_lexicon_needs_pronunciations_and_a_lexicon_must_be_text(tmp_path: Path):
    path = tmp_path / "lexicon.txt"
    path.write_text("read R IY D\nwrite\n", encoding="utf-8")
    with pytest.raises(AsrCliError, match="line 2.*no pronunciation"):
        read_lexicon(path, PHONE_UNITS)
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(AsrCliError, match="UTF-8"):
        read_lexicon(path)
    with pytest.raises(AsrCliError, match="not found"):
        read_lexicon(tmp_path / "missing.txt")
    with pytest.raises(AsrCliError, match="folder"):
        read_lexicon(tmp_path)


def test_units_the_model_lacks_are_named():
    with pytest.raises(AsrCliError, match="'café' uses 'é'"):
        check_units(lexicon_of("cafe", "café"), set("acef"))


def _training_words(store: Path) -> list[str]:
    return sorted({word for entry in FeatureStore(store).entries for word in normalize_text(entry.text).split()})


def test_decode_with_a_lexicon_outputs_only_its_words(
    tmp_path: Path, tiny_model: Path, tiny_stores, capsys, speechocean_utterances
):
    words = _training_words(tiny_stores[0])
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("\n".join(words) + "\n", encoding="utf-8")
    output = tmp_path / "hyp.jsonl"
    assert (
        run(
            [
                "decode",
                str(tiny_model),
                str(tiny_stores[1]),
                "-o",
                str(output),
                "--beam-size",
                "8",
                "--lexicon",
                str(lexicon),
                "--no-progress",
            ]
        )
        == 0
    )
    assert f"{len(words):,} words" in capsys.readouterr().err
    decoded = [word for line in output.read_text().splitlines() for word in json.loads(line)["text"].split()]
    assert decoded and set(decoded) <= set(words)
    audio = {u.id: u.audio for u in speechocean_utterances}[FeatureStore(tiny_stores[1]).entries[0].id]
    transcribed = load_model(tiny_model).transcribe(audio, lexicon=lexicon).text.split()
    assert transcribed and set(transcribed) <= set(words)


def test_bad_lexicons_through_decode(tmp_path: Path, tiny_model: Path, tiny_stores):
    base = ["decode", tiny_model, tiny_stores[1], "-o", tmp_path / "hyp.jsonl", "--beam-size", "4", "--no-progress"]
    refused(*base, "--lexicon", tmp_path / "missing.txt", names="missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    refused(*base, "--lexicon", empty, names="has no words")
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("hello\nnaïve\n", encoding="utf-8")
    refused(*base, "--lexicon", foreign, names="'naïve' uses 'ï'")
    arpa = tmp_path / "words.arpa"
    write_arpa(build_kneser_ney([["hello", "there"]], 2), arpa)
    other = tmp_path / "other.txt"
    other.write_text("goodbye\n")
    refused(*base, "--lm", arpa, "--lexicon", other, names="shares no word with the LM")
    refused(*base, "--lexicon", other, "--unlisted-word-penalty", "-2", names="--unlisted-word-penalty")
    assert not (tmp_path / "hyp.jsonl").exists()
