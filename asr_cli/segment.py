"""Long recordings cut at pauses: energy-based voice activity, read in blocks so memory stays bounded.

A recording's frame energies (one number per 10 ms) are computed block by
block from the file; frames well above the recording's own noise floor are
speech; speech runs separated by pauses shorter than `min_pause_s` are
merged; a run longer than `max_segment_s` is cut at its quietest frame; each
segment gets `padding_s` of context on both sides. Only then are the
segments' samples read, one segment at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from .config import SegmentationConfig

ENERGY_FRAME_S = 0.01
ENERGY_FLOOR = 1e-10  # of mean squared amplitude: digital silence is -100 dB, not -inf
READ_BLOCK_S = 60.0


def frame_energies_db(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """Mean power in dB of each ENERGY_FRAME_S frame of (num_samples,) samples (a partial last frame is dropped)."""
    frame = int(rate_hz * ENERGY_FRAME_S)
    usable = len(samples) // frame * frame
    power = np.square(samples[:usable].reshape(-1, frame), dtype=np.float64).mean(axis=1)
    return 10 * np.log10(np.maximum(power, ENERGY_FLOOR))


def file_energies_db(path: str | Path) -> tuple[np.ndarray, int, int]:
    """(frame energies in dB, sample rate, number of samples) of an audio file, read in blocks."""
    with soundfile.SoundFile(str(path)) as sound:
        rate_hz = sound.samplerate
        frame = int(rate_hz * ENERGY_FRAME_S)
        block = frame * int(READ_BLOCK_S / ENERGY_FRAME_S)
        energies = [
            frame_energies_db(np.asarray(b, np.float32).mean(axis=1), rate_hz)
            for b in sound.blocks(blocksize=block, dtype="float32", always_2d=True)
        ]
        return (np.concatenate(energies) if energies else np.zeros(0)), rate_hz, sound.frames


def speech_segments(
    energies_db: np.ndarray, options: SegmentationConfig = SegmentationConfig()
) -> list[tuple[float, float]]:
    """(start s, end s) of the speech segments that frame energies show, in order, never overlapping."""
    if len(energies_db) == 0:
        return []
    threshold = np.percentile(energies_db, 10) + options.threshold_db
    runs = _runs(energies_db > threshold)
    runs = _merge_close(runs, int(options.min_pause_s / ENERGY_FRAME_S))
    max_frames = int(options.max_segment_s / ENERGY_FRAME_S)
    cut = [piece for start, end in runs for piece in _cut_long(energies_db, start, end, max_frames)]
    padding = int(options.padding_s / ENERGY_FRAME_S)
    segments, previous_end = [], 0
    for start, end in cut:
        start, end = max(start - padding, previous_end), min(end + padding, len(energies_db))
        segments.append((start * ENERGY_FRAME_S, end * ENERGY_FRAME_S))
        previous_end = end
    return segments


def energy_activity(energies_db: np.ndarray, threshold_db: float) -> np.ndarray:
    """Frames more than `threshold_db` above the recording's noise floor (the 10th percentile of its energies)."""
    if len(energies_db) == 0:
        return np.zeros(0, dtype=bool)
    return energies_db > np.percentile(energies_db, 10) + threshold_db


def smoothed_activity(active: np.ndarray, min_speech_s: float, min_pause_s: float, padding_s: float) -> np.ndarray:
    """A per-frame speech decision made into speech runs: pauses shorter than `min_pause_s` closed, then runs
    shorter than `min_speech_s` dropped (a click, a breath), then `padding_s` added on both sides."""
    runs = _merge_close(_runs(active), int(round(min_pause_s / ENERGY_FRAME_S)))
    min_frames, padding = int(round(min_speech_s / ENERGY_FRAME_S)), int(round(padding_s / ENERGY_FRAME_S))
    speech = np.zeros(len(active), dtype=bool)
    for start, end in runs:
        if end - start >= min_frames:
            speech[max(start - padding, 0) : end + padding] = True
    return speech


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame ranges where `mask` is true."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _merge_close(runs: list[tuple[int, int]], max_gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] < max_gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _cut_long(energies_db: np.ndarray, start: int, end: int, max_frames: int) -> list[tuple[int, int]]:
    """Split [start, end) at its quietest frames until every piece is at most `max_frames` long."""
    if end - start <= max_frames:
        return [(start, end)]
    margin = max_frames // 4  # cut away from the edges, so both sides keep some speech
    middle = start + margin + int(np.argmin(energies_db[start + margin : end - margin]))
    return _cut_long(energies_db, start, middle, max_frames) + _cut_long(energies_db, middle, end, max_frames)
