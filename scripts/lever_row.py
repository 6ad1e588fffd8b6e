#!/usr/bin/env python3
"""One row of the lever table: a trained experiment folder scored on the dev speakers, as one JSON line.

    python scripts/lever_row.py EXP_DIR DEV_STORE WORDS_LM [--name NAME] [--lexicon FILE]

Greedy CER/WER of the best epoch's model, then beam 16 + the word LM with the LM
weight and word bonus tuned on the same dev store (the recipe's grid), and the
training minutes from EXP_DIR/metrics.jsonl (epochs only, not validation).
With --lexicon, also beam 16 + LM + lexicon, tuned on its own. A phone model
has no character output: its row gives the best epoch's phone error rate
(training's validation "CER") instead of greedy scores, and needs --lexicon.
Decodes and reports land in EXP_DIR/dev_eval/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import LM_WEIGHTS, WORD_BONUSES, Recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dir", type=Path)
    parser.add_argument("dev_store", type=Path)
    parser.add_argument("lm", type=Path)
    parser.add_argument("--name", default=None)
    parser.add_argument("--beam-size", type=int, default=16)
    parser.add_argument("--lexicon", type=Path, help="word list or lexicon for an extra lexicon-constrained row")
    args = parser.parse_args()
    recipe = Recipe(args.exp_dir / "dev_eval")
    model = args.exp_dir / "model.pt"
    history = [json.loads(line) for line in (args.exp_dir / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((args.exp_dir / "config.json").read_text())
    phones = config["model_config"].get("units") == "phones"
    row = {
        "name": args.name or args.exp_dir.name,
        "command": " ".join(config["command"][1:]),
        "epochs": len(history),
        "training_minutes": round(sum(record["epoch_time_s"] for record in history) / 60, 1),
    }
    if phones:
        row["phone_error_rate"] = min(record["valid_cer"] for record in history)
    else:
        greedy = recipe.output_dir / "greedy.jsonl"
        recipe.run("decode", model, args.dev_store, "-o", greedy, "--no-progress", quiet=True)
        row["greedy"] = recipe.score(args.dev_store, greedy, "greedy")
        weight, bonus = recipe.tune_lm_weights(model, args.dev_store, args.lm, LM_WEIGHTS, WORD_BONUSES, args.beam_size)
        row["beam_lm"] = recipe.score(
            args.dev_store, recipe.output_dir / "tune" / f"dev_w{weight}_b{bonus}.jsonl", "beam_lm"
        )
        row["lm_weight"], row["word_bonus"] = weight, bonus
    if args.lexicon is not None:
        weight, bonus = recipe.tune_lm_weights(
            model,
            args.dev_store,
            args.lm,
            LM_WEIGHTS,
            WORD_BONUSES,
            args.beam_size,
            ("--lexicon", args.lexicon),
            "_lexicon",
        )
        row["beam_lm_lexicon"] = recipe.score(
            args.dev_store, recipe.output_dir / "tune" / f"dev_lexicon_w{weight}_b{bonus}.jsonl", "beam_lm_lexicon"
        )
        row["lexicon_lm_weight"], row["lexicon_word_bonus"] = weight, bonus
    print(json.dumps(row))


if __name__ == "__main__":
    main()
