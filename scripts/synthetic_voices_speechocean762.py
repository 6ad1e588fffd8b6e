#!/usr/bin/env python3
"""Do many synthetic voices help a model of 110 real ones? speechocean762 dev (15 held-out speakers).

    python scripts/synthetic_voices_speechocean762.py ../shared/data/speechocean762-train -o exp/synthetic \\
        --streaming exp/streaming --hours 2.5

Takes the streaming script's split, stores, word 3-gram and search (scripts/streaming_speechocean762.py, whose
whole-utterance BLSTM is the real-only row), and:
  1. writes the Common Voice sentences of ../shared/data/text without dev's sentences, and a noise folder of the
     training recordings' quietest 15% of 10 ms frames (their own room noise);
  2. `asr-cli synth --text` HOURS of them (832 eSpeak voices, noise at 5-30 dB on 80%, reverberation on 30%);
  3. trains the same BLSTM (per-speaker CMVN, VTLP) on the synthetic speech alone (6 epochs; the best epoch on
     dev), fine-tunes it on the real training data (--init-from, 12 epochs), and trains it on both mixed (12
     epochs);
  4. decodes dev greedily and with the tuned beam 16 + LM. Writes OUT/synthetic.json and OUT/synthetic.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import Recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO.parent / "shared" / "data" / "text" / "common_voice_en.txt"
LEVERS = ["--cmvn", "speaker", "--vtlp", "0.1", "--no-progress", "--threads", 1]
QUIET_SHARE = 15  # percent of each recording's 10 ms frames taken as its room noise


def text_without_dev(streaming: Path, output: Path) -> Path:
    from asr_cli.text import normalize_text

    dev = {normalize_text(json.loads(line)["text"]) for line in (streaming / "dev.jsonl").read_text().splitlines()}
    kept = [
        line for line in TEXT.read_text(encoding="utf-8").splitlines(keepends=True) if normalize_text(line) not in dev
    ]
    output.write_text("".join(kept), encoding="utf-8")
    return output


def noise_folder(streaming: Path, folder: Path, every: int = 20) -> Path:
    from asr_cli.audio import load_audio
    from asr_cli.manifest import load_manifest

    folder.mkdir(parents=True, exist_ok=True)
    for index, utterance in enumerate(load_manifest(streaming / "train.jsonl")[::every]):
        samples, _ = load_audio(utterance.audio, 16000)
        frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)
        energy = np.mean(frames**2, axis=1)
        quiet = frames[energy <= np.percentile(energy, QUIET_SHARE)].reshape(-1)
        if len(quiet) > 1600:
            soundfile.write(str(folder / f"quiet{index:04d}.wav"), quiet, 16000)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="speechocean762 training folder (for the streaming script's split)")
    parser.add_argument("-o", "--output", type=Path, default=Path("exp/synthetic"))
    parser.add_argument("--streaming", type=Path, default=Path("exp/streaming"))
    parser.add_argument("--hours", type=float, default=2.5)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--reuse-models", action="store_true", help="keep the store and models already made")
    args = parser.parse_args()
    out, real = args.output, args.streaming
    recipe = Recipe(out)
    text = text_without_dev(real, out / "text.txt")
    noise = noise_folder(real, out / "noise")
    recipe.run("synth", out / "corpus", "--text", text, "--hours", args.hours, "--jobs", args.jobs, "--noise-source",
               noise, "--reverb-probability", 0.3, "--no-progress")  # fmt: skip
    if not (args.reuse_models and (out / "syn.store").exists()):
        recipe.run("prepare", out / "corpus" / "synth.jsonl", "-o", out / "syn.store", "--overwrite", "--no-progress")
    valid = ["--valid", real / "dev.store"]
    trainings = {
        "syn_pre": ["--train", out / "syn.store", "--epochs", 6],
        "syn_ft": ["--train", real / "train.store", "--epochs", 12, "--init-from", out / "syn_pre" / "model.pt"],
        "syn_mix": ["--train", real / "train.store", "--train", out / "syn.store", "--epochs", 12],
    }
    for name, options in trainings.items():
        if not (args.reuse_models and (out / name / "model.pt").exists()):
            recipe.run("train", *options, *valid, "-o", out / name, *LEVERS)
    search = json.loads((real / "search.json").read_text())
    beam = ["--beam-size", 16, "--lm", search["lm"], "--lm-weight", search["lm_weight"], "--word-bonus",
            search["word_bonus"]]  # fmt: skip
    models = {"real only (12 epochs)": real / "blstm" / "model.pt", "synthetic only (best of 6 epochs)":
              out / "syn_pre" / "model.pt", "synthetic, then real (6 + 12 epochs)": out / "syn_ft" / "model.pt",
              "real + synthetic mixed (12 epochs)": out / "syn_mix" / "model.pt"}  # fmt: skip
    rows = {}
    for index, (name, model) in enumerate(models.items()):
        row = {}
        for kind, extra in (("greedy", []), ("beam_lm", beam)):
            hypotheses = out / f"dev_{index}_{kind}.jsonl"
            recipe.run("decode", model, real / "dev.store", "-o", hypotheses, *extra, "--no-progress", quiet=True)
            row[kind] = recipe.score(real / "dev.store", hypotheses, f"{index}_{kind}")
        rows[name] = row
    lines = ["| training | greedy CER | greedy WER | beam+LM WER (95% CI) |", "|---|---:|---:|---:|"]
    for name, row in rows.items():
        low, high = row["beam_lm"]["wer_ci95"]
        lines.append(f"| {name} | {100 * row['greedy']['cer']:.1f}% | {100 * row['greedy']['wer']:.1f}% | "
                     f"{100 * row['beam_lm']['wer']:.1f}% ({100 * low:.1f}-{100 * high:.1f}) |")  # fmt: skip
    (out / "synthetic.md").write_text("\n".join(lines) + "\n")
    recipe.write_results({"rows": rows}, "synthetic")


if __name__ == "__main__":
    main()
