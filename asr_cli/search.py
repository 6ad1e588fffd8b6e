"""Decoding CTC outputs: greedy best path, and prefix beam search with n-gram LM fusion.

The beam search (Hannun et al., 2014) keeps, per prefix, the log-probability
of ending in blank and in non-blank; prefixes are nodes of a tree so equal
prefixes merge. Per frame only the top-k tokens within a threshold of the
frame's best are tried, and prefixes far below the best are dropped. With a
word LM, a word is scored when a space ends it (weight `lm_weight` on its
natural-log probability, plus `word_bonus`), and an unfinished word is ranked
by its best unigram continuation meanwhile; with a character LM every
character is scored (`<space>` for the space) and the bonus is per
character. With a lexicon, only its words are output. The loops run in
numba: no Python loop over beams, tokens or frames. The LM's arrays and the
search settings are named tuples (lm_tables.LmArrays, SearchSettings),
unpacked into the numba functions' arguments in their field order.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import types
from numba.typed import Dict

from .config import LM_BEAM_SIZE, SearchConfig
from .errors import AsrCliError
from .lm_tables import (
    CHAR_LM,
    HASH_SEED,
    NO_CONTEXT,
    NO_LM,
    NO_WORD,
    WORD_LM,
    LanguageModelTables,
    context_key,
    empty_lm_tables,
    extend_hash,
    fill_scorer_cache,
    lm_log_prob,
    sequence_hash,
)
from .results import Hypothesis
from .signals import stops_deferred
from .text import BLANK_INDEX, Vocabulary

MAX_SCORER_PASSES = 100
INITIAL_NODES = 1024  # of the prefix tree; it doubles when full


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


class GreedySearch:
    """The best path carried on a few frames at a time (PrefixSearch's interface): fed in blocks of any sizes,
    it gives `greedy_hypotheses` of the whole utterance."""

    def __init__(self) -> None:
        self.label_ids: list[int] = []
        self.frames: list[int] = []
        self.score = 0.0
        self.previous = BLANK_INDEX  # the last frame's best label: a repeat across the block edge collapses
        self.num_frames = 0

    def advance(self, log_probs: np.ndarray) -> None:
        """Search the next (num_frames, V) rows (natural log)."""
        if len(log_probs) == 0:
            return
        best = np.argmax(log_probs, axis=1)
        self.score += float(log_probs[np.arange(len(best)), best].astype(np.float64).sum())
        before = np.concatenate([[self.previous], best[:-1]])
        emitted = np.nonzero((best != before) & (best != BLANK_INDEX))[0]
        self.label_ids += best[emitted].tolist()
        self.frames += (emitted + self.num_frames).tolist()
        self.previous = int(best[-1])
        self.num_frames += len(best)

    def best(self) -> Hypothesis:
        return Hypothesis(list(self.label_ids), list(self.frames), self.score)

    def finish(self) -> list[Hypothesis]:
        return [self.best()]


# --- the search ---


class SearchSettings(NamedTuple):
    """The search's scalars. With LmArrays they make the numba search's arguments, unpacked in field order:
    numba reads named tuples too, but passing them through its inner loop measured 2x slower."""

    beam_size: int
    prune_k: int  # tokens tried per frame, at most
    prune_threshold: float  # ... within this many nats of the frame's best
    beam_threshold: float  # prefixes this many nats below the best are dropped
    space_id: int  # label id of the space (-1: none)
    lm_weight: float
    word_bonus: float
    oov_penalty: float
    nbest: int
    unlisted_penalty: float  # with a lexicon: nats for a word outside it (inf: refused)


# The numba kernels take the search's state as flat argument lists (passing the named tuples through them costs
# 2.5x); they keep a hand layout, several arguments a line, rather than the formatter's one a line.
# fmt: off
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
def _lookup(table, key, default):
    return table[key] if key in table else default


@numba.njit(cache=True)
def _cached_score(cache, context, token):
    """(score from an external scorer's cache or 0, whether it was missing)."""
    key = context_key(context, token)
    if key in cache:
        return cache[key], False
    return 0.0, True


@numba.njit(cache=True)
def _word_score(context, word_hash, external, cache, keys, lm_log_probs, lm_backoffs, unknown_log_prob, unknown_id,
                word_of_hash, lm_weight, word_bonus, oov_penalty):
    """(weighted ln P(word | context) + the word bonus, minus the OOV penalty for a word the LM lacks; the id the
    word takes in the next context; whether an external score was missing). The one place a word is scored."""
    if external:
        score, missing = _cached_score(cache, context, word_hash)
        return lm_weight * score + word_bonus, word_hash, missing
    word = _lookup(word_of_hash, word_hash, unknown_id)
    score = lm_weight * lm_log_prob(context, word, keys, lm_log_probs, lm_backoffs, unknown_log_prob) + word_bonus
    if word_hash not in word_of_hash:
        score -= lm_weight * oov_penalty
    return score, word, False


@numba.njit(cache=True)
def _look_ahead(word_hash, mode, external, prefix_hashes, restricted, lm_weight, word_bonus, oov_penalty,
                unlisted_penalty):
    """Score of an unfinished word until a space ends it: the best unigram ln P of the LM words it begins (times
    the weight, plus the word bonus), or the OOV penalty when no LM word begins with it. Not accumulated: the
    word's n-gram score replaces it. Without it a prefix in mid-word would outrank one that has just paid for
    a complete word (speechocean762 dev: 78.6% -> 76.8% WER at each one's best weights, beam 16). With a
    lexicon, a prefix no lexicon word begins with costs the unlisted-word penalty."""
    if restricted and word_hash not in prefix_hashes:
        return -unlisted_penalty
    if mode != WORD_LM:
        return 0.0
    if external and len(prefix_hashes) == 0:  # no word list: no look-ahead
        return word_bonus
    if word_hash not in prefix_hashes:
        return -lm_weight * oov_penalty
    return lm_weight * prefix_hashes[word_hash] + word_bonus


@numba.njit(cache=True)
def _score_child(node, child, label, contexts, word_hash, lm_score, look_ahead,
                 mode, keys, lm_log_probs, lm_backoffs, unknown_log_prob, unknown_id, word_of_hash, prefix_hashes,
                 token_of_label, external, cache, restricted, lexicon_words,
                 space_id, lm_weight, word_bonus, oov_penalty, unlisted_penalty):
    """Set a new prefix's LM context, unfinished word and scores from its parent's; returns whether an external
    score was missing. (Node arrays, then the LM's, then the settings'.)"""
    contexts[child] = contexts[node]
    lm_score[child] = lm_score[node]
    missing = False
    if (mode == WORD_LM or restricted) and label != space_id:
        start = word_hash[node] if word_hash[node] != NO_WORD else np.int64(HASH_SEED)
        word_hash[child] = extend_hash(start, label)
        look_ahead[child] = _look_ahead(word_hash[child], mode, external, prefix_hashes, restricted, lm_weight,
                                        word_bonus, oov_penalty, unlisted_penalty)
    elif (mode == WORD_LM or restricted) and word_hash[node] != NO_WORD:  # a space ends a word
        if restricted and word_hash[node] not in lexicon_words:
            lm_score[child] -= unlisted_penalty
        if mode == WORD_LM:
            score, word, missing = _word_score(contexts[node], word_hash[node], external, cache, keys, lm_log_probs,
                                               lm_backoffs, unknown_log_prob, unknown_id, word_of_hash, lm_weight,
                                               word_bonus, oov_penalty)
            lm_score[child] += score
            contexts[child, :-1] = contexts[node, 1:]
            contexts[child, -1] = word
    if mode == CHAR_LM:
        lm_token = token_of_label[label] if token_of_label[label] >= 0 else unknown_id
        lm_score[child] += lm_weight * lm_log_prob(contexts[node], lm_token, keys, lm_log_probs, lm_backoffs,
                                                   unknown_log_prob) + word_bonus
        contexts[child, :-1] = contexts[node, 1:]
        contexts[child, -1] = lm_token
    return missing


@numba.njit(cache=True)
def _claim_slot(node, slot_of, cand_nodes, cand_blank, cand_nonblank, num_candidates):
    """(slot of `node` among the frame's candidates, new candidate count), adding it if new."""
    if slot_of[node] < 0:
        slot_of[node] = num_candidates
        cand_nodes[num_candidates] = node
        cand_blank[num_candidates] = -np.inf
        cand_nonblank[num_candidates] = -np.inf
        num_candidates += 1
    return slot_of[node], num_candidates


@numba.njit(cache=True)
def _grown(capacity, num_nodes, parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed):
    """The node store's arrays at `capacity`, the first `num_nodes` entries kept."""
    def grow(array, fill):
        grown = np.full(capacity, fill, array.dtype)
        grown[:num_nodes] = array[:num_nodes]
        return grown

    grown_contexts = np.full((capacity, contexts.shape[1]), NO_CONTEXT, np.int64)
    grown_contexts[:num_nodes] = contexts[:num_nodes]
    return (grow(parent, -1), grow(token, -1), grow(frame, 0), grow(word_hash, NO_WORD), grown_contexts,
            grow(lm_score, 0.0), grow(look_ahead, 0.0), grow(slot_of, -1), grow(missed, False))


@numba.njit(cache=True)
def _prune(cand_nodes, cand_blank, cand_nonblank, num_candidates, lm_score, look_ahead, slot_of, beam_size,
           beam_threshold):
    """The next beam (nodes, ln P ending in blank, in non-blank): the best `beam_size` candidates by acoustic + LM +
    look-ahead score, within `beam_threshold` of the best. Frees the candidates' slots."""
    totals = np.empty(num_candidates)
    for c in range(num_candidates):
        node = cand_nodes[c]
        totals[c] = _log_add(cand_blank[c], cand_nonblank[c]) + lm_score[node] + look_ahead[node]
        slot_of[node] = -1
    kept = np.argsort(-totals)[:beam_size]
    num_kept = 1
    while num_kept < kept.shape[0] and totals[kept[num_kept]] >= totals[kept[0]] - beam_threshold:
        num_kept += 1
    kept = kept[:num_kept]
    return cand_nodes[kept].copy(), cand_blank[kept].copy(), cand_nonblank[kept].copy()


@numba.njit(cache=True)
def _final_lm_score(node, contexts, word_hash, missed, mode, keys, lm_log_probs, lm_backoffs, unknown_log_prob,
                    end_id, unknown_id, word_of_hash, external, cache, lm_weight, word_bonus, oov_penalty):
    """LM score of ending the utterance at `node`: its unfinished word (word LM), then </s>."""
    context = contexts[node].copy()
    score, missing = 0.0, False
    if mode == WORD_LM and word_hash[node] != NO_WORD:
        score, word, missing = _word_score(context, word_hash[node], external, cache, keys, lm_log_probs,
                                           lm_backoffs, unknown_log_prob, unknown_id, word_of_hash, lm_weight,
                                           word_bonus, oov_penalty)
        context[:-1] = context[1:].copy()
        context[-1] = word
    if external:
        end_score, end_missing = _cached_score(cache, context, end_id)
        missed[node] = missed[node] or missing or end_missing
        return score + lm_weight * end_score
    return score + lm_weight * lm_log_prob(context, end_id, keys, lm_log_probs, lm_backoffs, unknown_log_prob)


@numba.njit(cache=True)
def _search_frame(t, row, beam_nodes, beam_blank, beam_nonblank, num_nodes, children,
                  parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed,
                  cand_nodes, cand_blank, cand_nonblank,
                  mode, keys, lm_log_probs, lm_backoffs, unknown_log_prob, unknown_id, word_of_hash, prefix_hashes,
                  token_of_label, external, cache, restricted, lexicon_words,
                  prune_k, prune_threshold, space_id, lm_weight, word_bonus, oov_penalty, unlisted_penalty):
    """Extend every prefix of the beam by frame `t`'s likely tokens (the node arrays have room for every new
    prefix); returns (candidate count, node count)."""
    top = np.argsort(-row)[:prune_k]
    floor = row[top[0]] - prune_threshold
    num_candidates = 0
    for b in range(beam_nodes.shape[0]):
        node, p_blank, p_nonblank = beam_nodes[b], beam_blank[b], beam_nonblank[b]
        p_total = _log_add(p_blank, p_nonblank)
        # A lexicon can forbid every token pruning leaves; a blank keeps each prefix alive through such frames.
        blank_tried = not restricted
        for k in range(top.shape[0]):
            label = top[k]
            p = row[label]
            if p < floor:
                break
            blank_tried = blank_tried or label == BLANK_INDEX
            target = node
            if label != BLANK_INDEX:
                key = node * row.shape[0] + label
                target = _lookup(children, key, -1)
                if target < 0:  # a new prefix
                    target, num_nodes = num_nodes, num_nodes + 1
                    children[key] = target
                    parent[target], token[target], frame[target] = node, label, t
                    missed[target] = _score_child(
                        node, target, label, contexts, word_hash, lm_score, look_ahead,
                        mode, keys, lm_log_probs, lm_backoffs, unknown_log_prob, unknown_id, word_of_hash,
                        prefix_hashes, token_of_label, external, cache, restricted, lexicon_words,
                        space_id, lm_weight, word_bonus, oov_penalty, unlisted_penalty)
            slot, num_candidates = _claim_slot(target, slot_of, cand_nodes, cand_blank, cand_nonblank, num_candidates)
            if label == BLANK_INDEX:
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
            cand_blank[slot] = _log_add(cand_blank[slot], p_total + row[BLANK_INDEX])
    return num_candidates, num_nodes


@numba.njit(cache=True)
def _search_start(order, mode, start_id, beam_size, prune_k):
    """The search's state before the first frame: the node arrays (node 0: the empty prefix), the tree's children
    by (node, label), the beam (the empty prefix, certainly ending in blank), the frame's candidate arrays, and
    the node count."""
    parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed = _grown(
        INITIAL_NODES, 0, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
        np.zeros((0, max(order - 1, 1)), np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
        np.zeros(0, np.bool_))
    if mode != NO_LM:
        contexts[0, -1] = start_id
    children = Dict.empty(key_type=types.int64, value_type=types.int64)
    max_candidates = beam_size * (prune_k + 1) + 1
    return (parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed, children,
            np.zeros(1, np.int64), np.zeros(1), np.full(1, -np.inf),
            np.zeros(max_candidates, np.int64), np.full(max_candidates, -np.inf), np.full(max_candidates, -np.inf), 1)


@numba.njit(cache=True)
def _search_frames(log_probs, first_frame,
                   parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed, children,
                   beam_nodes, beam_blank, beam_nonblank, cand_nodes, cand_blank, cand_nonblank, num_nodes,
                   mode, order, keys, lm_log_probs, lm_backoffs, unknown_log_prob, start_id, end_id, unknown_id,
                   word_of_hash, prefix_hashes, token_of_label, external, cache, restricted, lexicon_words,
                   beam_size, prune_k, prune_threshold, beam_threshold, space_id, lm_weight, word_bonus,
                   oov_penalty, nbest, unlisted_penalty):
    """The state (as `_search_start` returns it) carried over (T, V) log-probabilities whose first row is frame
    `first_frame` of the utterance; returns the new state. The node arrays double when a frame could fill them,
    so they may be new arrays."""
    for t in range(log_probs.shape[0]):
        if num_nodes + beam_nodes.shape[0] * prune_k > parent.shape[0]:  # room for every prefix this frame can make
            capacity = 2 * (num_nodes + beam_size * prune_k)
            parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed = _grown(
                capacity, num_nodes, parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed)
        num_candidates, num_nodes = _search_frame(
            first_frame + t, log_probs[t], beam_nodes, beam_blank, beam_nonblank, num_nodes, children,
            parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed,
            cand_nodes, cand_blank, cand_nonblank,
            mode, keys, lm_log_probs, lm_backoffs, unknown_log_prob, unknown_id, word_of_hash, prefix_hashes,
            token_of_label, external, cache, restricted, lexicon_words,
            prune_k, prune_threshold, space_id, lm_weight, word_bonus, oov_penalty, unlisted_penalty)
        beam_nodes, beam_blank, beam_nonblank = _prune(cand_nodes, cand_blank, cand_nonblank, num_candidates,
                                                       lm_score, look_ahead, slot_of, beam_size, beam_threshold)
    return (parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed, children,
            beam_nodes, beam_blank, beam_nonblank, cand_nodes, cand_blank, cand_nonblank, num_nodes)


@numba.njit(cache=True)
def _search_end(parent, token, frame, word_hash, contexts, lm_score, look_ahead, slot_of, missed, children,
                beam_nodes, beam_blank, beam_nonblank, cand_nodes, cand_blank, cand_nonblank, num_nodes,
                mode, order, keys, lm_log_probs, lm_backoffs, unknown_log_prob, start_id, end_id, unknown_id,
                word_of_hash, prefix_hashes, token_of_label, external, cache, restricted, lexicon_words,
                beam_size, prune_k, prune_threshold, beam_threshold, space_id, lm_weight, word_bonus,
                oov_penalty, nbest, unlisted_penalty):
    """(best nodes, their scores, the tree's parent, token and frame arrays, nodes that missed external scores):
    the beam's prefixes ended (the unfinished word and </s> scored, a lexicon's unfinished word refused)."""
    finals = np.empty(beam_nodes.shape[0])
    for b in range(beam_nodes.shape[0]):
        node = beam_nodes[b]
        finals[b] = _log_add(beam_blank[b], beam_nonblank[b]) + lm_score[node]
        if mode != NO_LM:
            finals[b] += _final_lm_score(node, contexts, word_hash, missed, mode, keys, lm_log_probs, lm_backoffs,
                                         unknown_log_prob, end_id, unknown_id, word_of_hash, external, cache,
                                         lm_weight, word_bonus, oov_penalty)
        if restricted and word_hash[node] != NO_WORD and word_hash[node] not in lexicon_words:
            finals[b] -= unlisted_penalty  # the utterance cannot end in mid-word
    best = np.argsort(-finals)[:nbest]
    return (beam_nodes[best], finals[best], parent[:num_nodes], token[:num_nodes], frame[:num_nodes],
            np.nonzero(missed[:num_nodes])[0])


# fmt: on


class SearchState(NamedTuple):
    """The search between frames, as `_search_start` makes it and `_search_frames` carries it on (unpacked in
    field order): the prefix tree's node arrays and children, the beam, the frame's candidate arrays, the node
    count."""

    parent: np.ndarray
    token: np.ndarray
    frame: np.ndarray  # where each node's label was first emitted
    word_hash: np.ndarray
    contexts: np.ndarray
    lm_score: np.ndarray
    look_ahead: np.ndarray
    slot_of: np.ndarray
    missed: np.ndarray
    children: Dict
    beam_nodes: np.ndarray  # best first (by acoustic + LM + look-ahead score)
    beam_blank: np.ndarray
    beam_nonblank: np.ndarray
    cand_nodes: np.ndarray
    cand_blank: np.ndarray
    cand_nonblank: np.ndarray
    num_nodes: int


def search_settings(vocabulary: Vocabulary, options: SearchConfig) -> SearchSettings:
    """The numba search's scalars for `options` (a beam search asked for without a size gets LM_BEAM_SIZE)."""
    beam_size = LM_BEAM_SIZE if options.beam_size is None else options.beam_size
    return SearchSettings(
        int(beam_size),
        int(min(options.token_prune_k, vocabulary.size)),
        float(options.token_prune_threshold),
        float(options.beam_threshold),
        vocabulary.characters.index(" ") + 1 if " " in vocabulary.characters else -1,
        float(options.lm_weight),
        float(options.word_bonus),
        float(options.oov_penalty),
        int(options.nbest),
        np.inf if options.unlisted_word_penalty is None else float(options.unlisted_word_penalty),
    )


class PrefixSearch:
    """The prefix beam search of one utterance, carried on a few frames at a time: `advance` with each new block
    of (num_frames, V) log-probabilities, `best` for the best prefix so far (a partial result), `finish` for the
    n-best. Fed in blocks of any sizes it makes exactly the search of the whole utterance at once (the same
    kernel, frame by frame). The LM must be our own tables: an external scorer (KenLM) fills its cache between
    passes over a whole utterance, which a stream cannot go back for."""

    @stops_deferred  # the kernels take and give typed dictionaries (signals.py)
    def __init__(self, vocabulary: Vocabulary, options: SearchConfig, lm: LanguageModelTables | None = None) -> None:
        self.vocabulary = vocabulary
        self.tables = lm if lm is not None else empty_lm_tables(vocabulary.size)
        self.settings = search_settings(vocabulary, options)
        arrays = self.tables.arrays
        self.state = SearchState(*_search_start(arrays.order, arrays.mode, arrays.start_id,
                                                self.settings.beam_size, self.settings.prune_k))  # fmt: skip
        self.num_frames = 0

    @stops_deferred
    def advance(self, log_probs: np.ndarray) -> None:
        """Search the next (num_frames, V) rows (natural log)."""
        if len(log_probs) == 0:
            return
        self.state = SearchState(*_search_frames(
            np.ascontiguousarray(log_probs, dtype=np.float32), self.num_frames, *self.state, *self.tables.arrays,
            *self.settings))  # fmt: skip
        self.num_frames += len(log_probs)

    def best(self) -> Hypothesis:
        """The best prefix so far (unfinished word and all), with the score the beam ranks it by."""
        state = self.state
        node = int(state.beam_nodes[0])
        total = np.logaddexp(state.beam_blank[0], state.beam_nonblank[0]) + state.lm_score[node]
        return Hypothesis(*_labels_and_frames(node, state.parent, state.token, state.frame), float(total))

    @stops_deferred
    def ended(self):
        """(best nodes, scores, parent, token, frame, nodes that missed external scores) of the prefixes ended."""
        return _search_end(*self.state, *self.tables.arrays, *self.settings)

    def finish(self) -> list[Hypothesis]:
        """The n-best hypotheses of the frames searched, best first."""
        if self.tables.arrays.external:
            raise AsrCliError("an external LM (KenLM) cannot be searched a few frames at a time; use an ARPA file")
        if self.num_frames == 0:
            return [Hypothesis([], [], 0.0)]
        nodes, scores, parent, token, frame, _ = self.ended()
        return self._hypotheses(nodes, scores, parent, token, frame)

    def _hypotheses(self, nodes, scores, parent, token, frame) -> list[Hypothesis]:
        hypotheses = [
            Hypothesis(*_labels_and_frames(node, parent, token, frame), float(score))
            for node, score in zip(nodes, scores)
        ]
        arrays = self.tables.arrays
        if arrays.restricted:  # every prefix left broke the lexicon (a narrow beam): keep the lexicon words it has
            space_id = self.settings.space_id
            hypotheses = [
                _lexicon_words_only(h, space_id, arrays.lexicon_words) if h.score == -np.inf else h for h in hypotheses
            ]
        return hypotheses


def beam_search(
    log_probs: np.ndarray, vocabulary: Vocabulary, options: SearchConfig, lm: LanguageModelTables | None = None
) -> list[Hypothesis]:
    """N-best hypotheses of one utterance's (T, V) log-probabilities (natural log), best first.

    With an external scorer (KenLM) the search treats a score missing from the
    cache as 0 (no model gives more), reports the prefixes that needed one,
    and runs again once they are filled in; the pass that misses nothing is
    exactly the search a scorer inside the loop would have made.
    """
    if log_probs.shape[0] == 0:
        return [Hypothesis([], [], 0.0)]
    for _ in range(MAX_SCORER_PASSES):
        search = PrefixSearch(vocabulary, options, lm)
        search.advance(log_probs)
        nodes, scores, parent, token, frame, missed = search.ended()
        if missed.shape[0] == 0:
            return search._hypotheses(nodes, scores, parent, token, frame)
        fill_scorer_cache(
            search.tables,
            [_labels_and_frames(node, parent, token, frame)[0] for node in missed],
            search.settings.space_id,
            vocabulary,
            options.oov_penalty,
        )
    raise AsrCliError(f"the external LM's scores did not settle in {MAX_SCORER_PASSES} search passes")


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


def _labels_and_frames(
    node: int, parent: np.ndarray, token: np.ndarray, frame: np.ndarray
) -> tuple[list[int], list[int]]:
    label_ids, frames = [], []
    while node > 0:
        label_ids.append(int(token[node]))
        frames.append(int(frame[node]))
        node = parent[node]
    return label_ids[::-1], frames[::-1]
