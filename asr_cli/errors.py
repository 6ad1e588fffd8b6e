"""Errors that reach the user as a message, not a traceback."""

from __future__ import annotations

from typing import Sequence

MAX_LISTED_PROBLEMS = 20


class AsrCliError(Exception):
    """A problem with the user's input or environment; the message says what to do."""


def format_problems(header: str, problems: Sequence[str], limit: int = MAX_LISTED_PROBLEMS) -> str:
    """Join a list of problems under a header, capped at `limit` lines with a count of the rest."""
    lines = [header]
    lines += [f"  - {problem}" for problem in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more ({len(problems)} in all)")
    return "\n".join(lines)
