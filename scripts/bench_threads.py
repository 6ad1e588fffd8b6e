#!/usr/bin/env python3
"""Benchmark two jobs sharing one machine; prints one JSON line.

For each threading setting, runs through the command line: a training epoch
alone, decoding alone, then the two at once (decoding over and over while
the training runs). Reports training frames/s and decoding utterances/s,
each job's slowdown when sharing (alone / shared; about 2x is what two jobs
on the same cores cannot avoid), and each setting's throughput alone
against "fixed". Settings: "fixed" (--threads = physical cores throughout,
libgomp's default waiting: what asr-cli did before), "adaptive" (asr-cli's
default: threads given back while other processes use cores), "passive"
(fixed, with OMP_WAIT_POLICY=PASSIVE: idle threads sleep at once),
"spin10k" (fixed, GOMP_SPINCOUNT=10000: idle threads spin briefly), and
"one_thread" (--threads 1).

Run it with nothing else on the machine:

    python scripts/bench_threads.py [--train-utterances 300] [--decode-utterances 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "data" / "speechocean762-train"
MODEL_OPTIONS = ["--layers", "3", "--hidden-size", "256", "--num-workers", "1", "--no-progress"]


def cli(*args, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "asr_cli", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"asr-cli failed ({process.returncode}):\n{stderr}")


def prepare_data(work: Path, train_utterances: int, decode_utterances: int, env: dict) -> None:
    finish(cli("import", "kaldi", CORPUS, "-o", work / "all.jsonl", env=env))
    lines = (work / "all.jsonl").read_text(encoding="utf-8").splitlines()
    (work / "train.jsonl").write_text("\n".join(lines[:train_utterances]) + "\n", encoding="utf-8")
    (work / "decode.jsonl").write_text("\n".join(lines[-decode_utterances:]) + "\n", encoding="utf-8")
    for name in ("train", "decode"):
        finish(cli("prepare", work / f"{name}.jsonl", "-o", work / f"{name}.store", "--no-progress", env=env))


def train_job(work: Path, name: str, env: dict, threads: list[str]) -> subprocess.Popen:
    return cli(
        "train",
        "--train",
        work / "train.store",
        "--valid",
        work / "decode.store",
        "-o",
        work / name,
        "--epochs",
        "1",
        *MODEL_OPTIONS,
        *threads,
        env=env,
    )


def train_frames_per_s(work: Path, name: str) -> float:
    return json.loads((work / name / "metrics.jsonl").read_text().splitlines()[-1])["frames_per_s"]


def decode_once(work: Path, env: dict, threads: list[str]) -> None:
    finish(
        cli(
            "decode",
            work / "model" / "model.pt",
            work / "decode.store",
            "-o",
            work / "hyp.jsonl",
            "--no-progress",
            *threads,
            env=env,
        )
    )


SETTINGS = {  # environment, and --threads for both jobs (None: asr-cli's adaptive default)
    "fixed": ({}, None),  # every core, throughout: what asr-cli did before the adaptive default
    "adaptive": ({}, "adaptive"),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "spin10k": ({"GOMP_SPINCOUNT": "10000"}, None),
    "one_thread": ({}, "1"),
}


def measure(work: Path, policy: str, decode_utterances: int) -> dict:
    from asr_cli.threads import physical_cores

    extra_env, threads = SETTINGS[policy]
    env = {**os.environ, **extra_env}
    threads = [] if threads == "adaptive" else ["--threads", threads or str(physical_cores())]
    started = time.perf_counter()
    finish(train_job(work, f"alone-{policy}", env, threads))
    train_alone_s = time.perf_counter() - started
    started = time.perf_counter()
    decode_once(work, env, threads)
    decode_alone = decode_utterances / (time.perf_counter() - started)
    training = train_job(work, f"shared-{policy}", env, threads)
    started, decodes = time.perf_counter(), 0
    while training.poll() is None:
        decode_once(work, env, threads)
        decodes += 1
    decode_shared = decodes * decode_utterances / (time.perf_counter() - started)
    finish(training)
    train_alone, train_shared = (
        train_frames_per_s(work, f"alone-{policy}"),
        train_frames_per_s(work, f"shared-{policy}"),
    )
    return {
        "train_frames_per_s_alone": train_alone,
        "train_frames_per_s_shared": train_shared,
        "train_slowdown": round(train_alone / train_shared, 2),
        "train_alone_s": round(train_alone_s, 1),
        "decode_utt_per_s_alone": round(decode_alone, 1),
        "decode_utt_per_s_shared": round(decode_shared, 1),
        "decode_slowdown": round(decode_alone / decode_shared, 2) if decode_shared else None,
        "decodes_while_training": decodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-utterances", type=int, default=300)
    parser.add_argument("--decode-utterances", type=int, default=100)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="which of: " + ", ".join(SETTINGS))
    args = parser.parse_args()
    from asr_cli.threads import physical_cores

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        env = dict(os.environ)
        prepare_data(work, args.train_utterances, args.decode_utterances, env)
        finish(
            cli(
                "train",
                "--train",
                work / "train.store",
                "--valid",
                work / "decode.store",
                "-o",
                work / "model",
                "--epochs",
                "1",
                *MODEL_OPTIONS,
                env=env,
            )
        )  # the model the decodes use
        results = {policy: measure(work, policy, args.decode_utterances) for policy in args.settings.split(",")}
    summary = {"benchmark": "threads", "physical_cores": physical_cores(), "cpus": os.cpu_count(), **results}
    if "fixed" in results:
        for result in results.values():
            result["train_alone_vs_fixed"] = round(
                result["train_frames_per_s_alone"] / results["fixed"]["train_frames_per_s_alone"], 3
            )
            result["decode_alone_vs_fixed"] = round(
                result["decode_utt_per_s_alone"] / results["fixed"]["decode_utt_per_s_alone"], 3
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
