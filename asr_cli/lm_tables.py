"""An n-gram LM (and a lexicon) flattened into the hashed tables the numba beam search reads, and
`search_tables`, which builds them from a search's LM and lexicon files.

Sequences of ids (an n-gram's word ids, a word's label ids) are keyed by a
64-bit rolling hash (`extend_hash`), the same in Python and in numba. The
constructors return new tables; none changes one it is given.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from numba import types
from numba.typed import Dict

from .config import CHARACTER_UNITS, PHONE_UNITS, ConfigError, SearchConfig
from .errors import AsrCliError
from .lexicon import Lexicon, PhoneSet, check_units, load_lexicon
from .lm import SENTENCE_END, SENTENCE_START, SPACE_TOKEN, UNKNOWN, KenlmScorer, NgramLM, is_kenlm_binary, read_arpa
from .logs import log
from .signals import stops_deferred
from .text import Vocabulary

NO_LM, WORD_LM, CHAR_LM = 0, 1, 2
# A scorer outside numba (KenLM) sees contexts of word hashes; these stand for <s> and </s> there.
START_MARK, END_MARK = 2, 3
NO_WORD = 0  # the hash of the empty word: a prefix that ends in a space (or is empty)
NO_CONTEXT = -1  # a context slot before the sentence start
SPECIAL_TOKENS = {SENTENCE_START, SENTENCE_END, UNKNOWN}

LOG10_TO_LN = math.log(10.0)


HASH_SEED = 1469598103934665603


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


# The tables are built in numba: a numba dictionary filled from Python costs seconds of compiling in every
# process and microseconds an entry (7 s for a 900,000-n-gram LM); these are compiled once, cached on disk.


@numba.njit(cache=True)
def _empty_int_dict():
    return Dict.empty(key_type=types.int64, value_type=types.int64)


@numba.njit(cache=True)
def _empty_float_dict():
    return Dict.empty(key_type=types.int64, value_type=types.float64)


@numba.njit(cache=True)
def _sequence_hashes(ids, lengths):
    """(N, k) int64 sequences of ids, each `lengths` long (the rest padding) -> (N,) their sequence hashes."""
    hashes = np.empty(ids.shape[0], np.int64)
    for row in range(ids.shape[0]):
        value = np.int64(HASH_SEED)
        for column in range(lengths[row]):
            value = extend_hash(value, ids[row, column])
        hashes[row] = value
    return hashes


@numba.njit(cache=True)
def _index_of_hashes(hashes):
    """(N,) hashes -> {hash: its position}."""
    index = _empty_int_dict()
    for position in range(hashes.shape[0]):
        index[hashes[position]] = position
    return index


@numba.njit(cache=True)
def _spelling_tables(labels, lengths, scores, word_ids, prefix_hashes, words_of_hash):
    """Spellings (S, L) of label ids padded past `lengths`, each with a score and a word id: every prefix's hash
    in `prefix_hashes` -> the best score of a spelling below it; each whole spelling's hash in `words_of_hash`
    -> the word id of its best-scoring word (the first of equals)."""
    best = _empty_float_dict()
    for spelling in range(labels.shape[0]):
        value = np.int64(HASH_SEED)
        for position in range(lengths[spelling]):
            value = extend_hash(value, labels[spelling, position])
            prefix_hashes[value] = max(prefix_hashes.get(value, -np.inf), scores[spelling])
        if scores[spelling] > best.get(value, -np.inf):
            best[value] = scores[spelling]
            words_of_hash[value] = word_ids[spelling]


def _padded(sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of ids -> ((S, longest) int64 padded with 0, (S,) lengths)."""
    lengths = np.array([len(sequence) for sequence in sequences], dtype=np.int64)
    padded = np.zeros((len(sequences), int(lengths.max(initial=0))), dtype=np.int64)
    padded[np.arange(padded.shape[1]) < lengths[:, None]] = [i for sequence in sequences for i in sequence]
    return padded, lengths


class LmArrays(NamedTuple):
    """An n-gram model (and lexicon) as the numba search reads it: hashed n-grams -> natural-log probability and
    back-off, and the hashed spellings of words (a named tuple: numba takes no dataclasses).

    The search's kernel takes these fields unpacked, by position: its parameters after the log-probabilities
    carry exactly these names in this order, then SearchSettings' (tests/test_search.py checks it)."""

    mode: int  # NO_LM, WORD_LM or CHAR_LM
    order: int
    keys: Dict  # hash of an n-gram's LM ids -> its row in log_probs and backoffs
    lm_log_probs: np.ndarray  # natural log, by row
    lm_backoffs: np.ndarray
    unknown_log_prob: float
    start_id: int
    end_id: int
    unknown_id: int
    word_of_hash: Dict  # word LM: hash of a word's label ids -> its LM id
    prefix_hashes: Dict  # word LM: hash of every prefix of every LM word the model can spell -> best unigram ln P
    token_of_label: np.ndarray  # character LM: label id -> LM token id (-1: unknown)
    # With an external scorer (KenLM), n-gram scores come from it through `cache`: hash of (context, word) ->
    # natural-log probability (minus the OOV penalty for an OOV word); see `fill_scorer_cache`.
    external: bool
    cache: Dict
    # With a lexicon (`restrict_to_lexicon`), `prefix_hashes` holds the prefixes of its words' spellings only, and
    # `lexicon_words` the hashes of their complete spellings: other words are refused or penalised.
    restricted: bool
    lexicon_words: Dict


@dataclass
class LanguageModelTables:
    """The search's arrays, and what the LM's vocabulary says about the acoustic model's."""

    arrays: LmArrays
    unreachable: list[str]  # LM tokens the model cannot spell
    unmodelled: list[str]  # model characters the LM does not know (character LM)
    lm_tokens: list[str]  # the LM's vocabulary without <s>, </s> and <unk>
    scorer: object | None = None  # an external scorer (KenLM)
    # A phone model's output words are spellings in phone characters; this maps each to the word it writes.
    spoken_words: dict[str, str] | None = None
    lm_vocabulary: list[str] | None = None  # word LM ids -> words (an ARPA model's whole vocabulary)

    @property
    def oov_rate(self) -> float:
        """Share of the LM's vocabulary the acoustic model cannot produce (0 when it cannot be listed: KenLM)."""
        return len(self.unreachable) / max(len(self.lm_tokens), 1)

    def with_arrays(self, **changes) -> LanguageModelTables:
        """A copy with some of the search's arrays replaced."""
        return dataclasses.replace(self, arrays=self.arrays._replace(**changes))


@stops_deferred  # typed dictionaries cross between Python and numba (signals.py)
def build_lm_tables(
    lm: NgramLM, vocabulary: Vocabulary, unit: str, spellings: dict[str, list[str]] | None = None
) -> LanguageModelTables:
    """Flatten an ARPA model for the search; `unit` is "word" or "char".

    `spellings` (phone models): each word's spellings in the model's characters, instead of the word itself;
    of words spelt alike (homophones), the search scores the one with the higher unigram probability.
    """
    words = lm.vocabulary
    word_id = {word: index for index, word in enumerate(words)}
    for required in (SENTENCE_START, SENTENCE_END):
        if required not in word_id:
            raise AsrCliError(f"the language model has no {required} token; is it an ARPA model of sentences?")
    hashes, values = [np.zeros(0, np.int64)], [np.zeros((0, 2))]
    for table in lm.ngrams:
        if table:
            order = len(next(iter(table)))
            ids = np.fromiter(map(word_id.__getitem__, itertools.chain.from_iterable(table)), np.int64)
            hashes.append(_sequence_hashes(ids.reshape(-1, order), np.full(len(table), order, np.int64)))
            values.append(np.array(list(table.values()), dtype=np.float64).reshape(-1, 2) * LOG10_TO_LN)
    log_probs_and_backoffs = np.concatenate(values)
    unknown_entry = lm.ngrams[0].get((UNKNOWN,))
    tables = empty_lm_tables(vocabulary.size).with_arrays(
        order=lm.order,
        keys=_index_of_hashes(np.concatenate(hashes)),
        lm_log_probs=np.ascontiguousarray(log_probs_and_backoffs[:, 0]),
        lm_backoffs=np.ascontiguousarray(log_probs_and_backoffs[:, 1]),
        unknown_log_prob=(unknown_entry[0] if unknown_entry else -99.0) * LOG10_TO_LN,
        start_id=word_id[SENTENCE_START],
        end_id=word_id[SENTENCE_END],
        unknown_id=word_id.get(UNKNOWN, -1),
    )
    tables = dataclasses.replace(
        tables, lm_tokens=[w for w in words if w not in SPECIAL_TOKENS], lm_vocabulary=list(words)
    )
    return (
        _with_words(tables, lm, vocabulary, spellings) if unit == "word" else _with_characters(tables, lm, vocabulary)
    )


def _with_words(
    tables: LanguageModelTables, lm: NgramLM, vocabulary: Vocabulary, spellings: dict[str, list[str]] | None
) -> LanguageModelTables:
    """Word LM: each word's spelling (hash of its label ids) -> its LM id, and every spelling prefix -> the best
    unigram ln P below it (the look-ahead)."""
    label_of = {character: index + 1 for index, character in enumerate(vocabulary.characters)}
    forms_labels, scores, word_ids, unreachable = [], [], [], []
    for word_id, word in enumerate(lm.vocabulary):
        if word in SPECIAL_TOKENS:
            continue
        forms = spellings.get(word, []) if spellings is not None else [word]
        forms = [form for form in forms if all(character in label_of for character in form)]
        if not forms:
            unreachable.append(word)
        unigram_log_prob = lm.ngrams[0][(word,)][0] * LOG10_TO_LN
        for form in forms:
            forms_labels.append([label_of[c] for c in form])
            scores.append(unigram_log_prob)
            word_ids.append(word_id)
    word_of_hash, prefix_hashes = _empty_int_dict(), _empty_float_dict()
    labels, lengths = _padded(forms_labels)
    _spelling_tables(
        labels, lengths, np.array(scores, np.float64), np.array(word_ids, np.int64), prefix_hashes, word_of_hash
    )
    tables = tables.with_arrays(mode=WORD_LM, word_of_hash=word_of_hash, prefix_hashes=prefix_hashes)
    return dataclasses.replace(tables, unreachable=unreachable)


def _with_characters(tables: LanguageModelTables, lm: NgramLM, vocabulary: Vocabulary) -> LanguageModelTables:
    """Character LM: each model character's label id -> its LM token id (-1 where the LM lacks it)."""
    label_of = {character: index + 1 for index, character in enumerate(vocabulary.characters)}
    token_of_label = np.full(vocabulary.size, -1, dtype=np.int64)
    unreachable = []
    for word_id, word in enumerate(lm.vocabulary):
        character = " " if word == SPACE_TOKEN else word
        if word in SPECIAL_TOKENS:
            continue
        if character in label_of:
            token_of_label[label_of[character]] = word_id
        else:
            unreachable.append(word)
    unmodelled = [c for c in vocabulary.characters if token_of_label[label_of[c]] < 0]
    tables = tables.with_arrays(mode=CHAR_LM, token_of_label=token_of_label)
    return dataclasses.replace(tables, unreachable=unreachable, unmodelled=unmodelled)


@stops_deferred  # typed dictionaries cross between Python and numba (signals.py)
def empty_lm_tables(vocabulary_size: int) -> LanguageModelTables:
    """No LM: the search scores the acoustics alone."""
    arrays = LmArrays(
        mode=NO_LM,
        order=1,
        keys=_empty_int_dict(),
        lm_log_probs=np.zeros(0),
        lm_backoffs=np.zeros(0),
        unknown_log_prob=0.0,
        start_id=0,
        end_id=0,
        unknown_id=-1,
        word_of_hash=_empty_int_dict(),
        prefix_hashes=_empty_float_dict(),
        token_of_label=np.full(vocabulary_size, -1, dtype=np.int64),
        external=False,
        cache=_empty_float_dict(),
        restricted=False,
        lexicon_words=_empty_int_dict(),
    )
    return LanguageModelTables(arrays, unreachable=[], unmodelled=[], lm_tokens=[])


@stops_deferred  # typed dictionaries cross between Python and numba (signals.py)
def scorer_lm_tables(scorer, vocabulary: Vocabulary, unigrams: NgramLM | None = None) -> LanguageModelTables:
    """Tables for a word LM queried outside numba (`scorer.sentence_log_probs`, e.g. KenLM).

    Such a model cannot list its n-grams, so none are flattened: the search
    asks for the scores it lacks, and `beam_search` fills them in and searches
    again (see there). `unigrams` (the ARPA file's 1-grams) give the look-ahead
    for unfinished words and the OOV rate; without them (a KenLM binary file)
    an unfinished word carries only the word bonus.
    """
    tables = build_lm_tables(unigrams, vocabulary, "word") if unigrams is not None else empty_lm_tables(vocabulary.size)
    tables = tables.with_arrays(
        mode=WORD_LM, order=scorer.order, start_id=START_MARK, end_id=END_MARK, external=True, cache=_empty_float_dict()
    )
    return dataclasses.replace(tables, scorer=scorer)


@stops_deferred  # typed dictionaries cross between Python and numba (signals.py)
def restrict_to_lexicon(
    tables: LanguageModelTables, lexicon, vocabulary: Vocabulary, oov_penalty: float
) -> LanguageModelTables:
    """Tables whose search outputs only the lexicon's words (a trie of their spellings, as hashed prefixes).

    With a word LM, an unfinished word is ranked by the best unigram ln P of
    the lexicon words it begins (a word the LM does not know counts as minus the
    OOV penalty, as in the search without a lexicon), so the look-ahead only sees words the search may finish.
    """
    lm = tables.arrays
    spelt = [vocabulary.encode("".join(units)) for spellings in lexicon.pronunciations.values() for units in spellings]
    labels, lengths = _padded(spelt)
    hashes = _sequence_hashes(labels, lengths)
    look_aheads = np.zeros(len(spelt))
    if lm.mode == WORD_LM:
        no_context = np.full(max(lm.order - 1, 1), NO_CONTEXT, np.int64)
        look_aheads = _unigram_look_aheads(
            hashes, no_context, lm.word_of_hash, lm.keys, lm.lm_log_probs, lm.lm_backoffs, lm.unknown_log_prob,
            # a word no LM word spells counts as one no LM word begins (when the LM has words)
            -oov_penalty if len(lm.word_of_hash) > 0 else 0.0,
        )  # fmt: skip
    lexicon_words, prefix_hashes = _empty_int_dict(), _empty_float_dict()
    _spelling_tables(labels, lengths, look_aheads, np.ones(len(spelt), np.int64), prefix_hashes, lexicon_words)
    return tables.with_arrays(prefix_hashes=prefix_hashes, lexicon_words=lexicon_words, restricted=True)


@numba.njit(cache=True)
def _unigram_look_aheads(hashes, no_context, word_of_hash, keys, log_probs, backoffs, unknown_log_prob, unknown):
    """ln P of each spelt word (by hash) without context; `unknown` for a spelling that is no LM word."""
    look_aheads = np.full(hashes.shape[0], unknown)
    for index in range(hashes.shape[0]):
        if hashes[index] in word_of_hash:
            look_aheads[index] = lm_log_prob(
                no_context, word_of_hash[hashes[index]], keys, log_probs, backoffs, unknown_log_prob
            )
    return look_aheads


@numba.njit(cache=True)
def lm_log_prob(context, token, keys, log_probs, backoffs, unknown_log_prob):
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


def fill_scorer_cache(
    tables: LanguageModelTables, prefixes: list[list[int]], space_id: int, vocabulary: Vocabulary, oov_penalty: float
) -> None:
    """Score every word of each prefix, and </s> after its last, with the external scorer.

    The keys rebuild the contexts the search keeps: the last order-1 word
    hashes, <s> (START_MARK) first, -1 before the sentence start.
    """
    context_size = max(tables.arrays.order - 1, 1)
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
            tables.arrays.cache[int(context_key(context, word_id))] = log_prob - (oov_penalty if is_oov else 0.0)
            context = np.append(context[1:], np.int64(word_id))
        tables.arrays.cache[int(context_key(context, END_MARK))] = log_probs[-1][0]


# --- the tables of a search's files ---


def _load_lm(
    search: SearchConfig, vocabulary: Vocabulary, spellings: dict[str, list[str]] | None = None, verbose: bool = True
) -> LanguageModelTables:
    tables = _lm_tables(search, vocabulary, spellings)
    if not verbose:
        return tables
    if is_kenlm_binary(search.lm_path):  # its vocabulary cannot be listed
        log.info(
            f"LM {search.lm_path}: KenLM binary, order {tables.arrays.order} (no OOV rate, no look-ahead for unfinished "
            "words: pass the ARPA file for those)"
        )
        return tables
    what = "words" if search.lm_unit == "word" else "tokens"
    cannot = (
        "have no pronunciation in the lexicon" if spellings is not None else "use characters the model cannot produce"
    )
    log.info(
        f"LM {search.lm_path}: {len(tables.lm_tokens):,} {what}; {100 * tables.oov_rate:.1f}% of them {cannot}"
        + (f" (e.g. {', '.join(tables.unreachable[:5])})" if tables.unreachable else "")
    )
    if tables.unmodelled:
        log.warning(f"the character LM has no probability for model characters {tables.unmodelled!r}")
    if not tables.lm_tokens:
        raise AsrCliError(f"{search.lm_path}: the LM has no {what} besides <s>, </s> and <unk>")
    if tables.oov_rate > 0.5:
        log.warning(
            "most of the LM's vocabulary is out of reach of the model: was it built on other text "
            "or with other normalisation?"
        )
    return tables


def search_tables(
    search: SearchConfig, vocabulary: Vocabulary, phones: PhoneSet | None = None, verbose: bool = False
) -> LanguageModelTables | None:
    """The LM and the lexicon of `search` as the search's tables; None for a search without either.

    A phone model (`phones`) needs a lexicon: it spells the LM's words and the output words in phones.
    """
    if search.unlisted_word_penalty is not None and search.lexicon_path is None:
        raise ConfigError(("unlisted_word_penalty", "lexicon_path"), "{0} is the cost of a word outside {1}: "
                          "give a lexicon, or leave the penalty out")  # fmt: skip
    if phones is not None and search.lexicon_path is None:
        raise AsrCliError(
            "this is a phone model: it writes words through a pronunciation lexicon; give --lexicon "
            "(a Kaldi lexicon.txt, or cmudict)"
        )
    lexicon = None
    if search.lexicon_path is not None:
        lexicon = load_lexicon(search.lexicon_path, PHONE_UNITS if phones is not None else CHARACTER_UNITS)
        lexicon = _in_phone_characters(lexicon, phones) if phones is not None else lexicon
        check_units(lexicon, set(vocabulary.characters))
    spellings = (
        {word: ["".join(units) for units in forms] for word, forms in lexicon.pronunciations.items()}
        if phones is not None
        else None
    )
    lm_tables = _load_lm(search, vocabulary, spellings, verbose) if search.lm_path is not None else None
    if lexicon is None:
        return lm_tables
    lm_words = set(lm_tables.lm_tokens) if lm_tables is not None and lm_tables.arrays.mode == WORD_LM else set()
    if lm_words and not lm_words & set(lexicon.words):
        raise AsrCliError(
            f"{search.lexicon_path} shares no word with the LM {search.lm_path}: were they written "
            "for the same language, with the same normalisation?"
        )
    if verbose:
        unknown = f"; {len(set(lexicon.words) - lm_words):,} of them unknown to the LM" if lm_words else ""
        log.info(f"lexicon {search.lexicon_path}: {len(lexicon.words):,} words{unknown}")
    base = lm_tables if lm_tables is not None else empty_lm_tables(vocabulary.size)
    tables = restrict_to_lexicon(base, lexicon, vocabulary, search.oov_penalty)
    if phones is not None:
        tables = dataclasses.replace(tables, spoken_words=_spoken_words(lexicon, vocabulary, tables))
    return tables


def _in_phone_characters(lexicon: Lexicon, phones: PhoneSet) -> Lexicon:
    """The lexicon with each pronunciation spelt in the model's phone characters; refuses unknown phones."""
    unknown = {unit for forms in lexicon.pronunciations.values() for units in forms for unit in units} - set(
        phones.names
    )
    if unknown:
        raise AsrCliError(
            f"{lexicon.source} uses phones the model lacks: {', '.join(sorted(unknown)[:10])} (the "
            f"model's: {' '.join(phones.names)})"
        )
    spelled = Lexicon(source=lexicon.source)
    for word, forms in lexicon.pronunciations.items():
        for units in forms:
            spelled.add(word, tuple(phones.spell(units)))
    return spelled


def _spoken_words(lexicon: Lexicon, vocabulary: Vocabulary, tables: LanguageModelTables) -> dict[str, str]:
    """Phone spelling -> the word to write: the homophone the search scored (the LM's likelier one), else the
    first the lexicon lists."""
    spoken: dict[str, str] = {}
    for word, forms in lexicon.pronunciations.items():
        for units in forms:
            spelling = "".join(units)
            scored = tables.arrays.word_of_hash.get(sequence_hash(vocabulary.encode(spelling)), -1)
            if scored >= 0 and tables.lm_vocabulary is not None:
                spoken[spelling] = tables.lm_vocabulary[scored]
            else:
                spoken.setdefault(spelling, word)
    return spoken


def _lm_tables(
    search: SearchConfig, vocabulary: Vocabulary, spellings: dict[str, list[str]] | None = None
) -> LanguageModelTables:
    """The LM through the chosen backend: our ARPA reader, or KenLM (ARPA or binary files); `spellings` spell
    its words for a phone model (see `build_lm_tables`)."""
    binary = Path(search.lm_path).is_file() and is_kenlm_binary(search.lm_path)
    if spellings is not None and (search.lm_backend == "kenlm" or binary or search.lm_unit != "word"):
        raise AsrCliError("a phone model takes a word LM in ARPA form, read by the built-in reader (--lm-backend arpa)")
    if search.lm_backend == "arpa" or (search.lm_backend == "auto" and not binary):
        return build_lm_tables(read_arpa(search.lm_path), vocabulary, search.lm_unit, spellings)
    if search.lm_unit != "word":
        raise ConfigError("lm_backend", "{0} kenlm serves word LMs; read a character LM's ARPA file with {0} arpa")
    scorer = KenlmScorer(search.lm_path)
    return scorer_lm_tables(scorer, vocabulary, None if binary else read_arpa(search.lm_path, max_order=1))
