"""What kind of input a path is: the one dispatcher of `decode`, `score` and `lm` (torch-free).

    store        a feature store folder (store.json inside)
    manifest     JSON Lines: a `.jsonl` file, or any file whose first non-blank line is a JSON object
    audio        an audio file, by its extension
    kaldi_text   a Kaldi data directory's `text` file (utterance id, then the words)
    text         any other file: plain text (or Kaldi-style `id text` lines, as the command says)

Each command takes the kinds it can use and names the others in its error.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import AsrCliError

STORE, MANIFEST, AUDIO, KALDI_TEXT, TEXT = "store", "manifest", "audio", "kaldi_text", "text"
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".sph", ".opus", ".aiff", ".aif"}
STORE_MARKER = "store.json"  # store.METADATA_FILE, which needs numpy to import
KALDI_DIRECTORY_FILES = ("wav.scp", "utt2spk", "segments")  # any of them beside a `text` makes it Kaldi's
# The files a Kaldi data directory holds (what its tools read and write).
KALDI_FILES = (
    "wav.scp",
    "text",
    "utt2spk",
    "spk2utt",
    "segments",
    "reco2dur",
    "utt2dur",
    "utt2num_frames",
    "spk2gender",
    "spk2age",
    "feats.scp",
    "cmvn.scp",
    "frame_shift",
    "reco2file_and_channel",
)
_DESCRIPTIONS = {
    STORE: "a feature store",
    MANIFEST: "a manifest (.jsonl)",
    AUDIO: "an audio file",
    KALDI_TEXT: "a Kaldi `text` file",
    TEXT: "a text file",
}


def input_kind(path: str | Path, role: str = "input") -> str:
    """The kind of `path` (module docstring); an error for a missing path or a folder that is not a store."""
    path = Path(path)
    if path.is_dir():
        if not (path / STORE_MARKER).is_file():
            raise AsrCliError(
                f"{path} is a folder but not a feature store ({STORE_MARKER} not found); create one "
                "with `asr-cli prepare`"
            )
        return STORE
    if not path.exists():
        raise AsrCliError(f"{role} not found: {path}")
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return AUDIO
    if suffix == ".jsonl" or _first_content_line(path).startswith("{"):
        return MANIFEST
    if path.name == "text" and any((path.parent / name).is_file() for name in KALDI_DIRECTORY_FILES):
        return KALDI_TEXT
    return TEXT


def require_kind(path: str | Path, accepted: tuple[str, ...], role: str) -> str:
    """`input_kind(path)`, which must be one of `accepted`, else an error that says what `role` takes."""
    kind = input_kind(path, role)
    if kind not in accepted:
        wanted = ", ".join(_DESCRIPTIONS[k] for k in accepted)
        raise AsrCliError(f"{path} is {_DESCRIPTIONS[kind]}, which cannot be {role}: give {wanted}")
    return kind


def _first_content_line(path: Path) -> str:
    with open(path, "rb") as handle:
        for raw_line in handle:
            if raw_line.strip():
                return raw_line.decode("utf-8", errors="replace").strip()
    return ""


def protected_paths(path: str | Path) -> tuple[set[str], set[str]]:
    """(files, folders), as real paths, that an output must not be (or be inside) when `path` is an input: the
    input itself; a feature store or a LibriSpeech tree whole (a file's store too); and for a Kaldi data
    directory, or a file of one, its Kaldi files."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    if real.is_dir() and next(real.glob("*/*/*.trans.txt"), None) is not None:  # a LibriSpeech tree
        return set(), {str(real)}
    folder = real if real.is_dir() else real.parent
    if (folder / STORE_MARKER).is_file():
        return {str(real)}, {str(folder)}
    files = {str(real)}
    if (folder / "wav.scp").is_file() and (real.is_dir() or real.name in KALDI_FILES):
        files |= {str(folder / name) for name in KALDI_FILES}
    return files, set()
