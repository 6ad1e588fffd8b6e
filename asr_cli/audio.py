"""Audio loading: soundfile for WAV/FLAC/OGG/MP3/NIST SPHERE, mono downmix, soxr resampling."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from .errors import AsrCliError, missing_file_problem
from .logs import log

TRUNCATED_CHUNK = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
SEGMENT_TOLERANCE_S = 0.01
MIN_AUDIO_RATE_HZ = 2000  # below this a file is not speech (a typo'd header, or another kind of signal)
FULL_SCALE = (
    1.0  # float audio is expected in [-1, 1]  # segment times rounded to the centisecond still fit their recording
)


class AudioError(Exception):
    """Audio that cannot be used; the message names the file and the reason."""


def audio_info(path: str | Path) -> tuple[int, int]:
    """(sample rate in Hz, number of samples) from the header only; raises AudioError."""
    with open_audio(path, "unreadable audio") as sound:
        return int(sound.samplerate), int(sound.frames)


@contextlib.contextmanager
def open_audio(path: str | Path, problem: str = "unreadable or corrupt audio") -> Iterator[soundfile.SoundFile]:
    """An audio file opened for reading; AudioError naming it when it is missing, a folder or unreadable (also
    for decoding errors while it is read)."""
    path = Path(path)
    missing = missing_file_problem(path, "audio file")
    if missing:
        raise AudioError(missing)
    try:
        with soundfile.SoundFile(str(path)) as sound:
            if sound.samplerate < MIN_AUDIO_RATE_HZ:
                raise AudioError(f"{path}: {sound.samplerate} Hz audio cannot hold speech (at least "
                                 f"{MIN_AUDIO_RATE_HZ} Hz; telephones record 8000)")  # fmt: skip
            yield sound
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioError(f"{path}: {problem} ({error})") from error


def usable_duration_s(path: str | Path, offset_s: float = 0.0, duration_s: float | None = None) -> float:
    """Seconds of audio from `offset_s` on, at most `duration_s`, by the header alone (<= 0 when the file is empty
    or the offset past its end); raises AudioError."""
    rate_hz, num_samples = audio_info(path)
    available_s = num_samples / rate_hz - offset_s
    return available_s if duration_s is None else min(available_s, duration_s)


def load_audio(
    path: str | Path,
    sample_rate_hz: int | None = None,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Load audio as mono float32 in [-1, 1].

    Only the samples of [offset_s, offset_s + duration_s) are decoded. With
    `sample_rate_hz`, the result is resampled to it (soxr, high quality).
    Returns (samples of shape (num_samples,), sample rate in Hz).
    """
    with open_audio(path) as sound:
        native_rate_hz = sound.samplerate
        samples = _read_segment(sound, Path(path), offset_s, duration_s)
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples (empty file or segment)")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    warn_if_beyond_full_scale(samples, str(path))
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if sample_rate_hz is not None and sample_rate_hz != native_rate_hz:
        return resample(mono, native_rate_hz, sample_rate_hz), sample_rate_hz
    return np.ascontiguousarray(mono), native_rate_hz


def _read_segment(sound: soundfile.SoundFile, path: Path, offset_s: float, duration_s: float | None) -> np.ndarray:
    """(num_samples, channels) float32 samples of [offset_s, offset_s + duration_s) of an open file; segments past
    its end and files shorter than their header says are errors."""
    rate_hz = sound.samplerate
    start = int(round(offset_s * rate_hz))
    if start > sound.frames:
        raise AudioError(f"{path}: offset {offset_s:.3f} s is past the end ({sound.frames / rate_hz:.3f} s)")
    num_samples = -1 if duration_s is None else int(round(duration_s * rate_hz))
    available = sound.frames - start
    tolerance = int(SEGMENT_TOLERANCE_S * rate_hz)
    if num_samples > available + tolerance:
        raise AudioError(
            f"{path}: the segment {offset_s:.3f} + {duration_s:.3f} s runs past the end of the "
            f"audio ({sound.frames / rate_hz:.3f} s)"
        )
    _refuse_truncated_header(sound, path)
    if start:
        sound.seek(start)
    samples = _read_float32(sound, num_samples)
    expected = available if num_samples < 0 else min(num_samples, available)
    if samples.shape[0] < expected - tolerance:
        raise AudioError(
            f"{path}: truncated: its header promises {expected / rate_hz:.3f} s, only "
            f"{samples.shape[0] / rate_hz:.3f} s could be decoded"
        )
    return samples


def warn_if_beyond_full_scale(samples: np.ndarray, what: str) -> None:
    """Float audio far beyond [-1, 1] is read as it is, but features assume that scale: say so."""
    peak = float(np.abs(samples).max(initial=0.0))
    if peak > 1.01 * FULL_SCALE:
        log.warning(f"{what}: samples reach {peak:g}, beyond [-1, 1]: float audio is taken as it is, louder than "
                    "any recording the model heard; scale it to [-1, 1]")  # fmt: skip


INT16_SCALE = 32768.0


def mono_samples(audio, what: str) -> np.ndarray:
    """Samples given to the Python API as float32 mono: a numpy array or torch tensor, 1-D or (samples,
    channels) (averaged), float in [-1, 1] or int16; anything else, or NaN/infinite samples, is an AsrCliError
    naming `what`."""
    if hasattr(audio, "detach"):  # a torch tensor (torch is not imported here)
        audio = audio.detach().cpu().numpy()
    samples = np.asarray(audio)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / INT16_SCALE
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.floating):
        raise AsrCliError(f"{what} must be 1-D (or samples x channels) float or int16 samples, not an array of "
                          f"shape {samples.shape} and type {samples.dtype}")  # fmt: skip
    if not np.all(np.isfinite(samples)):
        raise AsrCliError(f"{what} holds NaN or infinite samples")
    warn_if_beyond_full_scale(samples, what)
    return samples.astype(np.float32, copy=False)


def resample(samples: np.ndarray, from_rate_hz: float, to_rate_hz: int) -> np.ndarray:
    """(num_samples,) float32 audio at `from_rate_hz` -> the same at `to_rate_hz` (soxr, high quality), of
    ceil(num_samples * to_rate_hz / from_rate_hz) samples: exactly `librosa.resample(..., res_type="soxr_hq")`,
    without importing librosa (three seconds, most of a short `prepare`)."""
    if from_rate_hz == to_rate_hz:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr  # deferred: only resampling needs it

    resampled = soxr.resample(np.asarray(samples, dtype=np.float32), from_rate_hz, to_rate_hz, quality="soxr_hq")
    num_samples = math.ceil(len(samples) * to_rate_hz / from_rate_hz)
    fitted = np.zeros(num_samples, dtype=np.float32)  # soxr can come out a sample short of librosa's length
    fitted[: min(num_samples, len(resampled))] = resampled[:num_samples]
    return fitted


def _refuse_truncated_header(sound: soundfile.SoundFile, path: Path) -> None:
    """libsndfile quietly reads what a cut-off WAV/AIFF still holds; its header log tells the promised size."""
    match = TRUNCATED_CHUNK.search(sound.extra_info)
    if match:
        promised, present = int(match.group(1)), int(match.group(2))
        if present < promised:
            raise AudioError(
                f"{path}: truncated: its header promises {promised:,} bytes of samples, the file holds "
                f"{present:,} (an interrupted copy or download?)"
            )


def _read_float32(sound: soundfile.SoundFile, num_samples: int) -> np.ndarray:
    """Read (num_samples, channels) as float32 in [-1, 1].

    16-bit audio is read as integers and scaled here: the same values libsndfile
    would produce, about 15% faster for FLAC.
    """
    if sound.subtype == "PCM_16":
        return sound.read(frames=num_samples, dtype="int16", always_2d=True).astype(np.float32) * np.float32(1 / 32768)
    return sound.read(frames=num_samples, dtype="float32", always_2d=True)
