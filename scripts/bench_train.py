#!/usr/bin/env python3
"""Benchmark the training step; prints one JSON line.

Runs one epoch of the real `train` (DataLoader over the memory-mapped store,
CMVN, SpecAugment, model, CTC loss, optimiser) on utterances of
speechocean762-train, and, on the same batch shapes in the same run, a bare
`nn.LSTM` forward + backward loop (random inputs, no data, no loss, no
optimiser): the ceiling the real step is measured against. Also reports the
padding waste of the batches, bf16 autocast against fp32, and the peephole
LSTM layer against torch's LSTM. Targets: real/bare >= 0.9, padding <= 5%,
peephole/nn.LSTM >= 0.6; and a unidirectional LSTMP (projection of half the
cells) against the plain LSTM of the same cells, >= 0.7 (`--rows lstmp` runs
only those two).

    python scripts/bench_train.py [--utterances 400] [--layers 4] [--hidden-size 320] [--batch-frames 12000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "data" / "speechocean762-train"


def train_frames_per_second(train_store: Path, valid_store: Path, work: Path, name: str, model_config, config) -> dict:
    from asr_cli.train import train

    with contextlib.redirect_stderr(io.StringIO()):
        train([train_store], valid_store, work / name, model_config, config, show_progress=False)
    return json.loads((work / name / "metrics.jsonl").read_text().splitlines()[-1])


def bare_lstm_frames_per_second(batch_shapes: list[tuple[int, int]], model_config, input_dim: int) -> float:
    """nn.LSTM forward + backward over batches of (batch size, frames) input frames, stacked as the model does."""
    lstm = torch.nn.LSTM(
        input_dim * model_config.stack_frames,
        model_config.hidden_size,
        num_layers=model_config.num_layers,
        bidirectional=model_config.directions == 2,
        batch_first=True,
    )
    frames = 0
    started = time.perf_counter()
    for batch_size, num_frames in batch_shapes:
        inputs = torch.randn(
            batch_size, math.ceil(num_frames / model_config.subsample), input_dim * model_config.stack_frames
        )
        outputs, _ = lstm(inputs)
        outputs.sum().backward()
        frames += batch_size * num_frames
    return frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden-size", type=int, default=320)
    parser.add_argument("--batch-frames", type=int, default=12000)
    parser.add_argument("--num-workers", type=int, default=1, help="DataLoader workers of the real step")
    parser.add_argument("--rows", default="all", help="all, or lstmp (the LSTMP / LSTM rows only)")
    args = parser.parse_args()

    from asr_cli.config import ModelConfig, PrepareConfig, TrainConfig
    from asr_cli.data import make_batches
    from asr_cli.importers import import_kaldi
    from asr_cli.manifest import write_manifest
    from asr_cli.prepare import prepare
    from asr_cli.store import FeatureStore

    utterances = import_kaldi(CORPUS)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        write_manifest(work / "train.jsonl", utterances[: args.utterances])
        write_manifest(work / "valid.jsonl", utterances[-8:])
        for name in ("train", "valid"):
            prepare(work / f"{name}.jsonl", work / name, PrepareConfig(show_progress=False))
        model_config = ModelConfig(num_layers=args.layers, hidden_size=args.hidden_size)
        config = TrainConfig(epochs=1, batch_frames=args.batch_frames, num_workers=args.num_workers)
        store = FeatureStore(work / "train")
        lengths = [entry.num_frames for entry in store]
        batches = make_batches(lengths, args.batch_frames, config.seed, 0)
        shapes = [(len(batch), max(lengths[i] for i in batch)) for batch in batches]

        lstm_config = ModelConfig(architecture="lstm", num_layers=args.layers, hidden_size=args.hidden_size)
        lstm = train_frames_per_second(work / "train", work / "valid", work, "lstm", lstm_config, config)
        lstmp_config = dataclasses.replace(lstm_config, projection_size=args.hidden_size // 2)
        lstmp = train_frames_per_second(work / "train", work / "valid", work, "lstmp", lstmp_config, config)
        projection_rows = {
            "lstm_frames_per_s": lstm["frames_per_s"],
            "lstmp_frames_per_s": lstmp["frames_per_s"],
            "lstmp_over_lstm": round(lstmp["frames_per_s"] / lstm["frames_per_s"], 3),
        }
        if args.rows == "lstmp":
            print(
                json.dumps(
                    {
                        "benchmark": "train",
                        "model": f"{args.layers}x{args.hidden_size} lstm, projection {args.hidden_size // 2}",
                        "threads": torch.get_num_threads(),
                        **projection_rows,
                    }
                )
            )
            return
        fp32 = train_frames_per_second(work / "train", work / "valid", work, "fp32", model_config, config)
        bare = bare_lstm_frames_per_second(shapes, model_config, store.dim)
        bf16 = train_frames_per_second(
            work / "train",
            work / "valid",
            work,
            "bf16",
            model_config,
            TrainConfig(epochs=1, batch_frames=args.batch_frames, precision="bf16", num_workers=args.num_workers),
        )
        peephole_config = ModelConfig(num_layers=args.layers, hidden_size=args.hidden_size, peepholes=True)
        peephole = train_frames_per_second(work / "train", work / "valid", work, "peephole", peephole_config, config)

    print(
        json.dumps(
            {
                "benchmark": "train",
                "model": f"{args.layers}x{args.hidden_size} blstm, stack/subsample 3/3",
                "utterances": args.utterances,
                "batches": len(batches),
                "threads": torch.get_num_threads(),
                "num_workers": args.num_workers,
                "train_frames_per_s": fp32["frames_per_s"],
                "bare_lstm_frames_per_s": round(bare),
                "ratio_vs_bare_lstm": round(fp32["frames_per_s"] / bare, 3),
                "padding_waste": fp32["padding_waste"],
                "bf16_frames_per_s": bf16["frames_per_s"],
                "bf16_over_fp32": round(bf16["frames_per_s"] / fp32["frames_per_s"], 3),
                "peephole_frames_per_s": peephole["frames_per_s"],
                "peephole_over_nn_lstm": round(peephole["frames_per_s"] / fp32["frames_per_s"], 3),
                **projection_rows,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
