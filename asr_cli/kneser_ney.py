"""Interpolated modified Kneser-Ney n-gram models (Chen & Goodman, 1998), built with numpy in bounded memory.

Text is read in chunks of sentences; each chunk's n-grams are counted as rows of token ids (np.unique over
the rows) and merged into the running counts, so memory grows with the number of distinct n-grams, not
with the text. Estimation works on whole tables at once: contexts are grouped, lower-order probabilities
joined by row. The highest order uses raw counts; lower orders use continuation counts (how many distinct
tokens precede), except n-grams starting with <s>, which cannot be extended to the left. The unigram
distribution is interpolated with a uniform one over the vocabulary (with <unk> and </s>).

`prune` drops n-grams seen at most k times at an order (k per order from bigrams up, as KenLM's --prune),
keeping every context of a kept n-gram, and renormalises the back-off weights of what is left. A
vocabulary (a list, or the N most frequent words) maps other words to <unk> before counting.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import MAX_LM_ORDER, ConfigError, LmConfig
from .errors import AsrCliError
from .fileio import atomic_write
from .lm import NO_PROBABILITY, SENTENCE_END, SENTENCE_START, UNKNOWN, NgramLM, iter_sentences, tokenize

CHUNK_TOKENS = 4_000_000  # tokens counted at a time: the text's size never enters memory
# Peak memory of a build per byte of its count tables (rows and counts), and the fixed part (the chunk being
# counted as Python lists, the interpreter, numpy): measured 5.4 per byte and 150 MB on 2.5 M and 25 M words of
# text (docs/RESULTS.md), set a little above both so that the estimate errs high.
PEAK_PER_COUNT_BYTE = 6.0
PEAK_FIXED_BYTES = 200_000_000
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def kneser_ney_discounts(count_of_counts: Sequence[int]) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from the numbers of n-grams seen 1-4 times.

    Chen & Goodman's estimates, clipped to [0, k]. Where a count of counts is zero (tiny corpora) the
    estimates are undefined, and the discounts fall back to 0.5, 1.0 and 1.5 for counts 1, 2 and 3+.
    """
    n1, n2, n3, n4 = count_of_counts
    if min(n1, n2, n3, n4) == 0:
        return FALLBACK_DISCOUNTS
    y = n1 / (n1 + 2 * n2)
    discounts = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return tuple(min(max(d, 0.0), k) for d, k in zip(discounts, (1, 2, 3)))


@dataclass
class NgramTables:
    """An n-gram model as arrays: per order n, (M, n) token-id rows (lexicographic order), log10 probabilities,
    and (but for the highest order) log10 back-off weights."""

    vocabulary: list[str]  # token id -> token; ids in rows index it
    rows: list[np.ndarray]
    log10_probs: list[np.ndarray]
    log10_backoffs: list[np.ndarray]

    @property
    def order(self) -> int:
        return len(self.rows)

    def counts(self) -> list[int]:
        return [len(rows) for rows in self.rows]

    def to_ngram_lm(self) -> NgramLM:
        """The same model as an NgramLM (dicts of token tuples): for queries and small models."""
        lm = NgramLM(order=self.order)
        for rows, probs, backoffs in zip(self.rows, self.log10_probs, self.log10_backoffs):
            words = [tuple(self.vocabulary[i] for i in row) for row in rows.tolist()]
            lm.ngrams.append(dict(zip(words, zip(probs.tolist(), backoffs.tolist()))))
        return lm

    def write_arpa(self, path) -> None:
        """The model in ARPA format, atomically."""
        with atomic_write(path) as handle:
            handle.write("\\data\\\n")
            handle.writelines(f"ngram {n}={len(rows)}\n" for n, rows in enumerate(self.rows, start=1))
            for n, (rows, probs, backoffs) in enumerate(zip(self.rows, self.log10_probs, self.log10_backoffs), 1):
                handle.write(f"\n\\{n}-grams:\n")
                vocabulary = self.vocabulary
                if n < self.order:
                    handle.writelines(f"{p:.6f}\t{' '.join(vocabulary[i] for i in row)}\t{b:.6f}\n"
                                      for row, p, b in zip(rows.tolist(), probs.tolist(), backoffs.tolist()))  # fmt: skip
                else:
                    handle.writelines(f"{p:.6f}\t{' '.join(vocabulary[i] for i in row)}\n"
                                      for row, p in zip(rows.tolist(), probs.tolist()))  # fmt: skip
            handle.write("\n\\end\\\n")


# --- counting ---


class _Encoder:
    """Token -> id, growing as new tokens come (or fixed: other tokens are <unk>)."""

    def __init__(self, fixed: Sequence[str] | None) -> None:
        self.tokens = [SENTENCE_START, SENTENCE_END, UNKNOWN]
        self.fixed = fixed is not None
        self.tokens += [t for t in (fixed or ()) if t not in (SENTENCE_START, SENTENCE_END, UNKNOWN)]
        self.ids = {token: index for index, token in enumerate(self.tokens)}

    def sentence(self, tokens: Sequence[str]) -> list[int]:
        ids = self.ids
        if self.fixed:
            return [0, *(ids.get(token, 2) for token in tokens), 1]
        encoded = [0]
        for token in tokens:
            index = ids.get(token)
            if index is None:
                index = ids[token] = len(self.tokens)
                self.tokens.append(token)
            encoded.append(index)
        encoded.append(1)
        return encoded


def _row_view(rows: np.ndarray) -> np.ndarray:
    """(M, n) int32 rows as M opaque values that compare and sort as wholes."""
    rows = np.ascontiguousarray(rows, dtype=np.int32)
    return rows.view(np.dtype((np.void, 4 * rows.shape[1]))).ravel()


def _unique_rows(rows: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows, their summed weights, or counts)."""
    if len(rows) == 0:
        return rows.reshape(0, rows.shape[1]).astype(np.int32), np.zeros(0, np.int64)
    _, first, inverse = np.unique(_row_view(rows), return_index=True, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=weights, minlength=len(first))
    return np.ascontiguousarray(rows[first], dtype=np.int32), summed.astype(np.int64)


def _chunk_ngrams(encoded: list[list[int]], order: int) -> list[np.ndarray]:
    """Per order n, the (occurrences, n) rows of every n-gram inside the sentences (not the lone <s>)."""
    tokens = np.fromiter((t for sentence in encoded for t in sentence), np.int32)
    sentence_of = np.repeat(np.arange(len(encoded)), [len(s) for s in encoded])
    rows = []
    for n in range(1, order + 1):
        if len(tokens) < n:
            rows.append(np.zeros((0, n), np.int32))
            continue
        windows = np.lib.stride_tricks.sliding_window_view(tokens, n)
        inside = sentence_of[: len(windows)] == sentence_of[n - 1 :]
        if n == 1:
            inside &= tokens != 0
        rows.append(windows[inside])
    return rows


class LmTooLargeError(AsrCliError):
    """The counts of a text would need more memory than the build may use."""


def estimated_peak_bytes(rows: list[np.ndarray], counts: list[np.ndarray]) -> int:
    """The memory a build from these count tables will peak at (counting, estimation and writing)."""
    table_bytes = sum(r.nbytes + c.nbytes for r, c in zip(rows, counts))
    return int(PEAK_FIXED_BYTES + PEAK_PER_COUNT_BYTE * table_bytes)


def _check_memory(rows: list[np.ndarray], counts: list[np.ndarray], limit_bytes: int | None, words: int) -> None:
    if limit_bytes is None:
        return
    needed = estimated_peak_bytes(rows, counts)
    if needed > limit_bytes:
        distinct = ", ".join(f"{len(r):,}" for r in rows)
        raise LmTooLargeError(
            f"after {words:,} tokens the counts ({distinct} distinct n-grams per order) already need about "
            f"{needed / 1e9:.1f} GB, over the {limit_bytes / 1e9:.1f} GB this build may use: prune (--prune 0,1), "
            "limit the vocabulary (--vocabulary-size), lower --order, or raise --max-memory"
        )


def count_ngrams(sentences: Iterable[Sequence[str]], order: int, vocabulary: Sequence[str] | None = None,
                 chunk_tokens: int = CHUNK_TOKENS, memory_limit_bytes: int | None = None,
                 ) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:  # fmt: skip
    """(tokens by id, per order the distinct n-gram rows, their raw counts) of tokenised sentences; with a
    `vocabulary`, other tokens count as <unk>. Past `memory_limit_bytes` (the estimated peak of the whole
    build, checked after each chunk), LmTooLargeError."""
    encoder = _Encoder(vocabulary)
    rows = [np.zeros((0, n), np.int32) for n in range(1, order + 1)]
    counts = [np.zeros(0, np.int64) for _ in range(order)]
    chunk, size, total = [], 0, 0
    for sentence in itertools.chain(sentences, [None]):  # lazily: the text is never all in memory
        if sentence is not None:
            chunk.append(encoder.sentence(sentence))
            size += len(chunk[-1])
        if chunk and (sentence is None or size >= chunk_tokens):
            for n, occurrences in enumerate(_chunk_ngrams(chunk, order)):
                merged = np.concatenate([rows[n], occurrences])
                weights = np.concatenate([counts[n], np.ones(len(occurrences), np.int64)])
                rows[n], counts[n] = _unique_rows(merged, weights)
            total += size
            _check_memory(rows, counts, memory_limit_bytes, total)
            chunk, size = [], 0
    return encoder.tokens, rows, counts


# --- estimation ---


def _lookup(table: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query row in `table` (rows), -1 where absent."""
    if len(queries) == 0:
        return np.zeros(0, np.int64)
    keys = _row_view(np.concatenate([table, queries]))
    _, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    position = np.full(inverse.max() + 1, -1, np.int64)
    position[inverse[: len(table)]] = np.arange(len(table))
    return position[inverse[len(table) :]]


def _adjusted_counts(rows: list[np.ndarray], counts: list[np.ndarray]) -> list[np.ndarray]:
    """Raw counts for the highest order and for <s>-initial n-grams; continuation counts otherwise (the number
    of distinct tokens seen before the n-gram: rows of the next order are distinct, so its suffixes' counts)."""
    adjusted = [*counts[:-1], counts[-1]]
    for n in range(len(rows) - 2, -1, -1):
        suffixes, left_contexts = _unique_rows(rows[n + 1][:, 1:])
        if len(suffixes) == 0:
            continue
        found = _lookup(suffixes, rows[n])
        continuation = np.where(found >= 0, left_contexts[np.maximum(found, 0)], counts[n])
        adjusted[n] = np.where(rows[n][:, 0] == 0, counts[n], continuation)
    return adjusted


def _context_groups(rows: np.ndarray, counts: np.ndarray, discounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct contexts, which context each row has, each context's interpolation weight gamma)."""
    if rows.shape[1] == 1:
        contexts, inverse = np.zeros((1, 0), np.int32), np.zeros(len(rows), np.int64)
    else:
        _, first, inverse = np.unique(_row_view(rows[:, :-1]), return_index=True, return_inverse=True)
        contexts, inverse = rows[first, :-1], inverse.ravel()
    totals = np.bincount(inverse, weights=counts, minlength=len(contexts))
    kinds = np.minimum(counts, 3) - 1
    discounted = sum(d * np.bincount(inverse[kinds == k], minlength=len(contexts)) for k, d in enumerate(discounts))
    return contexts, inverse, discounted / totals


def _estimate(vocabulary_size: int, rows: list[np.ndarray], adjusted: list[np.ndarray], discounts):
    """(probabilities per order, (contexts, gammas) per order), interpolated order by order."""
    probabilities, gammas = [], []
    for n, (level_rows, level_counts) in enumerate(zip(rows, adjusted)):
        contexts, context_of, gamma = _context_groups(level_rows, level_counts, discounts[n])
        totals = np.bincount(context_of, weights=level_counts, minlength=len(contexts))
        d = np.asarray(discounts[n])[np.minimum(level_counts, 3) - 1]
        if n == 0:
            lower = np.full(len(level_rows), 1.0 / vocabulary_size)
        else:
            found = _lookup(rows[n - 1], level_rows[:, 1:])
            if (found < 0).any():
                raise AsrCliError("internal: an n-gram's suffix is missing from the lower order")  # never, by counting
            lower = probabilities[n - 1][found]
        probabilities.append(np.maximum(level_counts - d, 0.0) / totals[context_of] + gamma[context_of] * lower)
        gammas.append((contexts, gamma))
    return probabilities, gammas


def build_kneser_ney_tables(sentences: Iterable[Sequence[str]], order: int,
                            discounts: Sequence[tuple[float, float, float]] | None = None,
                            prune: Sequence[int] = (), vocabulary: Sequence[str] | None = None,
                            memory_limit_bytes: int | None = None) -> NgramTables:  # fmt: skip
    """The interpolated modified Kneser-Ney model of tokenised sentences, as tables (module docstring);
    `discounts` (per order, from unigrams up) override the estimates."""
    if not 1 <= order <= MAX_LM_ORDER:
        raise ConfigError("order", f"{{0}} must be between 1 and {MAX_LM_ORDER}, not {order}")
    tokens, rows, counts = count_ngrams(sentences, order, vocabulary, memory_limit_bytes=memory_limit_bytes)
    if len(rows[0]) == 0:
        raise AsrCliError("the language-model text is empty")
    adjusted = _adjusted_counts(rows, counts)
    if discounts is None:
        discounts = [kneser_ney_discounts([int((c == k).sum()) for k in (1, 2, 3, 4)]) for c in adjusted]
    rows, adjusted, counts = _with_whole_vocabulary(rows, adjusted, counts, len(tokens))
    probabilities, gammas = _estimate(len(tokens) - 1, rows, adjusted, discounts)  # <s> is never predicted
    keep = _kept(rows, counts, prune)
    return _tables(tokens, rows, probabilities, gammas, keep)


def _with_whole_vocabulary(rows, adjusted, counts, num_tokens: int):
    """Unigram rows for every token (those never seen as a continuation, like <unk>, and <s>, with count 0)."""
    present = np.zeros(num_tokens, bool)
    present[rows[0][:, 0]] = True
    missing = np.flatnonzero(~present).astype(np.int32)
    rows = [np.concatenate([rows[0], missing[:, None]]), *rows[1:]]
    adjusted = [np.concatenate([adjusted[0], np.zeros(len(missing), np.int64)]), *adjusted[1:]]
    counts = [np.concatenate([counts[0], np.zeros(len(missing), np.int64)]), *counts[1:]]
    return rows, adjusted, counts


def _kept(rows: list[np.ndarray], counts: list[np.ndarray], prune: Sequence[int]) -> list[np.ndarray]:
    """Per order, which n-grams stay: those seen more often than the order's threshold (`prune` from bigrams
    up, its last value for higher orders; unigrams always), and every context (prefix) of one that stays."""
    thresholds = [0] + [prune[min(n, len(prune) - 1)] if prune else 0 for n in range(len(rows) - 1)]
    keep = [counts[n] > thresholds[n] for n in range(len(rows))]
    keep[0][:] = True
    for n in range(len(rows) - 1, 1, -1):  # a kept n-gram's context stays, down to bigrams
        keep[n - 1] |= np.isin(_row_view(rows[n - 1]), _row_view(rows[n][keep[n], :-1]))
    return keep


def _tables(tokens: list[str], rows, probabilities, gammas, keep) -> NgramTables:
    """The kept n-grams with log10 probabilities and back-off weights (gamma, or renormalised where n-grams
    under a context were pruned), in lexicographic order of token ids."""
    kept_rows = [level_rows[k] for level_rows, k in zip(rows, keep)]
    kept_probs = [p[k] for p, k in zip(probabilities, keep)]
    backoffs = [_backoffs(rows, keep, kept_rows, kept_probs, gammas[n + 1], n) for n in range(len(rows) - 1)]
    backoffs.append(np.ones(len(kept_rows[-1])))
    for n in range(len(rows)):  # deterministic files
        sort = np.lexsort(kept_rows[n].T[::-1])
        kept_rows[n], kept_probs[n], backoffs[n] = kept_rows[n][sort], kept_probs[n][sort], backoffs[n][sort]
    log_probs = [np.log10(np.maximum(p, 1e-300)) for p in kept_probs]
    log_probs[0][kept_rows[0][:, 0] == 0] = NO_PROBABILITY  # <s> is never predicted
    return NgramTables(tokens, kept_rows, log_probs, [_log10_backoff(b) for b in backoffs])


def _log10_backoff(weights: np.ndarray) -> np.ndarray:
    """log10 back-off weights; a context whose every n-gram had a discount of 0 leaves nothing to back off with,
    written -99 (ARPA's "never"), not -inf."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log10(np.maximum(weights, 0.0)), NO_PROBABILITY)


def _backoffs(rows, keep, kept_rows, kept_probs, higher_gammas, n: int) -> np.ndarray:
    """Back-off weights of the kept (n+1)-grams as contexts of the next order: gamma where nothing under a
    context was pruned; where something was, bow(h) = (1 - sum of P(w | h) kept) / (1 - sum of P(w | h') kept),
    h' being h without its first token; 1 for n-grams that are no context."""
    contexts, gamma = higher_gammas
    weights = np.ones(len(kept_rows[n]))
    index = _lookup(contexts, kept_rows[n])
    weights[index >= 0] = gamma[index[index >= 0]]
    pruned_children = rows[n + 1][~keep[n + 1]]
    if len(pruned_children) == 0:
        return weights
    renormalise = np.zeros(len(weights), bool)
    parents_of_pruned = _lookup(kept_rows[n], pruned_children[:, :-1])
    renormalise[parents_of_pruned[parents_of_pruned >= 0]] = True
    children = kept_rows[n + 1]
    parent = _lookup(kept_rows[n], children[:, :-1])
    lower = kept_probs[n][_lookup(kept_rows[n], children[:, 1:])]
    stored = np.bincount(parent, weights=kept_probs[n + 1], minlength=len(weights))
    stored_lower = np.bincount(parent, weights=lower, minlength=len(weights))
    weights[renormalise] = (1 - stored[renormalise]) / np.maximum(1 - stored_lower[renormalise], 1e-12)
    return weights


def build_kneser_ney(sentences: Iterable[Sequence[str]], order: int,
                     discounts: Sequence[tuple[float, float, float]] | None = None) -> NgramLM:  # fmt: skip
    """The model of `build_kneser_ney_tables`, as an NgramLM."""
    return build_kneser_ney_tables(sentences, order, discounts).to_ngram_lm()


def most_frequent_words(sentences: Iterable[Sequence[str]], size: int) -> list[str]:
    """The `size` most frequent tokens (ties by first appearance): a vocabulary limit."""
    counter = collections.Counter(token for sentence in sentences for token in sentence)
    return [token for token, _ in counter.most_common(size)]


@dataclass(frozen=True)
class BuiltModel:
    """What `build_lm_file` wrote."""

    path: str
    sentences: int
    counts: list[int]  # n-grams per order
    vocabulary: int  # tokens, <s> </s> <unk> included


def build_lm_file(paths: Sequence[str | Path], output: str | Path, config: LmConfig = LmConfig()) -> BuiltModel:
    """Read the text of `paths` (lm.iter_sentences), build the model `config` asks for, write it as ARPA."""

    def sentences():
        return iter_sentences([Path(p) for p in paths], config.unit, config.strip_ids)

    vocabulary = None
    if config.vocabulary_size is not None:
        vocabulary = most_frequent_words(sentences(), config.vocabulary_size)
    elif config.vocabulary_path is not None:
        vocabulary = read_word_list(config.vocabulary_path, config.unit)
    counted = _Counted(sentences())
    limit = int(config.max_memory_gb * 1e9) if config.max_memory_gb is not None else available_memory_bytes()
    tables = build_kneser_ney_tables(counted, config.order, prune=config.prune, vocabulary=vocabulary,
                                     memory_limit_bytes=limit)  # fmt: skip
    tables.write_arpa(output)
    return BuiltModel(str(output), counted.count, tables.counts(), len(tables.vocabulary))


def available_memory_bytes() -> int | None:
    """The memory a new allocation can get now (the kernel's MemAvailable), or None where it cannot be told."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _Counted:
    """An iterable that counts what passes through it."""

    def __init__(self, items) -> None:
        self.items, self.count = items, 0

    def __iter__(self):
        for item in self.items:
            self.count += 1
            yield item


def read_word_list(path: str | Path, unit: str) -> list[str]:
    """A vocabulary file's tokens: the first field of each line, normalised as text (a Kaldi lexicon works)."""
    from .fileio import read_text_lines
    from .text import normalize_text

    words = []
    for line in read_text_lines(path, "vocabulary"):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            words += tokenize(normalize_text(fields[0]), unit)
    if not words:
        raise AsrCliError(f"{path}: the vocabulary lists no words")
    return list(dict.fromkeys(words))
