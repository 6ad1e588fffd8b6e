#!/usr/bin/env python3
"""Benchmark decoding; prints one JSON line.

All decoders get the same log-probabilities: one trained model's outputs on
held-out speech. Ours: greedy, and prefix beam search at beams 16 and 64 with
and without a word 3-gram LM. References, in their own environment (see
bench_decode_reference.py): pyctcdecode with the same ARPA LM and weights,
and flashlight-text's lexicon-free decoder (its wheel has no KenLM, so it is
compared without an LM). Utterances/s count the search only (the model's
forward pass is done once, beforehand). Targets: >= 5x pyctcdecode's
utterances/s at equal beam with equal or better WER; within 2x of flashlight.

With --lexicon (a word list), also our lexicon-constrained search and
flashlight-text's LexiconDecoder (a Python LM class over the same ARPA file,
since the wheel has no KenLM: its LM calls cost Python time, so its speed is
a lower bound), each with its own best weights from the grid.

LM weight and word bonus: each LM decoder gets its own best pair from the
same grid at beam 16 (the two searches score partial words differently, so
one decoder's best is not the other's), then runs at beams 16 and 64 with it.

    python scripts/bench_decode.py MODEL STORE LM.arpa --reference-python OTHER_VENV/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def model_log_probs(model_path: Path, store_path: Path) -> tuple[list[np.ndarray], list[str], list[str], list[str]]:
    """(per-utterance (T, V) log-probabilities, ids, reference texts, characters), the frames read and normalised
    by the inference core exactly as `decode` reads them."""
    from asr_cli.inference import collect_sources, frame_reader, input_normalizer
    from asr_cli.model import load_model_file

    loaded = load_model_file(model_path)
    sources, store = collect_sources([store_path], loaded.feature_config)
    read = frame_reader(store, loaded)
    normalize = input_normalizer(loaded, sources, store, read)
    outputs, ids, references = [], [], []
    with torch.no_grad():
        for source in sources:
            frames = read(source)
            if normalize is not None:
                frames = normalize(frames, source.speaker)
            features = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[None]
            log_probs, lengths = loaded.model(features, torch.tensor([features.shape[1]]))
            outputs.append(log_probs[0, : int(lengths[0])].numpy())
            ids.append(source.id)
            references.append(store.entry(source.store_position).text)
    return outputs, ids, references, list(loaded.vocabulary.characters)


def word_error_rate(ids, references, hypotheses) -> float:
    from asr_cli.config import ScoreConfig
    from asr_cli.score import Transcript, score

    report = score(
        [Transcript(i, r) for i, r in zip(ids, references)],
        [Transcript(i, h) for i, h in zip(ids, hypotheses)],
        ScoreConfig(bootstrap_draws=0, compute_cer=False),
    )
    return report.overall["wer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("store", type=Path, help="held-out speech (feature store with text)")
    parser.add_argument("lm", type=Path, help="word n-gram ARPA built on training text only")
    parser.add_argument("--lm-weights", default="0.5,0.8,1.2,1.6", help="grid of LM weights")
    parser.add_argument("--word-bonuses", default="0,1,2,3", help="grid of word bonuses")
    parser.add_argument(
        "--reference-python", help="python of an environment with pyctcdecode, kenlm and flashlight-text"
    )
    parser.add_argument("--lexicon", type=Path, help="word list for the lexicon-constrained rows")
    args = parser.parse_args()

    from asr_cli.config import SearchConfig
    from asr_cli.lexicon import read_lexicon
    from asr_cli.lm import read_arpa
    from asr_cli.lm_tables import build_lm_tables, restrict_to_lexicon
    from asr_cli.search import beam_search, greedy_hypotheses
    from asr_cli.text import Vocabulary

    log_probs, ids, references, characters = model_log_probs(args.model, args.store)
    vocabulary = Vocabulary(tuple(characters))
    tables = build_lm_tables(read_arpa(args.lm), vocabulary, "word")
    beam_search(log_probs[0], vocabulary, SearchConfig(beam_size=4), tables)  # compile outside the timing
    grid = [(float(w), float(b)) for w in args.lm_weights.split(",") for b in args.word_bonuses.split(",")]

    def ours(beam: int, weight: float = 0.0, bonus: float = 0.0, lm=None) -> tuple[float, list[str]]:
        options = SearchConfig(beam_size=beam, lm_weight=weight, word_bonus=bonus)
        started = time.perf_counter()
        best = [beam_search(lp, vocabulary, options, lm)[0] for lp in log_probs]
        return time.perf_counter() - started, [vocabulary.decode(h.label_ids) for h in best]

    def best_pair(hypotheses_of: dict) -> tuple[float, float]:
        return min(hypotheses_of, key=lambda pair: word_error_rate(ids, references, hypotheses_of[pair]))

    runs: dict[str, tuple[float, list[str]]] = {}
    started = time.perf_counter()
    greedy = [greedy_hypotheses(torch.from_numpy(lp)[None], torch.tensor([len(lp)]))[0] for lp in log_probs]
    runs["greedy"] = (time.perf_counter() - started, [vocabulary.decode(h.label_ids) for h in greedy])
    our_weights = best_pair({pair: ours(16, *pair, tables)[1] for pair in grid})
    for beam in (16, 64):
        runs[f"ours_beam{beam}_nolm"] = ours(beam)
        runs[f"ours_beam{beam}_lm"] = ours(beam, *our_weights, tables)
    summary = {
        "benchmark": "decode",
        "utterances": len(log_probs),
        "lm": args.lm.name,
        "ours_lm_weight_bonus": list(our_weights),
    }
    if args.lexicon:
        lexicon_tables = restrict_to_lexicon(tables, read_lexicon(args.lexicon), vocabulary, SearchConfig().oov_penalty)
        lexicon_weights = best_pair({pair: ours(16, *pair, lexicon_tables)[1] for pair in grid})
        summary["ours_lexicon_lm_weight_bonus"] = list(lexicon_weights)
        for beam in (16, 64):
            runs[f"ours_lexicon_beam{beam}_lm"] = ours(beam, *lexicon_weights, lexicon_tables)
    if args.reference_python:
        with tempfile.TemporaryDirectory() as work_dir:
            saved = Path(work_dir) / "log_probs.npz"
            np.savez(
                saved,
                count=len(log_probs),
                characters=np.array(characters),
                **{f"utterance_{i}": lp for i, lp in enumerate(log_probs)},
            )
            tuning = run_reference(args.reference_python, saved, args.lm, ["--grid", json.dumps(grid)])
            their_weights = best_pair({tuple(pair): hyps for pair, hyps in tuning["grid"]})
            summary["pyctcdecode_lm_weight_bonus"] = list(their_weights)
            timed = run_reference(
                args.reference_python,
                saved,
                args.lm,
                ["--lm-weight", str(their_weights[0]), "--word-bonus", str(their_weights[1])],
            )
            if args.lexicon:
                lexicon_option = ["--lexicon", str(args.lexicon)]
                tuning = run_reference(
                    args.reference_python, saved, args.lm, ["--grid", json.dumps(grid), *lexicon_option]
                )
                flashlight_weights = best_pair({tuple(pair): hyps for pair, hyps in tuning["grid"]})
                summary["flashlight_lexicon_lm_weight_bonus"] = list(flashlight_weights)
                timed.update(
                    run_reference(
                        args.reference_python,
                        saved,
                        args.lm,
                        [
                            "--lm-weight",
                            str(flashlight_weights[0]),
                            "--word-bonus",
                            str(flashlight_weights[1]),
                            *lexicon_option,
                        ],
                    )
                )
        for name, result in timed.items():
            runs[name] = (result["seconds"], result["hypotheses"])
    for name, (seconds, hypotheses) in runs.items():
        summary[name] = {
            "utt_per_s": round(len(log_probs) / seconds, 1),
            "wer": round(word_error_rate(ids, references, hypotheses), 4),
        }
    for beam in (16, 64):
        if f"pyctcdecode_beam{beam}_lm" in summary:
            summary[f"speedup_vs_pyctcdecode_beam{beam}"] = round(
                summary[f"ours_beam{beam}_lm"]["utt_per_s"] / summary[f"pyctcdecode_beam{beam}_lm"]["utt_per_s"], 2
            )
            summary[f"speed_vs_flashlight_beam{beam}"] = round(
                summary[f"ours_beam{beam}_nolm"]["utt_per_s"] / summary[f"flashlight_beam{beam}_nolm"]["utt_per_s"], 2
            )
        if f"flashlight_lexicon_beam{beam}_lm" in summary:
            summary[f"lexicon_speed_vs_flashlight_beam{beam}"] = round(
                summary[f"ours_lexicon_beam{beam}_lm"]["utt_per_s"]
                / summary[f"flashlight_lexicon_beam{beam}_lm"]["utt_per_s"],
                2,
            )
    print(json.dumps(summary))


def run_reference(python: str, saved: Path, lm: Path, extra: list[str]) -> dict:
    """Run bench_decode_reference.py in its own environment; its last output line is JSON."""
    output = subprocess.run(
        [python, str(REPO_ROOT / "scripts" / "bench_decode_reference.py"), str(saved), "--lm", str(lm), *extra],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.splitlines()[-1])


if __name__ == "__main__":
    main()
