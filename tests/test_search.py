"""The search (search.py): greedy best path, and prefix beam search checked against exhaustive oracles, with word
and character LMs (built-in tables and KenLM)."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_cli.config import SearchConfig
from asr_cli.errors import AsrCliError
from asr_cli.kneser_ney import build_kneser_ney
from asr_cli.lm import read_arpa, tokenize, write_arpa
from asr_cli.lm_tables import build_lm_tables, sequence_hash
from asr_cli.search import beam_search, greedy_decode, greedy_hypotheses
from asr_cli.text import Vocabulary
from tests.helpers import EXHAUSTIVE, VOCABULARY, labelling_probabilities, random_log_probs


@pytest.mark.parametrize("seed", range(8))
def test_a_beam_of_one_follows_the_best_path_like_greedy(seed):
    """Beam 1 of the prefix search itself (`decode` routes beam 1 without an LM to greedy): it keeps one prefix
    per frame, which on these peaked outputs is the best path's collapse."""
    rng = np.random.default_rng(seed)
    best = rng.integers(0, 4, size=20)
    log_probs = np.log(np.full((20, 4), 0.02, np.float32))
    log_probs[np.arange(20), best] = np.log(0.94)
    beam = beam_search(log_probs, VOCABULARY, SearchConfig(beam_size=1, token_prune_k=4))[0]
    greedy = greedy_hypotheses(torch.from_numpy(log_probs)[None], torch.tensor([20]))[0]
    assert beam.label_ids == greedy.label_ids
    assert len(greedy.label_ids) > 5


@pytest.mark.parametrize("seed", range(12))
def test_wide_beam_finds_the_most_probable_labellings_exactly(seed):
    rng = np.random.default_rng(seed)
    vocab_size = int(rng.integers(2, 5))
    vocabulary = Vocabulary(tuple("ab "[: vocab_size - 1]))
    log_probs = random_log_probs(rng, int(rng.integers(1, 7)), vocab_size)
    exact = labelling_probabilities(log_probs.astype(np.float64))
    ranked = sorted(exact.items(), key=lambda item: -item[1])
    hypotheses = beam_search(log_probs, vocabulary, EXHAUSTIVE)
    for hypothesis, (labelling, log_prob) in zip(hypotheses, ranked):
        assert tuple(hypothesis.label_ids) == labelling
        assert hypothesis.score == pytest.approx(log_prob, abs=1e-4)


def _word_lm(tmp_path: Path, order: int = 2):
    sentences = [["ab", "ba"], ["ab"], ["ba", "ba", "ab"], ["a", "b"]]
    write_arpa(build_kneser_ney(sentences, order), tmp_path / "words.arpa")
    return build_lm_tables(read_arpa(tmp_path / "words.arpa"), VOCABULARY, "word")


def test_lm_weight_zero_equals_no_lm(tmp_path: Path):
    tables = _word_lm(tmp_path)
    rng = np.random.default_rng(5)
    for _ in range(10):
        log_probs = random_log_probs(rng, 12)
        plain = beam_search(log_probs, VOCABULARY, SearchConfig(beam_size=8, nbest=3))
        zero = beam_search(
            log_probs, VOCABULARY, SearchConfig(beam_size=8, nbest=3, lm_weight=0.0, word_bonus=0.0), tables
        )
        assert [h.label_ids for h in zero] == [h.label_ids for h in plain]
        assert [h.score for h in zero] == pytest.approx([h.score for h in plain], abs=1e-5)


def test_word_lm_moves_the_search_towards_known_words(tmp_path: Path):
    tables = _word_lm(tmp_path)
    # The acoustics slightly prefer "bb", which the LM has never seen; "ab" is a frequent word.
    log_probs = np.log(
        np.array([[0.05, 0.3, 0.6, 0.05], [0.9, 0.02, 0.03, 0.05], [0.04, 0.03, 0.9, 0.03]], dtype=np.float32)
    )  # P("bb") = .6 * .9 * .9 = .486 > P("ab") = .3 * .95 * .9 = .257
    plain = beam_search(log_probs, VOCABULARY, SearchConfig(beam_size=8))[0]
    fused = beam_search(log_probs, VOCABULARY, SearchConfig(beam_size=8, lm_weight=2.0, word_bonus=0.0), tables)[0]
    assert VOCABULARY.decode(plain.label_ids) == "bb"
    assert VOCABULARY.decode(fused.label_ids) == "ab"


def test_oov_penalty_steers_away_from_words_the_lm_cannot_know(tmp_path: Path):
    tables = _word_lm(tmp_path)  # "bb" is no word of the LM, and no LM word begins with it
    log_probs = np.log(
        np.array([[0.05, 0.3, 0.6, 0.05], [0.9, 0.02, 0.03, 0.05], [0.04, 0.03, 0.9, 0.03]], dtype=np.float32)
    )
    weak_lm = dict(beam_size=8, lm_weight=0.1, word_bonus=0.0)
    without = beam_search(log_probs, VOCABULARY, SearchConfig(oov_penalty=0.0, **weak_lm), tables)[0]
    with_penalty = beam_search(log_probs, VOCABULARY, SearchConfig(oov_penalty=10.0, **weak_lm), tables)[0]
    assert VOCABULARY.decode(without.label_ids) == "bb"
    assert VOCABULARY.decode(with_penalty.label_ids) == "ab"


def test_unfinished_words_look_ahead_to_their_best_unigram(tmp_path: Path):
    sentences = [["ab", "ba"], ["ab"], ["ab", "bab"], ["b"]]
    write_arpa(build_kneser_ney(sentences, 2), tmp_path / "words.arpa")
    lm = read_arpa(tmp_path / "words.arpa")
    tables = build_lm_tables(lm, VOCABULARY, "word")
    unigram = {word: lm.ngrams[0][(word,)][0] * math.log(10) for word in ("ab", "ba", "bab", "b")}
    a, b = 1, 2
    expected = {
        (a,): unigram["ab"],
        (a, b): unigram["ab"],
        (b,): max(unigram["ba"], unigram["bab"], unigram["b"]),
        (b, a): max(unigram["ba"], unigram["bab"]),
        (b, a, b): unigram["bab"],
    }
    assert len(tables.arrays.prefix_hashes) == len(expected)
    for labels, log_prob in expected.items():
        assert tables.arrays.prefix_hashes[sequence_hash(labels)] == pytest.approx(log_prob)


def arpa_log_prob(lm, context: tuple[str, ...], token: str) -> float:
    """ln P(token | context) read off the ARPA tables with back-off, independently of the search's hashed tables."""
    backoff = 0.0
    for used in range(min(len(context), lm.order - 1), -1, -1):
        history = context[len(context) - used :]
        if history + (token,) in lm.ngrams[used]:
            return (backoff + lm.ngrams[used][history + (token,)][0]) * math.log(10)
        if used and history in lm.ngrams[used - 1]:
            backoff += lm.ngrams[used - 1][history][1]
    raise AssertionError(f"{token} unknown")


@pytest.mark.parametrize("seed", range(6))
def test_character_lm_scores_every_character_and_the_end_exactly(tmp_path: Path, seed):
    sentences = [tokenize(text, "char") for text in ("ab ba", "ab", "ba ab", "b a")]
    write_arpa(build_kneser_ney(sentences, 3), tmp_path / "chars.arpa")
    lm = read_arpa(tmp_path / "chars.arpa")
    tables = build_lm_tables(lm, VOCABULARY, "char")
    assert tables.unreachable == [] and tables.unmodelled == []
    weight, bonus = 0.7, 0.3
    log_probs = random_log_probs(np.random.default_rng(seed), 5)

    def fused(labelling: tuple, acoustic: float) -> float:
        tokens = ["<s>"] + tokenize(VOCABULARY.decode(labelling), "char") + ["</s>"]
        lm_score = sum(arpa_log_prob(lm, tuple(tokens[:i]), tokens[i]) for i in range(1, len(tokens)))
        return acoustic + weight * lm_score + bonus * len(labelling)

    expected = sorted(
        (
            (fused(labelling, acoustic), labelling)
            for labelling, acoustic in labelling_probabilities(log_probs.astype(np.float64)).items()
        ),
        reverse=True,
    )
    found = beam_search(
        log_probs, VOCABULARY, dataclasses.replace(EXHAUSTIVE, lm_weight=weight, word_bonus=bonus), tables
    )
    for hypothesis, (score, labelling) in zip(found, expected):
        assert tuple(hypothesis.label_ids) == labelling
        assert hypothesis.score == pytest.approx(score, abs=1e-4)
    zero = beam_search(log_probs, VOCABULARY, SearchConfig(beam_size=8, lm_weight=0.0, word_bonus=0.0), tables)
    assert zero[0].label_ids == beam_search(log_probs, VOCABULARY, SearchConfig(beam_size=8))[0].label_ids


def test_greedy_collapses_repeats_and_drops_blanks():
    best_path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 3, 3]])
    log_probs = torch.nn.functional.one_hot(best_path, 4).float().log_softmax(-1)
    assert greedy_decode(log_probs, torch.tensor([9])) == [[1, 1, 2, 3]]
    assert greedy_decode(log_probs, torch.tensor([4])) == [[1, 1]]
    assert greedy_hypotheses(log_probs, torch.tensor([9]))[0].frames == [0, 3, 4, 7]


def test_kenlm_backend_searches_exactly_like_the_built_in_tables(tmp_path: Path):
    """Same ARPA model, same search: KenLM's scores through the cache give the same n-best."""
    pytest.importorskip("kenlm")
    from asr_cli.lm import KenlmScorer
    from asr_cli.lm_tables import scorer_lm_tables

    sentences = [["ab", "ba"], ["ab"], ["ba", "ba", "ab"], ["a", "b"], ["bab", "ab", "ba"]]
    write_arpa(build_kneser_ney(sentences, 3), tmp_path / "words.arpa")
    built_in = build_lm_tables(read_arpa(tmp_path / "words.arpa"), VOCABULARY, "word")
    unigrams = read_arpa(tmp_path / "words.arpa", max_order=1)
    assert len(unigrams.ngrams[1]) == 0 and len(unigrams.ngrams[0]) == len(built_in.lm_tokens) + 3
    kenlm_tables = scorer_lm_tables(KenlmScorer(tmp_path / "words.arpa"), VOCABULARY, unigrams)
    rng = np.random.default_rng(7)
    lm_changed_something = False
    for _ in range(8):
        log_probs = random_log_probs(rng, 12)
        options = SearchConfig(beam_size=6, nbest=4, lm_weight=0.8, word_bonus=0.5)
        expected = beam_search(log_probs, VOCABULARY, options, built_in)
        found = beam_search(log_probs, VOCABULARY, options, kenlm_tables)
        assert [h.label_ids for h in found] == [h.label_ids for h in expected]
        assert [h.score for h in found] == pytest.approx([h.score for h in expected], abs=1e-4)
        without_lm = beam_search(log_probs, VOCABULARY, SearchConfig(beam_size=6, nbest=4))
        lm_changed_something |= [h.label_ids for h in without_lm] != [h.label_ids for h in found]
    assert lm_changed_something and len(kenlm_tables.arrays.cache) > 0


def test_kenlm_binary_needs_kenlm_and_the_arpa_reader_says_so(tmp_path: Path, monkeypatch):
    from asr_cli.lm import KENLM_BINARY_MAGIC, KenlmScorer

    binary = tmp_path / "words.binary"
    binary.write_bytes(KENLM_BINARY_MAGIC + b"\0" * 64)
    with pytest.raises(AsrCliError, match="KenLM binary model: decode it with --lm-backend kenlm"):
        read_arpa(binary)
    monkeypatch.setitem(__import__("sys").modules, "kenlm", None)  # as if not installed
    with pytest.raises(AsrCliError, match="pip install kenlm"):
        KenlmScorer(binary)


def test_the_kernel_takes_the_named_tuples_fields_in_their_order():
    """PrefixSearch unpacks SearchState, LmArrays and SearchSettings into the numba kernels' positional parameters
    (named tuples cost 2.5x inside their loops): a field added, removed or reordered on any side must fail here."""
    import inspect

    from asr_cli.lm_tables import LmArrays
    from asr_cli.search import SearchSettings, SearchState, _search_end, _search_frames, _search_start

    def parameters(kernel):
        return list(inspect.signature(kernel.py_func).parameters)

    assert parameters(_search_frames)[:2] == ["log_probs", "first_frame"]
    assert parameters(_search_frames)[2:] == [*SearchState._fields[:-1], "num_nodes", *LmArrays._fields,
                                              *SearchSettings._fields]  # fmt: skip
    assert parameters(_search_end) == parameters(_search_frames)[2:]
    assert parameters(_search_start) == ["order", "mode", "start_id", "beam_size", "prune_k"]
