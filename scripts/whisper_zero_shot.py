#!/usr/bin/env python3
"""Whisper itself, zero-shot, on a manifest: the reference an encoder-features model is measured against.

Runs faster-whisper (`pip install faster-whisper`; not a dependency of asr-cli) on every utterance of a
manifest with a CTranslate2 Whisper folder (the one `prepare --features encoder` used), English, no VAD, no
conditioning on earlier text, and writes `{"id", "text"}` lines that `asr-cli score` reads. Digits are spelt
out as words (speechocean762's transcripts spell numbers); other text is left to score's normalisation.
Prints one JSON line: utterances, audio seconds, decoding seconds, real-time factor.

    python scripts/whisper_zero_shot.py dev.jsonl --model WHISPER_FOLDER -o whisper_dev.jsonl [--beam-size 1]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asr_cli.fileio import write_jsonl  # noqa: E402
from asr_cli.manifest import load_manifest  # noqa: E402
from asr_cli.synth import say_number  # noqa: E402

SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"))


def number_words(value: int) -> str:
    """English words for a whole number, as transcripts spell it ("two thousand and five")."""
    for scale, name in SCALES:
        if value >= scale:
            high, rest = divmod(value, scale)
            tail = "" if rest == 0 else (" and " if rest < 100 else " ") + number_words(rest)
            return f"{number_words(high)} {name}{tail}"
    return say_number(value)


def spell_digits(text: str) -> str:
    """Every run of digits (thousands separators allowed) as words."""
    return re.sub(r"\d[\d,]*", lambda match: f" {number_words(int(match.group().replace(',', '')))} ", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="CTranslate2 Whisper folder")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--beam-size", type=int, default=1, help="1: greedy")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: CTranslate2's default)")
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    model = WhisperModel(str(args.model), device="cpu", compute_type="float32", cpu_threads=args.threads)
    utterances = load_manifest(args.manifest)
    records, audio_s, started = [], 0.0, time.perf_counter()
    for utterance in utterances:
        segments, info = model.transcribe(utterance.audio, language="en", beam_size=args.beam_size, vad_filter=False,
                                          condition_on_previous_text=False)  # fmt: skip
        text = " ".join(segment.text for segment in segments)
        records.append({"id": utterance.id, "text": " ".join(spell_digits(text).split())})
        audio_s += info.duration
    elapsed_s = time.perf_counter() - started
    write_jsonl(args.output, records)
    print(json.dumps({"benchmark": "whisper_zero_shot", "utterances": len(records), "audio_s": round(audio_s, 1),
                      "decode_s": round(elapsed_s, 1), "real_time_factor": round(elapsed_s / audio_s, 4),
                      "beam_size": args.beam_size}))  # fmt: skip


if __name__ == "__main__":
    main()
