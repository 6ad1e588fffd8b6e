#!/usr/bin/env python3
"""Long recordings: WER of one recording per speaker (their utterances joined, pauses and all) against
decoding the utterances one by one, and the peak memory of transcribing a 2-hour file. One JSON line.

    python scripts/bench_long_recording.py MODEL DEV_MANIFEST [--hours 2] [--work /tmp/long]

Each speaker's utterances are concatenated in manifest order as they were
recorded (their own leading and trailing silence are the pauses). The same
model and search transcribe each utterance alone and each speaker's long
recording (cut at pauses by asr-cli); both are scored against the same words.
The 2-hour file repeats those recordings; it is transcribed in a child process
whose peak RSS is read from the kernel.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile

import asr_cli
from asr_cli.manifest import load_manifest
from asr_cli.score import Transcript, score


def long_recordings(manifest: Path, work: Path) -> tuple[dict[str, Path], dict[str, str], list]:
    """One FLAC per speaker of its utterances joined; returns (speaker -> file, speaker -> text, utterances)."""
    utterances = load_manifest(manifest)
    by_speaker = defaultdict(list)
    for utterance in utterances:
        by_speaker[utterance.speaker].append(utterance)
    files, texts = {}, {}
    for speaker, items in by_speaker.items():
        pieces = [soundfile.read(u.audio, dtype="float32")[0] for u in items]
        rate_hz = soundfile.info(items[0].audio).samplerate
        files[speaker] = work / f"{speaker}.flac"
        soundfile.write(str(files[speaker]), np.concatenate(pieces), rate_hz)
        texts[speaker] = " ".join(u.text for u in items)
    return files, texts, utterances


def write_long_file(recordings: list[Path], path: Path, hours: float) -> Path:
    """The recordings over and over until `hours` of audio, written piece by piece."""
    rate_hz = soundfile.info(str(recordings[0])).samplerate
    remaining = int(hours * 3600 * rate_hz)
    with soundfile.SoundFile(str(path), "w", rate_hz, 1) as output:
        while remaining > 0:
            for recording in recordings:
                samples = soundfile.read(str(recording), dtype="float32")[0][:remaining]
                output.write(samples)
                remaining -= len(samples)
                if remaining <= 0:
                    break
    return path


def peak_rss_mb(model: Path, audio: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of a child process transcribing `audio`."""
    # VmHWM, not ru_maxrss: the latter carries over the forking parent's size across exec.
    code = (
        "import sys, asr_cli; asr_cli.load_model(sys.argv[1]).transcribe(sys.argv[2]); "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", code, str(model), str(audio)], capture_output=True, text=True, check=True
    ).stdout
    return int(output.split()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("manifest", type=Path, help="utterances with text and speaker (e.g. the dev manifest)")
    parser.add_argument("--hours", type=float, default=2.0, help="length of the memory test file (0: skip it)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/asr-cli-long"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    recognizer = asr_cli.load_model(args.model)
    files, texts, utterances = long_recordings(args.manifest, args.work)
    one_by_one = score(
        [Transcript(u.id, u.text) for u in utterances],
        [Transcript(u.id, recognizer.transcribe(u.audio).text) for u in utterances],
    ).overall
    joined = score(
        [Transcript(s, t) for s, t in texts.items()],
        [Transcript(s, recognizer.transcribe(path).text) for s, path in files.items()],
    ).overall
    result = {
        "benchmark": "long_recording",
        "speakers": len(files),
        "utterances": len(utterances),
        "mean_recording_s": round(float(np.mean([soundfile.info(str(p)).duration for p in files.values()])), 1),
        "wer_per_utterance": round(one_by_one["wer"], 4),
        "wer_long_recordings": round(joined["wer"], 4),
        "wer_ratio": round(joined["wer"] / one_by_one["wer"], 3),
    }
    if args.hours > 0:
        long_file = write_long_file(list(files.values()), args.work / "long.flac", args.hours)
        rss_mb, seconds = peak_rss_mb(args.model, long_file)
        result.update(
            {
                "long_file_hours": args.hours,
                "peak_rss_mb": round(rss_mb),
                "transcribe_s": round(seconds, 1),
                "x_real_time": round(args.hours * 3600 / seconds, 1),
            }
        )
    result["this_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
