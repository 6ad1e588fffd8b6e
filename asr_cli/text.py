"""Text normalisation shared by scoring, training vocabularies and language models.

The same function runs on references and hypotheses. With every switch on
(the default): Unicode NFKC, case folding, punctuation replaced by spaces
except apostrophes inside a word (``don't``, ``o'clock``), and runs of white
space collapsed to one space with none at either end.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from dataclasses import dataclass

APOSTROPHES = "'\u2019"
_IN_WORD_APOSTROPHE = re.compile(r"(?<=\w)[" + APOSTROPHES + r"](?=\w)")
_KEPT_APOSTROPHE = "\ue000"  # a private-use character stands in for kept apostrophes while punctuation goes
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class NormalizeOptions:
    """Which normalisation steps run; saved with every score report."""

    case_fold: bool = True
    remove_punctuation: bool = True
    collapse_whitespace: bool = True

    def describe(self) -> str:
        steps = [name for name, on in (("case folding", self.case_fold),
                                       ("punctuation removal (in-word apostrophes kept)", self.remove_punctuation),
                                       ("whitespace collapsing", self.collapse_whitespace)) if on]
        return ", ".join(steps) if steps else "none"


@functools.lru_cache(maxsize=1)
def _punctuation_to_space() -> dict[int, str]:
    """str.translate table sending every Unicode punctuation character (category P*) to a space."""
    return {
        codepoint: " "
        for codepoint in range(sys.maxunicode + 1)
        if unicodedata.category(chr(codepoint)).startswith("P")
    }


def normalize_text(text: str, options: NormalizeOptions = NormalizeOptions()) -> str:
    """Normalise one transcript as described in the module docstring."""
    text = unicodedata.normalize("NFKC", text)
    if options.case_fold:
        text = text.casefold()
    if options.remove_punctuation:
        text = _IN_WORD_APOSTROPHE.sub(_KEPT_APOSTROPHE, text)
        text = text.translate(_punctuation_to_space()).replace(_KEPT_APOSTROPHE, "'")
    if options.collapse_whitespace:
        text = _WHITESPACE.sub(" ", text).strip()
    return text
