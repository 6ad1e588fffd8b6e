"""N-gram language models: ARPA files read, written and queried with back-off; KenLM as a scorer; the text
they are built from (kneser_ney.py builds them).

Probabilities are log10 in ARPA files and in `NgramLM`, as the format has them.
A model's tokens are words, or characters for a character-level model (the
space is then the token `<space>`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import MAX_LM_ORDER, LmConfig
from .errors import AsrCliError, first_line, require_file
from .fileio import atomic_write

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


def tokenize(text: str, unit: str) -> list[str]:
    """Tokens of a normalised text: words, or characters with `<space>` between words."""
    if unit == "word":
        return text.split()
    return [SPACE_TOKEN if character == " " else character for character in text]


def iter_sentences(paths: Sequence[Path], unit: str, strip_ids: bool = LmConfig.strip_ids) -> Iterator[list[str]]:
    """Normalised, tokenised sentences from text files, manifests (.jsonl) or feature stores (inputs.input_kind),
    one file at a time, a line at a time for text files; a Kaldi data directory's `text` file, or any text file
    with `strip_ids`, loses each line's first field. Empty sentences are left out."""
    from . import inputs
    from .manifest import load_manifest
    from .store import FeatureStore
    from .text import normalize_text

    for path in map(Path, paths):
        kind = inputs.require_kind(path, (inputs.STORE, inputs.MANIFEST, inputs.KALDI_TEXT, inputs.TEXT), "LM text")
        if kind == inputs.STORE:
            texts = (entry.text for entry in FeatureStore(path) if entry.text)
        elif kind == inputs.MANIFEST:
            texts = (u.text for u in load_manifest(path) if u.text)
        else:
            texts = _text_lines(path, strip_ids or kind == inputs.KALDI_TEXT)
        for text in texts:
            sentence = tokenize(normalize_text(text), unit)
            if sentence:
                yield sentence


def _text_lines(path: Path, ids_first: bool) -> Iterator[str]:
    """The lines of a UTF-8 text file, read as they come (a bad byte is an error naming its line)."""
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise AsrCliError(f"{path}, line {line_number}: not valid UTF-8 text ({error.reason}); save the "
                                  "LM text as UTF-8") from error  # fmt: skip
            if ids_first:
                fields = line.split(maxsplit=1)
                line = fields[1] if len(fields) > 1 else ""
            yield line


def read_sentences(paths: Sequence[Path], unit: str, strip_ids: bool = LmConfig.strip_ids) -> list[list[str]]:
    """`iter_sentences` as a list."""
    return list(iter_sentences(paths, unit, strip_ids))
