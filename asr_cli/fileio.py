"""Atomic writes: outputs appear whole under their final name, or not at all."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from .errors import AsrCliError

STDOUT_NAME = "-"  # as an output path: standard output


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; rename it over `path` on success.

    On any exception (a full disk, Ctrl-C) the temporary file is removed and `path`
    keeps its previous content. A symbolic link is written through: its target is
    replaced (in the target's folder), never the link; a target that is not a regular
    file (a terminal, a pipe, /dev/null) is written to directly. `-` is standard output.
    """
    if str(path) == STDOUT_NAME:
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
        return
    if path.is_dir():
        raise AsrCliError(f"{path} is a folder; give a file name to write to")
    ensure_writable_dir(path.parent)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temp_name, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        if isinstance(error, OSError) and error.filename is None:  # a write error names no file: name ours
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise


def write_json(path: str | Path, obj: object) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False, allow_nan=False)  # NaN is not JSON
        handle.write("\n")


def json_line(value: object) -> str:
    """One line of a JSONL file: UTF-8 text as it is, NaN refused (it is not JSON)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False) + "\n"


def write_jsonl(path: str | Path, records: Iterable[object]) -> int:
    """Write one JSON value per line, atomically; returns the number of lines."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json_line(record))
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
def atomic_writes(paths: Sequence[str | Path]) -> Iterator[list[IO]]:
    """Write several text files that appear together or not at all: all are written to temporary
    siblings first, and renamed into place only once every one is complete."""
    with contextlib.ExitStack() as stack:
        renames: list[tuple[str, Path]] = []
        handles = []
        for path in paths:
            handle = stack.enter_context(_temporary_sibling(Path(path), renames))
            handles.append(handle)
        yield handles
    for done, (temp_name, path) in enumerate(renames):
        try:
            os.replace(temp_name, path)
        except OSError:
            for _, written in renames[:done]:  # undo the part that appeared: all or nothing
                written.unlink(missing_ok=True)
            for remaining, _ in renames[done:]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(remaining)
            raise


@contextlib.contextmanager
def _temporary_sibling(path: Path, renames: list[tuple[str, Path]]) -> Iterator[IO]:
    """A temporary file beside `path`, kept for a later rename (appended to `renames`) or removed on error."""
    ensure_writable_dir(path.parent)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temp_name, 0o666 & ~_current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        renames.append((temp_name, path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


@contextlib.contextmanager
def atomic_directory(
    path: str | Path, overwrite: bool = False, marker: str | None = None, what: str = "output folder"
) -> Iterator[Path]:
    """Build a directory in a temporary sibling and rename it to `path` at the end.

    An existing `path` is refused unless `overwrite`, and even then unless it holds
    `marker` (the file that makes it one of ours, e.g. a store's store.json): a folder
    of anything else is never deleted. With it, the old directory is replaced only
    once the new one is complete. When `path` did not exist at the start, the final
    rename fails if another run created it meanwhile: one of two racing runs wins, the
    other reports it. Temporaries left by a killed run on the same `path` are removed.
    """
    path = Path(path)
    replacing = check_replaceable_directory(path, overwrite, marker, what)
    ensure_writable_dir(path.parent)
    _remove_stale_temporaries(path)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(temp_dir, 0o777 & ~_current_umask())
        yield temp_dir
        if replacing:
            old_dir = temp_dir.with_name(temp_dir.name + ".old")
            os.replace(path, old_dir)
            os.replace(temp_dir, path)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            _rename_unless_taken(temp_dir, path)
    except BaseException as error:
        shutil.rmtree(temp_dir, ignore_errors=True)
        if isinstance(error, OSError) and error.filename is None:  # e.g. a flush on close: name the output
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise


def check_replaceable_directory(path: Path, overwrite: bool, marker: str | None, what: str) -> bool:
    """Whether `path` exists (to be replaced); an error if it may not be: no --overwrite, or not one of ours."""
    exists = path.exists() or path.is_symlink()
    if exists and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return True  # an empty folder: nothing in it to lose
    if exists and not overwrite:
        raise AsrCliError(f"{path} already exists; pass --overwrite to replace it")
    if exists and (path.is_symlink() or not path.is_dir() or (marker and not (path / marker).is_file())):
        raise AsrCliError(
            f"{path} exists and is not {what} (no {marker} in it): refusing to replace it; choose another "
            "output path, or remove it yourself"
        )
    return exists


def _rename_unless_taken(source: Path, destination: Path) -> None:
    """Rename a new, non-empty folder to a name nobody has taken (rename onto a non-empty folder fails)."""
    try:
        if destination.exists() and not destination.is_dir():
            raise FileExistsError
        os.rename(source, destination)
    except (FileExistsError, IsADirectoryError, NotADirectoryError) as error:
        raise AsrCliError(
            f"{destination} was created by another run while this one worked; this run's output "
            "was discarded (use another output path, or --overwrite)"
        ) from error
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise AsrCliError(
                f"{destination} was created by another run while this one worked; this run's "
                "output was discarded (use another output path, or --overwrite)"
            ) from error
        raise


def _remove_stale_temporaries(path: Path) -> None:
    """Remove `.NAME.PID.*.tmp` folders beside `path` whose process no longer runs (a kill -9, a power cut)."""
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        pid_field = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if candidate.is_dir() and pid_field.isdigit() and not _process_alive(int(pid_field)):
            shutil.rmtree(candidate, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def has_undecodable_bytes(text: str) -> bool:
    """True for a name read from the system whose bytes were not UTF-8 (kept by Python as lone surrogates)."""
    return any("\udc80" <= character <= "\udcff" for character in text)


def check_distinct_paths(inputs: Iterable[str | Path | None], outputs: Iterable[str | Path | None]) -> None:
    """Refuse, before any work, an output that would destroy an input: one that is (after symbolic links) an
    input, a file of a folder-format input (a feature store or a LibriSpeech tree: anything inside; a Kaldi
    data directory: its Kaldi files), or a folder holding an input; and two outputs that are the same file."""
    from .inputs import protected_paths

    files: dict[str, str] = {}  # real path -> the input it belongs to
    folders: dict[str, str] = {}
    for path in (p for p in inputs if p is not None):
        protected_files, protected_folders = protected_paths(path)
        files.update({real: str(path) for real in protected_files})
        folders.update({real: str(path) for real in protected_folders})
    seen: dict[str, str] = {}
    for output in (p for p in outputs if p is not None and str(p) != STDOUT_NAME):
        resolved = os.path.realpath(output)
        _refuse_overlap(output, resolved, files, folders)
        if resolved in seen:
            raise AsrCliError(f"two outputs are the same file ({seen[resolved]} and {output}); give each its own path")
        seen[resolved] = str(output)


def _refuse_overlap(output, resolved: str, files: dict[str, str], folders: dict[str, str]) -> None:
    if resolved in files:
        what = "is the input" if os.path.realpath(files[resolved]) == resolved else "is a file of the input"
        raise AsrCliError(
            f"the output {output} {what} {files[resolved]}: writing it would destroy the input; choose another "
            "output path"
        )
    holder = next((source for real, source in folders.items() if resolved.startswith(real + os.sep)), None)
    if holder is not None:
        raise AsrCliError(f"the output {output} is inside the input {holder}, which it would damage; choose an "
                          "output outside it")  # fmt: skip
    inside = [source for real, source in {**files, **folders}.items() if real.startswith(resolved + os.sep)]
    if inside and Path(resolved).is_dir():
        raise AsrCliError(f"the output {output} holds the input {inside[0]}; choose another output path")


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


def read_text_lines(path: str | Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file; an error naming the file (and where the bytes stop being UTF-8)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise AsrCliError(
            f"{path}: not valid UTF-8 text ({error.reason} at byte {error.start}); save the {what} as UTF-8"
        ) from error
    except OSError as error:
        raise AsrCliError(f"cannot read the {what} {path}: {error.strerror}") from error
