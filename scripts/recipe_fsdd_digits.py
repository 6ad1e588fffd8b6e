#!/usr/bin/env python3
"""Connected digits from the Free Spoken Digit Dataset: assemble, prepare, train, LM, decode, score.

    python scripts/recipe_fsdd_digits.py ../shared/data/fsdd -o exp/fsdd

Utterances are 2-7 digits of one speaker joined with short random pauses,
written at FSDD's 8 kHz (prepare resamples to 16 kHz). Training utterances
use recordings with index 10-49, dev 5-9, test 0-4 (FSDD's own test
convention), so no recording is in two sets. The word LM is built from the
training transcripts; weights are tuned on dev.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import Recipe  # noqa: E402

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLITS = {"train": range(10, 50), "dev": range(5, 10), "test": range(0, 5)}
TRAIN_OPTIONS = ["--layers", "2", "--hidden-size", "192", "--batch-frames", "4000", "--lr", "2e-3",
                 "--warmup-steps", "200", "--precision", "bf16", "--hold-fraction", "0.3", "--dropout", "0.2",
                 "--freq-width", "15", "--time-width", "40"]


def assemble(fsdd: Path, output: Path, counts: dict[str, int], seed: int = 0) -> None:
    """Write OUT/audio/*.wav and OUT/{split}.jsonl of connected-digit utterances."""
    from asr_cli.manifest import Utterance, write_manifest

    recordings: dict[tuple[str, str], list[Path]] = defaultdict(list)  # (split, speaker) -> files
    for path in sorted((fsdd / "recordings").glob("*.wav")):
        digit, speaker, index = path.stem.split("_")
        for split, indices in SPLITS.items():
            if int(index) in indices:
                recordings[(split, speaker)].append(path)
    speakers = sorted({speaker for _, speaker in recordings})
    rng = random.Random(seed)
    (output / "audio").mkdir(parents=True, exist_ok=True)
    for split, count in counts.items():
        utterances = []
        for number in range(count):
            speaker = rng.choice(speakers)
            chosen = [rng.choice(recordings[(split, speaker)]) for _ in range(rng.randint(2, 7))]
            pieces = []
            for path in chosen:
                samples, rate_hz = soundfile.read(str(path), dtype="float32")
                pause = np.zeros(int(rng.uniform(0.05, 0.3) * rate_hz), np.float32)
                pieces += [pause, samples]
            pieces.append(np.zeros(int(0.1 * rate_hz), np.float32))
            audio = output / "audio" / f"{split}-{number:05d}.wav"
            soundfile.write(str(audio), np.concatenate(pieces), rate_hz, subtype="PCM_16")
            text = " ".join(DIGIT_WORDS[int(path.stem.split("_")[0])] for path in chosen)
            utterances.append(Utterance(audio.stem, f"audio/{audio.name}", text=text, speaker=speaker))
        write_manifest(output / f"{split}.jsonl", utterances)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fsdd", type=Path, help="FSDD folder (recordings/*.wav)")
    parser.add_argument("-o", "--output", type=Path, default=Path("exp/fsdd"))
    parser.add_argument("--train-utterances", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    out = args.output
    recipe = Recipe(out)
    assemble(args.fsdd, out / "corpus", {"train": args.train_utterances, "dev": 200, "test": 300})
    for name in ("train", "dev", "test"):
        recipe.run("prepare", out / "corpus" / f"{name}.jsonl", "-o", out / f"{name}.store", "--jobs", 2,
                   "--overwrite", "--no-progress")
    train_s = recipe.run("train", "--train", out / "train.store", "--valid", out / "dev.store", "-o", out / "model",
                         "--epochs", args.epochs, *TRAIN_OPTIONS, "--no-progress")
    model, lm = out / "model" / "model.pt", out / "digits.3gram.arpa"
    recipe.run("lm", out / "corpus" / "train.jsonl", "-o", lm, "--order", 3)
    weight, bonus = recipe.tune_lm_weights(model, out / "dev.store", lm, (0.3, 0.8), (0.0, 1.0), 16)
    recipe.run("decode", model, out / "test.store", "-o", out / "test_greedy.jsonl", "--no-progress")
    recipe.run("decode", model, out / "test.store", "-o", out / "test_beam_lm.jsonl", "--beam-size", 16, "--lm", lm,
               "--lm-weight", weight, "--word-bonus", bonus, "--no-progress")
    recipe.write_results({
        "training_seconds": round(train_s, 1), "lm_weight": weight, "word_bonus": bonus,
        "test_greedy": recipe.score(out / "test.store", out / "test_greedy.jsonl", "test_greedy"),
        "test_beam_lm": recipe.score(out / "test.store", out / "test_beam_lm.jsonl", "test_beam_lm"),
    })


if __name__ == "__main__":
    main()
