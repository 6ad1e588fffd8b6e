"""Shared fixtures: the real corpora in ../shared/data and small generated audio."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_cli.importers import import_kaldi
from asr_cli.manifest import Utterance, write_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASR_CLI_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SPEECHOCEAN = SHARED_DATA / "speechocean762-train"
FSDD = SHARED_DATA / "fsdd"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real speech data not found at {path} (set ASR_CLI_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def speechocean_utterances() -> list[Utterance]:
    """All 2,500 utterances of speechocean762-train, imported from its Kaldi layout."""
    return import_kaldi(require(SPEECHOCEAN))


@pytest.fixture
def small_manifest(tmp_path: Path, speechocean_utterances: list[Utterance]) -> Path:
    """A manifest of 24 real utterances from 2 speakers."""
    path = tmp_path / "small.jsonl"
    write_manifest(path, speechocean_utterances[:24])
    return path


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args, check: bool = True) -> CliResult:
    """Run `asr-cli ARGS` in this process (no new interpreter: torch is imported once per test session) and
    capture what it prints; with `check`, a non-zero exit fails the test with its output."""
    from asr_cli.cli import run

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run([str(arg) for arg in args])
    result = CliResult(code, stdout.getvalue(), stderr.getvalue())
    if check and code != 0:
        raise AssertionError(f"asr-cli {' '.join(map(str, args))} failed ({code}):\n{result.stdout}\n{result.stderr}")
    return result


def refused(*args, names: str, code: int = 1) -> str:
    """Run asr-cli in-process; assert it fails with `code`, naming `names`, without a traceback; returns its output."""
    result = run_cli(*args, check=False)
    message = result.stdout + result.stderr
    assert result.code == code, message
    assert names in message and "Traceback" not in message, message
    return message


def start_cli(*args, **popen_options) -> subprocess.Popen:
    """`asr-cli ARGS` as its own process (console entry point included), for tests that signal it or need its
    exit without teardown; output captured as text."""
    return subprocess.Popen([sys.executable, "-c", "from asr_cli.cli import main; main()", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_options)


def write_tone(path: Path, seconds: float = 0.5, sample_rate_hz: int = 16000, channels: int = 1, **kwargs) -> np.ndarray:
    """Write a quiet noisy tone and return its samples (num_samples, channels)."""
    rng = np.random.default_rng(len(str(path)))
    num_samples = int(seconds * sample_rate_hz)
    t = np.arange(num_samples) / sample_rate_hz
    mono = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(num_samples)
    samples = np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)
    soundfile.write(str(path), samples, sample_rate_hz, **kwargs)
    return samples


def make_store(folder: Path, utterances: list[Utterance], **options) -> Path:
    """Prepare a feature store from utterances (quietly); returns its path."""
    from asr_cli.prepare import prepare
    from asr_cli.config import PrepareConfig

    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{folder.name}.jsonl"
    write_manifest(manifest, utterances)
    prepare(manifest, folder / "store", PrepareConfig(show_progress=False, **options))
    return folder / "store"


@pytest.fixture(scope="session")
def tiny_stores(tmp_path_factory, speechocean_utterances) -> tuple[Path, Path]:
    """(train, valid) stores: 16 utterances of speaker 0001, 6 of another speaker."""
    root = tmp_path_factory.mktemp("tiny")
    train = [u for u in speechocean_utterances if u.speaker == "0001"][:16]
    valid = [u for u in speechocean_utterances if u.speaker == "0005"][:6]
    return make_store(root / "train", train), make_store(root / "valid", valid)


@pytest.fixture(scope="session")
def fixture_utterances(tmp_path_factory) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev) utterances synthesised for this test session by asr-cli's own eSpeak NG synthesiser: 12 and 4,
    voices apart, about 40 s in all; no ../shared needed, and no audio kept in the repository."""
    from asr_cli.config import CorpusConfig
    from asr_cli.manifest import load_manifest
    from asr_cli.synth import make_corpus

    folder = tmp_path_factory.mktemp("synth_corpus")
    make_corpus(folder, CorpusConfig(num_train=12, num_dev=4, num_test=1, seed=0), show_progress=False)
    return load_manifest(folder / "train.jsonl"), load_manifest(folder / "dev.jsonl")


@pytest.fixture(scope="session")
def fixture_stores(tmp_path_factory, fixture_utterances) -> tuple[Path, Path]:
    """(train, dev) feature stores of the synthetic corpus."""
    root = tmp_path_factory.mktemp("fixture_stores")
    return make_store(root / "train", fixture_utterances[0]), make_store(root / "dev", fixture_utterances[1])


@pytest.fixture(scope="session")
def fixture_model(tmp_path_factory, fixture_stores) -> Path:
    """A barely trained model of the synthetic corpus (one epoch of a 1x24 BLSTM), for decoding's error paths."""
    from asr_cli.config import ModelConfig, TrainConfig
    from asr_cli.train import train

    exp_dir = tmp_path_factory.mktemp("fixture_model")
    train([fixture_stores[0]], fixture_stores[1], exp_dir, ModelConfig(num_layers=1, hidden_size=24),
          TrainConfig(epochs=1, batch_frames=3000, num_workers=0), show_progress=False)
    return exp_dir / "model.pt"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_stores) -> Path:
    """A barely trained model file (one epoch of a 1x24 BLSTM): enough to exercise decoding."""
    from asr_cli.config import ModelConfig
    from asr_cli.train import train
    from asr_cli.config import TrainConfig

    train_store, valid_store = tiny_stores
    exp_dir = tmp_path_factory.mktemp("tiny_model")
    train([train_store], valid_store, exp_dir, ModelConfig(num_layers=1, hidden_size=24),
          TrainConfig(epochs=1, batch_frames=1500, num_workers=0), show_progress=False)
    return exp_dir / "model.pt"
