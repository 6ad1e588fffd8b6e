#!/usr/bin/env python3
"""Print the demo's results table from `asr-cli score --json` files: name=path pairs.

python scripts/demo_table.py greedy=demo/score_greedy.json beam+lm=demo/score_beam_lm.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(pairs: list[str]) -> None:
    print(f"{'decoding':<12} {'WER':>8} {'CER':>8} {'SER':>8}  utterances")
    for pair in pairs:
        name, path = pair.split("=", 1)
        report = json.loads(Path(path).read_text())
        print(
            f"{name:<12} {100 * report['wer']:>7.2f}% {100 * report['cer']:>7.2f}% {100 * report['ser']:>7.2f}%  "
            f"{report['num_utterances']}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
