#!/usr/bin/env python3
"""Benchmark `asr-cli prepare` on a Kaldi data directory; prints one JSON line.

Measures the end-to-end command (process start, imports, header checks,
decoding, features, writing) with --jobs N, and a reference in the same run:
librosa.load + librosa.feature.melspectrogram per file in one process, the
way a quick script would do it (at the native 16 kHz, so it does the same
work). Each side is timed --repeats times and the fastest run is kept, the
least noisy estimate on a shared machine. Targets: >= 1000x real time and
>= 3x the reference's speed.

    python scripts/bench_prepare.py [DATA_DIR] [--jobs 2] [--repeats 3] [--reference-limit N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "data" / "speechocean762-train"
TARGET_X_REAL_TIME = 1000.0
TARGET_SPEEDUP = 3.0


def run_prepare(manifest: Path, store: Path, jobs: int) -> float:
    """Wall seconds of the whole `asr-cli prepare` command."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from asr_cli.cli import main; main()",
            "prepare",
            str(manifest),
            "-o",
            str(store),
            "--jobs",
            str(jobs),
            "--no-progress",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def run_reference(audio_paths: list[str]) -> tuple[float, float]:
    """(wall seconds, audio seconds) of librosa.load + melspectrogram, one file at a time."""
    import librosa

    started = time.perf_counter()
    audio_s = 0.0
    for path in audio_paths:
        samples, rate_hz = librosa.load(path, sr=16000)
        librosa.feature.melspectrogram(y=samples, sr=rate_hz, n_fft=512, win_length=400, hop_length=160, n_mels=80)
        audio_s += len(samples) / rate_hz
    return time.perf_counter() - started, audio_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_CORPUS, help="Kaldi data directory")
    parser.add_argument("--jobs", type=int, default=2, help="prepare worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side; the fastest counts")
    parser.add_argument(
        "--reference-limit",
        type=int,
        default=0,
        help="time the reference on the first N files only (0: all); its speed is per audio second",
    )
    args = parser.parse_args()

    from asr_cli.importers import import_kaldi
    from asr_cli.manifest import write_manifest
    from asr_cli.store import FeatureStore

    utterances = import_kaldi(args.data_dir)
    with tempfile.TemporaryDirectory() as work_dir:
        manifest = Path(work_dir) / "manifest.jsonl"
        write_manifest(manifest, utterances)
        prepare_runs_s = []
        for repeat in range(args.repeats):
            prepare_runs_s.append(run_prepare(manifest, Path(work_dir) / f"store{repeat}", args.jobs))
        prepare_s = min(prepare_runs_s)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        store = FeatureStore(Path(work_dir) / "store0")
        audio_s = store.metadata.duration_s
        num_utterances = len(store)
    reference_paths = [u.audio for u in utterances][: args.reference_limit or None]
    reference_runs = [run_reference(reference_paths) for _ in range(args.repeats)]
    reference_s, reference_audio_s = min(reference_runs)
    x_real_time = audio_s / prepare_s
    reference_x_real_time = reference_audio_s / reference_s
    speedup = x_real_time / reference_x_real_time
    print(
        json.dumps(
            {
                "benchmark": "prepare",
                "corpus": args.data_dir.name,
                "utterances": num_utterances,
                "audio_hours": round(audio_s / 3600, 3),
                "jobs": args.jobs,
                "repeats": args.repeats,
                "prepare_s": round(prepare_s, 2),
                "prepare_runs_s": [round(seconds, 2) for seconds in prepare_runs_s],
                "x_real_time": round(x_real_time, 1),
                "peak_rss_mb": round(peak_rss_mb, 1),
                "reference": "librosa.load + librosa.feature.melspectrogram per file, 1 process",
                "reference_files": len(reference_paths),
                "reference_s": round(reference_s, 2),
                "reference_runs_s": [round(seconds, 2) for seconds, _ in reference_runs],
                "reference_x_real_time": round(reference_x_real_time, 1),
                "speedup_vs_reference": round(speedup, 2),
                "meets_targets": x_real_time >= TARGET_X_REAL_TIME and speedup >= TARGET_SPEEDUP,
            }
        )
    )


if __name__ == "__main__":
    main()
