"""Training: CTC on feature stores, checkpoints that resume exactly, DDP under torchrun.

`train` is the whole loop, readable top to bottom: open the data, build the run, then `train_one_epoch` and
`finish_epoch` until done. `compute_loss` is the one loss of training and validation. Checkpoints are in
checkpoint.py, the process group in distributed.py, the run's records in records.py, the folder's file names
in experiment.py, and the training batches' transforms in data.py.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .batching import padding_waste
from .checkpoint import checkpoint_contents, load_checkpoint, restore_rng, save_model, save_torch_atomically
from .cmvn import SpeakerNormalizer
from .config import DEFAULT_DEVICE, PHONE_UNITS, SHOW_PROGRESS, ConfigError, ModelConfig, ScoreConfig, TrainConfig
from .data import (
    BatchDataset,
    ExampleSet,
    SpeakerNormalization,
    SpecAugment,
    Vtlp,
    build_examples,
    data_fingerprint,
    epoch_batch_seeds,
    make_batches,
    open_stores,
    rank_batches,
    require_same_features,
    require_speakers,
)
from .distributed import Distributed, local_processes, setup_distributed
from .errors import AsrCliError
from .experiment import ExperimentFolder, copy_file
from .fileio import write_json
from .lexicon import Lexicon, PhoneSet, load_lexicon, phone_transcript
from .logs import log, progress_bar
from .model import AcousticModel
from .noise import NoiseAugment, noise_pool, require_filterbank
from .records import HistoryWriter, data_summary, write_run_config
from .score import Transcript, score
from .search import greedy_decode
from .store import FeatureStore, combine_cmvn
from .text import Vocabulary, normalize_text
from .threads import ThreadGovernor

MAX_WARMUP_FRACTION_INVERSE = 4  # warm-up takes at most a quarter of the steps


def warmup_steps(total_steps: int, config: TrainConfig) -> int:
    """The warm-up, capped at a quarter of the run: a short run should not spend itself warming up."""
    return min(config.warmup_steps, total_steps // MAX_WARMUP_FRACTION_INVERSE)


def learning_rate_scale(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up (capped at a quarter of the run), a hold at the peak, then exponential decay
    to `final_lr_scale`."""
    warmup = warmup_steps(total_steps, config)
    if step < warmup:
        return (step + 1) / warmup
    decay_start = warmup + config.hold_fraction * max(total_steps - warmup, 0)
    if step < decay_start or total_steps <= decay_start:
        return 1.0
    progress = min((step - decay_start) / (total_steps - decay_start), 1.0)
    return config.final_lr_scale**progress


class StopRequest:
    """SIGINT/SIGTERM ask for a clean stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signum
        log.info("\nstopping after the current step and writing a checkpoint (Ctrl-C again to stop at once)")


@dataclass
class TrainState:
    """Where a run is; saved in every checkpoint, so a resumed run carries on exactly."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch finished
    step: int = 0
    best_cer: float = math.inf
    bad_steps: int = 0  # non-finite losses in a row
    skipped_steps: int = 0
    history: list[dict] = field(default_factory=list)  # one metrics record per finished epoch
    # The current epoch so far (this process's share), kept across a stop so that a resumed epoch's record
    # covers all of it.
    epoch_loss_sum: float = 0.0  # summed over tokens, of the steps whose loss was finite
    epoch_tokens: int = 0
    epoch_frames: int = 0
    epoch_elapsed_s: float = 0.0

    def start_epoch(self) -> None:
        self.epoch_loss_sum, self.epoch_tokens, self.epoch_frames, self.epoch_elapsed_s = 0.0, 0, 0, 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> TrainState:
        return cls(**record)


@dataclass(frozen=True)
class TrainResult:
    """How a `train` call ended; also written to EXP_DIR/summary.json when the run finishes."""

    stopped: bool  # by SIGINT/SIGTERM, after writing a checkpoint: resume with resume=True
    epoch: int
    step: int
    best_cer: float
    skipped_steps: int
    model: Path | None = None  # the best epoch's model file, once the run has finished
    stop_signal: int | None = None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "model": str(self.model) if self.model is not None else None}


@dataclass
class TrainingData:
    """The opened stores, their usable examples, and the vocabulary and configurations of the run."""

    train_stores: list[FeatureStore]
    valid_stores: list[FeatureStore]
    training: ExampleSet
    validation: ExampleSet
    vocabulary: Vocabulary
    model_config: ModelConfig
    config: TrainConfig
    fingerprint: str  # of the training data, checked on resume
    checkpoint: dict | None = None  # the one being resumed
    initial: InitialWeights | None = None  # the model being fine-tuned

    @property
    def feature_config(self) -> dict:
        return self.train_stores[0].feature_config.to_dict()

    @property
    def lengths(self) -> list[int]:
        return [example.num_frames for example in self.training.examples]


@dataclass
class TrainingRun:
    """What the loop updates, and what it reads on every batch."""

    model: AcousticModel
    network: torch.nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    state: TrainState
    total_steps: int
    fill: np.ndarray  # the model's CMVN mean: what padding and masks hold (normalised to zero by the model)
    train_transforms: list  # utterance transforms of training batches (data.py), in order
    batch_transforms: list  # ... and of the padded batches (SpecAugment)
    valid_transforms: list  # of validation batches: only what the model's input needs (speaker normalisation)
    history_writer: HistoryWriter  # metrics.jsonl and curves.png (main process)


def train(
    train_paths: Sequence[str | Path],
    valid_path: str | Path,
    exp_dir: str | Path,
    model_config: ModelConfig = ModelConfig(),
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    device_name: str = DEFAULT_DEVICE,
    show_progress: bool = SHOW_PROGRESS,
    vocabulary: Vocabulary | None = None,
    init_from: str | Path | None = None,
    extend_to_epochs: int | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train an acoustic model into `exp_dir` (checkpoints, model.pt of the best epoch, metrics, curves).

    The vocabulary is every character of the normalised training text unless one is given; with phone
    units (`model_config.units`), the phones of `config.lexicon` and the space between words.
    `init_from` (a model file) gives the architecture, vocabulary, CMVN and starting weights, for
    fine-tuning; with `resume`, `extend_to_epochs` continues a run (finished or not) to that many epochs,
    the learning-rate schedule stretched over the new total. Progress goes to the "asr_cli" logger.
    """
    folder = ExperimentFolder(exp_dir)
    _check_options(model_config, config, vocabulary, init_from)
    governor = ThreadGovernor(threads, local_processes())
    env = setup_distributed(device_name)
    if env.is_main:
        folder.check_for_training(resume)
    data = open_training_data(
        train_paths, valid_path, folder, model_config, config, resume, vocabulary, init_from, extend_to_epochs
    )
    run = build_run(data, env, folder)
    if env.is_main:
        write_run_config(folder, _run_record(data, train_paths, valid_path, env))
    # A stop asked for during validation or the run's last records is honoured at the next epoch's start: the
    # run never ends half-recorded.
    with StopRequest() as stop:
        while run.state.epoch < data.config.epochs:
            if env.any(stop.requested):  # asked for during the last validation, on any process
                return _stop(run, data, env, folder, stop)
            batches = train_one_epoch(run, data, env, governor, stop, show_progress, folder)
            if stop.requested and run.state.batch < len(batches):
                return _stop(run, data, env, folder, stop)
            finish_epoch(run, data, env, folder, batches)
        result = TrainResult(
            False, run.state.epoch, run.state.step, run.state.best_cer, run.state.skipped_steps, folder.model_file
        )
        if env.is_main:
            run.history_writer.finish(run.state.history)
            write_json(folder.summary_file, result.to_dict())
        if stop.requested:
            log.info("the stop came during the last epoch's validation and records: the run has finished")
    return result


def _run_record(data: TrainingData, train_paths, valid_path, env: Distributed) -> dict:
    """What config.json records of a run besides the command and versions."""
    return {
        "train_stores": [str(Path(p).resolve()) for p in train_paths],
        "valid_store": str(Path(valid_path).resolve()),
        "model_config": data.model_config.to_dict(),
        "train_config": data.config.to_dict(),
        "feature_config": data.feature_config,
        "vocabulary": list(data.vocabulary.characters),
        "skipped_utterances": data.training.skipped,
        "skipped_validation_utterances": data.validation.skipped,
        "world_size": env.world_size,
        "device": str(env.device),
    }


def _check_options(
    model_config: ModelConfig, config: TrainConfig, vocabulary: Vocabulary | None, init_from: str | Path | None
) -> None:
    """Combinations of options no run can honour, refused before anything is opened."""
    if config.intermediate_ctc > 0 and (model_config.architecture == "dnn" or model_config.num_layers < 2):
        raise ConfigError(("intermediate_ctc", "num_layers"), "{0} needs a recurrent model with {1} at least 2")
    if config.intermediate_ctc > 0 and model_config.chunk_frames:
        raise ConfigError(("intermediate_ctc", "chunk_frames"), "{0} is not computed in chunks: leave out {0} or {1}")
    if model_config.phone_units and vocabulary is not None:
        raise ConfigError(("vocabulary", "lexicon"), "{0} lists characters; a phone model's units come from its {1}")
    if not model_config.phone_units and config.lexicon is not None and init_from is None:
        raise ConfigError(
            ("lexicon", "units"), "{0} in training is for {1} phones; character models take a lexicon when decoding"
        )


def open_training_data(
    train_paths: Sequence[str | Path],
    valid_path: str | Path,
    folder: ExperimentFolder,
    model_config: ModelConfig,
    config: TrainConfig,
    resume: bool,
    vocabulary: Vocabulary | None,
    init_from: str | Path | None,
    extend_to_epochs: int | None,
) -> TrainingData:
    """Open and check the stores; settle the vocabulary and configurations (new, fine-tuned, or exactly those of
    the checkpoint being resumed); turn the utterances into examples, counting what is left out and why."""
    _warn_of_store_repeats(train_paths, valid_path)
    if (resume or init_from is not None) and model_config != ModelConfig():
        given = [f"{name}={value}" for name, value in dataclasses.asdict(model_config).items()
                 if value != getattr(ModelConfig(), name)]  # fmt: skip
        log.warning(f"the architecture comes from the {'checkpoint' if resume else '--init-from model'}; the one "
                    f"given is ignored ({', '.join(given)})")  # fmt: skip
    train_stores = open_stores([str(p) for p in train_paths], "training")
    valid_stores = open_stores([str(valid_path)], "validation")
    require_same_features(train_stores[0], valid_stores[0])
    fingerprint = data_fingerprint(train_stores)
    checkpoint = load_checkpoint(folder.last_checkpoint) if resume else None
    if checkpoint is not None:
        vocabulary, model_config, config = _resumed(checkpoint, fingerprint, folder, extend_to_epochs)
    initial = _initial_weights(init_from, train_stores[0]) if init_from is not None and checkpoint is None else None
    if initial is not None:
        vocabulary, model_config = initial.vocabulary, initial.model_config
    elif checkpoint is None and vocabulary is None:
        vocabulary = Vocabulary.from_texts(
            normalize_text(entry.text, config.normalize) for store in train_stores for entry in store
        )
    to_units = None
    if model_config.phone_units:
        vocabulary, model_config, to_units = _phone_units(config, model_config)
    if checkpoint is None and initial is None:
        model_config = dataclasses.replace(model_config, input_dim=train_stores[0].dim, vocab_size=vocabulary.size)
    training = build_examples(
        train_stores, vocabulary, config.normalize, model_config.subsample, config.skip_oov_utts, to_units
    )
    validation = build_examples(
        valid_stores, vocabulary, config.normalize, model_config.subsample, skip_oov=True, to_units=to_units
    )
    for examples, role in ((training, "training"), (validation, "validation")):
        if not examples.examples:
            raise AsrCliError(f"no usable {role} utterances (skipped: {examples.skipped_summary()})")
    return TrainingData(
        train_stores,
        valid_stores,
        training,
        validation,
        vocabulary,
        model_config,
        config,
        fingerprint,
        checkpoint,
        initial,
    )


def _warn_of_store_repeats(train_paths: Sequence[str | Path], valid_path: str | Path) -> None:
    """A store given twice for training counts its utterances twice; a validation store that is a training
    store scores what the model learnt from, not new speakers. Either is allowed (overfitting checks validate
    on training data), and said."""
    real = [os.path.realpath(p) for p in train_paths]
    repeated = sorted({str(p) for p, r in zip(train_paths, real) if real.count(r) > 1})
    if repeated:
        log.warning(f"--train names {repeated[0]} more than once: its utterances count that many times")
    if os.path.realpath(valid_path) in real:
        log.warning(f"--valid {valid_path} is also a --train store: its scores measure memorisation, not how the "
                    "model does on speakers it never heard")  # fmt: skip


def _resumed(checkpoint: dict, fingerprint: str, folder: ExperimentFolder, extend_to_epochs: int | None):
    """(vocabulary, model configuration, training configuration) of the run a checkpoint belongs to, which must
    have trained on the same data."""
    if checkpoint["data_fingerprint"] != fingerprint:
        raise AsrCliError(
            f"{folder.path}: the training data differ from those the checkpoint was trained on; "
            "resume with the same --train stores, or start a new experiment folder"
        )
    config = _extended(TrainConfig.from_dict(checkpoint["train_config"]), extend_to_epochs, checkpoint, folder.path)
    return Vocabulary(tuple(checkpoint["vocabulary"])), ModelConfig.from_dict(checkpoint["model_config"]), config


def _phone_units(config: TrainConfig, model_config: ModelConfig):
    """(vocabulary, model configuration, text -> phone transcript) of a phone-unit run."""
    lexicon, phones = _phone_lexicon(config, model_config)
    vocabulary = Vocabulary(tuple(phones.character(name) for name in phones.names) + (" ",))
    model_config = dataclasses.replace(model_config, phones=phones.names)
    return vocabulary, model_config, functools.partial(phone_transcript, lexicon=lexicon, phones=phones)


def build_run(data: TrainingData, env: Distributed, folder: ExperimentFolder) -> TrainingRun:
    """The model (normalisation included), optimiser, schedule and batch transforms, with the resumed
    checkpoint's state restored."""
    config, model_config = data.config, data.model_config
    torch.manual_seed(config.seed)
    model = AcousticModel(model_config)
    train_transforms, valid_transforms = _normalization_transforms(data, model)
    if data.initial is not None:  # its CMVN too: a few minutes of a new speaker should not redefine the input scale
        model.load_state_dict(data.initial.state_dict)
    fill = model.cmvn_mean.clone().numpy()
    if config.vtlp_warp > 0:  # after speaker normalisation, as at test time: the warp moves formants, not the mean
        train_transforms.append(Vtlp(data.train_stores[0].feature_config, config.vtlp_warp))
    if config.noise.enabled:  # on the raw frames: before any normalisation
        train_transforms.insert(0, _noise_transform(data))
    batch_transforms = [SpecAugment(config.spec_augment, torch.from_numpy(fill))] if config.spec_augment.enabled else []
    model.to(env.device)
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(
        model.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay if config.optimizer == "adamw" else 0.0,
    )
    # An estimate for the schedule: later epochs pack a few batches more or fewer, and all of them are used.
    batches_per_epoch = len(
        rank_batches(make_batches(data.lengths, config.batch_frames, config.seed, 0), env.rank, env.world_size)
    )
    total_steps = batches_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_scale(step, total_steps, config)
    )
    state = _restored(data, model, optimizer, scheduler, env)
    if state.epoch >= config.epochs:  # before anything is written: the finished run's records stay as they are
        raise AsrCliError(f"{folder.path}: training already finished ({config.epochs} epochs); nothing to resume")
    if env.is_main:
        _report_run(data, model, total_steps, batches_per_epoch, env, resumed=data.checkpoint is not None)
    return TrainingRun(
        model,
        env.wrap(model),
        optimizer,
        scheduler,
        state,
        total_steps,
        fill,
        train_transforms,
        batch_transforms,
        valid_transforms,
        HistoryWriter(folder),
    )


def _noise_transform(data: TrainingData) -> NoiseAugment:
    """Noise around, between and under the training utterances, from the configured source (noise.py)."""
    feature_config = data.train_stores[0].feature_config
    require_filterbank(feature_config)
    pool = noise_pool(data.config.noise, data.train_stores, feature_config, data.config.seed)
    log.info(f"noise augmentation: {len(pool):,} frames of noise from {data.config.noise.noise_source}")
    return NoiseAugment(data.config.noise, pool, feature_config.frame_shift_ms / 1000)


def _normalization_transforms(data: TrainingData, model: AcousticModel) -> tuple[list, list]:
    """(training, validation) transforms that normalise the model's input: none when the model holds the
    training stores' global CMVN (set here), per speaker for `--cmvn speaker` (the model's own CMVN then stays
    the identity)."""
    if not data.model_config.speaker_cmvn:
        mean, std = combine_cmvn(data.train_stores).mean_and_std()
        model.set_cmvn(torch.from_numpy(mean), torch.from_numpy(std))
        return [], []
    require_speakers(data.train_stores, "training")
    return (
        [SpeakerNormalization(SpeakerNormalizer.of_stores(data.train_stores))],
        [SpeakerNormalization(SpeakerNormalizer.of_stores(data.valid_stores))],
    )


def _restored(data: TrainingData, model: AcousticModel, optimizer, scheduler, env: Distributed) -> TrainState:
    """The run's state: new, or the checkpoint's (with weights, optimiser, schedule and random state)."""
    if data.checkpoint is None:
        return TrainState()
    model.load_state_dict(data.checkpoint["model"])
    optimizer.load_state_dict(data.checkpoint["optimizer"])
    scheduler.load_state_dict(data.checkpoint["scheduler"])
    restore_rng(data.checkpoint["rng"], env.rank)
    return TrainState.from_dict(data.checkpoint["state"])


def _report_run(
    data: TrainingData, model: AcousticModel, total_steps: int, batches_per_epoch: int, env: Distributed, resumed: bool
) -> None:
    config, model_config, vocabulary = data.config, data.model_config, data.vocabulary
    if warmup_steps(total_steps, config) < config.warmup_steps and not resumed:
        log.warning(
            f"--warmup-steps {config.warmup_steps} is over a quarter of this run's {total_steps} steps; "
            f"warming up over {warmup_steps(total_steps, config)}"
        )
    log.info(
        f"model: {model_config.architecture}, {model.num_parameters():,} parameters; vocabulary {vocabulary.size} "
        f"(blank + {_describe_vocabulary(vocabulary, model_config)}); {len(data.training.examples):,} training "
        f"utterances (skipped: {data.training.skipped_summary()}); {len(data.validation.examples):,} validation "
        f"utterances (skipped: {data.validation.skipped_summary()}); {batches_per_epoch} batches/epoch x "
        f"{env.world_size} process(es)"
    )


def train_one_epoch(
    run: TrainingRun,
    data: TrainingData,
    env: Distributed,
    governor: ThreadGovernor,
    stop: StopRequest,
    show_progress: bool,
    folder: ExperimentFolder,
) -> list[list[int]]:
    """Train on this process's share of the epoch's batches, from where the run stands; returns the share (the
    state says how far it got: early, after the current step, when a stop is requested on any process)."""
    config, state, epoch = data.config, run.state, run.state.epoch
    batches = rank_batches(
        make_batches(data.lengths, config.batch_frames, config.seed, epoch), env.rank, env.world_size
    )
    loader = _epoch_loader(run, data, batches)
    run.network.train()
    started, elapsed_before = time.perf_counter(), state.epoch_elapsed_s
    with progress_bar(
        len(batches),
        f"epoch {epoch + 1}/{config.epochs}",
        show_progress and env.is_main,
        initial=state.batch,
        unit="batch",
    ) as bar:
        for batch in loader:
            governor.update()
            loss, tokens = train_step(run, batch, config, env)
            if loss is not None:
                state.epoch_loss_sum, state.epoch_tokens = (
                    state.epoch_loss_sum + loss * tokens,
                    state.epoch_tokens + tokens,
                )
            state.epoch_frames += int(batch["lengths"].sum())
            state.epoch_elapsed_s = elapsed_before + time.perf_counter() - started
            bar.update(1)
            bar.set_postfix(
                loss=f"{state.epoch_loss_sum / max(state.epoch_tokens, 1):.3f}",
                fps=f"{state.epoch_frames * env.world_size / max(state.epoch_elapsed_s, 1e-9):,.0f}",
                refresh=False,
            )
            _require_finite_losses(state, config, folder)
            if env.any(stop.requested):
                stop.requested = True  # on every process, so that all of them stop here
                break
    return batches


def _epoch_loader(run: TrainingRun, data: TrainingData, batches: list[list[int]]) -> torch.utils.data.DataLoader:
    """The batches of an epoch, from where the run stands, built by DataLoader workers (or in this process)."""
    config, epoch = data.config, run.state.epoch
    dataset = BatchDataset(
        data.train_stores,
        data.training.examples,
        batches,
        run.fill,
        epoch_batch_seeds(config.seed, epoch, len(batches)),
        run.train_transforms,
        run.batch_transforms,
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=range(run.state.batch, len(batches)),
        num_workers=config.num_workers,
        generator=torch.Generator(),  # keeps the global RNG for dropout
        persistent_workers=False,
        prefetch_factor=4 if config.num_workers else None,
        worker_init_fn=_ignore_stop_signals,
    )


def _require_finite_losses(state: TrainState, config: TrainConfig, folder: ExperimentFolder) -> None:
    if state.bad_steps >= config.max_bad_steps:
        raise AsrCliError(
            f"{state.bad_steps} non-finite losses in a row (epoch {state.epoch + 1}, batch {state.batch}); "
            "lower --lr or --grad-clip, or check the data; the last good checkpoint is "
            f"{folder.last_checkpoint}"
        )


def train_step(run: TrainingRun, batch: dict, config: TrainConfig, env: Distributed) -> tuple[float | None, int]:
    """One optimiser step on a batch: (loss per token, or None when it was not finite and the step skipped;
    tokens)."""
    loss = compute_loss(run.network, batch, env.device, config)
    run.optimizer.zero_grad(set_to_none=True)
    loss.value.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.network.parameters(), config.grad_clip)
    run.state.step += 1
    run.state.batch += 1
    # With DDP the gradients are already averaged, so every process takes the same branch.
    if not torch.isfinite(grad_norm):
        run.optimizer.zero_grad(set_to_none=True)
        run.state.bad_steps += 1
        run.state.skipped_steps += 1
        return None, loss.tokens
    run.optimizer.step()
    run.scheduler.step()
    run.state.bad_steps = 0
    return loss.value.item(), loss.tokens


@dataclass(frozen=True)
class Loss:
    """A batch's loss per target token (what the step minimises), its token count, and the model's outputs."""

    value: torch.Tensor
    tokens: int
    log_probs: torch.Tensor  # (B, T', V)
    output_lengths: torch.Tensor  # (B,)


def compute_loss(
    network: torch.nn.Module, batch: dict, device: torch.device, config: TrainConfig, intermediate: bool = True
) -> Loss:
    """The one loss of training and validation: CTC per target token, in the run's precision, mixed with
    `config.intermediate_ctc` of the middle layer's CTC loss when the run uses it and `intermediate` is set
    (validation reports the final layer's CTC alone, so that runs with and without it compare)."""
    model = network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
    intermediate_layer = model.config.num_layers // 2 if intermediate and config.intermediate_ctc > 0 else 0
    features = batch["features"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        outputs = network(features, batch["lengths"], intermediate_layer)
    tokens = int(batch["target_lengths"].sum())
    value = ctc_loss(outputs[0], outputs[1], batch, device) / tokens
    if intermediate_layer:
        intermediate_value = ctc_loss(outputs[2], outputs[1], batch, device) / tokens
        value = (1 - config.intermediate_ctc) * value + config.intermediate_ctc * intermediate_value
    return Loss(value, tokens, outputs[0], outputs[1])


def finish_epoch(
    run: TrainingRun, data: TrainingData, env: Distributed, folder: ExperimentFolder, batches: list[list[int]]
) -> None:
    """Validate, keep the best model, write the metrics, curves and checkpoint; the state moves to the next epoch.
    An epoch in which no step had a finite loss learned nothing: the run fails rather than save its model."""
    state, epoch = run.state, run.state.epoch
    if state.epoch_tokens == 0:
        raise AsrCliError(
            f"epoch {epoch + 1}: every step's loss was NaN or infinite ({state.skipped_steps} steps skipped), so "
            "nothing was learned and no model is saved; lower --lr or --grad-clip, or check the data"
        )
    valid = (
        evaluate(run.model, data.valid_stores, data.validation, data.vocabulary, data.config, env, run.valid_transforms)
        if env.is_main
        else {}
    )
    record = {
        "epoch": epoch + 1,
        "step": state.step,
        "train_loss": state.epoch_loss_sum / state.epoch_tokens,
        **valid,
        "learning_rate": run.scheduler.get_last_lr()[0],
        "epoch_time_s": round(state.epoch_elapsed_s, 1),
        "frames_per_s": round(state.epoch_frames * env.world_size / max(state.epoch_elapsed_s, 1e-9)),
        "padding_waste": round(padding_waste(batches, data.lengths), 4),
        "skipped_steps": state.skipped_steps,
    }
    state.history.append(record)
    state.epoch, state.batch = epoch + 1, 0
    state.start_epoch()
    improved = env.is_main and valid["valid_cer"] < state.best_cer
    if env.is_main:
        if improved:
            state.best_cer = valid["valid_cer"]
            save_model(
                folder.model_file,
                run.model,
                data.feature_config,
                data.vocabulary,
                {**record, **data_summary(data.train_stores, data.training, data.valid_stores)},
                combine_cmvn(data.train_stores),
            )
        run.history_writer.write(state.history)
        log.info(
            f"epoch {epoch + 1}: train loss {record['train_loss']:.3f}, valid loss {valid['valid_loss']:.3f}, "
            f"CER {100 * valid['valid_cer']:.1f}%, WER {100 * valid['valid_wer']:.1f}%"
            f"{' (best)' if improved else ''}, {record['frames_per_s']:,} frames/s"
        )
    _save_checkpoint(folder, run, data, env)
    if improved:
        copy_file(folder.last_checkpoint, folder.best_checkpoint)
    env.barrier()


def _save_checkpoint(folder: ExperimentFolder, run: TrainingRun, data: TrainingData, env: Distributed) -> None:
    if env.is_main:
        save_torch_atomically(
            folder.last_checkpoint,
            checkpoint_contents(
                run.model,
                run.optimizer,
                run.scheduler,
                run.state.to_dict(),
                data.vocabulary,
                data.config.to_dict(),
                data.fingerprint,
            ),
        )
    env.barrier()


def _stop(
    run: TrainingRun, data: TrainingData, env: Distributed, folder: ExperimentFolder, stop: StopRequest
) -> TrainResult:
    """A clean stop mid-epoch: the checkpoint holds the exact place to resume from."""
    _save_checkpoint(folder, run, data, env)
    state = run.state
    if env.is_main:
        run.history_writer.finish(state.history)
        log.info(
            f"stopped in epoch {state.epoch + 1} after batch {state.batch}; resume with the same command "
            f"and --resume (checkpoint: {folder.last_checkpoint})"
        )
    return TrainResult(
        True, state.epoch, state.step, state.best_cer, state.skipped_steps, stop_signal=stop.signal or signal.SIGINT
    )


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM (sent to the whole process group) to the training process,
    which stops cleanly and ends them; a worker killed by them would crash the step with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def ctc_loss(log_probs: torch.Tensor, output_lengths: torch.Tensor, batch: dict, device: torch.device) -> torch.Tensor:
    """The CTC loss of a batch, summed over utterances: (B, T', V) log-probabilities against its targets."""
    return F.ctc_loss(
        log_probs.transpose(0, 1).float(),
        batch["targets"].to(device),
        output_lengths.cpu(),
        batch["target_lengths"],
        blank=0,
        reduction="sum",
    )


def evaluate(
    model: AcousticModel,
    stores: Sequence[FeatureStore],
    examples: ExampleSet,
    vocabulary: Vocabulary,
    config: TrainConfig,
    env: Distributed,
    transforms: Sequence = (),
) -> dict:
    """Validation loss per token (`compute_loss`) and greedy CER/WER (normalised as in `score`)."""
    model.eval()
    lengths = [example.num_frames for example in examples.examples]
    batches = make_batches(lengths, config.batch_frames * 2, config.seed, 0, shuffle=False)
    fill = model.cmvn_mean.cpu().numpy()
    dataset = BatchDataset(stores, examples.examples, batches, fill, [0] * len(batches), transforms)
    loss_sum, tokens, references, hypotheses = 0.0, 0, [], []
    with torch.no_grad():
        for batch_number in range(len(dataset)):
            batch = dataset[batch_number]
            loss = compute_loss(model, batch, env.device, config, intermediate=False)
            loss_sum += float(loss.value) * loss.tokens
            tokens += loss.tokens
            for index, label_ids in zip(batches[batch_number], greedy_decode(loss.log_probs, loss.output_lengths)):
                example = examples.examples[index]
                utterance_id = stores[example.store].entry(example.position).id
                references.append(Transcript(utterance_id, vocabulary.decode(example.labels)))
                hypotheses.append(Transcript(utterance_id, vocabulary.decode(label_ids)))
    report = score(references, hypotheses, ScoreConfig(normalize=config.normalize, bootstrap_draws=0)).overall
    model.train()
    return {"valid_loss": loss_sum / max(tokens, 1), "valid_cer": report["cer"], "valid_wer": report["wer"]}


@dataclass(frozen=True)
class InitialWeights:
    """A trained model to start from (`--init-from`): its architecture, units and weights."""

    model_config: ModelConfig
    vocabulary: Vocabulary
    state_dict: dict


def _describe_vocabulary(vocabulary: Vocabulary, model_config: ModelConfig) -> str:
    if model_config.phone_units:
        return f"word boundary + {len(model_config.phones)} phones: {' '.join(model_config.phones)}"
    return repr("".join(vocabulary.characters))


def _phone_lexicon(config: TrainConfig, model_config: ModelConfig) -> tuple[Lexicon, PhoneSet]:
    """The lexicon of a phone-unit run and its phones (those of the model being resumed or fine-tuned, if any)."""
    if config.lexicon is None:
        raise ConfigError(
            ("units", "lexicon"), "{0} phones needs {1}: a Kaldi lexicon.txt (WORD PHONE PHONE ...) or cmudict"
        )
    lexicon = load_lexicon(config.lexicon, PHONE_UNITS)
    phones = PhoneSet(model_config.phones) if model_config.phones else PhoneSet.of(lexicon)
    unknown = {unit for spellings in lexicon.pronunciations.values() for units in spellings for unit in units} - set(
        phones.names
    )
    if unknown:
        raise AsrCliError(f"{config.lexicon} uses phones the model lacks: {', '.join(sorted(unknown)[:10])}")
    return lexicon, phones


def _initial_weights(path: str | Path, store: FeatureStore) -> InitialWeights:
    """The model file's weights for fine-tuning; its features must be the training stores'."""
    from .model import load_model_file

    loaded = load_model_file(path)
    differing = loaded.feature_config.differences(store.feature_config)
    if differing:
        raise ConfigError(
            "init_from",
            f"{{0}} {path}: the model was trained on other features than the training stores "
            f"hold ({', '.join(differing)}); prepare the stores with the model's feature options",
        )
    return InitialWeights(loaded.config, loaded.vocabulary, loaded.model.state_dict())


def _extended(config: TrainConfig, epochs: int | None, checkpoint: dict, exp_dir: Path) -> TrainConfig:
    """The resumed run's configuration, with its epochs raised to `epochs` when asked (extending a run)."""
    if epochs is None or epochs == config.epochs:
        return config
    if epochs < checkpoint["state"]["epoch"]:
        raise AsrCliError(
            f"{exp_dir}: --epochs {epochs} is fewer than the {checkpoint['state']['epoch']} epochs already trained"
        )
    return dataclasses.replace(config, epochs=epochs)
