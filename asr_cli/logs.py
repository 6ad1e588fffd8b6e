"""How the library tells its user what it is doing: messages through `logging`, progress bars through tqdm.

The library never prints. Messages go to the "asr_cli" logger (INFO: what a
run is doing, WARNING: something the user should look at); the command line
shows them on stderr (`show_on_stderr`), and a program using the library
sees warnings through logging's defaults and decides the rest. Progress bars
are drawn only when asked and when stderr is a terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from tqdm import tqdm

LOGGER_NAME = "asr_cli"
log = logging.getLogger(LOGGER_NAME)


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (so a redirected or captured stderr gets the messages)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            sys.stderr.write((f"warning: {message}" if record.levelno == logging.WARNING else message) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def show_on_stderr() -> None:
    """The command line's reporting: INFO and above on stderr, warnings marked as such (idempotent)."""
    if not any(isinstance(handler, _StderrHandler) for handler in log.handlers):
        log.addHandler(_StderrHandler())
    log.setLevel(logging.INFO)


def progress_bar(
    total: int | None = None, description: str = "", enabled: bool = True, iterable: Iterable | None = None, **options
) -> tqdm:
    """A tqdm bar on stderr, drawn only when `enabled` and stderr is a terminal (never into logs or pipes)."""
    return tqdm(
        iterable,
        total=total,
        desc=description,
        disable=not (enabled and sys.stderr.isatty()),
        dynamic_ncols=True,
        **options,
    )
