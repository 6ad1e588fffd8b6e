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
numba: no Python loop over beams, tokens or frames; the LM reaches them as
named tuples (lm_tables.LmArrays, SearchSettings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import types
from numba.typed import Dict

from .config import DecodeConfig
from .errors import AsrCliError
from .lm_tables import (CHAR_LM, HASH_SEED, NO_CONTEXT, NO_LM, NO_WORD, WORD_LM, LanguageModelTables, lm_log_prob,
                        context_key, empty_lm_tables, extend_hash, fill_scorer_cache, sequence_hash)
from .text import BLANK_INDEX, Vocabulary

MAX_SCORER_PASSES = 100
INITIAL_NODES = 1024  # of the prefix tree; it doubles when full


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


# --- the search ---

class SearchSettings(NamedTuple):
    """The search's scalars, as the numba code reads them."""

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


class Nodes(NamedTuple):
    """The prefix tree: node 0 is the empty prefix; each other node is its parent's prefix plus `token`."""

    parent: np.ndarray
    token: np.ndarray
    frame: np.ndarray  # output frame where the token was first emitted
    word_hash: np.ndarray  # hash of the unfinished word's labels (NO_WORD after a space)
    contexts: np.ndarray  # (nodes, order - 1) LM ids (word LM: words; character LM: characters), NO_CONTEXT first
    lm_score: np.ndarray  # LM scores of the finished words (or characters), weighted, bonuses included
    look_ahead: np.ndarray  # the unfinished word's score until a space ends it (see _look_ahead)
    slot_of: np.ndarray  # candidate slot in the frame being searched (-1: none)
    missed: np.ndarray  # external scorer: whether scoring the node needed a score not in the cache


class Candidates(NamedTuple):
    """Prefixes reached in the frame being searched, with ln P of ending in blank and in non-blank."""

    nodes: np.ndarray
    blank: np.ndarray
    nonblank: np.ndarray


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
def _new_nodes(capacity, context_size):
    return Nodes(np.full(capacity, -1, np.int64), np.full(capacity, -1, np.int64), np.zeros(capacity, np.int64),
                 np.full(capacity, NO_WORD, np.int64), np.full((capacity, context_size), NO_CONTEXT, np.int64),
                 np.zeros(capacity, np.float64), np.zeros(capacity, np.float64), np.full(capacity, -1, np.int64),
                 np.zeros(capacity, np.bool_))


@numba.njit(cache=True)
def _grown(nodes, num_nodes):
    """The same tree in arrays of twice the size."""
    grown = _new_nodes(2 * num_nodes, nodes.contexts.shape[1])
    for old, new in ((nodes.parent, grown.parent), (nodes.token, grown.token), (nodes.frame, grown.frame),
                     (nodes.word_hash, grown.word_hash), (nodes.slot_of, grown.slot_of)):
        new[:num_nodes] = old[:num_nodes]
    grown.lm_score[:num_nodes] = nodes.lm_score[:num_nodes]
    grown.look_ahead[:num_nodes] = nodes.look_ahead[:num_nodes]
    grown.missed[:num_nodes] = nodes.missed[:num_nodes]
    grown.contexts[:num_nodes] = nodes.contexts[:num_nodes]
    return grown


@numba.njit(cache=True)
def _word_score(context, word_hash, lm, settings):
    """(weighted ln P(word | context) + the word bonus, minus the OOV penalty for a word the LM lacks; the id the
    word takes in the next context; whether an external score was missing)."""
    if lm.external:
        score, missing = _cached_score(lm.cache, context, word_hash)
        return settings.lm_weight * score + settings.word_bonus, word_hash, missing
    word = _lookup(lm.word_of_hash, word_hash, lm.unknown_id)
    score = settings.lm_weight * lm_log_prob(context, word, lm.keys, lm.log_probs, lm.backoffs,
                                              lm.unknown_log_prob) + settings.word_bonus
    if word_hash not in lm.word_of_hash:
        score -= settings.lm_weight * settings.oov_penalty
    return score, word, False


@numba.njit(cache=True)
def _look_ahead(word_hash, lm, settings):
    """Score of an unfinished word until a space ends it: the best unigram ln P of the LM words it begins (times
    the weight, plus the word bonus), or the OOV penalty when no LM word begins with it. Not accumulated: the
    word's n-gram score replaces it. Without it a prefix in mid-word would outrank one that has just paid for
    a complete word (speechocean762 dev: 78.6% -> 76.8% WER at each one's best weights, beam 16). With a
    lexicon, a prefix no lexicon word begins with costs the unlisted-word penalty."""
    if lm.restricted and word_hash not in lm.prefix_hashes:
        return -settings.unlisted_penalty
    if lm.mode != WORD_LM:
        return 0.0
    if lm.external and len(lm.prefix_hashes) == 0:  # no word list: no look-ahead
        return settings.word_bonus
    if word_hash not in lm.prefix_hashes:
        return -settings.lm_weight * settings.oov_penalty
    return settings.lm_weight * lm.prefix_hashes[word_hash] + settings.word_bonus


@numba.njit(cache=True)
def _score_new_prefix(node, child, label, nodes, lm, settings):
    """Set a new prefix's LM context, unfinished word and scores from its parent's; returns whether an external
    score was missing."""
    nodes.contexts[child] = nodes.contexts[node]
    nodes.lm_score[child] = nodes.lm_score[node]
    missing = False
    if (lm.mode == WORD_LM or lm.restricted) and label != settings.space_id:
        start = nodes.word_hash[node] if nodes.word_hash[node] != NO_WORD else np.int64(HASH_SEED)
        nodes.word_hash[child] = extend_hash(start, label)
        nodes.look_ahead[child] = _look_ahead(nodes.word_hash[child], lm, settings)
    elif (lm.mode == WORD_LM or lm.restricted) and nodes.word_hash[node] != NO_WORD:  # a space ends a word
        if lm.restricted and nodes.word_hash[node] not in lm.lexicon_words:
            nodes.lm_score[child] -= settings.unlisted_penalty
        if lm.mode == WORD_LM:
            score, word, missing = _word_score(nodes.contexts[node], nodes.word_hash[node], lm, settings)
            nodes.lm_score[child] += score
            nodes.contexts[child, :-1] = nodes.contexts[node, 1:]
            nodes.contexts[child, -1] = word
    if lm.mode == CHAR_LM:
        lm_token = lm.token_of_label[label] if lm.token_of_label[label] >= 0 else lm.unknown_id
        nodes.lm_score[child] += settings.lm_weight * lm_log_prob(
            nodes.contexts[node], lm_token, lm.keys, lm.log_probs, lm.backoffs, lm.unknown_log_prob
        ) + settings.word_bonus
        nodes.contexts[child, :-1] = nodes.contexts[node, 1:]
        nodes.contexts[child, -1] = lm_token
    return missing


@numba.njit(cache=True)
def _child(node, label, t, nodes, num_nodes, children, vocab_size, lm, settings):
    """(the prefix `node` + `label`, created and scored if new; the tree, grown if full; its node count)."""
    key = node * vocab_size + label
    child = _lookup(children, key, -1)
    if child >= 0:
        return child, nodes, num_nodes
    if num_nodes == nodes.parent.shape[0]:
        nodes = _grown(nodes, num_nodes)
    child = num_nodes
    children[key] = child
    nodes.parent[child], nodes.token[child], nodes.frame[child] = node, label, t
    nodes.missed[child] = _score_new_prefix(node, child, label, nodes, lm, settings)
    return child, nodes, num_nodes + 1


@numba.njit(cache=True)
def _claim_slot(node, slot_of, candidates, num_candidates):
    """(slot of `node` among the frame's candidates, new candidate count), adding it if new."""
    if slot_of[node] < 0:
        slot_of[node] = num_candidates
        candidates.nodes[num_candidates] = node
        candidates.blank[num_candidates] = -np.inf
        candidates.nonblank[num_candidates] = -np.inf
        num_candidates += 1
    return slot_of[node], num_candidates


@numba.njit(cache=True)
def _add_path(node, target, label, p, p_blank, p_nonblank, nodes, candidates, num_candidates):
    """Add the paths from prefix `node` (ln P ending in blank, non-blank) through `label` (ln P `p`) to `target`."""
    slot, num_candidates = _claim_slot(target, nodes.slot_of, candidates, num_candidates)
    if label == BLANK_INDEX:
        candidates.blank[slot] = _log_add(candidates.blank[slot], _log_add(p_blank, p_nonblank) + p)
    elif label == nodes.token[node]:
        # A repeat extends the prefix only across a blank; without one it collapses into it.
        candidates.nonblank[slot] = _log_add(candidates.nonblank[slot], p_blank + p)
        same, num_candidates = _claim_slot(node, nodes.slot_of, candidates, num_candidates)
        candidates.nonblank[same] = _log_add(candidates.nonblank[same], p_nonblank + p)
    else:
        candidates.nonblank[slot] = _log_add(candidates.nonblank[slot], _log_add(p_blank, p_nonblank) + p)
    return num_candidates


@numba.njit(cache=True)
def _search_frame(t, row, beam, nodes, num_nodes, children, candidates, lm, settings):
    """Extend every prefix of the beam by the frame's likely tokens; returns (candidates, tree, node count)."""
    beam_nodes, beam_blank, beam_nonblank = beam
    top = np.argsort(-row)[:settings.prune_k]
    floor = row[top[0]] - settings.prune_threshold
    num_candidates = 0
    for b in range(beam_nodes.shape[0]):
        node = beam_nodes[b]
        # A lexicon can forbid every token pruning leaves; a blank keeps each prefix alive through such frames.
        blank_tried = not lm.restricted
        for k in range(top.shape[0]):
            label = top[k]
            if row[label] < floor:
                break
            blank_tried = blank_tried or label == BLANK_INDEX
            target = node
            if label != BLANK_INDEX:
                target, nodes, num_nodes = _child(node, label, t, nodes, num_nodes, children, row.shape[0], lm,
                                                  settings)
            num_candidates = _add_path(node, target, label, row[label], beam_blank[b], beam_nonblank[b], nodes,
                                       candidates, num_candidates)
        if not blank_tried:
            num_candidates = _add_path(node, node, BLANK_INDEX, row[BLANK_INDEX], beam_blank[b], beam_nonblank[b],
                                       nodes, candidates, num_candidates)
    return num_candidates, nodes, num_nodes


@numba.njit(cache=True)
def _prune(candidates, num_candidates, nodes, settings):
    """The next beam: the best `beam_size` candidates (acoustic + LM + look-ahead) within the beam threshold."""
    totals = np.empty(num_candidates)
    for c in range(num_candidates):
        node = candidates.nodes[c]
        totals[c] = (_log_add(candidates.blank[c], candidates.nonblank[c]) + nodes.lm_score[node]
                     + nodes.look_ahead[node])
        nodes.slot_of[node] = -1
    kept = np.argsort(-totals)[:settings.beam_size]
    num_kept = 1
    while num_kept < kept.shape[0] and totals[kept[num_kept]] >= totals[kept[0]] - settings.beam_threshold:
        num_kept += 1
    kept = kept[:num_kept]
    return candidates.nodes[kept].copy(), candidates.blank[kept].copy(), candidates.nonblank[kept].copy()


@numba.njit(cache=True)
def _final_lm_score(node, nodes, lm, settings):
    """LM score of ending the utterance at `node`: its unfinished word (word LM), then </s>."""
    context = nodes.contexts[node].copy()
    score, missing = 0.0, False
    if lm.mode == WORD_LM and nodes.word_hash[node] != NO_WORD:
        score, word, missing = _word_score(context, nodes.word_hash[node], lm, settings)
        context[:-1] = context[1:].copy()
        context[-1] = word
    if lm.external:
        end_score, end_missing = _cached_score(lm.cache, context, lm.end_id)
        nodes.missed[node] = nodes.missed[node] or missing or end_missing
        return score + settings.lm_weight * end_score
    return score + settings.lm_weight * lm_log_prob(context, lm.end_id, lm.keys, lm.log_probs, lm.backoffs,
                                                     lm.unknown_log_prob)


@numba.njit(cache=True)
def _final_scores(beam, nodes, lm, settings):
    """Each prefix's score as a whole utterance."""
    beam_nodes, beam_blank, beam_nonblank = beam
    finals = np.empty(beam_nodes.shape[0])
    for b in range(beam_nodes.shape[0]):
        node = beam_nodes[b]
        finals[b] = _log_add(beam_blank[b], beam_nonblank[b]) + nodes.lm_score[node]
        if lm.mode != NO_LM:
            finals[b] += _final_lm_score(node, nodes, lm, settings)
        if lm.restricted and nodes.word_hash[node] != NO_WORD and nodes.word_hash[node] not in lm.lexicon_words:
            finals[b] -= settings.unlisted_penalty  # the utterance cannot end in mid-word
    return finals


@numba.njit(cache=True)
def _prefix_beam_search(log_probs, lm, settings):
    """(best nodes, their scores, the tree's parent, token and frame arrays, nodes that missed external scores)
    for (T, V) log-probabilities."""
    nodes = _new_nodes(INITIAL_NODES, max(lm.order - 1, 1))
    if lm.mode != NO_LM:
        nodes.contexts[0, -1] = lm.start_id
    num_nodes = 1
    children = Dict.empty(key_type=types.int64, value_type=types.int64)
    beam = (np.zeros(1, np.int64), np.zeros(1, np.float64), np.full(1, -np.inf))
    max_candidates = settings.beam_size * (settings.prune_k + 1) + 1
    candidates = Candidates(np.zeros(max_candidates, np.int64), np.full(max_candidates, -np.inf),
                            np.full(max_candidates, -np.inf))
    for t in range(log_probs.shape[0]):
        num_candidates, nodes, num_nodes = _search_frame(t, log_probs[t], beam, nodes, num_nodes, children,
                                                         candidates, lm, settings)
        beam = _prune(candidates, num_candidates, nodes, settings)
    finals = _final_scores(beam, nodes, lm, settings)
    best = np.argsort(-finals)[:settings.nbest]
    missed_nodes = np.nonzero(nodes.missed[:num_nodes])[0]
    return (beam[0][best], finals[best], nodes.parent[:num_nodes], nodes.token[:num_nodes], nodes.frame[:num_nodes],
            missed_nodes)


def beam_search(log_probs: np.ndarray, vocabulary: Vocabulary, options: DecodeConfig,
                lm: LanguageModelTables | None = None) -> list[Hypothesis]:
    """N-best hypotheses of one utterance's (T, V) log-probabilities (natural log), best first.

    With an external scorer (KenLM) the search treats a score missing from the
    cache as 0 (no model gives more), reports the prefixes that needed one,
    and runs again once they are filled in; the pass that misses nothing is
    exactly the search a scorer inside the loop would have made.
    """
    if log_probs.shape[0] == 0:
        return [Hypothesis([], [], 0.0)]
    options = options.with_beam(searching=True)
    tables = lm if lm is not None else empty_lm_tables(vocabulary.size)
    space_id = vocabulary.characters.index(" ") + 1 if " " in vocabulary.characters else -1
    settings = SearchSettings(
        int(options.beam_size), int(min(options.token_prune_k, vocabulary.size)), float(options.token_prune_threshold),
        float(options.beam_threshold), space_id, float(options.lm_weight), float(options.word_bonus),
        float(options.oov_penalty), int(options.nbest),
        np.inf if options.unlisted_word_penalty is None else float(options.unlisted_word_penalty))
    for _ in range(MAX_SCORER_PASSES):
        nodes, scores, parent, token, frame, missed = _prefix_beam_search(
            np.ascontiguousarray(log_probs, dtype=np.float32), tables.arrays, settings)
        if missed.shape[0] == 0:
            break
        fill_scorer_cache(tables, [_labels_and_frames(node, parent, token, frame)[0] for node in missed], space_id,
                          vocabulary, options.oov_penalty)
    else:
        raise AsrCliError(f"the external LM's scores did not settle in {MAX_SCORER_PASSES} search passes")
    hypotheses = [Hypothesis(*_labels_and_frames(node, parent, token, frame), float(score))
                  for node, score in zip(nodes, scores)]
    if tables.arrays.restricted:  # every prefix left broke the lexicon (a narrow beam): keep the lexicon words it has
        hypotheses = [_lexicon_words_only(h, space_id, tables.arrays.lexicon_words) if h.score == -np.inf else h
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


