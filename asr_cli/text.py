"""Text normalisation shared by scoring, training vocabularies and language models.

The same function runs on references and hypotheses. With every switch on
(the default): Unicode NFKC, case folding, punctuation replaced by spaces
except apostrophes inside a word (``don't``, ``o'clock``), and runs of white
space collapsed to one space with none at either end. Invisible format
characters (zero-width joiners, word joiners, soft hyphens: Unicode category
Cf) are always removed: no one can see, say or type them.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from dataclasses import dataclass

from .config import NormalizeConfig
from .errors import AsrCliError
from .fileio import read_text_lines

APOSTROPHES = "'\u2019"
_IN_WORD_APOSTROPHE = re.compile(r"(?<=\w)[" + APOSTROPHES + r"](?=\w)")
_KEPT_APOSTROPHE = "\ue000"  # a private-use character stands in for kept apostrophes while punctuation goes
_WHITESPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=1)
def _punctuation_to_space() -> dict[int, str]:
    """str.translate table sending every Unicode punctuation character (category P*) to a space."""
    return {
        codepoint: " "
        for codepoint in range(sys.maxunicode + 1)
        if unicodedata.category(chr(codepoint)).startswith("P")
    }


@functools.lru_cache(maxsize=1)
def _format_characters() -> dict[int, None]:
    """str.translate table removing every Unicode format character (category Cf)."""
    return {codepoint: None for codepoint in range(sys.maxunicode + 1) if unicodedata.category(chr(codepoint)) == "Cf"}


def normalize_text(text: str, options: NormalizeConfig = NormalizeConfig()) -> str:
    """Normalise one transcript as described in the module docstring."""
    text = unicodedata.normalize("NFKC", text).translate(_format_characters())
    if options.case_fold:
        text = text.casefold()
    if options.remove_punctuation:
        text = _IN_WORD_APOSTROPHE.sub(_KEPT_APOSTROPHE, text)
        text = text.translate(_punctuation_to_space()).replace(_KEPT_APOSTROPHE, "'")
    if options.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text).strip()
    return text


BLANK_INDEX = 0
SPACE_TOKEN = "<space>"


@dataclass(frozen=True)
class Vocabulary:
    """Characters of the output layer; index 0 is the CTC blank, character k is index k + 1."""

    characters: tuple[str, ...]

    @classmethod
    def from_texts(cls, texts) -> Vocabulary:
        """Every character of the (already normalised) texts, sorted."""
        return cls(tuple(sorted(set().union(*map(set, texts)))))

    @property
    def size(self) -> int:
        """Output classes, blank included."""
        return len(self.characters) + 1

    @classmethod
    def read(cls, path) -> Vocabulary:
        """One character per line, `<space>` for the space; the order is kept (blank comes first, implied)."""
        characters = []
        lines = read_text_lines(path, "vocabulary")
        for line_number, line in enumerate(lines, start=1):
            token = " " if line == SPACE_TOKEN else line
            if not token:
                continue
            if len(token) != 1:
                raise AsrCliError(
                    f"{path}, line {line_number}: expected one character (or {SPACE_TOKEN}), got {line!r}"
                )
            if token in characters:
                raise AsrCliError(f"{path}, line {line_number}: {line!r} is listed twice")
            characters.append(token)
        if not characters:
            raise AsrCliError(f"{path}: the vocabulary is empty")
        return cls(tuple(characters))

    def unknown_characters(self, text: str) -> set[str]:
        return set(text) - set(self.characters)

    def encode(self, text: str) -> list[int]:
        """Label ids of a normalised text; raises KeyError on a character outside the vocabulary."""
        return [self._index[character] for character in text]

    def decode(self, label_ids) -> str:
        """Text of label ids (blanks ignored)."""
        return "".join(self.characters[i - 1] for i in label_ids if i != BLANK_INDEX)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {character: position + 1 for position, character in enumerate(self.characters)}
