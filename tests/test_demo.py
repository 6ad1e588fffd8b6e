"""`make demo` at a small size: every step runs and every artefact is written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr_cli.config import ScoreConfig
from asr_cli.score import read_hypotheses, read_references, score
from tests.helpers import REPO_ROOT


@pytest.mark.slow
def test_make_demo_small(tmp_path: Path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    demo = tmp_path / "demo"
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "demo",
            f"DEMO={demo}",
            "DEMO_SIZE=--num-train 60 --num-dev 10 --num-test 10",
            "DEMO_TRAIN_OPTIONS=--epochs 2 --layers 1 --hidden-size 32 --batch-frames 4000 --no-progress",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for artefact in (
        "corpus/train.jsonl",
        "corpus/dev.jsonl",
        "corpus/test.jsonl",
        "train.store/store.json",
        "test.store/index.jsonl",
        "exp/model.pt",
        "exp/curves.png",
        "exp/metrics.jsonl",
        "words.3gram.arpa",
        "hyp_greedy.jsonl",
        "hyp_beam_lm.jsonl",
        "score_greedy.txt",
        "score_beam_lm.txt",
    ):
        assert (demo / artefact).is_file(), artefact
    assert len(list((demo / "corpus" / "audio").glob("*.wav"))) == 80
    for decoding in ("greedy", "beam_lm"):
        report = json.loads((demo / f"score_{decoding}.json").read_text())
        # The report is the score of the hypotheses written, against the test voices' transcripts.
        references = read_references(demo / "test.store")
        hypotheses = read_hypotheses(demo / f"hyp_{decoding}.jsonl")
        assert [h.id for h in hypotheses] == [r.id for r in references] and len(references) == 10
        recomputed = score(references, hypotheses, ScoreConfig(bootstrap_draws=0)).overall
        assert report["num_utterances"] == 10 and report["wer"] == pytest.approx(recomputed["wer"])
        assert report["cer"] == pytest.approx(recomputed["cer"]) and report["cer"] > 0  # 2 epochs: far from perfect
        assert report["wer_ci95"][0] <= report["wer"] <= report["wer_ci95"][1]
    assert "beam+lm" in result.stdout and "Test set (voices never heard in training)" in result.stdout


def test_synthesis_is_deterministic_and_keeps_voices_apart(tmp_path: Path):
    from asr_cli.manifest import load_manifest

    # eSpeak NG keeps state between utterances, so each corpus is made by a fresh process, as `synth` runs.
    for name in ("a", "b"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "asr_cli",
                "synth",
                str(tmp_path / name),
                "--num-train",
                "6",
                "--num-dev",
                "2",
                "--num-test",
                "3",
                "--seed",
                "4",
                "--no-progress",
            ],
            check=True,
            capture_output=True,
        )
    for split in ("train", "dev", "test"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_text() == (tmp_path / "b" / f"{split}.jsonl").read_text()
    first = (tmp_path / "a" / "audio" / "train-00000.wav").read_bytes()
    assert first == (tmp_path / "b" / "audio" / "train-00000.wav").read_bytes()
    voices = {
        split: {u.speaker.split("+")[1] for u in load_manifest(tmp_path / "a" / f"{split}.jsonl")}
        for split in ("train", "dev", "test")
    }
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["dev"]
    assert all(u.text and u.duration > 0.3 for u in load_manifest(tmp_path / "a" / "train.jsonl"))


def test_grammar_numbers():
    from asr_cli.synth import say_number

    assert [say_number(n) for n in (0, 13, 40, 57, 100, 712)] == [
        "zero",
        "thirteen",
        "forty",
        "fifty seven",
        "one hundred",
        "seven hundred and twelve",
    ]
