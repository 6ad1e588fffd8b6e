"""Training: overfitting real speech, exact resume, DDP, and every bad-input path."""

import errno
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import asr_cli.train as train_module
from asr_cli.config import DecodeConfig, FeatureConfig, ModelConfig, ScoreConfig, SpecAugmentConfig, TrainConfig
from asr_cli.decode import decode_inputs
from asr_cli.errors import AsrCliError
from asr_cli.manifest import Utterance
from asr_cli.model import load_model_file
from asr_cli.records import HistoryWriter
from asr_cli.score import read_hypotheses, read_references, score
from asr_cli.store import FeatureStore
from asr_cli.text import Vocabulary
from asr_cli.train import learning_rate_scale, train
from tests.helpers import make_store, write_tone

NO_AUGMENT = SpecAugmentConfig(0, 0, 0, 0)
TINY_MODEL = ModelConfig(num_layers=1, hidden_size=24)
TINY_TRAINING = TrainConfig(epochs=2, batch_frames=1500, warmup_steps=2, num_workers=0)


def run(train_store, valid_store, exp_dir, model=TINY_MODEL, config=TINY_TRAINING, **kwargs):
    return train([train_store], valid_store, exp_dir, model, config, show_progress=False, **kwargs)


def final_weights(exp_dir: Path) -> dict:
    return torch.load(exp_dir / "checkpoint.last.pt", weights_only=True)["model"]


def assert_same_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], atol=1e-6, rtol=0, msg=name)


@pytest.mark.slow
def test_overfits_fifty_real_utterances(tmp_path: Path, speechocean_utterances):
    store = make_store(tmp_path / "fifty", speechocean_utterances[:50])
    config = TrainConfig(
        epochs=40,
        batch_frames=1000,
        learning_rate=5e-3,
        warmup_steps=30,
        final_lr_scale=0.1,
        spec_augment=NO_AUGMENT,
        num_workers=0,
    )
    run(store, store, tmp_path / "exp", ModelConfig(num_layers=2, hidden_size=128, dropout=0.0), config)
    history = [json.loads(line) for line in (tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 40
    assert history[-1]["train_loss"] <= 0.2 * history[0]["train_loss"]
    assert min(record["valid_cer"] for record in history) < 0.10
    loaded = load_model_file(tmp_path / "exp" / "model.pt")
    assert loaded.info["valid_cer"] < 0.10 and loaded.feature_config.kind == "fbank"
    assert (tmp_path / "exp" / "curves.png").stat().st_size > 1000


def test_resume_after_an_epoch_is_exact(tmp_path: Path, tiny_stores, monkeypatch):
    train_store, valid_store = tiny_stores
    run(train_store, valid_store, tmp_path / "straight")
    # Ask for a stop when the first epoch's records are written: training stops one step into epoch 2.
    original = HistoryWriter.write
    monkeypatch.setattr(HistoryWriter, "write", lambda *args: (original(*args), signal.raise_signal(signal.SIGINT)))
    summary = run(train_store, valid_store, tmp_path / "resumed")
    assert summary.stopped and summary.epoch == 1
    monkeypatch.setattr(HistoryWriter, "write", original)
    summary = run(train_store, valid_store, tmp_path / "resumed", resume=True)
    assert not summary.stopped and summary.epoch == 2
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed"))


def test_resume_in_the_middle_of_an_epoch_is_exact(tmp_path: Path, tiny_stores, monkeypatch):
    train_store, valid_store = tiny_stores
    config = TrainConfig(epochs=1, batch_frames=1500, warmup_steps=2, num_workers=0)
    run(train_store, valid_store, tmp_path / "straight", config=config)
    original = train_module.BatchDataset.__getitem__

    def interrupt_at_third_batch(dataset, batch_number):
        if batch_number == 2 and dataset.batch_transforms:  # a training batch (validation has no SpecAugment)
            signal.raise_signal(signal.SIGINT)
        return original(dataset, batch_number)

    monkeypatch.setattr(train_module.BatchDataset, "__getitem__", interrupt_at_third_batch)
    assert run(train_store, valid_store, tmp_path / "resumed", config=config).stopped
    monkeypatch.setattr(train_module.BatchDataset, "__getitem__", original)
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoint.last.pt", weights_only=True)
    assert checkpoint["state"]["batch"] == 3 and checkpoint["state"]["epoch"] == 0
    run(train_store, valid_store, tmp_path / "resumed", config=config, resume=True)
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed"))
    # The resumed epoch's record covers the whole epoch, not only the batches after the stop.
    straight, resumed = (
        json.loads((tmp_path / name / "metrics.jsonl").read_text()) for name in ("straight", "resumed")
    )
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-6)


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_precision_is_that_of_every_forward_pass(tmp_path: Path, tiny_stores, monkeypatch, precision, dtype):
    output_dtypes = []

    class Recorded(train_module.AcousticModel):  # records the dtype of every forward pass's output layer
        def __init__(self, config):
            super().__init__(config)
            self.output.register_forward_hook(lambda module, inputs, output: output_dtypes.append(output.dtype))

    monkeypatch.setattr(train_module, "AcousticModel", Recorded)
    run(
        *tiny_stores,
        tmp_path / "exp",
        config=TrainConfig(epochs=1, batch_frames=1500, precision=precision, num_workers=0),
    )
    assert len(output_dtypes) > 4 and set(output_dtypes) == {dtype}  # training steps and validation


def test_experiment_folder_contents(tmp_path: Path, tiny_stores):
    train_store, valid_store = tiny_stores
    summary = run(
        train_store, valid_store, tmp_path / "exp", config=TrainConfig(epochs=1, batch_frames=1500, num_workers=1)
    )
    exp = tmp_path / "exp"
    assert {
        "model.pt",
        "checkpoint.last.pt",
        "checkpoint.best.pt",
        "metrics.jsonl",
        "curves.png",
        "config.json",
        "summary.json",
    } <= {p.name for p in exp.iterdir()}
    assert not [p for p in exp.iterdir() if p.name.startswith(".")]  # no temporary files left
    config = json.loads((exp / "config.json").read_text())
    assert config["versions"]["torch"] == torch.__version__
    record = json.loads((exp / "metrics.jsonl").read_text())
    assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0 and record["frames_per_s"] > 0
    assert 0 <= record["padding_waste"] < 1
    # The validation scores are what decoding the validation store greedily with the saved model scores.
    decode_inputs(exp / "model.pt", [valid_store], tmp_path / "valid.jsonl", DecodeConfig(show_progress=False))
    rescored = score(
        read_references(valid_store), read_hypotheses(tmp_path / "valid.jsonl"), ScoreConfig(bootstrap_draws=0)
    ).overall
    assert record["valid_cer"] == pytest.approx(rescored["cer"]) and record["valid_wer"] == pytest.approx(
        rescored["wer"]
    )
    loaded = load_model_file(exp / "model.pt")
    assert loaded.info["valid_cer"] == record["valid_cer"]
    model = loaded.model
    texts = [entry.text.lower() for entry in FeatureStore(train_store)]
    assert loaded.vocabulary == Vocabulary.from_texts(texts)
    assert torch.allclose(model.cmvn_mean, torch.from_numpy(FeatureStore(train_store).cmvn().mean_and_std()[0]))
    assert summary.epoch == 1


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path: Path, tiny_stores):
    train_store, valid_store = tiny_stores
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "asr_cli",
        "train",
        "--train",
        str(train_store),
        "--valid",
        str(valid_store),
        "-o",
        str(tmp_path / "exp"),
        "--epochs",
        "2",
        "--layers",
        "1",
        "--hidden-size",
        "24",
        "--batch-frames",
        "1500",
        "--num-workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    assert result.stderr.count("epoch 2: train loss") == 1  # only rank 0 reports and writes
    assert len((tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()) == 2
    files = sorted(p.name for p in (tmp_path / "exp").iterdir())
    assert files.count("model.pt") == 1 and not [name for name in files if name.startswith(".")]
    load_model_file(tmp_path / "exp" / "model.pt")


# --- pieces ---


def test_learning_rate_schedule():
    config = TrainConfig(warmup_steps=10, hold_fraction=0.5, final_lr_scale=0.01)
    scales = [learning_rate_scale(step, 110, config) for step in range(110)]
    assert scales[0] == pytest.approx(0.1) and scales[9] == 1.0
    assert scales[10:60] == [1.0] * 50
    assert scales[85] == pytest.approx(0.01**0.5) and scales[109] == pytest.approx(0.01, rel=0.1)
    # A warm-up longer than a quarter of the run is cut to a quarter (8 of 32 steps).
    short = [learning_rate_scale(step, 32, TrainConfig(warmup_steps=300)) for step in range(32)]
    assert short[7] == 1.0 and short[3] == pytest.approx(0.5)


# --- bad input ---


def test_characters_outside_the_vocabulary(tmp_path: Path, tiny_stores):
    train_store, valid_store = tiny_stores
    vocabulary = Vocabulary(tuple("abcdefghijklmnopqrstuvwxy '"))  # no "z"
    with pytest.raises(AsrCliError, match=r"characters outside the vocabulary: 'z' \(e.g. in .*--skip-oov-utts"):
        run(train_store, valid_store, tmp_path / "a", vocabulary=vocabulary)
    config = TrainConfig(epochs=1, batch_frames=1500, num_workers=0, skip_oov_utts=True)
    run(train_store, valid_store, tmp_path / "b", config=config, vocabulary=vocabulary)
    skipped = json.loads((tmp_path / "b" / "config.json").read_text())["skipped_utterances"]
    assert skipped["unknown characters"]


def test_too_short_and_empty_utterances_are_skipped_and_counted(tmp_path: Path, tiny_stores):
    train_store, valid_store = tiny_stores
    write_tone(tmp_path / "short.wav", seconds=0.2)
    write_tone(tmp_path / "empty.wav", seconds=1.0)
    extra = make_store(
        tmp_path / "extra",
        [
            Utterance("short", str(tmp_path / "short.wav"), text="A SENTENCE FAR TOO LONG FOR TWO TENTHS OF A SECOND"),
            Utterance("silent", str(tmp_path / "empty.wav"), text="  ...  "),
        ],
    )
    train(
        [train_store, extra],
        valid_store,
        tmp_path / "exp",
        TINY_MODEL,
        TrainConfig(epochs=1, batch_frames=1500, num_workers=0),
        show_progress=False,
    )
    skipped = json.loads((tmp_path / "exp" / "config.json").read_text())["skipped_utterances"]
    assert skipped["too short for its transcript"] == ["short"] and skipped["empty transcript"] == ["silent"]


def test_empty_store_and_store_without_text(tmp_path: Path, tiny_stores):
    train_store, valid_store = tiny_stores
    write_tone(tmp_path / "a.wav")
    untranscribed = make_store(tmp_path / "notext", [Utterance("a", str(tmp_path / "a.wav"))])
    with pytest.raises(AsrCliError, match=r"without text \(a\)"):
        run(untranscribed, valid_store, tmp_path / "exp")
    empty = tmp_path / "empty_store"
    empty.mkdir()
    metadata = json.loads((Path(train_store) / "store.json").read_text())
    metadata.update(arrays=[], num_utterances=0)
    (empty / "store.json").write_text(json.dumps(metadata))
    (empty / "index.jsonl").write_text("")
    with pytest.raises(AsrCliError, match="has no utterances"):
        run(empty, valid_store, tmp_path / "exp")


def test_feature_mismatch(tmp_path: Path, tiny_stores, speechocean_utterances):
    train_store, _ = tiny_stores
    mfcc_valid = make_store(
        tmp_path / "mfcc", speechocean_utterances[20:24], feature_config=FeatureConfig.for_kind("mfcc")
    )
    with pytest.raises(AsrCliError, match="different feature options.*kind: 'fbank'"):
        run(train_store, mfcc_valid, tmp_path / "exp")
    # Same dimension, other features: 80 bins at 8 kHz are not 80 bins at 16 kHz.
    other_rate = make_store(
        tmp_path / "8k",
        speechocean_utterances[20:24],
        feature_config=FeatureConfig(sample_rate_hz=8000, num_mel_bins=40),
    )
    same_dim = make_store(
        tmp_path / "16k", speechocean_utterances[20:24], feature_config=FeatureConfig(num_mel_bins=40)
    )
    with pytest.raises(AsrCliError, match="sample_rate_hz: 16000"):
        run(same_dim, other_rate, tmp_path / "exp2")


def test_resume_refuses_other_data_and_existing_runs(tmp_path: Path, tiny_stores):
    train_store, valid_store = tiny_stores
    with pytest.raises(AsrCliError, match="no checkpoint"):
        run(train_store, valid_store, tmp_path / "exp", resume=True)
    run(train_store, valid_store, tmp_path / "exp", config=TrainConfig(epochs=1, batch_frames=1500, num_workers=0))
    with pytest.raises(AsrCliError, match="holds a training run already; pass --resume"):
        run(train_store, valid_store, tmp_path / "exp")
    with pytest.raises(AsrCliError, match="training data differ"):
        run(valid_store, train_store, tmp_path / "exp", resume=True)
    with pytest.raises(AsrCliError, match="already finished"):
        run(train_store, valid_store, tmp_path / "exp", resume=True)


def test_unwritable_output_folder(tmp_path: Path, tiny_stores):
    train_store, valid_store = tiny_stores
    (tmp_path / "a_file").write_text("")
    with pytest.raises(AsrCliError, match="cannot create the experiment folder"):
        run(train_store, valid_store, tmp_path / "a_file" / "exp")


def test_disk_full_during_checkpoint_keeps_the_previous_one(tmp_path: Path, tiny_stores, monkeypatch):
    train_store, valid_store = tiny_stores
    run(train_store, valid_store, tmp_path / "exp", config=TrainConfig(epochs=2, batch_frames=1500, num_workers=0))
    real_save = torch.save

    def full_disk(obj, handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    checkpoint = torch.load(tmp_path / "exp" / "checkpoint.last.pt", weights_only=True)
    checkpoint["state"]["epoch"] = 1  # resume into the second epoch again
    real_save(checkpoint, tmp_path / "exp" / "checkpoint.last.pt")
    before = (tmp_path / "exp" / "checkpoint.last.pt").read_bytes()
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(AsrCliError, match="No space left on device.*previous version.*intact"):
        run(train_store, valid_store, tmp_path / "exp", resume=True)
    assert (tmp_path / "exp" / "checkpoint.last.pt").read_bytes() == before
    assert not [p for p in (tmp_path / "exp").iterdir() if p.name.startswith(".")]


def test_non_finite_losses_are_skipped_then_abort(tmp_path: Path, tiny_stores, monkeypatch):
    train_store, valid_store = tiny_stores
    real_ctc = train_module.F.ctc_loss
    calls = {"count": 0}

    def first_loss_is_nan(log_probs, *args, **kwargs):
        calls["count"] += 1
        loss = real_ctc(log_probs, *args, **kwargs)
        return loss * float("nan") if calls["count"] == 1 else loss

    monkeypatch.setattr(train_module.F, "ctc_loss", first_loss_is_nan)
    summary = run(
        train_store, valid_store, tmp_path / "one", config=TrainConfig(epochs=1, batch_frames=1500, num_workers=0)
    )
    assert summary.skipped_steps == 1
    monkeypatch.setattr(
        train_module.F, "ctc_loss", lambda log_probs, *a, **k: real_ctc(log_probs, *a, **k) * float("nan")
    )
    with pytest.raises(AsrCliError, match="3 non-finite losses in a row"):
        run(
            train_store,
            valid_store,
            tmp_path / "all",
            config=TrainConfig(epochs=1, batch_frames=1500, num_workers=0, max_bad_steps=3),
        )


def test_init_from_starts_at_a_trained_models_weights(tmp_path: Path, tiny_stores, tiny_model, speechocean_utterances):
    train_store, valid_store = tiny_stores
    config = TrainConfig(epochs=1, batch_frames=1500, warmup_steps=2, num_workers=0, learning_rate=1e-9)
    # Architecture options are ignored; with a vanishing learning rate the weights stay the source's.
    train(
        [train_store],
        valid_store,
        tmp_path / "tuned",
        ModelConfig(num_layers=3, hidden_size=64),
        config,
        show_progress=False,
        init_from=tiny_model,
    )
    source = load_model_file(tiny_model).model
    tuned = load_model_file(tmp_path / "tuned" / "model.pt").model
    assert tuned.config == source.config
    assert_same_weights({k: v for k, v in source.state_dict().items()}, {k: v for k, v in tuned.state_dict().items()})
    mfcc = FeatureConfig.for_kind("mfcc")
    other = make_store(tmp_path / "mfcc", speechocean_utterances[:4], feature_config=mfcc)
    other_valid = make_store(tmp_path / "mfcc_valid", speechocean_utterances[4:6], feature_config=mfcc)
    with pytest.raises(AsrCliError, match="init_from .*other features"):
        train([other], other_valid, tmp_path / "bad", TINY_MODEL, config, show_progress=False, init_from=tiny_model)
    foreign = make_store(
        tmp_path / "foreign", [Utterance(u.id, u.audio, "QUIZ JAZZ", u.speaker) for u in speechocean_utterances[:4]]
    )
    with pytest.raises(AsrCliError, match="outside the vocabulary"):  # the tiny model never saw q, j, z
        train([foreign], valid_store, tmp_path / "oov", TINY_MODEL, config, show_progress=False, init_from=tiny_model)


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path: Path, tiny_stores):
    train_store, valid_store = tiny_stores
    run(train_store, valid_store, tmp_path / "exp")  # 2 epochs
    with pytest.raises(AsrCliError, match="already finished"):
        run(train_store, valid_store, tmp_path / "exp", resume=True)
    with pytest.raises(AsrCliError, match="fewer than the 2 epochs"):
        run(train_store, valid_store, tmp_path / "exp", resume=True, extend_to_epochs=1)
    summary = run(train_store, valid_store, tmp_path / "exp", resume=True, extend_to_epochs=3)
    assert summary.epoch == 3
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "exp" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert json.loads((tmp_path / "exp" / "config.json").read_text())["train_config"]["epochs"] == 3
