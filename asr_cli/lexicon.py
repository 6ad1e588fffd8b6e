"""Pronunciation lexicons: which words a search may output, and how each is spelt in model units.

A lexicon file is UTF-8 text, one entry per line: a word alone (a word list;
its spelling in characters is the word itself), or a Kaldi `lexicon.txt` line
`WORD UNIT UNIT ...` (a word may have several lines, one per pronunciation).
Kaldi's `lexiconp.txt` form, with a probability after the word, is read too
(the probability is ignored). Words are normalised like transcripts, so
`HELLO` and `hello` are one word.

Character models spell a word with its characters whatever the file gives as
its units; phone models use the units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import AsrCliError, require_file
from .text import normalize_text

CHARACTER_UNITS = "chars"
PHONE_UNITS = "phones"


@dataclass
class Lexicon:
    """Words and their spellings in model units (characters, or phones)."""

    pronunciations: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    source: str = ""

    @property
    def words(self) -> list[str]:
        return list(self.pronunciations)

    def add(self, word: str, units: tuple[str, ...]) -> None:
        spellings = self.pronunciations.setdefault(word, [])
        if units not in spellings:
            spellings.append(units)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_lexicon(path: str | Path, units: str = CHARACTER_UNITS) -> Lexicon:
    """Read a word list or Kaldi lexicon; `units` says how words are spelt (see the module docstring).

    Raises AsrCliError naming the file (and line) for a missing, unreadable,
    empty or malformed lexicon.
    """
    path = Path(path)
    require_file(path, "lexicon")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise AsrCliError(f"{path}: not valid UTF-8 text ({error.reason} at byte {error.start}); save the lexicon "
                          "as UTF-8") from error
    except OSError as error:
        raise AsrCliError(f"cannot read the lexicon {path}: {error.strerror}") from error
    lexicon = Lexicon(source=str(path))
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        word = normalize_text(fields[0])
        if not word or " " in word:
            raise AsrCliError(f"{path}, line {line_number}: {fields[0]!r} is not a word after normalisation "
                              "(punctuation is removed); give one word per line, then its units if any")
        pronunciation = tuple(fields[2:] if len(fields) > 2 and _is_number(fields[1]) else fields[1:])
        if units == PHONE_UNITS:
            if not pronunciation:
                raise AsrCliError(f"{path}, line {line_number}: {fields[0]!r} has no pronunciation; a phone model "
                                  "needs `WORD PHONE PHONE ...` lines")
            lexicon.add(word, pronunciation)
        else:
            lexicon.add(word, tuple(word))
    if not lexicon.pronunciations:
        raise AsrCliError(f"{path}: the lexicon has no words")
    return lexicon


def check_units(lexicon: Lexicon, model_units: set[str]) -> None:
    """Refuse a lexicon that spells a word with a unit the model cannot output; names the first few."""
    bad = [(word, sorted(set(units) - model_units)) for word, spellings in lexicon.pronunciations.items()
           for units in spellings if not set(units) <= model_units]
    if bad:
        examples = "; ".join(f"{word!r} uses {', '.join(map(repr, missing))}" for word, missing in bad[:3])
        raise AsrCliError(f"{lexicon.source}: {len(bad):,} lexicon entr{'y uses' if len(bad) == 1 else 'ies use'} "
                          f"units the model lacks ({examples}); was it written for another model or alphabet?")
