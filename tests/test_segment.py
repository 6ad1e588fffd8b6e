"""Long recordings cut at pauses: the segmentation rules, and transcripts with recording-level times."""

from pathlib import Path

import numpy as np
import pytest
import soundfile

import asr_cli
from asr_cli.config import SegmentationConfig
from asr_cli.segment import ENERGY_FRAME_S, file_energies_db, frame_energies_db, speech_segments


def energies(pattern: list[tuple[float, float]]) -> np.ndarray:
    """Frame energies (dB) from (seconds, level dB) runs."""
    return np.concatenate([np.full(int(round(seconds / ENERGY_FRAME_S)), level) for seconds, level in pattern])


def test_segments_follow_speech_merge_short_pauses_and_cut_long_runs():
    options = SegmentationConfig(max_segment_s=5.0, min_pause_s=0.3, padding_s=0.2)
    quiet, loud = -60.0, -20.0
    pattern = [(1.0, quiet), (2.0, loud), (0.1, quiet), (1.0, loud), (2.0, quiet), (12.0, loud), (1.0, quiet)]
    segments = speech_segments(energies(pattern), options)
    # 1.0-4.1 s (a 0.1 s pause inside is kept), then 6.1-18.1 s cut into pieces of at most 5 s.
    assert segments[0] == pytest.approx((0.8, 4.3))
    assert segments[1][0] == pytest.approx(5.9) and segments[-1][1] == pytest.approx(18.3)
    assert all(end - start <= 5.0 + 2 * 0.2 + 1e-9 for start, end in segments)
    assert all(a[1] <= b[0] for a, b in zip(segments, segments[1:]))  # in order, never overlapping
    assert speech_segments(energies([(3.0, quiet)]), options) == []  # silence alone: nothing to decode
    assert speech_segments(np.zeros(0)) == []


def test_file_energies_read_in_blocks_equal_the_whole(tmp_path: Path):
    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(16000 * 70)).astype(np.float32)  # longer than one read block
    soundfile.write(str(tmp_path / "noise.wav"), samples, 16000, subtype="FLOAT")
    from_file, rate_hz, num_samples = file_energies_db(tmp_path / "noise.wav")
    assert rate_hz == 16000 and num_samples == len(samples)
    np.testing.assert_allclose(from_file, frame_energies_db(samples, 16000), atol=1e-4)


def test_a_long_recording_is_transcribed_segment_by_segment_with_recording_times(
    tmp_path: Path, tiny_model, speechocean_utterances
):
    speech, rate_hz = soundfile.read(speechocean_utterances[40].audio, dtype="float32")
    pause = np.zeros(rate_hz, np.float32)
    copies = 12
    joined = np.concatenate([piece for _ in range(copies) for piece in (speech, pause)])
    assert len(joined) / rate_hz > SegmentationConfig().long_recording_s
    soundfile.write(str(tmp_path / "long.wav"), joined, rate_hz)
    model = asr_cli.load_model(tiny_model)
    result = model.transcribe(tmp_path / "long.wav")
    assert result.duration_s == pytest.approx(len(joined) / rate_hz)
    period_s = (len(speech) + len(pause)) / rate_hz
    segments = speech_segments(file_energies_db(tmp_path / "long.wav")[0])
    assert len(segments) == copies and all(start <= k * period_s + 0.5 < end for k, (start, end) in enumerate(segments))
    starts = [word.start for word in result.words]
    assert starts == sorted(starts) and 0 <= starts[0] and result.words[-1].end <= result.duration_s
    assert {int(word.start // period_s) for word in result.words} == set(range(copies))  # every copy heard
    # The same recording as an array: the same transcript.
    assert model.transcribe(joined, rate_hz).text == result.text
