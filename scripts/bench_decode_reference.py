#!/usr/bin/env python3
"""The reference decoders of bench_decode.py, run in their own virtual environment.

pyctcdecode needs numpy<2 and kenlm (compiled), so it cannot share asr-cli's
environment; flashlight-text's lexicon-free decoder comes as a wheel. Reads
the log-probabilities bench_decode.py saved, decodes them at each beam size,
and prints one JSON object: per decoder, seconds and hypotheses; with
--grid, pyctcdecode's hypotheses at beam 16 for each (weight, bonus) instead.

    OTHER_VENV/bin/python scripts/bench_decode_reference.py LOGPROBS.npz --lm words.arpa --lm-weight 0.5 --word-bonus 1.0
    OTHER_VENV/bin/python scripts/bench_decode_reference.py LOGPROBS.npz --lm words.arpa --grid '[[0.5, 1.0], [0.8, 2.0]]' 
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import groupby

import numpy as np


def run_pyctcdecode(log_probs, labels, lm_path, alpha, beta, beam):
    from pyctcdecode import build_ctcdecoder

    decoder = build_ctcdecoder(labels, kenlm_model_path=lm_path, alpha=alpha, beta=beta)
    decoder.decode(log_probs[0], beam_width=beam)  # load and warm up outside the timing
    started = time.perf_counter()
    hypotheses = [decoder.decode(matrix, beam_width=beam) for matrix in log_probs]
    return time.perf_counter() - started, hypotheses


def run_flashlight(log_probs, labels, beam):
    from flashlight.lib.text.decoder import CriterionType, LexiconFreeDecoder, LexiconFreeDecoderOptions, ZeroLM

    options = LexiconFreeDecoderOptions(beam_size=beam, beam_size_token=len(labels), beam_threshold=25.0,
                                        lm_weight=0.0, sil_score=0.0, log_add=True, criterion_type=CriterionType.CTC)
    decoder = LexiconFreeDecoder(options, ZeroLM(), labels.index(" "), 0, [])
    started = time.perf_counter()
    hypotheses = []
    for matrix in log_probs:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        tokens = decoder.decode(matrix.ctypes.data, matrix.shape[0], matrix.shape[1])[0].tokens
        collapsed = [token for token, _ in groupby(tokens) if token > 0]
        hypotheses.append("".join(labels[token] for token in collapsed))
    return time.perf_counter() - started, hypotheses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log_probs", help="npz written by bench_decode.py")
    parser.add_argument("--lm", required=True)
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-bonus", type=float, default=1.0)
    parser.add_argument("--beams", default="16,64")
    parser.add_argument("--grid", help="JSON list of [weight, bonus] pairs to decode at beam 16")
    args = parser.parse_args()
    saved = np.load(args.log_probs, allow_pickle=False)
    labels = [""] + list(saved["characters"])
    log_probs = [saved[f"utterance_{i}"] for i in range(int(saved["count"]))]
    if args.grid:
        grid = [(pair, run_pyctcdecode(log_probs, labels, args.lm, *pair, 16)[1]) for pair in json.loads(args.grid)]
        print(json.dumps({"grid": grid}))
        return
    results = {}
    for beam in (int(b) for b in args.beams.split(",")):
        results[f"pyctcdecode_beam{beam}_lm"] = run_pyctcdecode(log_probs, labels, args.lm, args.lm_weight, args.word_bonus, beam)
        results[f"flashlight_beam{beam}_nolm"] = run_flashlight(log_probs, labels, beam)
    print(json.dumps({name: {"seconds": seconds, "hypotheses": hyps} for name, (seconds, hyps) in results.items()}))


if __name__ == "__main__":
    main()
