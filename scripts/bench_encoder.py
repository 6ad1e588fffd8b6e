#!/usr/bin/env python3
"""Benchmark encoder features; prints one JSON line.

The cost of Whisper-encoder features on one thread (real-time factor: seconds of computing per second of
audio) for utterances of speechocean762: each encoded alone at its own length (asr-cli's default), each
padded to 30 s (Whisper's training condition, `--encoder-pad`), and padded windows encoded 8 at a time
(the batching padding allows, since every window then has the same length), with the largest difference
between a window's states encoded alone and in a batch. Encoding with the batch's shape must not change a
frame for asr-cli to batch: the same audio must give the same features on every path.

    python scripts/bench_encoder.py ENCODER_FOLDER [--utterances 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "data" / "speechocean762-train"
BATCH = 8


def timed(function, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import ctranslate2

    from asr_cli.audio import load_audio
    from asr_cli.encoder import SpeechEncoder, inspect_encoder, whisper_log_mel
    from asr_cli.importers import import_kaldi

    torch.set_num_threads(args.threads)
    utterances = import_kaldi(args.corpus)[:: max(1, 2500 // args.utterances)][: args.utterances]
    audio = [load_audio(u.audio, 16000, u.offset, u.duration)[0] for u in utterances]
    audio_s = sum(len(a) for a in audio) / 16000
    plain, padded = (
        SpeechEncoder(inspect_encoder(args.encoder)),
        SpeechEncoder(inspect_encoder(args.encoder, pad_to_window=True)),
    )
    plain([audio[0]]), padded([audio[0]])  # warm-up
    plain_s, _ = timed(plain, audio)
    padded_s, alone = timed(padded, audio)
    model = ctranslate2.models.Whisper(str(args.encoder), compute_type="float32", intra_threads=args.threads)
    states_of = [(len(a) // 160 + 1) // 2 for a in audio]  # EncoderConfig.num_frames for Whisper
    windows = [
        torch.nn.functional.pad(whisper_log_mel(a)[:, : 2 * n], (0, 3000 - 2 * n)).numpy()
        for a, n in zip(audio, states_of)
    ]
    started, batched = time.perf_counter(), []
    for start in range(0, len(windows), BATCH):
        states = np.asarray(model.encode(ctranslate2.StorageView.from_array(np.stack(windows[start : start + BATCH]))))
        batched += [states[i, :n] for i, n in enumerate(states_of[start : start + BATCH])]
    batched_s = time.perf_counter() - started
    difference = max(float(np.abs(a - b).max()) for a, b in zip(alone, batched))
    print(json.dumps({
        "benchmark": "encoder", "encoder": str(args.encoder), "utterances": len(audio), "audio_s": round(audio_s, 1),
        "threads": args.threads, "rtf_alone": round(plain_s / audio_s, 4), "rtf_padded_30s": round(padded_s / audio_s, 4),
        "rtf_padded_batched": round(batched_s / audio_s, 4), "padded_over_alone": round(padded_s / plain_s, 2),
        "batched_speedup_over_padded": round(padded_s / batched_s, 2), "max_state_difference_batched": difference,
        "seconds_per_audio_hour_alone": round(3600 * plain_s / audio_s, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
