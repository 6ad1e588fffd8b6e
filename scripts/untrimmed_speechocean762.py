#!/usr/bin/env python3
"""Does noise around the words in training (issue #23's --noise-edges-s / --noise-pauses-s) help the speechocean762
recipe? Its dev speakers, trimmed as recorded and untrimmed, for models trained with and without it.

    python scripts/untrimmed_speechocean762.py exp/streaming --model plain=exp/streaming/blstm/model.pt \\
        --model noise=exp/streaming/blstm_noise/model.pt

Takes the streaming script's folder (dev manifest and store, tuned search in search.json). The untrimmed dev: each
dev recording with 1-3 s of its own room noise (its quietest 10 ms frames, looped) before and after it, as the
FSDD recipe's untrimmed test is built. Each model decodes the dev store (as the recipe does) and the untrimmed
recordings with --vad none and --vad silero, beam 16 + LM. Writes OUT/untrimmed.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import Recipe  # noqa: E402
from recipe_fsdd_digits import UNTRIMMED_EDGES_S, background_noise  # noqa: E402


def untrimmed_dev(folder: Path, output: Path, seed: int = 0) -> Path:
    from asr_cli.audio import load_audio
    from asr_cli.manifest import Utterance, load_manifest, write_manifest

    rng = random.Random(seed)
    audio = output / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    utterances = []
    for utterance in load_manifest(folder / "dev.jsonl"):
        samples, rate_hz = load_audio(utterance.audio, 16000)
        before, after = (int(rng.uniform(*UNTRIMMED_EDGES_S) * rate_hz) for _ in range(2))
        padded = np.concatenate([background_noise(samples, before, rate_hz, rng), samples,
                                 background_noise(samples, after, rate_hz, rng)])  # fmt: skip
        path = audio / f"{utterance.id}.flac"
        soundfile.write(str(path), padded, rate_hz)
        utterances.append(Utterance(utterance.id, str(path), text=utterance.text, speaker=utterance.speaker,
                                    duration=len(padded) / rate_hz))  # fmt: skip
    write_manifest(output / "dev_untrimmed.jsonl", utterances)
    return output / "dev_untrimmed.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the streaming script's output folder")
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH (repeatable)")
    parser.add_argument("-o", "--output", type=Path, help="default: FOLDER/untrimmed")
    args = parser.parse_args()
    out = args.output or args.folder / "untrimmed"
    recipe = Recipe(out)
    manifest = untrimmed_dev(args.folder, out)
    tuned = json.loads((args.folder / "search.json").read_text())
    search = ["--beam-size", 16, "--lm", tuned["lm"], "--lm-weight", tuned["lm_weight"], "--word-bonus",
              tuned["word_bonus"]]  # fmt: skip
    inputs = {"trimmed store": (args.folder / "dev.store", []), "untrimmed, no VAD": (manifest, ["--vad", "none"]),
              "untrimmed, silero VAD": (manifest, ["--vad", "silero"])}  # fmt: skip
    rows = {}
    for item in args.model:
        name, path = item.split("=", 1)
        for label, (source, extra) in inputs.items():
            hypotheses = out / f"{name}_{label.replace(' ', '_').replace(',', '')}.jsonl"
            recipe.run("decode", path, source, "-o", hypotheses, *search, *extra, "--no-progress", quiet=True)
            rows[f"{name} | {label}"] = recipe.score(manifest, hypotheses, hypotheses.stem)
    lines = ["| model | dev | beam+LM WER (95% CI) | CER |", "|---|---|---:|---:|"]
    for key, row in rows.items():
        low, high = row["wer_ci95"]
        lines.append(
            f"| {key} | {100 * row['wer']:.1f}% ({100 * low:.1f}-{100 * high:.1f}) | {100 * row['cer']:.1f}% |"
        )
    (out / "untrimmed.md").write_text("\n".join(lines) + "\n")
    recipe.write_results({"rows": rows}, "untrimmed")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
