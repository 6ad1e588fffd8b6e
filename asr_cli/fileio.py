"""Atomic writes: outputs appear whole under their final name, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from .errors import AsrCliError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it over `path` on success.

    On any exception (a full disk, Ctrl-C) the temporary file is removed and `path`
    keeps its previous content.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temp_name, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def write_json(path: str | Path, obj: object) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write one JSON object per line, atomically; returns the number of lines."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, object, str | None]]:
    """Yield (line number, parsed value or None, problem or None) for each non-blank line."""
    with open(path, "rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            if not raw_line.strip():
                continue
            try:
                yield line_number, json.loads(raw_line.decode("utf-8")), None
            except UnicodeDecodeError as error:
                yield line_number, None, f"not valid UTF-8 text ({error.reason} at byte {error.start})"
            except json.JSONDecodeError as error:
                yield line_number, None, f"malformed JSON: {error.msg} (column {error.colno})"


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a temporary sibling and rename it to `path` at the end.

    An existing `path` is refused unless `overwrite`; with it, the old directory is
    replaced only once the new one is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise AsrCliError(f"{path} already exists; pass --overwrite to replace it")
    ensure_writable_dir(path.parent)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(temp_dir, 0o777 & ~_current_umask())
        yield temp_dir
        if path.exists():
            old_dir = temp_dir.with_name(temp_dir.name + ".old")
            os.replace(path, old_dir)
            os.replace(temp_dir, path)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            os.replace(temp_dir, path)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise


def _current_umask() -> int:
    # mkstemp/mkdtemp create private (0600/0700) entries; outputs should get the usual permissions.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable_dir(directory: Path, what: str = "folder") -> None:
    """Create `directory` if needed; a clear error if it cannot be created or written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AsrCliError(f"cannot create the {what} {directory}: {error.strerror}") from error
    if not os.access(directory, os.W_OK):
        raise AsrCliError(f"cannot write to the {what} {directory}: permission denied")
