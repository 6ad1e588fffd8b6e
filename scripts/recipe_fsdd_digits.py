#!/usr/bin/env python3
"""Connected digits from the Free Spoken Digit Dataset: assemble, prepare, train, LM, decode, score.

    python scripts/recipe_fsdd_digits.py ../shared/data/fsdd -o exp/fsdd

Utterances are 2-7 digits of one speaker joined with short random pauses,
written at FSDD's 8 kHz (prepare resamples to 16 kHz). Training utterances
use recordings with index 10-49, dev 5-9, test 0-4 (FSDD's own test
convention), so no recording is in two sets. The word LM is built from the
training transcripts; weights are tuned on dev.

    python scripts/recipe_fsdd_digits.py ../shared/data/fsdd -o exp/fsdd_loso --leave-one-speaker-out

trains six models instead, each on five speakers (recordings 10-49; dev
5-9 of the same five) and tests it on the sixth, who is never heard in
training (all 50 recordings per digit), and reports the WER of each and their
mean. Test utterances there always have real noise between the digits: the
pauses and edges are filled with the recording's own quietest frames, as a
real recording has room noise between words.

The default levers (docs/RESULTS.md): training and dev pauses filled the same
way (`--no-pause-noise` for digital zeros), per-speaker CMVN, and noise
around and between the training digits (`--train-options` replaces
DEFAULT_TRAIN_LEVERS); decoding searches only the speech (`--vad auto`:
silero when installed). Leave-one-speaker-out also tests each held-out
speaker on untrimmed recordings (1-3 s of background before and after,
noisy pauses of up to 1 s) and on nothing-said clips of background alone,
and the five training speakers' dev recordings untrimmed the same way, on
which the levers are chosen.
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
TRAIN_OPTIONS = (
    "--layers 2 --hidden-size 192 --batch-frames 4000 --lr 2e-3 --warmup-steps 200 --precision bf16 "
    "--hold-fraction 0.3 --dropout 0.2 --freq-width 15 --time-width 40"
).split()


# On encoder states (20 ms): one state a frame, every second kept, batches of the same seconds of audio.
ENCODER_TRAIN_OPTIONS = (
    "--layers 2 --hidden-size 192 --stack-frames 1 --subsample 2 --batch-frames 2000 --lr 2e-3 --warmup-steps 200 "
    "--hold-fraction 0.3 --dropout 0.3 --freq-width 40 --time-width 20"
).split()

# Chosen on dev (docs/RESULTS.md): per-speaker CMVN, and noise around and between the training digits (the
# untrimmed dev recordings: 3.4% -> 2.6% WER with --vad silero, 26.3% -> 14.5% without a VAD).
DEFAULT_TRAIN_LEVERS = "--cmvn speaker --noise-edges-s 2 --noise-pauses-s 1"

QUIET_FRAME_S = 0.01
QUIET_QUANTILE = 0.2  # frames at or below this quantile of a recording's frame energies count as its background


def speakers_of(fsdd: Path) -> list[str]:
    return sorted({path.stem.split("_")[1] for path in (fsdd / "recordings").glob("*.wav")})


def background_noise(samples: np.ndarray, length: int, rate_hz: int, rng: random.Random) -> np.ndarray:
    """`length` samples of the recording's own background: its quietest 10 ms frames, looped from a random start."""
    frame = int(QUIET_FRAME_S * rate_hz)
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    if len(frames) == 0:
        return np.zeros(length, np.float32)
    energies = (frames**2).mean(axis=1)
    quiet = frames[energies <= np.quantile(energies, QUIET_QUANTILE)].reshape(-1)
    start = rng.randrange(len(quiet))
    return np.resize(np.roll(quiet, -start), length).astype(np.float32)


def assemble(
    fsdd: Path,
    output: Path,
    counts: dict[str, int],
    seed: int = 0,
    splits: dict[str, tuple[list[str], range]] | None = None,
    noisy_splits: tuple[str, ...] = (),
) -> None:
    """Write OUT/audio/*.wav and OUT/{split}.jsonl of connected-digit utterances.

    `splits`: per split, its speakers and recording indices (default: every speaker, SPLITS' indices).
    Pauses and edges are digital zeros, or in `noisy_splits` the adjacent recording's background noise.
    """
    from asr_cli.manifest import Utterance, write_manifest

    every_speaker = speakers_of(fsdd)
    splits = splits or {split: (every_speaker, indices) for split, indices in SPLITS.items()}
    recordings: dict[tuple[str, str], list[Path]] = defaultdict(list)  # (split, speaker) -> files
    for path in sorted((fsdd / "recordings").glob("*.wav")):
        digit, speaker, index = path.stem.split("_")
        for split, (speakers, indices) in splits.items():
            if speaker in speakers and int(index) in indices:
                recordings[(split, speaker)].append(path)
    rng = random.Random(seed)
    (output / "audio").mkdir(parents=True, exist_ok=True)
    for split, count in counts.items():
        utterances = []
        for number in range(count):
            speaker = rng.choice(splits[split][0])
            chosen = [rng.choice(recordings[(split, speaker)]) for _ in range(rng.randint(2, 7))]
            pieces = []
            for path in chosen:
                samples, rate_hz = soundfile.read(str(path), dtype="float32")
                pause_length = int(rng.uniform(0.05, 0.3) * rate_hz)
                pause = (
                    background_noise(samples, pause_length, rate_hz, rng)
                    if split in noisy_splits
                    else np.zeros(pause_length, np.float32)
                )
                pieces += [pause, samples]
            tail = int(0.1 * rate_hz)
            pieces.append(
                background_noise(samples, tail, rate_hz, rng) if split in noisy_splits else np.zeros(tail, np.float32)
            )
            audio = output / "audio" / f"{split}-{number:05d}.wav"
            soundfile.write(str(audio), np.concatenate(pieces), rate_hz, subtype="PCM_16")
            text = " ".join(DIGIT_WORDS[int(path.stem.split("_")[0])] for path in chosen)
            utterances.append(Utterance(audio.stem, f"audio/{audio.name}", text=text, speaker=speaker))
        write_manifest(output / f"{split}.jsonl", utterances)


UNTRIMMED_EDGES_S = (1.0, 3.0)  # noise before the first digit and after the last
UNTRIMMED_PAUSES_S = (0.05, 1.0)
NOTHING_SAID_S = (2.0, 3.0)


def assemble_untrimmed(
    fsdd: Path, output: Path, speakers: list[str], indices: range, count: int, silent_count: int, seed: int = 0
) -> tuple[Path, Path]:
    """The speakers' digits (recordings `indices`) as a recording has them: 2-7 digits of one speaker with noisy
    pauses of up to 1 s, and 1-3 s of the recordings' own background before and after; and `silent_count`
    clips of 2-3 s of background alone, in which nothing is said (no text). Returns (manifest of both kinds,
    manifest of the speech alone, to score)."""
    from asr_cli.manifest import Utterance, write_manifest

    paths_of = {
        speaker: [path for path in sorted((fsdd / "recordings").glob(f"*_{speaker}_*.wav"))
                  if int(path.stem.split("_")[2]) in indices]
        for speaker in speakers
    }  # fmt: skip
    rng = random.Random(seed)
    (output / "audio").mkdir(parents=True, exist_ok=True)
    speech, silent = [], []
    for number in range(count):
        speaker = rng.choice(speakers)
        chosen = [rng.choice(paths_of[speaker]) for _ in range(rng.randint(2, 7))]
        pieces = []
        for position, path in enumerate(chosen):
            samples, rate_hz = soundfile.read(str(path), dtype="float32")
            gap_s = rng.uniform(*(UNTRIMMED_EDGES_S if position == 0 else UNTRIMMED_PAUSES_S))
            pieces += [background_noise(samples, int(gap_s * rate_hz), rate_hz, rng), samples]
        pieces.append(background_noise(samples, int(rng.uniform(*UNTRIMMED_EDGES_S) * rate_hz), rate_hz, rng))
        audio = output / "audio" / f"untrimmed-{number:05d}.wav"
        soundfile.write(str(audio), np.concatenate(pieces), rate_hz, subtype="PCM_16")
        text = " ".join(DIGIT_WORDS[int(path.stem.split("_")[0])] for path in chosen)
        speech.append(Utterance(audio.stem, f"audio/{audio.name}", text=text, speaker=speaker))
    for number in range(silent_count):
        speaker = rng.choice(speakers)
        samples, rate_hz = soundfile.read(str(rng.choice(paths_of[speaker])), dtype="float32")
        audio = output / "audio" / f"nothing-said-{number:05d}.wav"
        length = int(rng.uniform(*NOTHING_SAID_S) * rate_hz)
        soundfile.write(str(audio), background_noise(samples, length, rate_hz, rng), rate_hz, subtype="PCM_16")
        silent.append(Utterance(audio.stem, f"audio/{audio.name}", speaker=speaker))
    # One manifest of both: a speaker's statistics (--cmvn speaker) come from all of their recordings.
    write_manifest(output / "untrimmed.jsonl", speech + silent)
    write_manifest(output / "untrimmed_speech.jsonl", speech)
    return output / "untrimmed.jsonl", output / "untrimmed_speech.jsonl"


def train_and_test(recipe: Recipe, out: Path, args, untrimmed: dict[str, tuple[Path, Path]] | None = None) -> dict:
    """Prepare OUT/corpus's three splits, train, build the digit LM, tune it on dev, score the test split (and
    the untrimmed recordings and nothing-said clips, when given). With --reuse-models, a model already in OUT
    is decoded again (with today's --decode-options) instead of trained."""
    features = encoder_features(args)
    model, lm = out / "model" / "model.pt", out / "digits.3gram.arpa"
    reuse = args.reuse_models and model.is_file() and lm.is_file()
    names = ("train", "dev", "test") if not reuse else ()
    for name in names:
        recipe.run("prepare", out / "corpus" / f"{name}.jsonl", "-o", out / f"{name}.store", "--jobs", args.jobs,
                   "--overwrite", "--no-progress", *features)  # fmt: skip
    train_s = (
        0.0
        if reuse
        else recipe.run(
            "train",
            "--train",
            out / "train.store",
            "--valid",
            out / "dev.store",
            "-o",
            out / "model",
            "--epochs",
            args.epochs,
            *(ENCODER_TRAIN_OPTIONS if args.features == "encoder" else TRAIN_OPTIONS),
            *args.train_options.split(),
            "--no-progress",
        )
    )
    if not reuse:
        recipe.run("lm", out / "corpus" / "train.jsonl", "-o", lm, "--order", 3)
    # Decoded from the audio manifests (the same features as the stores): a VAD on the audio (--vad silero) can
    # then run on every input.
    decode_options = args.decode_options.split()
    corpus = out / "corpus"
    weight, bonus = recipe.tune_lm_weights(
        model, corpus / "dev.jsonl", lm, (0.3, 0.8), (0.0, 1.0), 16, extra=tuple(decode_options)
    )
    beam_lm = ["--beam-size", 16, "--lm", lm, "--lm-weight", weight, "--word-bonus", bonus, *decode_options]
    tests = {"test": (corpus / "test.jsonl", corpus / "test.jsonl"), **(untrimmed or {})}
    results = {"training_seconds": round(train_s, 1), "lm_weight": weight, "word_bonus": bonus}
    for name, (manifest, references) in tests.items():
        for kind, options in (("greedy", decode_options), ("beam_lm", beam_lm)):
            hypotheses = out / f"{name}_{kind}.jsonl"
            recipe.run("decode", model, manifest, "-o", hypotheses, *options, "--no-progress")
            if name != "test":
                results[f"{name}_nothing_said_{kind}"] = nothing_said(hypotheses)
                hypotheses = speech_only(hypotheses)
            results[f"{name}_{kind}"] = recipe.score(references, hypotheses, f"{name}_{kind}")
    return results


def nothing_said(hypotheses: Path) -> dict:
    """Of the nothing-said clips, how many came out empty (the right answer), and the words written into the rest."""
    import json

    texts = [json.loads(line)["text"] for line in hypotheses.read_text().splitlines()
             if json.loads(line)["id"].startswith("nothing-said-")]  # fmt: skip
    return {
        "clips": len(texts),
        "empty_share": sum(not text.strip() for text in texts) / max(len(texts), 1),
        "words_written": sum(len(text.split()) for text in texts),
    }


def speech_only(hypotheses: Path) -> Path:
    """The hypotheses of the untrimmed recordings in which something was said."""
    kept = [line for line in hypotheses.read_text().splitlines() if '"nothing-said-' not in line]
    path = hypotheses.with_name(hypotheses.stem + "_speech.jsonl")
    path.write_text("".join(line + "\n" for line in kept))
    return path


def encoder_features(args) -> list:
    """prepare's options for `--features encoder` (Whisper base, fetched and cached unless --encoder names one)."""
    if args.features != "encoder":
        return []
    from recipe_common import fetch_whisper_base

    return ["--features", "encoder", "--encoder", args.encoder if args.encoder is not None else fetch_whisper_base()]


def leave_one_speaker_out(args) -> None:
    """Six models, each tested on the speaker it never heard; results.json holds each and the mean."""
    speakers = speakers_of(args.fsdd)
    per_speaker = {}
    for held_out in speakers:
        others = [speaker for speaker in speakers if speaker != held_out]
        out = args.output / held_out
        recipe = Recipe(out)
        noisy = ("train", "dev", "test") if args.pause_noise else ("test",)
        assemble(
            args.fsdd,
            out / "corpus",
            {"train": args.train_utterances, "dev": 200, "test": 150},
            splits={
                "train": (others, SPLITS["train"]),
                "dev": (others, SPLITS["dev"]),
                "test": ([held_out], range(0, 50)),
            },
            noisy_splits=noisy,
        )
        # Untrimmed recordings of the held-out speaker (the test), and of the five others' dev recordings (to
        # choose levers on: they are never tested on).
        untrimmed = {
            "untrimmed": assemble_untrimmed(args.fsdd, out / "untrimmed", [held_out], range(0, 50), 150, 50),
            "untrimmed_dev": assemble_untrimmed(args.fsdd, out / "untrimmed_dev", others, SPLITS["dev"], 100, 25),
        }
        result = per_speaker[held_out] = train_and_test(recipe, out, args, untrimmed)
        print(
            f"{held_out}: WER {100 * result['test_beam_lm']['wer']:.1f}% (beam + LM), "
            f"{100 * result['test_greedy']['wer']:.1f}% (greedy); untrimmed "
            f"{100 * result['untrimmed_beam_lm']['wer']:.1f}% ({100 * result['untrimmed_greedy']['wer']:.1f}%); "
            f"nothing said: {100 * result['untrimmed_nothing_said_beam_lm']['empty_share']:.0f}% empty; "
            f"untrimmed dev {100 * result['untrimmed_dev_beam_lm']['wer']:.1f}%",
            flush=True,
        )
    kinds = [f"{name}_{kind}" for name in ("test", "untrimmed", "untrimmed_dev") for kind in ("greedy", "beam_lm")]
    mean = {kind: sum(result[kind]["wer"] for result in per_speaker.values()) / len(per_speaker) for kind in kinds}
    for name in ("untrimmed", "untrimmed_dev"):
        for kind in ("greedy", "beam_lm"):
            mean[f"{name}_nothing_said_empty_{kind}"] = sum(
                result[f"{name}_nothing_said_{kind}"]["empty_share"] for result in per_speaker.values()
            ) / len(per_speaker)
    Recipe(args.output).write_results(
        {
            "pause_noise": args.pause_noise,
            "train_options": args.train_options,
            "epochs": args.epochs,
            "train_utterances": args.train_utterances,
            "decode_options": args.decode_options,
            "mean_wer": mean,
            "speakers": per_speaker,
        },
        args.results_name,
    )
    print(
        f"mean WER over the six held-out speakers: {100 * mean['test_beam_lm']:.1f}% (beam + LM), "
        f"{100 * mean['test_greedy']:.1f}% (greedy); untrimmed {100 * mean['untrimmed_beam_lm']:.1f}% "
        f"({100 * mean['untrimmed_greedy']:.1f}%); nothing said: "
        f"{100 * mean['untrimmed_nothing_said_empty_beam_lm']:.1f}% of the clips empty "
        f"({100 * mean['untrimmed_nothing_said_empty_greedy']:.1f}%); untrimmed dev "
        f"{100 * mean['untrimmed_dev_beam_lm']:.1f}%, its nothing said "
        f"{100 * mean['untrimmed_dev_nothing_said_empty_beam_lm']:.1f}% empty"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fsdd", type=Path, help="FSDD folder (recordings/*.wav)")
    parser.add_argument("-o", "--output", type=Path, default=Path("exp/fsdd"))
    parser.add_argument("--train-utterances", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--leave-one-speaker-out", action="store_true", help="six models, each tested on an unseen speaker"
    )
    parser.add_argument(
        "--pause-noise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fill pauses and edges with the recordings' own background noise (default: on)",
    )
    parser.add_argument(
        "--train-options",
        default=DEFAULT_TRAIN_LEVERS,
        help=f"`asr-cli train` options beyond the recipe's model (default: '{DEFAULT_TRAIN_LEVERS}')",
    )
    parser.add_argument("--decode-options", default="", help="more `asr-cli decode` options, for every decode")
    parser.add_argument(
        "--reuse-models",
        action="store_true",
        help="decode (and tune) again with the models already in OUT instead of training them",
    )
    parser.add_argument("--results-name", default="results", help="OUT/NAME.json holds the results")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--features", choices=("fbank", "encoder"), default="fbank",
                        help="filterbanks, or the states of Whisper base's encoder (see --encoder)")  # fmt: skip
    parser.add_argument("--encoder", type=Path, help="with --features encoder: a Whisper folder (default: fetched)")
    args = parser.parse_args()
    if args.leave_one_speaker_out:
        leave_one_speaker_out(args)
        return
    out = args.output
    recipe = Recipe(out)
    assemble(
        args.fsdd,
        out / "corpus",
        {"train": args.train_utterances, "dev": 200, "test": 300},
        noisy_splits=("train", "dev", "test") if args.pause_noise else (),
    )
    recipe.write_results(train_and_test(recipe, out, args))


if __name__ == "__main__":
    main()
