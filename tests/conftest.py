"""Shared fixtures: the real corpora in ../shared/data, a synthesised corpus, small stores and models (helpers
the tests call are in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr_cli.importers import import_kaldi
from asr_cli.manifest import Utterance, write_manifest
from tests.helpers import SPEECHOCEAN, make_store, require


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
    train(
        [fixture_stores[0]],
        fixture_stores[1],
        exp_dir,
        ModelConfig(num_layers=1, hidden_size=24),
        TrainConfig(epochs=1, batch_frames=3000, num_workers=0),
        show_progress=False,
    )
    return exp_dir / "model.pt"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_stores) -> Path:
    """A barely trained model file (one epoch of a 1x24 BLSTM): enough to exercise decoding."""
    from asr_cli.config import ModelConfig, TrainConfig
    from asr_cli.train import train

    train_store, valid_store = tiny_stores
    exp_dir = tmp_path_factory.mktemp("tiny_model")
    train(
        [train_store],
        valid_store,
        exp_dir,
        ModelConfig(num_layers=1, hidden_size=24),
        TrainConfig(epochs=1, batch_frames=1500, num_workers=0),
        show_progress=False,
    )
    return exp_dir / "model.pt"
