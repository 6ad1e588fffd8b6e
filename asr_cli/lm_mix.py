"""Language models measured on held-out text, and mixed.

`perplexity` scores tokenised sentences under an ARPA model (every word and </s>; words outside its
vocabulary are counted as OOV and left out of the perplexity, as SRILM's `ngram -ppl` does). `best_mix`
chooses interpolation weights on held-out text by expectation maximisation (SRILM's compute-best-mix): the
weights that maximise the held-out likelihood of the per-token mixture. `mix` writes the static mixture of
several models as one ARPA model: every n-gram any of them holds, with P(w | h) = sum of weight_i P_i(w | h)
(each P_i with its own back-off), and back-off weights renormalised so that every context sums to one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import AsrCliError
from .kneser_ney import NgramTables
from .lm import NO_PROBABILITY, SENTENCE_END, SENTENCE_START, UNKNOWN, NgramLM
from .logs import log

EM_ITERATIONS = 100
EM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Perplexity:
    """How well a model predicts a text."""

    sentences: int
    words: int  # of the text, </s> not counted
    oov: int  # words outside the model's vocabulary (left out of the perplexity)
    log10_prob: float  # of the in-vocabulary words and every </s>
    perplexity: float

    @property
    def oov_rate(self) -> float:
        return self.oov / max(self.words, 1)

    def to_dict(self) -> dict:
        return {"sentences": self.sentences, "words": self.words, "oov": self.oov,
                "oov_rate": round(self.oov_rate, 6), "log10_prob": round(self.log10_prob, 4),
                "perplexity": round(self.perplexity, 3)}  # fmt: skip


def token_log10_probs(lm: NgramLM, sentences: Sequence[Sequence[str]]) -> tuple[np.ndarray, int]:
    """(log10 P of each scored token, in order: the words the model knows and each sentence's </s>; the number
    of words it does not know)."""
    known = set(lm.vocabulary)
    scores, oov = [], 0
    for sentence in sentences:
        history = [SENTENCE_START]
        for word in [*sentence, SENTENCE_END]:
            if word not in known:
                oov += 1
                history = [SENTENCE_START]  # as SRILM: an OOV breaks the context
                continue
            scores.append(lm.log10_prob(word, history[-(lm.order - 1) :] if lm.order > 1 else ()))
            history.append(word)
    return np.asarray(scores, np.float64), oov


def perplexity(lm: NgramLM, sentences: Sequence[Sequence[str]]) -> Perplexity:
    scores, oov = token_log10_probs(lm, sentences)
    words = sum(len(sentence) for sentence in sentences)
    total = float(scores.sum())
    return Perplexity(len(sentences), words, oov, total, 10 ** (-total / max(len(scores), 1)))


def check_mixable(models: Sequence[NgramLM], names: Sequence[str]) -> None:
    """Models of one order mix; different vocabularies do too (the union, each model's <unk> probability shared
    among the words it lacks), and are said."""
    orders = {lm.order for lm in models}
    if len(orders) > 1:
        listed = ", ".join(f"{name}: order {lm.order}" for name, lm in zip(names, models))
        raise AsrCliError(f"the models to mix have different orders ({listed}); build them with the same --order")
    vocabularies = [set(lm.vocabulary) for lm in models]
    if any(v != vocabularies[0] for v in vocabularies[1:]):
        union = set().union(*vocabularies)
        missing = ", ".join(f"{name} lacks {len(union - v):,}" for name, v in zip(names, vocabularies))
        log.warning(f"the models have different vocabularies ({len(union):,} words in all; {missing}): each gives "
                    "the words it lacks a share of its <unk> probability")  # fmt: skip


def check_weights(weights: Sequence[float], count: int) -> None:
    if len(weights) != count:
        raise AsrCliError(f"{len(weights)} weight(s) for {count} models: give one per model")
    if any(not math.isfinite(w) or w < 0 for w in weights) or abs(sum(weights) - 1) > 1e-6:
        raise AsrCliError(f"mixture weights must be >= 0 and sum to 1, not {list(weights)} (sum {sum(weights):g})")


def best_mix(models: Sequence[NgramLM], sentences: Sequence[Sequence[str]]) -> list[float]:
    """Interpolation weights maximising the held-out likelihood, by EM from equal weights (every model scores the
    same tokens: those all of them know, and every </s>)."""
    common = set.intersection(*(set(lm.vocabulary) for lm in models))
    kept = [[word if word in common else UNKNOWN for word in sentence] for sentence in sentences]
    probs = np.stack([10 ** token_log10_probs(lm, kept)[0] for lm in models])  # (models, tokens)
    if probs.shape[1] == 0:
        raise AsrCliError("the held-out text has no words to tune the weights on")
    weights = np.full(len(models), 1.0 / len(models))
    for _ in range(EM_ITERATIONS):
        posterior = weights[:, None] * probs
        posterior /= posterior.sum(axis=0, keepdims=True)
        new = posterior.mean(axis=1)
        if np.abs(new - weights).max() < EM_TOLERANCE:
            weights = new
            break
        weights = new
    return weights.tolist()


def mix(models: Sequence[NgramLM], weights: Sequence[float]) -> NgramTables:
    """The static linear mixture of models of one order, as tables (module docstring)."""
    vocabulary = sorted(set().union(*(lm.vocabulary for lm in models)) - {SENTENCE_START})
    tokens = [SENTENCE_START, *vocabulary]
    ids = {token: index for index, token in enumerate(tokens)}
    order = models[0].order
    ngrams = [sorted(set().union(*(lm.ngrams[n] for lm in models))) for n in range(order)]
    # A word a model does not know gets a share of the model's <unk> probability: <unk>'s mass split evenly
    # among <unk> and the union's words outside the model's vocabulary, so that each model still sums to one.
    known = [set(lm.vocabulary) for lm in models]
    shares = [1.0 / (1 + len(set(vocabulary) - vocab - {UNKNOWN})) for vocab in known]
    probs = [np.array([_mixed(models, weights, ngram, known, shares) for ngram in level]) for level in ngrams]
    rows = [np.array([[ids[w] for w in ngram] for ngram in level], np.int32).reshape(len(level), n + 1)
            for n, level in enumerate(ngrams)]  # fmt: skip
    backoffs = [_mixed_backoffs(ngrams, probs, n) for n in range(order - 1)] + [np.ones(len(ngrams[-1]))]
    log_probs = [np.log10(np.maximum(p, 1e-300)) for p in probs]
    log_probs[0][[i for i, ngram in enumerate(ngrams[0]) if ngram == (SENTENCE_START,)]] = NO_PROBABILITY
    return NgramTables(tokens, rows, log_probs, [np.log10(np.maximum(b, 1e-300)) for b in backoffs])


def _mixed(models: Sequence[NgramLM], weights: Sequence[float], ngram: tuple[str, ...], known: list[set],
           shares: list[float]) -> float:  # fmt: skip
    word = ngram[-1]
    if word == SENTENCE_START:
        return 0.0
    total = 0.0
    for lm, weight, vocabulary, share in zip(models, weights, known, shares):
        p = 10 ** lm.log10_prob(word, ngram[:-1])
        total += weight * (p * share if word == UNKNOWN or word not in vocabulary else p)
    return total


def _mixed_backoffs(ngrams: list[list[tuple]], probs: list[np.ndarray], n: int) -> np.ndarray:
    """bow(h) = (1 - sum over w stored under h of P(w | h)) / (1 - sum of P(w | h')) for every stored n-gram h."""
    index = {ngram: i for i, ngram in enumerate(ngrams[n])}  # contexts and suffixes of order n+1 are of order n
    stored, stored_lower = np.zeros(len(ngrams[n])), np.zeros(len(ngrams[n]))
    for child, p in zip(ngrams[n + 1], probs[n + 1]):
        parent, suffix = index.get(child[:-1]), index.get(child[1:])
        if parent is None or suffix is None:  # never, for models built by asr-cli or KenLM
            continue
        stored[parent] += p
        stored_lower[parent] += probs[n][suffix]
    return (1 - stored) / np.maximum(1 - stored_lower, 1e-12)


def mix_lm_files(
    paths, output, weights: Sequence[float] | None, tune_on, unit: str = "word"
) -> tuple[list[float], list[int]]:
    """Mix ARPA files into `output` with `weights`, or with the weights `tune_on`'s text chooses; returns (the
    weights, n-grams per order written)."""
    from .lm import read_arpa, read_sentences

    if len(paths) < 2:
        raise AsrCliError("--mix needs two models or more")
    models = [read_arpa(path) for path in paths]
    check_mixable(models, [str(p) for p in paths])
    if weights is None:
        weights = best_mix(models, read_sentences([tune_on], unit))
        log.info("weights chosen on " + str(tune_on) + ": " + ", ".join(f"{w:.3f}" for w in weights))
    check_weights(weights, len(models))
    tables = mix(models, weights)
    tables.write_arpa(output)
    return list(weights), tables.counts()
