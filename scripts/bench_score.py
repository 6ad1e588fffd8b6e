#!/usr/bin/env python3
"""Benchmark `asr-cli score` on 100,000 utterance pairs; prints one JSON line.

References are sentences of speechocean762-train (1,000 speakers assigned
round-robin); hypotheses are those sentences with ~10% of words substituted,
deleted or inserted, seeded. The whole command is timed (reading, normalising,
WER and CER, 1,000 bootstrap draws, per-speaker table, report and JSON),
against a bare `jiwer.wer` over the same pairs in the same run.
Target: under 30 s.

    python scripts/bench_score.py [--pairs 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_FILE = REPO_ROOT.parent / "shared" / "data" / "speechocean762-train" / "text"
NUM_SPEAKERS = 1000
TARGET_S = 30.0


def make_pairs(num_pairs: int, seed: int = 0) -> tuple[list[str], list[str]]:
    sentences = [line.split(None, 1)[1].strip() for line in TEXT_FILE.read_text().splitlines() if line.strip()]
    vocabulary = sorted({word for sentence in sentences for word in sentence.split()})
    rng = random.Random(seed)
    references, hypotheses = [], []
    for _ in range(num_pairs):
        words = rng.choice(sentences).split()
        noisy = []
        for word in words:
            roll = rng.random()
            if roll < 0.05:
                noisy.append(rng.choice(vocabulary))
            elif roll < 0.08:
                continue
            else:
                noisy.append(word)
            if rng.random() < 0.02:
                noisy.append(rng.choice(vocabulary))
        references.append(" ".join(words))
        hypotheses.append(" ".join(noisy).lower())
    return references, hypotheses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000)
    args = parser.parse_args()
    references, hypotheses = make_pairs(args.pairs)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        ids = [f"utt{index:07d}" for index in range(args.pairs)]
        (work / "text").write_text("".join(f"{i} {r}\n" for i, r in zip(ids, references)))
        (work / "utt2spk").write_text("".join(f"{i} spk{n % NUM_SPEAKERS:04d}\n" for n, i in enumerate(ids)))
        (work / "hyp.jsonl").write_text(
            "".join(json.dumps({"id": i, "text": h}) + "\n" for i, h in zip(ids, hypotheses))
        )
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from asr_cli.cli import main; main()",
                "score",
                str(work / "text"),
                str(work / "hyp.jsonl"),
                "--json",
                str(work / "score.json"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        score_s = time.perf_counter() - started
        report = json.loads((work / "score.json").read_text())

    import jiwer

    started = time.perf_counter()
    bare_wer = jiwer.wer([r.lower() for r in references], hypotheses)
    jiwer_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "benchmark": "score",
                "pairs": args.pairs,
                "speakers": NUM_SPEAKERS,
                "score_s": round(score_s, 2),
                "wer": round(report["wer"], 4),
                "cer": round(report["cer"], 4),
                "reference": "bare jiwer.wer over the same pairs, in-process",
                "reference_s": round(jiwer_s, 2),
                "reference_wer": round(bare_wer, 4),
                "ratio_vs_reference": round(score_s / jiwer_s, 2),
                "meets_target": score_s < TARGET_S,
            }
        )
    )


if __name__ == "__main__":
    main()
