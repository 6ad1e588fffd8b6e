#!/usr/bin/env python3
"""speechocean762 recipe: import, speaker-disjoint dev split, prepare, train, LM, decode, score.

    python scripts/recipe_speechocean762.py ../shared/data/speechocean762-train [TEST_DIR] -o exp/so762

The training folder (Kaldi layout) is split by whole speakers into train and
dev (15 speakers, seeded). The LM is built from the training text only; its
weight and word bonus are tuned on dev only. Given TEST_DIR (the corpus'
official test split in the same layout), it is decoded and scored once with
the same model, LM and settings. Every command, its wall time and every
score go into OUT (commands.log, results.json, score_*.txt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import LM_WEIGHTS, WORD_BONUSES, Recipe  # noqa: E402

# Chosen on the dev speakers (docs/RESULTS.md, lever table): normalise each speaker's features,
# and perturb vocal tract lengths in training.
TRAIN_OPTIONS = ["--cmvn", "speaker", "--vtlp", "0.1"]


def write_word_list(manifest: Path, output: Path) -> Path:
    """Every word of a manifest's normalised transcripts, one per line: the lexicon of the training words."""
    from asr_cli.manifest import load_manifest
    from asr_cli.text import normalize_text

    words = {word for utterance in load_manifest(manifest) for word in normalize_text(utterance.text).split()}
    output.write_text("\n".join(sorted(words)) + "\n", encoding="utf-8")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="speechocean762 training folder (Kaldi layout)")
    parser.add_argument("test", type=Path, nargs="?", help="the official test folder (Kaldi layout), scored once")
    parser.add_argument("-o", "--output", type=Path, default=Path("exp/speechocean762"))
    parser.add_argument(
        "--epochs",
        type=int,
        default=12,
        help="passes over the 3x speed-perturbed data (3 to 5 min each here with nothing else running)",
    )
    parser.add_argument("--speed-perturb", default="0.9,1.0,1.1", help="factors for the training data ('' for none)")
    parser.add_argument("--dev-speakers", type=int, default=15)
    parser.add_argument("--lm-order", type=int, default=3)
    parser.add_argument("--beam-size", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--train-options",
        default=" ".join(TRAIN_OPTIONS),
        help="options for `asr-cli train` beyond the data and the epochs (default: the levers chosen on dev)",
    )
    args = parser.parse_args()
    out = args.output
    recipe = Recipe(out)

    recipe.run("import", "kaldi", args.corpus, "-o", out / "all.jsonl")
    recipe.run(
        "split",
        out / "all.jsonl",
        "--train-output",
        out / "train.jsonl",
        "--dev-output",
        out / "dev.jsonl",
        "--dev-speakers",
        args.dev_speakers,
        "--seed",
        0,
    )
    speed_perturb = ["--speed-perturb", args.speed_perturb] if args.speed_perturb else []
    recipe.run(
        "prepare",
        out / "train.jsonl",
        "-o",
        out / "train.store",
        *speed_perturb,
        "--jobs",
        args.jobs,
        "--overwrite",
        "--no-progress",
    )
    recipe.run(
        "prepare", out / "dev.jsonl", "-o", out / "dev.store", "--jobs", args.jobs, "--overwrite", "--no-progress"
    )
    train_s = recipe.run(
        "train",
        "--train",
        out / "train.store",
        "--valid",
        out / "dev.store",
        "-o",
        out / "model",
        "--epochs",
        args.epochs,
        *args.train_options.split(),
        "--no-progress",
    )
    model = out / "model" / "model.pt"
    lm = out / f"words.{args.lm_order}gram.arpa"
    recipe.run("lm", out / "train.jsonl", "-o", lm, "--order", args.lm_order)
    recipe.run("decode", model, out / "dev.store", "-o", out / "dev_greedy.jsonl", "--no-progress")
    weight, bonus = recipe.tune_lm_weights(model, out / "dev.store", lm, LM_WEIGHTS, WORD_BONUSES, args.beam_size)
    search = ["--beam-size", args.beam_size, "--lm", lm, "--lm-weight", weight, "--word-bonus", bonus]
    recipe.run("decode", model, out / "dev.store", "-o", out / "dev_beam_lm.jsonl", *search, "--no-progress")
    # The same search restricted to the training words, with its own weights.
    lexicon = write_word_list(out / "train.jsonl", out / "train_words.txt")
    lexicon_weight, lexicon_bonus = recipe.tune_lm_weights(
        model, out / "dev.store", lm, LM_WEIGHTS, WORD_BONUSES, args.beam_size, ("--lexicon", lexicon), "_lexicon"
    )
    lexicon_search = [
        "--beam-size",
        args.beam_size,
        "--lm",
        lm,
        "--lm-weight",
        lexicon_weight,
        "--word-bonus",
        lexicon_bonus,
        "--lexicon",
        lexicon,
    ]
    recipe.run(
        "decode", model, out / "dev.store", "-o", out / "dev_beam_lm_lexicon.jsonl", *lexicon_search, "--no-progress"
    )
    results = {
        "training_seconds": round(train_s, 1),
        "lm_weight": weight,
        "word_bonus": bonus,
        "lexicon_lm_weight": lexicon_weight,
        "lexicon_word_bonus": lexicon_bonus,
        "dev_greedy": recipe.score(out / "dev.store", out / "dev_greedy.jsonl", "dev_greedy"),
        "dev_beam_lm": recipe.score(out / "dev.store", out / "dev_beam_lm.jsonl", "dev_beam_lm"),
        "dev_beam_lm_lexicon": recipe.score(
            out / "dev.store", out / "dev_beam_lm_lexicon.jsonl", "dev_beam_lm_lexicon"
        ),
    }
    if results["dev_beam_lm_lexicon"]["wer"] < results["dev_beam_lm"]["wer"]:  # the test set gets dev's best
        search = lexicon_search
    if args.test is not None:
        recipe.run("import", "kaldi", args.test, "-o", out / "test.jsonl")
        recipe.run(
            "prepare", out / "test.jsonl", "-o", out / "test.store", "--jobs", args.jobs, "--overwrite", "--no-progress"
        )
        recipe.run("decode", model, out / "test.store", "-o", out / "test_greedy.jsonl", "--no-progress")
        recipe.run("decode", model, out / "test.store", "-o", out / "test_beam_lm.jsonl", *search, "--no-progress")
        results["test_greedy"] = recipe.score(out / "test.store", out / "test_greedy.jsonl", "test_greedy")
        results["test_beam_lm"] = recipe.score(out / "test.store", out / "test_beam_lm.jsonl", "test_beam_lm")
    recipe.write_results(results)


if __name__ == "__main__":
    main()
