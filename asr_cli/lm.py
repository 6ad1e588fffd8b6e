"""N-gram language models: ARPA files read, written and queried with back-off, and
built with interpolated modified Kneser-Ney smoothing (Chen & Goodman, 1998).

Probabilities are log10 in ARPA files and in `NgramLM`, as the format has them.
A model's tokens are words, or characters for a character-level model (the
space is then the token `<space>`).
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import MAX_LM_ORDER, ConfigError, LmConfig
from .errors import AsrCliError, first_line, require_file
from .fileio import atomic_write, read_text_lines

SENTENCE_START = "<s>"
SENTENCE_END = "</s>"
UNKNOWN = "<unk>"
SPACE_TOKEN = "<space>"
NO_PROBABILITY = -99.0  # log10 probability ARPA files give <s>, which is never predicted
_NGRAM_HEADER = re.compile(r"^\\(\d+)-grams:$")
_COUNT_LINE = re.compile(r"^ngram (\d+)=(\d+)$")
KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"


@dataclass
class NgramLM:
    """An ARPA back-off model: per order, n-gram tuple -> (log10 probability, log10 back-off weight)."""

    order: int
    ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = field(default_factory=list)

    @property
    def vocabulary(self) -> list[str]:
        return [ngram[0] for ngram in self.ngrams[0]]

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 P(word | context) with Katz-style back-off through the stored weights."""
        context = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        backoff = 0.0
        for start in range(len(context) + 1):
            history = context[start:]
            entry = self.ngrams[len(history)].get(history + (word,))
            if entry is not None:
                return backoff + entry[0]
            if history:
                history_entry = self.ngrams[len(history) - 1].get(history)
                if history_entry is not None:
                    backoff += history_entry[1]
        unknown = self.ngrams[0].get((UNKNOWN,))
        return backoff + (unknown[0] if unknown else NO_PROBABILITY)


def is_kenlm_binary(path: str | Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(KENLM_BINARY_MAGIC)) == KENLM_BINARY_MAGIC


class KenlmScorer:
    """Word n-gram scores from KenLM, for ARPA or KenLM binary files (needs `pip install kenlm`).

    KenLM cannot list its n-grams, so the beam search asks it for the scores
    of whole sentences as it needs them (see `decode.beam_search`).
    """

    def __init__(self, path: str | Path) -> None:
        path = require_file(path, "language model file")
        try:
            import kenlm
        except ImportError as error:
            raise AsrCliError(
                f"{path}: KenLM is needed for this LM (pip install kenlm), or pass an ARPA file to the built-in reader"
            ) from error
        try:
            self.model = kenlm.Model(str(path))
        except Exception as error:  # kenlm raises OSError, RuntimeError or its own types
            raise AsrCliError(f"{path}: KenLM cannot read it ({first_line(error)})") from error
        self.order = int(self.model.order)

    def sentence_log_probs(self, words: Sequence[str]) -> list[tuple[float, bool]]:
        """Per word, then for </s>: (natural-log probability given the words before and <s>, whether OOV)."""
        scores = self.model.full_scores(" ".join(words), bos=True, eos=True)
        return [(log10_prob * math.log(10.0), bool(is_oov)) for log10_prob, _, is_oov in scores]


def read_arpa(path: str | Path, max_order: int | None = None) -> NgramLM:
    """Parse an ARPA file; any malformed line is an error naming its line number.

    With `max_order`, reading stops before the first longer n-grams (e.g. 1: the
    vocabulary and unigram probabilities of a model too big to load whole).
    """
    path = require_file(path, "language model file")
    if is_kenlm_binary(path):
        raise AsrCliError(
            f"{path} is a KenLM binary model: decode it with --lm-backend kenlm (needs pip install kenlm)"
        )
    declared: dict[int, int] = {}
    lm = NgramLM(order=0)
    section = None  # "data", or the n-gram order being read
    with open(path, encoding="utf-8", errors="strict") as handle:
        try:
            for line_number, raw_line in enumerate(handle, start=1):
                line = raw_line.strip()
                if not line:
                    continue
                section = _parse_arpa_line(line, line_number, path, section, declared, lm)
                if max_order is not None and isinstance(section, int) and section > max_order:
                    break
        except UnicodeDecodeError as error:
            raise AsrCliError(f"{path}: not valid UTF-8 ({error.reason})") from error
    stopped_early = max_order is not None and isinstance(section, int) and section > max_order
    if section != "end" and not stopped_early:
        raise AsrCliError(f"{path}: no \\end\\ line; the file is truncated or not an ARPA file")
    for order, count in declared.items():
        if (max_order is None or order <= max_order) and len(lm.ngrams[order - 1]) != count:
            raise AsrCliError(
                f"{path}: \\data\\ declares {count} {order}-grams but {len(lm.ngrams[order - 1])} are listed"
            )
    if not lm.ngrams or not lm.ngrams[0]:
        raise AsrCliError(f"{path}: the ARPA file lists no 1-grams; it is empty or truncated")
    return lm


def _parse_arpa_line(line: str, line_number: int, path: Path, section, declared: dict, lm: NgramLM):
    """Handle one non-blank line; returns the section that follows it."""
    where = f"{path}, line {line_number}"
    if line == "\\data\\":
        return "data"
    if line == "\\end\\":
        return "end"
    header = _NGRAM_HEADER.match(line)
    if header:
        order = int(header.group(1))
        if order not in declared:
            raise AsrCliError(f"{where}: section \\{order}-grams: is not declared in \\data\\")
        return order
    if section == "data":
        count = _COUNT_LINE.match(line)
        if not count:
            raise AsrCliError(f"{where}: expected 'ngram N=COUNT' in \\data\\, got {line!r}")
        order = int(count.group(1))
        if not 1 <= order <= MAX_LM_ORDER:
            raise AsrCliError(f"{where}: n-gram order {order} is not between 1 and {MAX_LM_ORDER}")
        declared[order] = int(count.group(2))
        lm.order = max(lm.order, order)
        while len(lm.ngrams) < lm.order:
            lm.ngrams.append({})
        return "data"
    if not isinstance(section, int):
        raise AsrCliError(f"{where}: unexpected line {line!r} (not inside an n-gram section)")
    fields = line.split()
    if len(fields) not in (section + 1, section + 2):
        raise AsrCliError(
            f"{where}: a {section}-gram line needs a probability, {section} word(s) and an optional back-off"
        )
    try:
        log_prob = float(fields[0])
        backoff = float(fields[section + 1]) if len(fields) == section + 2 else 0.0
    except ValueError as error:
        raise AsrCliError(f"{where}: probability or back-off is not a number: {line!r}") from error
    if not (math.isfinite(backoff) and (math.isfinite(log_prob) or log_prob == -math.inf)):
        raise AsrCliError(f"{where}: probability or back-off is NaN or infinite: {line!r}")
    if log_prob > 0:
        raise AsrCliError(f"{where}: log10 probability {log_prob:g} is above 0 (a probability over 1): {line!r}")
    lm.ngrams[section - 1][tuple(fields[1 : section + 1])] = (log_prob, backoff)
    return section


def write_arpa(lm: NgramLM, path: str | Path) -> None:
    """Write the model in ARPA format, atomically."""
    with atomic_write(path) as handle:
        handle.write("\\data\\\n")
        for order, table in enumerate(lm.ngrams, start=1):
            handle.write(f"ngram {order}={len(table)}\n")
        for order, table in enumerate(lm.ngrams, start=1):
            handle.write(f"\n\\{order}-grams:\n")
            for ngram, (log_prob, backoff) in sorted(table.items()):
                words = " ".join(ngram)
                if order < lm.order:
                    handle.write(f"{log_prob:.6f}\t{words}\t{backoff:.6f}\n")
                else:
                    handle.write(f"{log_prob:.6f}\t{words}\n")
        handle.write("\n\\end\\\n")


def kneser_ney_discounts(count_of_counts: Sequence[int]) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from the numbers of n-grams seen 1-4 times.

    Chen & Goodman's estimates, clipped to [0, k]. Where a count of counts is
    zero (tiny corpora) the estimates are undefined, and the discounts fall back
    to 0.5, 1.0 and 1.5 for counts 1, 2 and 3+.
    """
    n1, n2, n3, n4 = count_of_counts
    if min(n1, n2, n3, n4) == 0:
        return 0.5, 1.0, 1.5
    y = n1 / (n1 + 2 * n2)
    discounts = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return tuple(min(max(d, 0.0), k) for d, k in zip(discounts, (1, 2, 3)))


def build_kneser_ney(
    sentences: Iterable[Sequence[str]], order: int, discounts: Sequence[tuple[float, float, float]] | None = None
) -> NgramLM:
    """Interpolated modified Kneser-Ney n-gram model of tokenised sentences.

    The highest order uses raw counts; lower orders use continuation counts
    (how many distinct tokens precede), except n-grams starting with <s>,
    which cannot be extended to the left. The unigram distribution is
    interpolated with a uniform one over the vocabulary (with <unk>, </s>).
    `discounts` (per order, from unigrams up) override the estimates.
    """
    if not 1 <= order <= MAX_LM_ORDER:
        raise ConfigError("order", f"{{0}} must be between 1 and {MAX_LM_ORDER}, not {order}")
    counts = _raw_counts(sentences, order)
    if not counts[0]:
        raise AsrCliError("the language-model text is empty")
    adjusted = _adjusted_counts(counts, order)
    if discounts is None:
        discounts = [
            kneser_ney_discounts([sum(1 for c in table.values() if c == k) for k in (1, 2, 3, 4)]) for table in adjusted
        ]
    vocabulary = sorted({ngram[0] for ngram in counts[0]} - {SENTENCE_START} | {UNKNOWN, SENTENCE_END})
    probabilities: list[dict[tuple[str, ...], float]] = []
    gammas: list[dict[tuple[str, ...], float]] = []
    for level in range(order):
        table = adjusted[level]
        context_totals: dict[tuple[str, ...], float] = collections.defaultdict(float)
        context_types: dict[tuple[str, ...], list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        for ngram, count in table.items():
            context_totals[ngram[:-1]] += count
            context_types[ngram[:-1]][min(count, 3) - 1] += 1
        d1, d2, d3 = discounts[level]
        gamma = {
            context: (d1 * types[0] + d2 * types[1] + d3 * types[2]) / context_totals[context]
            for context, types in context_types.items()
        }
        level_probs = {}
        for ngram, count in table.items():
            discount = (d1, d2, d3)[min(count, 3) - 1]
            lower = probabilities[level - 1].get(ngram[1:]) if level else None
            if lower is None and level:
                lower = _backed_off(ngram[1:], probabilities, gammas)
            interpolated_with = lower if level else 1.0 / len(vocabulary)
            level_probs[ngram] = (
                max(count - discount, 0.0) / context_totals[ngram[:-1]] + gamma[ngram[:-1]] * interpolated_with
            )
        if level == 0:
            for word in vocabulary:  # words never seen as a unigram continuation (e.g. <unk>) get the uniform share
                level_probs.setdefault((word,), gamma[()] / len(vocabulary))
        probabilities.append(level_probs)
        gammas.append(gamma)
    return _to_arpa_model(probabilities, gammas, order)


def _raw_counts(sentences: Iterable[Sequence[str]], order: int) -> list[collections.Counter]:
    counts = [collections.Counter() for _ in range(order)]
    for sentence in sentences:
        tokens = [SENTENCE_START, *sentence, SENTENCE_END]
        for n in range(1, order + 1):
            for start in range(len(tokens) - n + 1):
                ngram = tuple(tokens[start : start + n])
                if ngram != (SENTENCE_START,):
                    counts[n - 1][ngram] += 1
    return counts


def _adjusted_counts(counts: list[collections.Counter], order: int) -> list[dict[tuple[str, ...], int]]:
    """Raw counts for the highest order and for <s>-initial n-grams; continuation counts otherwise."""
    adjusted = [dict(counts[order - 1])]
    for level in range(order - 2, -1, -1):
        continuation = collections.Counter(ngram[1:] for ngram in counts[level + 1])
        adjusted.insert(
            0,
            {
                ngram: (count if ngram[0] == SENTENCE_START else continuation.get(ngram, count))
                for ngram, count in counts[level].items()
            },
        )
    return adjusted


def _backed_off(ngram: tuple[str, ...], probabilities, gammas) -> float:
    """P(ngram[-1] | ngram[:-1]) for an n-gram not stored at its own order."""
    level = len(ngram) - 1
    if level == 0:
        return probabilities[0].get(ngram, probabilities[0][(UNKNOWN,)])
    stored = probabilities[level].get(ngram)
    if stored is not None:
        return stored
    return gammas[level].get(ngram[:-1], 1.0) * _backed_off(ngram[1:], probabilities, gammas)


def _to_arpa_model(probabilities, gammas, order: int) -> NgramLM:
    lm = NgramLM(order=order)
    for level in range(order):
        table = {}
        for ngram, probability in probabilities[level].items():
            backoff = gammas[level + 1].get(ngram) if level + 1 < order else None
            table[ngram] = (math.log10(probability), math.log10(backoff) if backoff else 0.0)
        if level == 0:
            table[(SENTENCE_START,)] = (NO_PROBABILITY, math.log10(gammas[1][(SENTENCE_START,)]) if order > 1 else 0.0)
        lm.ngrams.append(table)
    return lm


def tokenize(text: str, unit: str) -> list[str]:
    """Tokens of a normalised text: words, or characters with `<space>` between words."""
    if unit == "word":
        return text.split()
    return [SPACE_TOKEN if character == " " else character for character in text]


def read_sentences(paths: Sequence[Path], unit: str, strip_ids: bool = LmConfig.strip_ids) -> list[list[str]]:
    """Normalised, tokenised sentences from text files, manifests (.jsonl) or feature stores (inputs.input_kind);
    a Kaldi data directory's `text` file, or any text file with `strip_ids`, loses each line's first field."""
    from . import inputs
    from .manifest import load_manifest
    from .store import FeatureStore
    from .text import normalize_text

    texts: list[str] = []
    for path in map(Path, paths):
        kind = inputs.require_kind(path, (inputs.STORE, inputs.MANIFEST, inputs.KALDI_TEXT, inputs.TEXT), "LM text")
        if kind == inputs.STORE:
            texts += [entry.text for entry in FeatureStore(path) if entry.text]
        elif kind == inputs.MANIFEST:
            texts += [u.text for u in load_manifest(path) if u.text]
        else:
            lines = read_text_lines(path, "LM text")
            ids_first = strip_ids or kind == inputs.KALDI_TEXT
            texts += [
                line.split(maxsplit=1)[1] if ids_first and len(line.split()) > 1 else ("" if ids_first else line)
                for line in lines
            ]
    sentences = [tokenize(normalize_text(text), unit) for text in texts]
    return [sentence for sentence in sentences if sentence]
