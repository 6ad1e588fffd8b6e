"""Errors that reach the user as a message, not a traceback."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path

MAX_LISTED_PROBLEMS = 20
MAX_LISTED_IDS = 10  # in a one-line message


class AsrCliError(Exception):
    """A problem with the user's input or environment; the message says what to do."""


def some_of(items: Sequence[str], limit: int = MAX_LISTED_IDS) -> str:
    """The first `limit` items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def format_problems(header: str, problems: Sequence[str], limit: int = MAX_LISTED_PROBLEMS) -> str:
    """Join a list of problems under a header, capped at `limit` lines with a count of the rest."""
    lines = [header]
    lines += [f"  - {problem}" for problem in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more ({len(problems)} in all)")
    return "\n".join(lines)


def missing_file_problem(path: Path, what: str) -> str | None:
    """Why `path` cannot be read as a `what` file (missing, or a folder), or None if it is a file."""
    if path.is_file():
        return None
    if path.is_dir():
        return f"{path} is a folder, not a {what}"
    return f"{what} not found: {path}"


def require_file(path: str | Path, what: str) -> Path:
    """`path` as a Path if it is a file; else an error that says whether it is missing or a folder."""
    path = Path(path)
    problem = missing_file_problem(path, what)
    if problem:
        raise AsrCliError(problem)
    return path


def describe_os_error(error: OSError) -> str:
    """One line for a system error: what failed, on which file, and what to do about a full disk."""
    where = f": {error.filename}" if error.filename else ""
    advice = (
        "; free some disk space (partial outputs were removed) and run again" if error.errno == errno.ENOSPC else ""
    )
    return f"{error.strerror or error}{where}{advice}"


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message, its first line, at most `limit` characters (some have none: EOFError())."""
    lines = str(error).splitlines()
    return lines[0][:limit] if lines else type(error).__name__
