"""Decoding CTC outputs: greedy best path, and prefix beam search with n-gram LM fusion.

The beam search (Hannun et al., 2014) keeps, per prefix, the log-probability
of ending in blank and in non-blank; prefixes are nodes of a tree so equal
prefixes merge. Per frame only the top-k tokens within a threshold of the
frame's best are tried, and prefixes far below the best are dropped. With a word LM, a word is scored when a space ends it
(weight `lm_weight` on its natural-log probability, plus `word_bonus`), and an
unfinished word is ranked by its best unigram continuation meanwhile; with a
character LM every character is scored (`<space>` for the space) and the
bonus is per character. The loops run in numba: no Python loop over beams,
tokens or frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import types
from numba.typed import Dict

from .errors import AsrCliError
from .lm import SENTENCE_END, SENTENCE_START, SPACE_TOKEN, UNKNOWN, NgramLM
from .text import BLANK_INDEX, Vocabulary

LOG10_TO_LN = math.log(10.0)
HASH_SEED = 1469598103934665603
NO_LM, WORD_LM, CHAR_LM = 0, 1, 2
# A scorer outside numba (KenLM) sees contexts of word hashes; these stand for <s> and </s> there.
START_MARK, END_MARK = 2, 3
MAX_SCORER_PASSES = 100


@dataclass(frozen=True)
class DecodeOptions:
    """Search settings; saved with each decoding run."""

    beam_size: int = 16
    token_prune_k: int = 10  # tokens tried per frame, at most
    token_prune_threshold: float = 6.0  # ... and only those within this many nats of the frame's best
    beam_threshold: float = 10.0  # prefixes scoring this many nats below the best are dropped
    lm_weight: float = 0.5
    oov_penalty: float = 10.0  # word LM: times lm_weight, for a word no LM word begins with, and an OOV word
    word_bonus: float = 1.0
    nbest: int = 1
    unlisted_word_penalty: float | None = None  # with a lexicon: nats for a word outside it (None: never output)

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.nbest < 1 or self.token_prune_k < 1:
            raise AsrCliError("--beam-size, --nbest and the token pruning size must be at least 1")
        if self.nbest > self.beam_size:
            raise AsrCliError(f"--nbest ({self.nbest}) cannot exceed --beam-size ({self.beam_size})")
        for option, value in (("--token-prune-threshold", self.token_prune_threshold),
                              ("--beam-threshold", self.beam_threshold), ("--lm-weight", self.lm_weight),
                              ("--oov-penalty", self.oov_penalty), ("--word-bonus", self.word_bonus)):
            if not math.isfinite(value):
                raise AsrCliError(f"{option} must be a finite number, not {value}")
        if self.token_prune_threshold <= 0 or self.beam_threshold <= 0 or self.lm_weight < 0 or self.oov_penalty < 0:
            raise AsrCliError("the pruning thresholds must be positive, --lm-weight and --oov-penalty >= 0")
        if self.unlisted_word_penalty is not None and not 0 <= self.unlisted_word_penalty < math.inf:
            raise AsrCliError(f"--unlisted-word-penalty must be a finite number >= 0, not {self.unlisted_word_penalty}")


@dataclass(frozen=True)
class Hypothesis:
    """A labelling: label ids, the output frame where each was first emitted, and its log score."""

    label_ids: list[int]
    frames: list[int]
    score: float


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per utterance: (B, T, V) log-probabilities and (B,) lengths -> label ids per utterance."""
    return [hypothesis.label_ids for hypothesis in greedy_hypotheses(log_probs, lengths)]


def greedy_hypotheses(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
    """Best path with the frame of each emitted label and the path's log-probability."""
    best_scores, best = log_probs.max(dim=-1)  # (B, T)
    changed = torch.ones_like(best, dtype=torch.bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    valid = torch.arange(best.shape[1], device=best.device)[None, :] < lengths.to(best.device)[:, None]
    keep = (changed & valid & (best != BLANK_INDEX)).cpu()
    path_scores = (best_scores * valid).sum(dim=1).cpu()
    best = best.cpu()
    return [
        Hypothesis(row[mask].tolist(), torch.nonzero(mask).flatten().tolist(), float(score))
        for row, mask, score in zip(best, keep, path_scores)
    ]


# --- hashing shared by Python (table building) and numba (search) ---

@numba.njit(cache=True)
def _mix(value):
    """splitmix64 finaliser on int64 bits (wrapping arithmetic)."""
    z = np.uint64(value) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.int64(z ^ (z >> np.uint64(31)))


@numba.njit(cache=True)
def extend_hash(hash_value, token):
    """Hash of a sequence extended by one token id (never 0, which marks the empty word)."""
    mixed = _mix(hash_value * np.int64(1000003) + token + np.int64(1))
    return mixed if mixed != 0 else np.int64(1)


def sequence_hash(token_ids) -> int:
    value = HASH_SEED
    for token in token_ids:
        value = int(extend_hash(value, token))
    return value


@dataclass
class LanguageModelTables:
    """An n-gram model flattened for the numba search: hashed n-grams -> natural-log probability and back-off."""

    mode: int
    order: int
    keys: Dict
    log_probs: np.ndarray
    backoffs: np.ndarray
    unknown_log_prob: float
    start_id: int
    end_id: int
    unknown_id: int
    word_of_hash: Dict  # word LM: hash of a word's label ids -> its LM id
    prefix_hashes: Dict  # word LM: hash of every prefix of every LM word the model can spell -> best unigram ln P
    token_of_label: np.ndarray  # character LM: label id -> LM token id (-1: unknown)
    unreachable: list[str]  # LM tokens the model cannot spell
    unmodelled: list[str]  # model characters the LM does not know (character LM)
    lm_tokens: list[str]  # the LM's vocabulary without <s>, </s> and <unk>
    # With a scorer (KenLM), n-gram scores come from it, through `cache`: hash of (context, word) -> weighted-to-be
    # natural-log probability (minus the OOV penalty for an OOV word); see `beam_search`.
    scorer: object | None = None
    cache: Dict | None = None
    # With a lexicon (`restrict_to_lexicon`), `prefix_hashes` holds the prefixes of its words' spellings only, and
    # `lexicon_words` the hashes of their complete spellings: other words are refused or penalised.
    restricted: bool = False
    lexicon_words: Dict | None = None
    # A phone model's output words are spellings in phone characters; this maps each to the word it writes.
    spoken_words: dict[str, str] | None = None
    lm_vocabulary: list[str] | None = None  # word LM ids -> words (an ARPA model's whole vocabulary)

    @property
    def oov_rate(self) -> float:
        """Share of the LM's vocabulary the acoustic model cannot produce (0 when it cannot be listed: KenLM)."""
        return len(self.unreachable) / max(len(self.lm_tokens), 1)

    @property
    def external(self) -> bool:
        return self.scorer is not None


def build_lm_tables(lm: NgramLM, vocabulary: Vocabulary, unit: str,
                    spellings: dict[str, list[str]] | None = None) -> LanguageModelTables:
    """Flatten an ARPA model for the search; `unit` is "word" or "char".

    `spellings` (phone models): each word's spellings in the model's characters, instead of the word itself;
    of words spelt alike (homophones), the search scores the one with the higher unigram probability.
    """
    words = lm.vocabulary
    word_id = {word: index for index, word in enumerate(words)}
    for required in (SENTENCE_START, SENTENCE_END):
        if required not in word_id:
            raise AsrCliError(f"the language model has no {required} token; is it an ARPA model of sentences?")
    keys = Dict.empty(key_type=types.int64, value_type=types.int64)
    log_probs, backoffs = [], []
    for table in lm.ngrams:
        for ngram, (log_prob, backoff) in table.items():
            keys[sequence_hash([word_id[w] for w in ngram])] = len(log_probs)
            log_probs.append(log_prob * LOG10_TO_LN)
            backoffs.append(backoff * LOG10_TO_LN)
    label_of = {character: index + 1 for index, character in enumerate(vocabulary.characters)}
    word_of_hash = Dict.empty(key_type=types.int64, value_type=types.int64)
    prefix_hashes = Dict.empty(key_type=types.int64, value_type=types.float64)
    token_of_label = np.full(vocabulary.size, -1, dtype=np.int64)
    special = {SENTENCE_START, SENTENCE_END, UNKNOWN}
    unreachable = []
    if unit == "word":
        unigram_of_hash: dict[int, float] = {}
        for word in words:
            if word in special:
                continue
            forms = spellings.get(word, []) if spellings is not None else [word]
            forms = [form for form in forms if all(character in label_of for character in form)]
            if not forms:
                unreachable.append(word)
            unigram_log_prob = lm.ngrams[0][(word,)][0] * LOG10_TO_LN
            for form in forms:
                labels = [label_of[c] for c in form]
                word_hash = sequence_hash(labels)
                if unigram_log_prob > unigram_of_hash.get(word_hash, -np.inf):
                    word_of_hash[word_hash], unigram_of_hash[word_hash] = word_id[word], unigram_log_prob
                _raise_prefix_scores(prefix_hashes, labels, unigram_log_prob)
        unmodelled = []
    else:
        for word in words:
            character = " " if word == SPACE_TOKEN else word
            if word in special:
                continue
            if character in label_of:
                token_of_label[label_of[character]] = word_id[word]
            else:
                unreachable.append(word)
        unmodelled = [c for c in vocabulary.characters if token_of_label[label_of[c]] < 0]
    unknown_entry = lm.ngrams[0].get((UNKNOWN,))
    return LanguageModelTables(
        mode=WORD_LM if unit == "word" else CHAR_LM, order=lm.order, keys=keys,
        log_probs=np.asarray(log_probs, np.float64), backoffs=np.asarray(backoffs, np.float64),
        unknown_log_prob=(unknown_entry[0] if unknown_entry else -99.0) * LOG10_TO_LN,
        start_id=word_id[SENTENCE_START], end_id=word_id[SENTENCE_END], unknown_id=word_id.get(UNKNOWN, -1),
        word_of_hash=word_of_hash, prefix_hashes=prefix_hashes, token_of_label=token_of_label,
        unreachable=unreachable, unmodelled=unmodelled, lm_tokens=[w for w in words if w not in special],
        lm_vocabulary=list(words),
    )


def _raise_prefix_scores(prefix_hashes: Dict, labels: list[int], score: float) -> None:
    """Make every prefix of `labels` (by its hash) score at least `score`: the best continuation below it."""
    prefix = np.int64(HASH_SEED)
    for label in labels:
        prefix = extend_hash(prefix, label)
        prefix_hashes[prefix] = max(prefix_hashes.get(prefix, -np.inf), score)


def empty_lm_tables(vocabulary_size: int) -> LanguageModelTables:
    return LanguageModelTables(
        mode=NO_LM, order=1, keys=Dict.empty(key_type=types.int64, value_type=types.int64),
        log_probs=np.zeros(0), backoffs=np.zeros(0), unknown_log_prob=0.0, start_id=0, end_id=0, unknown_id=-1,
        word_of_hash=Dict.empty(key_type=types.int64, value_type=types.int64),
        prefix_hashes=Dict.empty(key_type=types.int64, value_type=types.float64),
        token_of_label=np.full(vocabulary_size, -1, dtype=np.int64), unreachable=[], unmodelled=[], lm_tokens=[],
    )


def scorer_lm_tables(scorer, vocabulary: Vocabulary, unigrams: NgramLM | None = None) -> LanguageModelTables:
    """Tables for a word LM queried outside numba (`scorer.sentence_log_probs`, e.g. KenLM).

    Such a model cannot list its n-grams, so none are flattened: the search
    asks for the scores it lacks, and `beam_search` fills them in and searches
    again (see there). `unigrams` (the ARPA file's 1-grams) give the look-ahead
    for unfinished words and the OOV rate; without them (a KenLM binary file)
    an unfinished word carries only the word bonus.
    """
    if unigrams is not None:
        tables = build_lm_tables(unigrams, vocabulary, "word")
    else:
        tables = empty_lm_tables(vocabulary.size)
        tables.mode = WORD_LM
    tables.order, tables.start_id, tables.end_id = scorer.order, START_MARK, END_MARK
    tables.scorer, tables.cache = scorer, _empty_cache()
    return tables


def restrict_to_lexicon(tables: LanguageModelTables, lexicon, vocabulary: Vocabulary,
                        oov_penalty: float) -> LanguageModelTables:
    """Tables whose search outputs only the lexicon's words (a trie of their spellings, as hashed prefixes).

    With a word LM, an unfinished word is ranked by the best unigram ln P of
    the lexicon words it begins (a word the LM does not know counts as minus the
    OOV penalty, as in the search without a lexicon), so the look-ahead only sees words the search may finish.
    """
    no_context = np.full(max(tables.order - 1, 1), -1, np.int64)
    lexicon_words = Dict.empty(key_type=types.int64, value_type=types.int64)
    prefix_hashes = Dict.empty(key_type=types.int64, value_type=types.float64)
    for spellings in lexicon.pronunciations.values():
        for units in spellings:
            labels = vocabulary.encode("".join(units))
            word_hash = sequence_hash(labels)
            lexicon_words[word_hash] = 1
            look_ahead = 0.0
            if tables.mode == WORD_LM and word_hash in tables.word_of_hash:
                look_ahead = _lm_log_prob(no_context, tables.word_of_hash[word_hash], tables.keys, tables.log_probs,
                                          tables.backoffs, tables.unknown_log_prob)
            elif tables.mode == WORD_LM and len(tables.word_of_hash) > 0:  # as for prefixes no LM word begins
                look_ahead = -oov_penalty
            _raise_prefix_scores(prefix_hashes, labels, look_ahead)
    return dataclasses.replace(tables, prefix_hashes=prefix_hashes, lexicon_words=lexicon_words, restricted=True)


# --- the search ---

@numba.njit(cache=True)
def _log_add(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@numba.njit(cache=True)
def _lm_log_prob(context, token, keys, log_probs, backoffs, unknown_log_prob):
    """ln P(token | context) with back-off; `context` holds the last order-1 ids, -1 where absent."""
    size = context.shape[0]
    available = 0
    while available < size and context[size - 1 - available] >= 0:
        available += 1
    backoff = 0.0
    for used in range(available, -1, -1):
        value = np.int64(HASH_SEED)
        for position in range(size - used, size):
            value = extend_hash(value, context[position])
        full = extend_hash(value, token)
        if full in keys:
            return backoff + log_probs[keys[full]]
        if used > 0 and value in keys:
            backoff += backoffs[keys[value]]
    return backoff + unknown_log_prob


@numba.njit(cache=True)
def context_key(context, token):
    """Hash of (context ids, token): the cache key of an externally scored n-gram."""
    value = np.int64(HASH_SEED)
    for position in range(context.shape[0]):
        value = extend_hash(value, context[position])
    return extend_hash(value, token)


@numba.njit(cache=True)
def _cached_score(cache, context, token, missing):
    """(score from the cache or 0, whether it was missing)."""
    key = context_key(context, token)
    if key in cache:
        return cache[key], missing
    return 0.0, True


@numba.njit(cache=True)
def _lookup(table, key, default):
    return table[key] if key in table else default


@numba.njit(cache=True)
def _claim_slot(node, slot_of, cand_nodes, cand_blank, cand_nonblank, num_candidates):
    """(slot of `node` among the next frame's candidates, new candidate count), adding it if new."""
    if slot_of[node] < 0:
        slot_of[node] = num_candidates
        cand_nodes[num_candidates] = node
        cand_blank[num_candidates] = -np.inf
        cand_nonblank[num_candidates] = -np.inf
        num_candidates += 1
    return slot_of[node], num_candidates


@numba.njit(cache=True)
def _score_child(node, child, label, mode, space_id, contexts, word_hash, lm_score, partial_penalty, keys,
                 lm_log_probs, lm_backoffs, unknown_log_prob, unknown_id, word_of_hash, prefix_hashes, token_of_label,
                 lm_weight, word_bonus, oov_penalty, external, cache, restricted, lexicon_words, unlisted_penalty):
    """Set a new prefix's LM context, partial-word hash and LM scores from its parent's.

    `partial_penalty` is the look-ahead score of an unfinished word: the best
    unigram log-probability of the LM words it begins (times the weight, plus
    the word bonus), or the OOV penalty when no LM word begins with it. It is
    not accumulated: once a space ends the word, the word's n-gram score
    replaces it. Without it a prefix in mid-word would outrank one that has
    just paid for a complete word (measured on speechocean762 dev: 78.6% ->
    76.8% WER at each one's best weights, beam 16).

    With a lexicon (`restricted`), a prefix that no lexicon word begins with,
    or a finished word outside it, costs `unlisted_penalty` (inf: refused).

    With an `external` scorer, contexts hold word hashes, scores come from
    `cache`, and the return value says whether one was missing there.
    """
    contexts[child] = contexts[node]
    lm_score[child] = lm_score[node]
    missing = False
    if mode == 1 or restricted:
        if label != space_id:
            word_hash[child] = extend_hash(word_hash[node] if word_hash[node] != 0 else np.int64(HASH_SEED), label)
            if restricted and word_hash[child] not in prefix_hashes:
                partial_penalty[child] = -unlisted_penalty
            elif mode != 1:
                partial_penalty[child] = 0.0
            elif external and len(prefix_hashes) == 0:  # no word list: no look-ahead
                partial_penalty[child] = word_bonus
            elif word_hash[child] not in prefix_hashes:
                partial_penalty[child] = -lm_weight * oov_penalty
            else:
                partial_penalty[child] = lm_weight * prefix_hashes[word_hash[child]] + word_bonus
        elif word_hash[node] != 0:  # a space ends a word: score it
            if restricted and word_hash[node] not in lexicon_words:
                lm_score[child] -= unlisted_penalty
            if mode == 1:
                missing = _score_word(node, child, contexts, word_hash, lm_score, keys, lm_log_probs, lm_backoffs,
                                      unknown_log_prob, unknown_id, word_of_hash, lm_weight, word_bonus, oov_penalty,
                                      external, cache)
    if mode == 2:
        lm_token = token_of_label[label] if token_of_label[label] >= 0 else unknown_id
        lm_score[child] += lm_weight * _lm_log_prob(
            contexts[node], lm_token, keys, lm_log_probs, lm_backoffs, unknown_log_prob) + word_bonus
        contexts[child, :-1] = contexts[node, 1:]
        contexts[child, -1] = lm_token
    return missing


@numba.njit(cache=True)
def _score_word(node, child, contexts, word_hash, lm_score, keys, lm_log_probs, lm_backoffs, unknown_log_prob,
                unknown_id, word_of_hash, lm_weight, word_bonus, oov_penalty, external, cache):
    """Word LM: add the n-gram score of the word `node` ends to `child` and move the word into its context."""
    missing = False
    if external:
        word = word_hash[node]
        score, missing = _cached_score(cache, contexts[node], word, missing)
        lm_score[child] += lm_weight * score + word_bonus
    else:
        word = _lookup(word_of_hash, word_hash[node], unknown_id)
        lm_score[child] += lm_weight * _lm_log_prob(
            contexts[node], word, keys, lm_log_probs, lm_backoffs, unknown_log_prob) + word_bonus
        if word_hash[node] not in word_of_hash:
            lm_score[child] -= lm_weight * oov_penalty
    contexts[child, :-1] = contexts[node, 1:]
    contexts[child, -1] = word
    return missing


@numba.njit(cache=True)
def _prefix_beam_search(log_probs, beam_size, prune_k, prune_threshold, beam_threshold, space_id, mode, order, keys,
                        lm_log_probs, lm_backoffs, unknown_log_prob, start_id, end_id, unknown_id, word_of_hash,
                        prefix_hashes, token_of_label, lm_weight, word_bonus, oov_penalty, nbest, external, cache,
                        restricted, lexicon_words, unlisted_penalty):
    num_frames, vocab_size = log_probs.shape
    context_size = max(order - 1, 1)
    capacity = 1024
    parent = np.full(capacity, -1, np.int64)
    token = np.full(capacity, -1, np.int64)
    frame = np.zeros(capacity, np.int64)
    word_hash = np.zeros(capacity, np.int64)
    contexts = np.full((capacity, context_size), -1, np.int64)
    lm_score = np.zeros(capacity, np.float64)
    partial_penalty = np.zeros(capacity, np.float64)
    slot_of = np.full(capacity, -1, np.int64)
    missed = np.zeros(capacity, np.bool_)  # external scorer: nodes that needed a score not in the cache
    children = Dict.empty(key_type=types.int64, value_type=types.int64)
    contexts[0, context_size - 1] = start_id if mode != 0 else -1
    num_nodes = 1

    beam_nodes = np.zeros(1, np.int64)
    beam_blank = np.zeros(1, np.float64)
    beam_nonblank = np.full(1, -np.inf)
    max_candidates = beam_size * (prune_k + 1) + 1
    cand_nodes = np.zeros(max_candidates, np.int64)
    cand_blank = np.full(max_candidates, -np.inf)
    cand_nonblank = np.full(max_candidates, -np.inf)

    for t in range(num_frames):
        row = log_probs[t]
        order_of_tokens = np.argsort(-row)[:prune_k]
        best_log_prob = row[order_of_tokens[0]]
        num_candidates = 0
        for b in range(beam_nodes.shape[0]):
            node, p_blank, p_nonblank = beam_nodes[b], beam_blank[b], beam_nonblank[b]
            p_total = _log_add(p_blank, p_nonblank)
            # A lexicon can forbid every token pruning leaves; a blank keeps each prefix alive through such frames.
            blank_tried = not restricted
            for k in range(order_of_tokens.shape[0]):
                label = order_of_tokens[k]
                p = row[label]
                if p < best_log_prob - prune_threshold:
                    break
                blank_tried = blank_tried or label == 0
                target = node
                if label != 0:
                    key = node * vocab_size + label
                    child = _lookup(children, key, -1)
                    if child < 0:
                        if num_nodes == capacity:
                            capacity *= 2
                            parent = _grow(parent, capacity, -1)
                            token = _grow(token, capacity, -1)
                            frame = _grow(frame, capacity, 0)
                            word_hash = _grow(word_hash, capacity, 0)
                            lm_score = _grow(lm_score, capacity, 0.0)
                            partial_penalty = _grow(partial_penalty, capacity, 0.0)
                            slot_of = _grow(slot_of, capacity, -1)
                            missed = _grow(missed, capacity, False)
                            grown = np.full((capacity, context_size), -1, np.int64)
                            grown[:num_nodes] = contexts[:num_nodes]
                            contexts = grown
                        child = num_nodes
                        num_nodes += 1
                        children[key] = child
                        parent[child], token[child], frame[child] = node, label, t
                        missed[child] = _score_child(
                            node, child, label, mode, space_id, contexts, word_hash, lm_score, partial_penalty, keys,
                            lm_log_probs, lm_backoffs, unknown_log_prob, unknown_id, word_of_hash, prefix_hashes,
                            token_of_label, lm_weight, word_bonus, oov_penalty, external, cache, restricted,
                            lexicon_words, unlisted_penalty)
                    target = child
                slot, num_candidates = _claim_slot(target, slot_of, cand_nodes, cand_blank, cand_nonblank, num_candidates)
                if label == 0:
                    cand_blank[slot] = _log_add(cand_blank[slot], p_total + p)
                elif label == token[node]:
                    # A repeat extends the prefix only across a blank; without one it collapses into it.
                    cand_nonblank[slot] = _log_add(cand_nonblank[slot], p_blank + p)
                    same, num_candidates = _claim_slot(node, slot_of, cand_nodes, cand_blank, cand_nonblank,
                                                       num_candidates)
                    cand_nonblank[same] = _log_add(cand_nonblank[same], p_nonblank + p)
                else:
                    cand_nonblank[slot] = _log_add(cand_nonblank[slot], p_total + p)
            if not blank_tried:
                slot, num_candidates = _claim_slot(node, slot_of, cand_nodes, cand_blank, cand_nonblank, num_candidates)
                cand_blank[slot] = _log_add(cand_blank[slot], p_total + row[0])
        totals = np.empty(num_candidates)
        for c in range(num_candidates):
            totals[c] = _log_add(cand_blank[c], cand_nonblank[c]) + lm_score[cand_nodes[c]] + partial_penalty[cand_nodes[c]]
            slot_of[cand_nodes[c]] = -1
        kept = np.argsort(-totals)[:beam_size]
        best_total = totals[kept[0]]
        num_kept = 1
        while num_kept < kept.shape[0] and totals[kept[num_kept]] >= best_total - beam_threshold:
            num_kept += 1
        kept = kept[:num_kept]
        beam_nodes = cand_nodes[kept].copy()
        beam_blank = cand_blank[kept].copy()
        beam_nonblank = cand_nonblank[kept].copy()

    finals = np.empty(beam_nodes.shape[0])
    for b in range(beam_nodes.shape[0]):
        node = beam_nodes[b]
        score = _log_add(beam_blank[b], beam_nonblank[b]) + lm_score[node]
        if mode != 0:
            score += _final_lm_score(node, mode, contexts[node].copy(), word_hash, keys, lm_log_probs, lm_backoffs,
                                     unknown_log_prob, end_id, unknown_id, word_of_hash, lm_weight, word_bonus,
                                     oov_penalty, external, cache, missed)
        if restricted and word_hash[node] != 0 and word_hash[node] not in lexicon_words:
            score -= unlisted_penalty  # the utterance cannot end in mid-word
        finals[b] = score
    best = np.argsort(-finals)[:nbest]
    missed_nodes = np.nonzero(missed[:num_nodes])[0]
    return beam_nodes[best], finals[best], parent[:num_nodes], token[:num_nodes], frame[:num_nodes], missed_nodes


@numba.njit(cache=True)
def _final_lm_score(node, mode, context, word_hash, keys, lm_log_probs, lm_backoffs, unknown_log_prob, end_id,
                    unknown_id, word_of_hash, lm_weight, word_bonus, oov_penalty, external, cache, missed):
    """LM score of ending the utterance at `node`: its unfinished word (word LM), then </s>."""
    score = 0.0
    missing = False
    if mode == 1 and word_hash[node] != 0:
        if external:
            word = word_hash[node]
            word_score, missing = _cached_score(cache, context, word, missing)
            score += lm_weight * word_score + word_bonus
        else:
            word = _lookup(word_of_hash, word_hash[node], unknown_id)
            score += lm_weight * _lm_log_prob(context, word, keys, lm_log_probs, lm_backoffs, unknown_log_prob) + word_bonus
            if word_hash[node] not in word_of_hash:
                score -= lm_weight * oov_penalty
        context[:-1] = context[1:].copy()
        context[-1] = word
    if external:
        end_score, missing = _cached_score(cache, context, end_id, missing)
        score += lm_weight * end_score
        missed[node] = missed[node] or missing
    else:
        score += lm_weight * _lm_log_prob(context, end_id, keys, lm_log_probs, lm_backoffs, unknown_log_prob)
    return score


@numba.njit(cache=True)
def _grow(array, capacity, fill):
    grown = np.full(capacity, fill, array.dtype)
    grown[: array.shape[0]] = array
    return grown


def beam_search(log_probs: np.ndarray, vocabulary: Vocabulary, options: DecodeOptions,
                lm: LanguageModelTables | None = None) -> list[Hypothesis]:
    """N-best hypotheses of one utterance's (T, V) log-probabilities (natural log), best first.

    With an external scorer (KenLM) the search treats a score missing from the
    cache as 0 (no model gives more), reports the prefixes that needed one,
    and runs again once they are filled in; the pass that misses nothing is
    exactly the search a scorer inside the loop would have made.
    """
    if log_probs.shape[0] == 0:
        return [Hypothesis([], [], 0.0)]
    tables = lm if lm is not None else empty_lm_tables(vocabulary.size)
    space_id = vocabulary.characters.index(" ") + 1 if " " in vocabulary.characters else -1
    cache = tables.cache if tables.cache is not None else _empty_cache()
    for _ in range(MAX_SCORER_PASSES):
        nodes, scores, parent, token, frame, missed = _prefix_beam_search(
            np.ascontiguousarray(log_probs, dtype=np.float32), options.beam_size,
            min(options.token_prune_k, vocabulary.size), options.token_prune_threshold, options.beam_threshold,
            space_id, tables.mode, tables.order, tables.keys, tables.log_probs, tables.backoffs,
            tables.unknown_log_prob, tables.start_id, tables.end_id, tables.unknown_id, tables.word_of_hash,
            tables.prefix_hashes, tables.token_of_label, options.lm_weight, options.word_bonus, options.oov_penalty,
            options.nbest, tables.external, cache, tables.restricted,
            tables.lexicon_words if tables.lexicon_words is not None else _empty_word_set(),
            np.inf if options.unlisted_word_penalty is None else options.unlisted_word_penalty,
        )
        if missed.shape[0] == 0:
            break
        _fill_cache(tables, [_labels_and_frames(node, parent, token, frame)[0] for node in missed], space_id, vocabulary,
                    options.oov_penalty)
    else:
        raise AsrCliError(f"the external LM's scores did not settle in {MAX_SCORER_PASSES} search passes")
    hypotheses = [Hypothesis(*_labels_and_frames(node, parent, token, frame), float(score))
                  for node, score in zip(nodes, scores)]
    if tables.restricted:  # every prefix left broke the lexicon (a narrow beam): keep the lexicon words it has
        hypotheses = [_lexicon_words_only(h, space_id, tables.lexicon_words) if h.score == -np.inf else h
                      for h in hypotheses]
    return hypotheses


def _lexicon_words_only(hypothesis: Hypothesis, space_id: int, lexicon_words: Dict) -> Hypothesis:
    """The hypothesis without its words (and their spaces) that are not complete lexicon words."""
    kept_labels, kept_frames, word = [], [], []
    for label, frame in [*zip(hypothesis.label_ids, hypothesis.frames), (space_id, -1)]:
        if label != space_id:
            word.append((label, frame))
            continue
        if word and sequence_hash([label for label, _ in word]) in lexicon_words:
            if kept_labels:
                kept_labels.append(space_id)
                kept_frames.append(word[0][1])
            kept_labels += [label for label, _ in word]
            kept_frames += [frame for _, frame in word]
        word = []
    return Hypothesis(kept_labels, kept_frames, hypothesis.score)


def _labels_and_frames(node: int, parent: np.ndarray, token: np.ndarray, frame: np.ndarray) -> tuple[list[int], list[int]]:
    label_ids, frames = [], []
    while node > 0:
        label_ids.append(int(token[node]))
        frames.append(int(frame[node]))
        node = parent[node]
    return label_ids[::-1], frames[::-1]


def _empty_word_set() -> Dict:
    return Dict.empty(key_type=types.int64, value_type=types.int64)


def _empty_cache() -> Dict:
    return Dict.empty(key_type=types.int64, value_type=types.float64)


def _fill_cache(tables: LanguageModelTables, prefixes: list[list[int]], space_id: int, vocabulary: Vocabulary,
                oov_penalty: float) -> None:
    """Score every word of each prefix, and </s> after its last, with the external scorer.

    The keys rebuild the contexts the search keeps: the last order-1 word
    hashes, <s> (START_MARK) first, -1 before the sentence start.
    """
    context_size = max(tables.order - 1, 1)
    for labels in prefixes:
        words: list[list[int]] = [[]]
        for label in labels:
            if label == space_id:
                words.append([])
            else:
                words[-1].append(label)
        words = [word for word in words if word]
        log_probs = tables.scorer.sentence_log_probs([vocabulary.decode(word) for word in words])
        context = np.full(context_size, -1, np.int64)
        context[-1] = START_MARK
        for word, (log_prob, is_oov) in zip(words, log_probs):
            word_id = sequence_hash(word)
            tables.cache[int(context_key(context, word_id))] = log_prob - (oov_penalty if is_oov else 0.0)
            context = np.append(context[1:], np.int64(word_id))
        tables.cache[int(context_key(context, END_MARK))] = log_probs[-1][0]
