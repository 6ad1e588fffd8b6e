#!/usr/bin/env python3
"""What streaming costs in accuracy on speechocean762 dev (15 held-out speakers), and that a stream is the decode.

    python scripts/streaming_speechocean762.py ../shared/data/speechocean762-train -o exp/streaming --epochs 12

Trains, with the filterbank recipe's levers (--cmvn speaker --vtlp 0.1) on the plain (not speed-perturbed)
training speakers, models of the same depth: a BLSTM 3x256 on whole utterances, the same BLSTM trained
latency-controlled (--chunk-frames 13 --right-context 13: 0.39 s windows, 0.39 s of future), and unidirectional
ones: an LSTMP 3x256 with projection 128, and an LSTM 3x256. Then decodes dev greedily and with beam 16 + the training text's word 3-gram
(weight and bonus tuned on dev for the whole-utterance BLSTM, used for every row):
  - the BLSTM with full context, and latency-controlled for several (chunk, right context) with `decode
    --chunk-s --right-context-s` (exactly what a stream with those windows computes);
  - each row with per-speaker CMVN (offline; the speaker's statistics from the store) and with online CMVN
    (`--online-cmvn`: what a stream does, each utterance from the training statistics);
  - and streams every dev recording through `Recognizer.stream` (160 ms blocks, no endpointing) for the LSTMP and
    the latency-controlled BLSTM, counting utterances whose text differs from the `--online-cmvn` decode.
Writes OUT/streaming_MODEL.json per model and OUT/streaming.md (the table of all evaluated so far); `--models`
picks some of them, `--reuse-models` keeps models already trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_common import LM_WEIGHTS, WORD_BONUSES, Recipe  # noqa: E402

LEVERS = ["--cmvn", "speaker", "--vtlp", "0.1"]
MODELS = {
    "blstm": [],
    "lc_blstm": ["--chunk-frames", "13", "--right-context", "13"],
    "lstmp": ["--architecture", "lstm", "--projection-size", "128"],
    "lstm": ["--architecture", "lstm"],
}
# (chunk s, right context s) for the whole-utterance BLSTM; None: full context
BLSTM_WINDOWS = (None, (0.39, 0.0), (0.39, 0.21), (0.39, 0.39), (0.39, 0.51), (0.81, 0.51))


def prepare_data(recipe: Recipe, corpus: Path, out: Path) -> None:
    if (out / "dev.store").exists():
        return
    recipe.run("import", "kaldi", corpus, "-o", out / "all.jsonl")
    recipe.run("split", out / "all.jsonl", "--train-output", out / "train.jsonl", "--dev-output", out / "dev.jsonl",
               "--dev-speakers", 15, "--seed", 0)  # fmt: skip
    for name in ("train", "dev"):
        recipe.run("prepare", out / f"{name}.jsonl", "-o", out / f"{name}.store", "--overwrite", "--no-progress")


def decode_row(recipe: Recipe, out: Path, model: Path, name: str, options: list, search: list) -> dict:
    row = {}
    for kind, extra in (("greedy", []), ("beam_lm", search)):
        hypotheses = out / "hyp" / f"{name}_{kind}.jsonl"
        hypotheses.parent.mkdir(exist_ok=True)
        recipe.run("decode", model, out / "dev.store", "-o", hypotheses, *options, *extra, "--no-progress", quiet=True)
        row[kind] = recipe.score(out / "dev.store", hypotheses, f"{name}_{kind}")
    return row


def stream_check(model: Path, manifest: Path, offline: Path, search: dict) -> dict:
    """Every dev recording through a Stream in 160 ms blocks: how many texts differ from the offline decode."""
    import asr_cli
    from asr_cli.audio import load_audio
    from asr_cli.manifest import load_manifest

    recognizer = asr_cli.load_model(model)
    expected = {record["id"]: record["text"] for record in map(json.loads, offline.read_text().splitlines())}
    differing = 0
    utterances = load_manifest(manifest)
    for utterance in utterances:
        samples, _ = load_audio(utterance.audio, recognizer.sample_rate_hz)
        stream = recognizer.stream(endpointing=False, **search)
        segments = [segment for start in range(0, len(samples), 2560)
                    for segment in stream.accept(samples[start : start + 2560]).finished]  # fmt: skip
        text = " ".join(segment.text for segment in segments + stream.finish().finished)
        differing += text != expected[utterance.id]
    return {"utterances": len(utterances), "texts_differing_from_offline": differing}


def tuned_search(recipe: Recipe, out: Path) -> list:
    """Beam 16 + the training text's word 3-gram, weight and bonus tuned on dev for the whole-utterance BLSTM
    (once: kept in OUT/search.json)."""
    saved = out / "search.json"
    if not saved.exists():
        lm = out / "words.3gram.arpa"
        recipe.run("lm", out / "train.jsonl", "-o", lm, "--order", 3)
        weight, bonus = recipe.tune_lm_weights(out / "blstm" / "model.pt", out / "dev.store", lm, LM_WEIGHTS,
                                               WORD_BONUSES, 16)  # fmt: skip
        saved.write_text(json.dumps({"lm": str(lm), "lm_weight": weight, "word_bonus": bonus}) + "\n")
    tuned = json.loads(saved.read_text())
    return [
        "--beam-size",
        16,
        "--lm",
        tuned["lm"],
        "--lm-weight",
        tuned["lm_weight"],
        "--word-bonus",
        tuned["word_bonus"],
    ]


def evaluate(recipe: Recipe, out: Path, name: str, search: list) -> dict:
    """The model's dev rows (each window for the whole-utterance BLSTM; speaker and online CMVN) and, for a
    streaming model, the stream-equals-decode check."""
    model = out / name / "model.pt"
    windows = BLSTM_WINDOWS if name == "blstm" else (None,)
    rows = {}
    for window in windows:
        options = [] if window is None else ["--chunk-s", window[0], "--right-context-s", window[1]]
        label = ("full" if window is None else f"{window[0]}+{window[1]}") if name == "blstm" else "trained"
        for cmvn, extra in (("speaker", []), ("online", ["--online-cmvn"])):
            rows[f"{label} {cmvn}"] = decode_row(recipe, out, model, f"{name}_{label}_{cmvn}", options + extra, search)
    result = {"rows": rows}
    if name != "blstm":
        offline = out / "hyp" / f"{name}_audio.jsonl"
        recipe.run(
            "decode",
            model,
            out / "dev.jsonl",
            "-o",
            offline,
            "--online-cmvn",
            "--vad",
            "none",
            "--no-progress",
            quiet=True,
        )  # fmt: skip  (a stream applies no --vad)
        result["stream_check"] = stream_check(model, out / "dev.jsonl", offline, {"beam_size": 1})
    return result


def table(out: Path) -> str:
    lines = ["| model | windows (chunk + right context, s) | CMVN | greedy CER | greedy WER | beam+LM WER |",
             "|---|---|---|---:|---:|---:|"]  # fmt: skip
    for name in MODELS:
        path = out / f"streaming_{name}.json"
        if not path.exists():
            continue
        for key, row in json.loads(path.read_text())["rows"].items():
            window, cmvn = key.split()
            window = {"trained": "0.39+0.39 (trained so)" if name == "lc_blstm" else "none needed"}.get(window, window)
            lines.append(f"| {name} | {window} | {cmvn} | {100 * row['greedy']['cer']:.1f}% | "
                         f"{100 * row['greedy']['wer']:.1f}% | {100 * row['beam_lm']['wer']:.1f}% |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("exp/streaming"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--models", default=",".join(MODELS), help="which of blstm,lc_blstm,lstmp (default: all)")
    parser.add_argument("--reuse-models", action="store_true")
    args = parser.parse_args()
    out = args.output
    recipe = Recipe(out)
    prepare_data(recipe, args.corpus, out)
    names = args.models.split(",")
    for name in names:
        if not (args.reuse_models and (out / name / "model.pt").exists()):
            recipe.run("train", "--train", out / "train.store", "--valid", out / "dev.store", "-o", out / name,
                       "--epochs", args.epochs, *LEVERS, *MODELS[name], "--no-progress", "--threads", 1)  # fmt: skip
    search = tuned_search(recipe, out)
    for name in names:
        recipe.write_results({"search": [str(option) for option in search], **evaluate(recipe, out, name, search)},
                             f"streaming_{name}")  # fmt: skip
    (out / "streaming.md").write_text(table(out))
    print(table(out))


if __name__ == "__main__":
    main()
