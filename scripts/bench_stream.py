#!/usr/bin/env python3
"""Live recognition on one thread: real-time factor, emission latency and memory of `Recognizer.stream`. One JSON line.

    python scripts/bench_stream.py [--model NAME=PATH ...] [--lm WORDS.arpa] [--audio-s 60] [--memory-minutes 60]

Models: the given model files, or (default) random weights of the recipe's sizes: a unidirectional LSTMP
(3 layers of 256 cells, projection 128) and a latency-controlled BLSTM (3x256 per direction; 0.4 s windows,
0.4 s right context). Speed does not depend on the weights, except the beam search's (a trained model's peaky
outputs leave it less to do: give trained models for those rows). The audio: speechocean762 utterances
one after another (their own pauses between them). The LM: a word 3-gram of the speechocean762 transcripts
unless --lm gives one.

- rtf: seconds of computation per second of audio, the audio given in 160 ms chunks, greedy and beam 16 + LM.
- latency: for each word of the final result, the time from its end in the audio to the moment the running
  text (finished segments and partial) first holds it, with the audio arriving in real time: chunk k is
  given when its last sample has been recorded and is recognised once chunk k-1 is done, so each result's
  moment is max(arrival, previous done) + its computation. That is what pacing the input (`asr-cli stream
  --realtime`) gives, without the wall-clock wait; median and 95th percentile per chunk size.
- memory: peak RSS after 1 minute and after --memory-minutes of one stream (greedy, LSTMP), in a child process.
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

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SPEECHOCEAN = REPO.parent / "shared" / "data" / "speechocean762-train"
CHUNKS_MS = (40, 160, 400)


def random_model(path: Path, **options) -> Path:
    """Random weights of the recipe's feature pipeline (80 log-mels, 3 stacked, subsampled 3)."""
    from asr_cli.config import FeatureConfig, ModelConfig
    from asr_cli.model import AcousticModel, model_file_contents

    torch.manual_seed(0)
    characters = list(" 'abcdefghijklmnopqrstuvwxyz")
    model = AcousticModel(ModelConfig(input_dim=80, vocab_size=len(characters) + 1, **options))
    torch.save(model_file_contents(model, FeatureConfig().to_dict(), characters, {}), path)
    return path


def speech(seconds: float) -> np.ndarray:
    from asr_cli.audio import load_audio
    from asr_cli.importers import import_kaldi

    pieces, total = [], 0
    for utterance in import_kaldi(SPEECHOCEAN):
        pieces.append(load_audio(utterance.audio, 16000)[0])
        total += len(pieces[-1])
        if total >= seconds * 16000:
            break
    return np.concatenate(pieces)[: int(seconds * 16000)]


def word_lm(folder: Path) -> Path:
    from asr_cli.importers import import_kaldi
    from asr_cli.kneser_ney import build_kneser_ney
    from asr_cli.lm import write_arpa

    sentences = [utterance.text.split() for utterance in import_kaldi(SPEECHOCEAN)]
    write_arpa(build_kneser_ney(sentences, 3), folder / "words.3gram.arpa")
    return folder / "words.3gram.arpa"


def run(recognizer, audio: np.ndarray, chunk_ms: float, search: dict):
    """(seconds of computation per chunk, (audio s at the chunk's end, running words after it) per chunk, final
    words with times)."""
    stream = recognizer.stream(**search)
    size = int(chunk_ms * 16)
    computation, running, finished = [], [], []
    for start in range(0, len(audio), size):
        began = time.perf_counter()
        update = stream.accept(audio[start : start + size])
        computation.append(time.perf_counter() - began)
        finished += update.finished
        running.append((min(start + size, len(audio)) / 16000, [w.word for s in finished for w in s.words]
                        + update.partial.split()))  # fmt: skip
    began = time.perf_counter()
    finished += stream.finish().finished
    computation.append(time.perf_counter() - began)
    running.append((len(audio) / 16000, [w.word for s in finished for w in s.words]))
    return computation, running, [word for segment in finished for word in segment.words]


def latencies(computation: list[float], running: list, final_words) -> list[float]:
    """Per final word: when the running text first held it (simulated real-time arrival) minus its end time."""
    done, ready = 0.0, []
    for (arrival_s, _), seconds in zip(running, computation):
        done = max(arrival_s, done) + seconds
        ready.append(done)
    found = []
    for index, word in enumerate(final_words):
        moment = next((ready[k] for k, (_, words) in enumerate(running)
                       if len(words) > index and words[index] == word.word), ready[-1])  # fmt: skip
        found.append(moment - word.end)
    return found


def memory_child(model: Path, minutes: float) -> dict:
    """Peak RSS (MB) of one greedy stream after 1 minute and after `minutes` of audio (run in this process)."""
    import asr_cli

    recognizer = asr_cli.load_model(model)
    stream = recognizer.stream(beam_size=1)
    audio = speech(60.0)
    peaks = {}
    for minute in range(1, int(minutes) + 1):
        for start in range(0, len(audio), 2560):
            stream.accept(audio[start : start + 2560])
        if minute in (1, int(minutes)):
            peaks[f"peak_rss_mb_after_{minute}_min"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    stream.finish()
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH of a model file (repeatable)")
    parser.add_argument("--lm", type=Path, help="word ARPA LM for the beam rows (default: the transcripts' 3-gram)")
    parser.add_argument("--lm-weight", type=float, default=1.0)
    parser.add_argument("--word-bonus", type=float, default=2.0)
    parser.add_argument("--audio-s", type=float, default=60.0)
    parser.add_argument("--memory-minutes", type=float, default=60.0)
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args.memory_minutes)))
        return
    import asr_cli

    work = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    models = dict(item.split("=", 1) for item in args.model) or {
        "lstmp_random": random_model(
            work / "lstmp.pt", architecture="lstm", num_layers=3, hidden_size=256, projection_size=128
        ),  # fmt: skip
        "lc_blstm_random": random_model(
            work / "blstm.pt",
            architecture="blstm",
            num_layers=3,
            hidden_size=256,
            chunk_frames=13,
            right_context_frames=13,
        ),  # fmt: skip
    }
    lm = args.lm or word_lm(work)
    audio = speech(args.audio_s)
    beam = {"beam_size": 16, "lm": str(lm), "lm_weight": args.lm_weight, "word_bonus": args.word_bonus}
    result = {"audio_s": round(len(audio) / 16000, 1), "threads": torch.get_num_threads(), "rows": {}}
    for name, path in models.items():
        recognizer = asr_cli.load_model(path)
        row = {}
        for search_name, search in (("greedy", {"beam_size": 1, "lm": None}), ("beam16_lm", beam)):
            run(recognizer, audio[:16000], 160, search)  # compiled and warm
            computation, _, _ = run(recognizer, audio, 160, search)
            row[f"rtf_{search_name}"] = round(sum(computation) / (len(audio) / 16000), 4)
            for chunk_ms in CHUNKS_MS:
                computation, running, final = run(recognizer, audio, chunk_ms, search)
                waits = latencies(computation, running, final)
                if waits:
                    row[f"latency_{search_name}_{chunk_ms}ms"] = {
                        "median_s": round(float(np.median(waits)), 3),
                        "p95_s": round(float(np.percentile(waits, 95)), 3),
                        "words": len(waits),
                    }
        result["rows"][name] = row
    first = next(iter(models.values()))
    child = subprocess.run([sys.executable, __file__, "--memory-child", str(first), "--memory-minutes",
                            str(args.memory_minutes)], capture_output=True, text=True, check=True)  # fmt: skip
    result["memory"] = {"model": next(iter(models)), **json.loads(child.stdout.strip().splitlines()[-1])}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
