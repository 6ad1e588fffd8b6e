#!/usr/bin/env python3
"""The architecture comparison of Sak et al. (2014) in spirit, on speechocean762 dev.

    python scripts/architectures_speechocean762.py exp/so762 -o exp/architectures --epochs 5

Takes the folder the speechocean762 recipe wrote (its dev store, word LM and
the LM weight and word bonus it tuned on dev) and trains each architecture at
about 4-6 M parameters for the same number of epochs over the plain (not
speed-perturbed) training speakers, with the same optimiser and regularisation.
Every model is decoded greedily and with beam search + LM. Writes
OUT/architectures.md (a Markdown table) and OUT/architectures.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import Recipe  # noqa: E402

# Same optimiser and regularisation for every model: the recipe's settings.
COMMON_OPTIONS = [
    "--batch-frames",
    "3000",
    "--lr",
    "2e-3",
    "--warmup-steps",
    "300",
    "--hold-fraction",
    "0.5",
    "--dropout",
    "0.1",
    "--freq-width",
    "10",
    "--time-width",
    "20",
]
ARCHITECTURES = {
    "DNN 4x1024": ["--architecture", "dnn", "--layers", "4", "--hidden-size", "1024"],
    "LSTM 3x512": ["--architecture", "lstm", "--layers", "3", "--hidden-size", "512"],
    "LSTMP 3x768, p256": [
        "--architecture",
        "lstm",
        "--layers",
        "3",
        "--hidden-size",
        "768",
        "--projection-size",
        "256",
    ],
    "BLSTM 3x256": ["--architecture", "blstm", "--layers", "3", "--hidden-size", "256"],
    "BLSTM 3x256, peepholes": ["--architecture", "blstm", "--layers", "3", "--hidden-size", "256", "--peepholes"],
    "BLSTMP 3x384, p128": [
        "--architecture",
        "blstm",
        "--layers",
        "3",
        "--hidden-size",
        "384",
        "--projection-size",
        "128",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe_dir", type=Path, help="output folder of scripts/recipe_speechocean762.py")
    parser.add_argument("-o", "--output", type=Path, default=Path("exp/architectures"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--beam-size", type=int, default=16)
    args = parser.parse_args()
    recipe_dir, out = args.recipe_dir, args.output
    recipe = Recipe(out)
    tuned = json.loads((recipe_dir / "results.json").read_text())
    lm = next(recipe_dir.glob("words.*gram.arpa"))
    # The recipe's training store is speed-perturbed (3x); the comparison uses the plain audio to fit the budget.
    train_store = out / "train.store"
    if not train_store.exists():
        recipe.run("prepare", recipe_dir / "train.jsonl", "-o", train_store, "--jobs", 2, "--no-progress")
    dev_store = recipe_dir / "dev.store"
    search = [
        "--beam-size",
        args.beam_size,
        "--lm",
        lm,
        "--lm-weight",
        tuned["lm_weight"],
        "--word-bonus",
        tuned["word_bonus"],
    ]
    rows = []
    for name, options in ARCHITECTURES.items():
        exp = out / re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
        recipe.run(
            "train",
            "--train",
            train_store,
            "--valid",
            dev_store,
            "-o",
            exp,
            "--epochs",
            args.epochs,
            *options,
            *COMMON_OPTIONS,
            "--no-progress",
        )
        recipe.run("decode", exp / "model.pt", dev_store, "-o", exp / "dev_greedy.jsonl", "--no-progress")
        recipe.run("decode", exp / "model.pt", dev_store, "-o", exp / "dev_beam_lm.jsonl", *search, "--no-progress")
        rows.append(
            {
                "architecture": name,
                **training_numbers(exp),
                "greedy": recipe.score(dev_store, exp / "dev_greedy.jsonl", f"{exp.name}_greedy"),
                "beam_lm": recipe.score(dev_store, exp / "dev_beam_lm.jsonl", f"{exp.name}_beam_lm"),
            }
        )
    (out / "architectures.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "architectures.md").write_text(markdown_table(rows, args.epochs))
    print(markdown_table(rows, args.epochs))


def training_numbers(exp: Path) -> dict:
    """Parameters, training seconds (epochs only, no validation) and mean frames/s from a run's files."""
    from asr_cli.model import load_model_file

    model = load_model_file(exp / "model.pt").model
    epochs = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    return {
        "parameters": model.num_parameters(),
        "training_s": round(sum(epoch["epoch_time_s"] for epoch in epochs), 1),
        "frames_per_s": round(sum(epoch["frames_per_s"] for epoch in epochs) / len(epochs)),
    }


def markdown_table(rows: list[dict], epochs: int) -> str:
    lines = [
        f"| architecture ({epochs} epochs) | parameters | greedy CER | greedy WER | beam+LM CER | beam+LM WER "
        "| training time | input frames/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        greedy, beam = row["greedy"], row["beam_lm"]
        lines.append(
            f"| {row['architecture']} | {row['parameters'] / 1e6:.2f} M | {100 * greedy['cer']:.1f}% "
            f"| {100 * greedy['wer']:.1f}% | {100 * beam['cer']:.1f}% | {100 * beam['wer']:.1f}% "
            f"| {row['training_s'] / 60:.1f} min | {row['frames_per_s']:,} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
