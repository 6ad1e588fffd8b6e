"""Helpers the tests share (imported, never collected): paths of the real corpora, the CLI run in-process or as
a process, generated audio, small stores, and exact oracles for the search."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_cli.config import SearchConfig
from asr_cli.manifest import Utterance, write_manifest
from asr_cli.text import Vocabulary

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ASR_CLI_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SPEECHOCEAN = SHARED_DATA / "speechocean762-train"
FSDD = SHARED_DATA / "fsdd"

# A three-character vocabulary for exact search tests: labels 0 blank, 1 a, 2 b, 3 space.
VOCABULARY = Vocabulary(tuple("ab "))
SPACE = 3
# A search wide enough to be exhaustive on a few frames.
EXHAUSTIVE = SearchConfig(beam_size=4096, token_prune_k=4, token_prune_threshold=1e9, beam_threshold=1e9, nbest=3)


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real speech data not found at {path} (set ASR_CLI_SHARED_DATA)")
    return path


def labelling_probabilities(log_probs: np.ndarray) -> dict[tuple, float]:
    """ln P(labelling) for every labelling, by summing over all V^T paths."""
    totals: dict[tuple, float] = {}
    num_frames, vocab_size = log_probs.shape
    for path in itertools.product(range(vocab_size), repeat=num_frames):
        score = float(sum(log_probs[t, label] for t, label in enumerate(path)))
        collapsed = tuple(label for t, label in enumerate(path) if label != 0 and (t == 0 or path[t - 1] != label))
        totals[collapsed] = np.logaddexp(totals.get(collapsed, -np.inf), score)
    return totals


def random_log_probs(rng, num_frames: int, vocab_size: int = 4) -> np.ndarray:
    return np.log(rng.dirichlet(np.ones(vocab_size) * 0.7, size=num_frames)).astype(np.float32)


def certain_labels(*labels: int, vocab_size: int = 4) -> np.ndarray:
    """Log-probabilities that make each frame's label (almost) certain."""
    log_probs = np.log(np.full((len(labels), vocab_size), 1e-6, np.float32))
    log_probs[np.arange(len(labels)), labels] = 0.0
    return log_probs


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
    return subprocess.Popen(
        [sys.executable, "-c", "from asr_cli.cli import main; main()", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen_options,
    )


def write_tone(
    path: Path, seconds: float = 0.5, sample_rate_hz: int = 16000, channels: int = 1, **kwargs
) -> np.ndarray:
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
    from asr_cli.config import PrepareConfig
    from asr_cli.prepare import prepare

    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{folder.name}.jsonl"
    write_manifest(manifest, utterances)
    prepare(manifest, folder / "store", PrepareConfig(show_progress=False, **options))
    return folder / "store"


def checksums(*paths: Path) -> dict[str, str]:
    """Content digests of files, and of every file under folders: what a test compares before and after."""
    import hashlib

    digests = {}
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digests.update({str(file): hashlib.sha256(file.read_bytes()).hexdigest() for file in files})
    return digests


def random_model_file(path: Path, seed: int = 0, characters: str = "abcdefghij ", **model_options) -> Path:
    """A model file of random weights that writes plenty of labels (blank held down): an exacting subject for
    tests that compare two ways of computing the same outputs. `model_options`: ModelConfig's."""
    import torch

    from asr_cli.config import FeatureConfig, ModelConfig
    from asr_cli.model import AcousticModel, model_file_contents

    torch.manual_seed(seed)
    features = FeatureConfig(**{k: model_options.pop(k) for k in ("kind", "deltas") if k in model_options})
    options = {"num_layers": 2, "hidden_size": 32, **model_options}
    model = AcousticModel(ModelConfig(input_dim=features.dim, vocab_size=len(characters) + 1, **options))
    with torch.no_grad():
        if (
            not model.config.speaker_cmvn
        ):  # roughly normalised input (log-mels sit around 8 +- 4), followed by the layers
            model.cmvn_mean[: features.base_dim] = 8.0
            model.cmvn_std[: features.base_dim] = 4.0
        for name, parameter in model.layers.named_parameters():
            if "ih" in name or "weight_x" in name:  # the layers follow their input, not only their state
                parameter.mul_(6)
        model.output.weight.mul_(10)
        model.output.bias[0] -= 2
        if " " in characters:  # words, not one long run of letters
            model.output.bias[characters.index(" ") + 1] += 1
    torch.save(model_file_contents(model, features.to_dict(), list(characters), {}), path)
    return path


TONE_HZ = 440.0
TONE_MEL_BIN = 14  # the 80-bin filterbank's channel around 440 Hz: 24 for a 0.3 tone, 8 for 1e-3 white noise


def tone_detector_model_file(path: Path) -> Path:
    """A model that writes "a" while a 440 Hz tone sounds and blank otherwise, by construction: its one LSTM cell
    forgets at once (forget gate shut, input and output gates open) and reads the tone's mel channel, so endpointing
    can be tested on audio whose every "word" is known."""
    import torch

    from asr_cli.config import FeatureConfig, ModelConfig
    from asr_cli.model import AcousticModel, model_file_contents

    features = FeatureConfig()
    model = AcousticModel(ModelConfig(architecture="lstm", num_layers=1, hidden_size=1, dropout=0.0,
                                      input_dim=features.dim, vocab_size=3))  # fmt: skip
    lstm = model.layers[0].forward_direction
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.cmvn_std.fill_(1.0)
        lstm.bias_ih_l0.copy_(torch.tensor([20.0, -20.0, -8.0, 20.0]))  # gates i, f, g (cell input), o
        lstm.weight_ih_l0[2, TONE_MEL_BIN] = 0.5  # g = tanh((channel - 16) / 2)
        model.output.weight.copy_(torch.tensor([[-20.0], [20.0], [0.0]]))  # blank, "a", " "
        model.output.bias.copy_(torch.tensor([0.0, 0.0, -50.0]))
    torch.save(model_file_contents(model, features.to_dict(), ["a", " "], {}), path)
    return path


def tone_bursts(pattern: list[tuple[str, float]], sample_rate_hz: int = 16000) -> np.ndarray:
    """Audio of ("tone" | "quiet", seconds) pieces: a 0.3 tone at 440 Hz, or white noise at 1e-3."""
    rng = np.random.default_rng(0)
    pieces = []
    for kind, seconds in pattern:
        num_samples = int(round(seconds * sample_rate_hz))
        t = np.arange(num_samples) / sample_rate_hz
        tone = 0.3 * np.sin(2 * np.pi * TONE_HZ * t) if kind == "tone" else 0.0
        pieces.append((tone + 1e-3 * rng.standard_normal(num_samples)).astype(np.float32))
    return np.concatenate(pieces)
