"""Decoding: prefix beam search against exhaustive enumeration, LM fusion, timings, and bad inputs."""

import dataclasses
import itertools
import math
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_cli.decode import beam_search, greedy_decode, greedy_hypotheses
from asr_cli.lm_tables import build_lm_tables, sequence_hash
from asr_cli.config import DecodeConfig, FeatureConfig, TranscribeConfig
from asr_cli.errors import AsrCliError
from asr_cli.lm import build_kneser_ney, read_arpa, tokenize, write_arpa
from asr_cli.manifest import Utterance, write_manifest
from asr_cli.model import load_model_file
from asr_cli.store import FeatureStore
from asr_cli.text import Vocabulary
from asr_cli.decode_step import decode_inputs
from tests.conftest import make_store, write_tone

VOCABULARY = Vocabulary(tuple("ab "))  # labels: 0 blank, 1 a, 2 b, 3 space
EXHAUSTIVE = DecodeConfig(beam_size=5000, token_prune_k=4, token_prune_threshold=1e9, beam_threshold=1e9, nbest=3)


def labelling_probabilities(log_probs: np.ndarray) -> dict[tuple, float]:
    """ln P(labelling) for every labelling, by summing over all V^T paths."""
    totals: dict[tuple, float] = {}
    num_frames, vocab_size = log_probs.shape
    for path in itertools.product(range(vocab_size), repeat=num_frames):
        score = float(sum(log_probs[t, label] for t, label in enumerate(path)))
        collapsed = tuple(label for t, label in enumerate(path) if label != 0 and (t == 0 or path[t - 1] != label))
        totals[collapsed] = np.logaddexp(totals.get(collapsed, -np.inf), score)
    return totals


def random_log_probs(rng, num_frames: int, vocab_size: int = 4) -> np.ndarray:
    return np.log(rng.dirichlet(np.ones(vocab_size) * 0.7, size=num_frames)).astype(np.float32)


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
        plain = beam_search(log_probs, VOCABULARY, DecodeConfig(beam_size=8, nbest=3))
        zero = beam_search(log_probs, VOCABULARY, DecodeConfig(beam_size=8, nbest=3, lm_weight=0.0, word_bonus=0.0), tables)
        assert [h.label_ids for h in zero] == [h.label_ids for h in plain]
        assert [h.score for h in zero] == pytest.approx([h.score for h in plain], abs=1e-5)


def test_word_lm_moves_the_search_towards_known_words(tmp_path: Path):
    tables = _word_lm(tmp_path)
    # The acoustics slightly prefer "bb", which the LM has never seen; "ab" is a frequent word.
    log_probs = np.log(np.array([[0.05, 0.3, 0.6, 0.05], [0.9, 0.02, 0.03, 0.05], [0.04, 0.03, 0.9, 0.03]],
                                dtype=np.float32))  # P("bb") = .6 * .9 * .9 = .486 > P("ab") = .3 * .95 * .9 = .257
    plain = beam_search(log_probs, VOCABULARY, DecodeConfig(beam_size=8))[0]
    fused = beam_search(log_probs, VOCABULARY, DecodeConfig(beam_size=8, lm_weight=2.0, word_bonus=0.0), tables)[0]
    assert VOCABULARY.decode(plain.label_ids) == "bb"
    assert VOCABULARY.decode(fused.label_ids) == "ab"


def test_oov_penalty_steers_away_from_words_the_lm_cannot_know(tmp_path: Path):
    tables = _word_lm(tmp_path)  # "bb" is no word of the LM, and no LM word begins with it
    log_probs = np.log(np.array([[0.05, 0.3, 0.6, 0.05], [0.9, 0.02, 0.03, 0.05], [0.04, 0.03, 0.9, 0.03]],
                                dtype=np.float32))
    weak_lm = dict(beam_size=8, lm_weight=0.1, word_bonus=0.0)
    without = beam_search(log_probs, VOCABULARY, DecodeConfig(oov_penalty=0.0, **weak_lm), tables)[0]
    with_penalty = beam_search(log_probs, VOCABULARY, DecodeConfig(oov_penalty=10.0, **weak_lm), tables)[0]
    assert VOCABULARY.decode(without.label_ids) == "bb"
    assert VOCABULARY.decode(with_penalty.label_ids) == "ab"


def test_unfinished_words_look_ahead_to_their_best_unigram(tmp_path: Path):
    sentences = [["ab", "ba"], ["ab"], ["ab", "bab"], ["b"]]
    write_arpa(build_kneser_ney(sentences, 2), tmp_path / "words.arpa")
    lm = read_arpa(tmp_path / "words.arpa")
    tables = build_lm_tables(lm, VOCABULARY, "word")
    unigram = {word: lm.ngrams[0][(word,)][0] * math.log(10) for word in ("ab", "ba", "bab", "b")}
    a, b = 1, 2
    expected = {(a,): unigram["ab"], (a, b): unigram["ab"], (b,): max(unigram["ba"], unigram["bab"], unigram["b"]),
                (b, a): max(unigram["ba"], unigram["bab"]), (b, a, b): unigram["bab"]}
    assert len(tables.arrays.prefix_hashes) == len(expected)
    for labels, log_prob in expected.items():
        assert tables.arrays.prefix_hashes[sequence_hash(labels)] == pytest.approx(log_prob)


def arpa_log_prob(lm, context: tuple[str, ...], token: str) -> float:
    """ln P(token | context) read off the ARPA tables with back-off, independently of the search's hashed tables."""
    backoff = 0.0
    for used in range(min(len(context), lm.order - 1), -1, -1):
        history = context[len(context) - used:]
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

    expected = sorted(((fused(labelling, acoustic), labelling)
                       for labelling, acoustic in labelling_probabilities(log_probs.astype(np.float64)).items()),
                      reverse=True)
    found = beam_search(log_probs, VOCABULARY, dataclasses.replace(EXHAUSTIVE, lm_weight=weight, word_bonus=bonus),
                        tables)
    for hypothesis, (score, labelling) in zip(found, expected):
        assert tuple(hypothesis.label_ids) == labelling
        assert hypothesis.score == pytest.approx(score, abs=1e-4)
    zero = beam_search(log_probs, VOCABULARY, DecodeConfig(beam_size=8, lm_weight=0.0, word_bonus=0.0), tables)
    assert zero[0].label_ids == beam_search(log_probs, VOCABULARY, DecodeConfig(beam_size=8))[0].label_ids


def test_greedy_collapses_repeats_and_drops_blanks():
    best_path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 3, 3]])
    log_probs = torch.nn.functional.one_hot(best_path, 4).float().log_softmax(-1)
    assert greedy_decode(log_probs, torch.tensor([9])) == [[1, 1, 2, 3]]
    assert greedy_decode(log_probs, torch.tensor([4])) == [[1, 1]]
    assert greedy_hypotheses(log_probs, torch.tensor([9]))[0].frames == [0, 3, 4, 7]


def test_beam_size_one_gives_the_greedy_text(tmp_path: Path, tiny_model, tiny_stores):
    _, valid_store = tiny_stores
    decode_inputs(tiny_model, [valid_store], tmp_path / "beam1.jsonl",
               TranscribeConfig(search=DecodeConfig(beam_size=1), show_progress=False))
    model = load_model_file(tiny_model).model
    store = FeatureStore(valid_store)
    vocabulary = load_model_file(tiny_model).vocabulary
    decoded = [json.loads(line) for line in (tmp_path / "beam1.jsonl").read_text().splitlines()]
    for record in decoded:
        features = torch.from_numpy(store.features(record["id"]))[None]
        with torch.no_grad():
            log_probs, lengths = model(features, torch.tensor([features.shape[1]]))
        assert record["text"] == " ".join(vocabulary.decode(greedy_decode(log_probs, lengths)[0]).split())


def test_timestamps_are_monotonic_and_inside_the_audio(tmp_path: Path, tiny_model, tiny_stores):
    _, valid_store = tiny_stores
    decode_inputs(tiny_model, [valid_store], tmp_path / "hyp.jsonl",
               TranscribeConfig(search=DecodeConfig(beam_size=4, nbest=2), show_progress=False),
               ctm_path=tmp_path / "hyp.ctm")
    store = FeatureStore(valid_store)
    records = [json.loads(line) for line in (tmp_path / "hyp.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [e.id for e in store]  # input order
    for record in records:
        assert len(record["nbest"]) <= 2 and record["nbest"][0]["text"] == record["text"]
        starts = [w["start"] for w in record["words"]]
        assert starts == sorted(starts)
        duration = store.entry(record["id"]).duration
        assert all(0 <= w["start"] <= w["end"] <= duration for w in record["words"])
        assert " ".join(w["word"] for w in record["words"]) == record["text"]
    ctm_words = sum(len(r["words"]) for r in records)
    assert len((tmp_path / "hyp.ctm").read_text().splitlines()) == ctm_words


def test_decoding_from_audio_uses_the_models_features(tmp_path: Path, tiny_model, tiny_stores, speechocean_utterances):
    from asr_cli.features import FeatureExtractor
    from asr_cli.decode_step import _features, collect_sources

    _, valid_store = tiny_stores
    store = FeatureStore(valid_store)
    utterances = [u for u in speechocean_utterances if u.id in store]
    write_manifest(tmp_path / "audio.jsonl", utterances)
    config = load_model_file(tiny_model).feature_config
    sources, _ = collect_sources([tmp_path / "audio.jsonl"], config)
    assert [s.id for s in sources] == [u.id for u in utterances]
    for source in sources:
        assert source.num_frames == store.entry(source.id).num_frames
        from_audio = _features(source, None, FeatureExtractor(config), config)
        np.testing.assert_allclose(from_audio, store.features(source.id), atol=0.02, rtol=0.002)  # float16 storage
    decode_inputs(tiny_model, [tmp_path / "audio.jsonl"], tmp_path / "hyp.jsonl", TranscribeConfig(show_progress=False))
    records = [json.loads(line) for line in (tmp_path / "hyp.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [u.id for u in utterances]


# --- bad input ---

def test_empty_and_too_short_audio_give_empty_hypotheses(tmp_path: Path, tiny_model, caplog):
    write_tone(tmp_path / "short.wav", seconds=0.01)
    write_tone(tmp_path / "ok.wav", seconds=0.5)
    decode_inputs(tiny_model, [tmp_path / "short.wav", tmp_path / "ok.wav"], tmp_path / "hyp.jsonl",
               TranscribeConfig(show_progress=False))
    records = [json.loads(line) for line in (tmp_path / "hyp.jsonl").read_text().splitlines()]
    assert records[0] == {"id": "short", "text": "", "score": 0.0}
    assert any(record.levelname == "WARNING" and "short: shorter than one frame" in record.message
               for record in caplog.records)


def test_missing_audio_is_an_error(tmp_path: Path, tiny_model):
    write_manifest(tmp_path / "m.jsonl", [Utterance("x", "nope.wav")])
    with pytest.raises(AsrCliError, match=r"1 input\(s\) cannot be read:\n.*audio file not found: .*nope.wav"):
        decode_inputs(tiny_model, [tmp_path / "m.jsonl"], tmp_path / "hyp.jsonl", TranscribeConfig(show_progress=False))
    assert not (tmp_path / "hyp.jsonl").exists()


def test_audio_files_with_the_same_name_are_refused(tmp_path: Path, tiny_model):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_tone(tmp_path / folder / "take1.wav")
    with pytest.raises(AsrCliError, match="same name would get the same id: take1"):
        decode_inputs(tiny_model, [tmp_path / "a" / "take1.wav", tmp_path / "b" / "take1.wav"], tmp_path / "hyp.jsonl",
                   TranscribeConfig(show_progress=False))


def test_unknown_or_corrupt_model_file(tmp_path: Path, tiny_model):
    (tmp_path / "garbage.pt").write_bytes(b"not a model at all")
    with pytest.raises(AsrCliError, match="not a readable asr-cli model file"):
        load_model_file(tmp_path / "garbage.pt")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (tmp_path / "pickle.pt").write_bytes(pickle.dumps({"model_config": Payload()}))
    with pytest.raises(AsrCliError, match="not a readable asr-cli model file") as refusal:
        load_model_file(tmp_path / "pickle.pt")  # weights_only refuses to run code
    assert "weights_only" not in str(refusal.value) and "never loads" in str(refusal.value)
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(AsrCliError, match="not an asr-cli model file"):
        load_model_file(tmp_path / "other.pt")
    with pytest.raises(AsrCliError, match="model file not found"):
        load_model_file(tmp_path / "missing.pt")
    truncated = tiny_model.read_bytes()[:1000]
    (tmp_path / "truncated.pt").write_bytes(truncated)
    with pytest.raises(AsrCliError, match="not a readable"):
        load_model_file(tmp_path / "truncated.pt")


def test_store_with_other_features_than_the_model(tmp_path: Path, tiny_model, speechocean_utterances):
    mfcc = make_store(tmp_path / "mfcc", speechocean_utterances[:2], feature_config=FeatureConfig.for_kind("mfcc"))
    with pytest.raises(AsrCliError, match="other features than the model.*kind: store 'mfcc', model 'fbank'"):
        decode_inputs(tiny_model, [mfcc], tmp_path / "hyp.jsonl", TranscribeConfig(show_progress=False))


def test_lm_vocabulary_mismatch_reports_the_oov_rate(tmp_path: Path, tiny_model, tiny_stores, caplog):
    _, valid_store = tiny_stores
    write_arpa(build_kneser_ney([["привет", "мир"], ["hello", "мир"]], 2), tmp_path / "other.arpa")
    with caplog.at_level(logging.INFO, logger="asr_cli"):
        decode_inputs(tiny_model, [valid_store], tmp_path / "hyp.jsonl",
                      TranscribeConfig(search=DecodeConfig(beam_size=2), lm_path=str(tmp_path / "other.arpa"),
                                       show_progress=False))
    err = caplog.text
    assert "66.7% of them use characters the model cannot produce" in err and "most of the LM's vocabulary" in err


def test_malformed_arpa_through_decode(tmp_path: Path, tiny_model, tiny_stores):
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nx\n")
    with pytest.raises(AsrCliError, match="bad.arpa, line 5"):
        decode_inputs(tiny_model, [tiny_stores[1]], tmp_path / "hyp.jsonl",
                   TranscribeConfig(lm_path=str(tmp_path / "bad.arpa"), show_progress=False))


def test_kenlm_backend_searches_exactly_like_the_built_in_tables(tmp_path: Path):
    """Same ARPA model, same search: KenLM's scores through the cache give the same n-best."""
    pytest.importorskip("kenlm")
    from asr_cli.lm_tables import scorer_lm_tables
    from asr_cli.lm import KenlmScorer

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
        options = DecodeConfig(beam_size=6, nbest=4, lm_weight=0.8, word_bonus=0.5)
        expected = beam_search(log_probs, VOCABULARY, options, built_in)
        found = beam_search(log_probs, VOCABULARY, options, kenlm_tables)
        assert [h.label_ids for h in found] == [h.label_ids for h in expected]
        assert [h.score for h in found] == pytest.approx([h.score for h in expected], abs=1e-4)
        without_lm = beam_search(log_probs, VOCABULARY, DecodeConfig(beam_size=6, nbest=4))
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


def test_decode_with_the_kenlm_backend_writes_what_the_arpa_backend_writes(tmp_path: Path, tiny_model, tiny_stores):
    pytest.importorskip("kenlm")
    train_store, valid_store = tiny_stores
    sentences = [tokenize(entry.text.lower(), "word") for entry in FeatureStore(train_store)]
    write_arpa(build_kneser_ney(sentences, 3), tmp_path / "words.arpa")
    outputs = {}
    for backend in ("arpa", "kenlm"):
        outputs[backend] = tmp_path / f"{backend}.jsonl"
        summary = decode_inputs(tiny_model, [valid_store], outputs[backend], TranscribeConfig(
            search=DecodeConfig(beam_size=8, lm_weight=0.8, nbest=3), lm_path=str(tmp_path / "words.arpa"),
            lm_backend=backend, show_progress=False))
        assert 0 <= summary["lm_oov_rate"] < 0.5
    arpa_records = [json.loads(line) for line in outputs["arpa"].read_text().splitlines()]
    kenlm_records = [json.loads(line) for line in outputs["kenlm"].read_text().splitlines()]
    for kenlm_record, arpa_record in zip(kenlm_records, arpa_records, strict=True):
        assert [h["text"] for h in kenlm_record["nbest"]] == [h["text"] for h in arpa_record["nbest"]]
        assert [h["score"] for h in kenlm_record["nbest"]] == pytest.approx([h["score"] for h in arpa_record["nbest"]],
                                                                            abs=1e-3)
