#!/usr/bin/env python3
"""The reference decoders of bench_decode.py, run in their own virtual environment.

pyctcdecode needs numpy<2 and kenlm (compiled), so it cannot share asr-cli's
environment; flashlight-text's decoders come as a wheel without KenLM, so
its lexicon decoder (with --lexicon) gets the ARPA model through a Python LM
class over asr-cli's own ARPA reader (imported from this checkout; it needs
neither torch nor numba). Reads the log-probabilities bench_decode.py saved,
decodes them at each beam size, and prints one JSON object: per decoder,
seconds and hypotheses; with --grid, the hypotheses at beam 16 for each
(weight, bonus) instead (pyctcdecode's, or with --lexicon flashlight's
lexicon decoder's).

    OTHER_VENV/bin/python scripts/bench_decode_reference.py LOGPROBS.npz --lm words.arpa --lm-weight 0.5 --word-bonus 1.0
    OTHER_VENV/bin/python scripts/bench_decode_reference.py LOGPROBS.npz --lm words.arpa --grid '[[0.5, 1.0], [0.8, 2.0]]'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import groupby
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_pyctcdecode(log_probs, labels, lm_path, alpha, beta, beam):
    from pyctcdecode import build_ctcdecoder

    decoder = build_ctcdecoder(labels, kenlm_model_path=lm_path, alpha=alpha, beta=beta)
    decoder.decode(log_probs[0], beam_width=beam)  # load and warm up outside the timing
    started = time.perf_counter()
    hypotheses = [decoder.decode(matrix, beam_width=beam) for matrix in log_probs]
    return time.perf_counter() - started, hypotheses


def run_flashlight(log_probs, labels, beam):
    from flashlight.lib.text.decoder import CriterionType, LexiconFreeDecoder, LexiconFreeDecoderOptions, ZeroLM

    options = LexiconFreeDecoderOptions(
        beam_size=beam,
        beam_size_token=len(labels),
        beam_threshold=25.0,
        lm_weight=0.0,
        sil_score=0.0,
        log_add=True,
        criterion_type=CriterionType.CTC,
    )
    decoder = LexiconFreeDecoder(options, ZeroLM(), labels.index(" "), 0, [])
    started = time.perf_counter()
    hypotheses = []
    for matrix in log_probs:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        tokens = decoder.decode(matrix.ctypes.data, matrix.shape[0], matrix.shape[1])[0].tokens
        collapsed = [token for token, _ in groupby(tokens) if token > 0]
        hypotheses.append("".join(labels[token] for token in collapsed))
    return time.perf_counter() - started, hypotheses


def run_flashlight_lexicon(log_probs, labels, lm_path, lexicon_path, alpha, beta, beam):
    """flashlight-text's LexiconDecoder: a trie of the lexicon's spellings (each ending in the space), smeared
    with the best unigram below each node, and the word LM at each word end, as in wav2letter recipes."""
    from flashlight.lib.text.decoder import CriterionType, LexiconDecoder, LexiconDecoderOptions, SmearingMode, Trie

    from asr_cli.lm import read_arpa

    arpa = read_arpa(lm_path)
    words = [line.split()[0] for line in Path(lexicon_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    words = [word for word in words if all(character in labels for character in word)]
    language_model = arpa_language_model(arpa, words)
    space = labels.index(" ")
    trie = Trie(len(labels), space)
    start = language_model.start(False)
    for index, word in enumerate(words):
        _, unigram = language_model.score(start, index)
        trie.insert([labels.index(c) for c in word] + [space], index, unigram)
    trie.smear(SmearingMode.MAX)
    options = LexiconDecoderOptions(
        beam_size=beam,
        beam_size_token=len(labels),
        beam_threshold=25.0,
        lm_weight=alpha,
        word_score=beta,
        unk_score=float("-inf"),
        sil_score=0.0,
        log_add=True,
        criterion_type=CriterionType.CTC,
    )
    decoder = LexiconDecoder(options, trie, language_model, space, 0, -1, [], False)
    started = time.perf_counter()
    hypotheses = []
    for matrix in log_probs:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        best = decoder.decode(matrix.ctypes.data, matrix.shape[0], matrix.shape[1])[0]
        hypotheses.append(" ".join(words[index] for index in best.words if index >= 0))
    return time.perf_counter() - started, hypotheses


def arpa_language_model(arpa, words):
    """An ARPA n-gram model as a flashlight LM (natural-log scores); each state remembers its word history."""
    from flashlight.lib.text.decoder import LM, LMState

    ln_10 = 2.302585092994046
    context_size = max(arpa.order - 1, 1)

    class ArpaLM(LM):
        def __init__(self):
            LM.__init__(self)
            self.histories = {}

        def _child(self, parent, index, history):
            state = parent.child(index)
            self.histories[state] = history
            return state

        def start(self, start_with_nothing):
            state = LMState()
            self.histories[state] = ("<s>",)
            return state

        def score(self, state, index):
            history = self.histories[state]
            word = words[index]
            return (
                self._child(state, index, (history + (word,))[-context_size:]),
                arpa.log10_prob(word, history) * ln_10,
            )

        def finish(self, state):
            history = self.histories[state]
            return self._child(state, len(words), history), arpa.log10_prob("</s>", history) * ln_10

    return ArpaLM()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log_probs", help="npz written by bench_decode.py")
    parser.add_argument("--lm", required=True)
    parser.add_argument("--lm-weight", type=float, default=0.5)
    parser.add_argument("--word-bonus", type=float, default=1.0)
    parser.add_argument("--beams", default="16,64")
    parser.add_argument("--grid", help="JSON list of [weight, bonus] pairs to decode at beam 16")
    parser.add_argument("--lexicon", help="word list: run flashlight's LexiconDecoder (with --lm) instead")
    args = parser.parse_args()
    saved = np.load(args.log_probs, allow_pickle=False)
    labels = [""] + list(saved["characters"])
    log_probs = [saved[f"utterance_{i}"] for i in range(int(saved["count"]))]
    if args.lexicon:

        def decode(alpha, beta, beam):
            return run_flashlight_lexicon(log_probs, labels, args.lm, args.lexicon, alpha, beta, beam)
    else:

        def decode(alpha, beta, beam):
            return run_pyctcdecode(log_probs, labels, args.lm, alpha, beta, beam)

    if args.grid:
        grid = [(pair, decode(*pair, 16)[1]) for pair in json.loads(args.grid)]
        print(json.dumps({"grid": grid}))
        return
    results = {}
    if args.lexicon:
        for beam in (int(b) for b in args.beams.split(",")):
            results[f"flashlight_lexicon_beam{beam}_lm"] = decode(args.lm_weight, args.word_bonus, beam)
        print(json.dumps({name: {"seconds": seconds, "hypotheses": hyps} for name, (seconds, hyps) in results.items()}))
        return
    for beam in (int(b) for b in args.beams.split(",")):
        results[f"pyctcdecode_beam{beam}_lm"] = run_pyctcdecode(
            log_probs, labels, args.lm, args.lm_weight, args.word_bonus, beam
        )
        results[f"flashlight_beam{beam}_nolm"] = run_flashlight(log_probs, labels, beam)
    print(json.dumps({name: {"seconds": seconds, "hypotheses": hyps} for name, (seconds, hyps) in results.items()}))


if __name__ == "__main__":
    main()
