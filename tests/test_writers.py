"""Transcript files (writers.py) from known transcriptions: cue splitting, timestamps, every format."""

import json

import pytest

from asr_cli.results import Transcription, WordTiming
from asr_cli.writers import format_ctm, format_json, format_kaldi, format_srt, format_tsv, format_vtt, subtitle_cues


def test_writers_on_a_known_transcription():
    words = [WordTiming(f"w{i}", 0.5 * i, 0.5 * i + 0.4) for i in range(30)]
    transcription = Transcription("text", words, -1.0, 15.0)
    cues = subtitle_cues(transcription)
    assert [len(text.split()) for _, _, text in cues] == [12, 12, 6]
    assert cues[1][0] == 6.0 and cues[1][1] == pytest.approx(11.9)
    srt = format_srt(transcription, "rec")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:05,900\nw0 w1") and "\n3\n00:00:12,000 --> 00:00:14,900\n" in srt
    assert format_vtt(transcription, "rec").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:05.900\n")
    assert format_tsv(transcription, "rec").splitlines()[1] == "0\t5900\t" + " ".join(f"w{i}" for i in range(12))
    assert format_kaldi(Transcription("hello world"), "rec") == "rec hello world\n"
    assert format_ctm(transcription, "rec").splitlines()[2] == "rec 1 1.000 0.400 w2"
    long = Transcription("x", [WordTiming("x", 3661.5, 3662.0)], 0.0, 3700.0)
    assert "01:01:01,500 --> 01:01:02,000" in format_srt(long, "rec")


def test_json_transcripts_write_words_as_objects_and_a_dead_end_score_as_null():
    record = json.loads(format_json(Transcription("a b", [WordTiming("a", 0.0, 0.5)], float("-inf"), 1.0), "rec"))
    assert record == {
        "id": "rec",
        "text": "a b",
        "score": None,
        "duration": 1.0,
        "words": [{"word": "a", "start": 0.0, "end": 0.5}],
    }


def test_the_writers_import_without_torch():
    import subprocess
    import sys

    code = "import sys, asr_cli.writers; assert 'torch' not in sys.modules and 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
