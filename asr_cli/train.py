"""Training: CTC on feature stores, checkpoints that resume exactly, DDP under torchrun.

`train` is the whole loop, readable top to bottom; the helpers below it
save and restore state, evaluate, and draw the curves.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from . import __version__
from .data import (BatchDataset, ExampleSet, SpecAugmentConfig, SpeakerCmvn, Vtlp, build_examples, data_fingerprint,
                   epoch_batch_seeds, make_batches, open_stores, padding_waste, rank_batches, require_same_features,
                   require_speakers)
from .decode import greedy_decode
from .errors import AsrCliError
from .fileio import atomic_write, ensure_writable_dir, write_json, write_jsonl
from .model import AcousticModel, ModelConfig, model_file_contents
from .score import ScoreOptions, Transcript, score
from .store import FeatureStore, combine_cmvn
from .lexicon import PHONE_UNITS, Lexicon, PhoneSet, load_lexicon, phone_transcript
from .text import NormalizeOptions, Vocabulary, normalize_text
from .threads import ThreadGovernor

CHECKPOINT_FORMAT_VERSION = 1
LAST_CHECKPOINT = "checkpoint.last.pt"
BEST_CHECKPOINT = "checkpoint.best.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
CONFIG_FILE = "config.json"
EXPERIMENT_FILES = {LAST_CHECKPOINT, BEST_CHECKPOINT, MODEL_FILE, METRICS_FILE, CURVES_FILE, CONFIG_FILE, "summary.json",
                    "decoding.json", "lm.arpa", "dev_eval"}  # what train (and pack) write, and recipes' evaluations
MAX_WARMUP_FRACTION_INVERSE = 4  # warm-up takes at most a quarter of the steps
OPTIMIZERS = ("adam", "adamw")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; saved in the experiment folder and every checkpoint."""

    epochs: int = 20
    batch_frames: int = 3000  # padded input frames per batch (per process under DDP)
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 300
    hold_fraction: float = 0.5  # of the steps after warm-up, at the peak rate
    final_lr_scale: float = 0.05  # the rate decays exponentially to this fraction of the peak
    grad_clip: float = 5.0
    max_bad_steps: int = 10  # non-finite losses in a row before giving up
    precision: str = "fp32"
    seed: int = 0
    num_workers: int = 1
    skip_oov_utts: bool = False
    vtlp_warp: float = 0.0  # VTLP: warp factors drawn from [1 - vtlp_warp, 1 + vtlp_warp]; 0 for none
    intermediate_ctc: float = 0.0  # weight of a CTC loss after the middle layer (Lee & Watanabe 2021); 0 for none
    lexicon: str | None = None  # phone units: the pronunciation lexicon (a file, or "cmudict")
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    normalize: NormalizeOptions = field(default_factory=NormalizeOptions)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise AsrCliError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.precision not in PRECISIONS:
            raise AsrCliError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.epochs < 1 or self.batch_frames < 1 or not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise AsrCliError("--epochs, --batch-frames and --lr must be positive (and finite)")
        for option, value in (("--weight-decay", self.weight_decay), ("--grad-clip", self.grad_clip),
                              ("--final-lr-scale", self.final_lr_scale)):
            if not (math.isfinite(value) and value >= 0):
                raise AsrCliError(f"{option} must be a finite number >= 0, not {value}")
        if self.grad_clip <= 0:
            raise AsrCliError(f"--grad-clip must be positive, not {self.grad_clip}")
        if not 0.0 <= self.hold_fraction <= 1.0:
            raise AsrCliError(f"--hold-fraction must be in [0, 1], not {self.hold_fraction}")
        if self.num_workers < 0 or self.warmup_steps < 0 or self.max_bad_steps < 1:
            raise AsrCliError("--num-workers and --warmup-steps must be >= 0, --max-bad-steps >= 1")
        if not 0.0 <= self.intermediate_ctc < 1.0:
            raise AsrCliError(f"--intermediate-ctc must be in [0, 1), not {self.intermediate_ctc}")
        if not 0.0 <= self.vtlp_warp < 0.5:
            raise AsrCliError(f"--vtlp must be in [0, 0.5), not {self.vtlp_warp}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "TrainConfig":
        record = dict(record)
        record["spec_augment"] = SpecAugmentConfig(**record["spec_augment"])
        record["normalize"] = NormalizeOptions(**record["normalize"])
        return cls(**record)


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


@dataclass
class Distributed:
    """This process's place in a torchrun job (a job of one without torchrun)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_distributed(device_name: str) -> Distributed:
    """Pick the device; join the process group when started by torchrun (gloo on CPU, nccl on GPU)."""
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name == "cuda" and not torch.cuda.is_available():
        raise AsrCliError("--device cuda: no CUDA device is available; use --device cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(device=torch.device(device_name))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dist.init_process_group(backend="nccl" if device_name == "cuda" else "gloo")
    if device_name == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return Distributed(rank=dist.get_rank(), world_size=world_size, device=device)


class StopRequest:
    """SIGINT/SIGTERM ask for a clean stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopRequest":
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
        print("\nstopping after the current step and writing a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)


def train(
    train_paths: Sequence[str | Path], valid_path: str | Path, exp_dir: str | Path,
    model_config: ModelConfig = ModelConfig(), config: TrainConfig = TrainConfig(),
    resume: bool = False, device_name: str = "auto", show_progress: bool = True,
    vocabulary: Vocabulary | None = None, init_from: str | Path | None = None, extend_to_epochs: int | None = None,
    threads: int | None = None,
) -> dict:
    """Train an acoustic model; returns the summary also written to EXP_DIR/summary.json.

    The vocabulary is every character of the normalised training text unless one is given; with phone
    units (`model_config.units`), the phones of `config.lexicon` and the space between words.
    `init_from` (a model file) gives the architecture, vocabulary, CMVN and starting weights, for
    fine-tuning; with `resume`, `extend_to_epochs` continues a run (finished or not) to that many epochs,
    the learning-rate schedule stretched over the new total.
    """
    exp_dir = Path(exp_dir)
    if config.intermediate_ctc > 0 and (model_config.architecture == "dnn" or model_config.num_layers < 2):
        raise AsrCliError("--intermediate-ctc needs at least two recurrent layers")
    if model_config.units == "phones" and vocabulary is not None:
        raise AsrCliError("--vocabulary lists characters; a phone model's units come from its --lexicon")
    if model_config.units == "chars" and config.lexicon is not None and init_from is None:
        raise AsrCliError("--lexicon in training is for --units phones; character models take a lexicon when decoding")
    # Processes of this machine (torchrun) share its cores.
    governor = ThreadGovernor(threads, int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))))
    env = setup_distributed(device_name)
    if env.is_main:
        _check_output_folder(exp_dir, resume)
    train_stores = open_stores([str(p) for p in train_paths], "training")
    valid_stores = open_stores([str(valid_path)], "validation")
    require_same_features(train_stores[0], valid_stores[0])
    feature_config = train_stores[0].feature_config.to_dict()
    fingerprint = data_fingerprint(train_stores)

    # Vocabulary and configuration: new, or exactly those of the checkpoint being resumed.
    checkpoint = _load_checkpoint(exp_dir / LAST_CHECKPOINT) if resume else None
    if checkpoint is not None:
        if checkpoint["data_fingerprint"] != fingerprint:
            raise AsrCliError(f"{exp_dir}: the training data differ from those the checkpoint was trained on; "
                              "resume with the same --train stores, or start a new experiment folder")
        vocabulary = Vocabulary(tuple(checkpoint["vocabulary"]))
        model_config = ModelConfig.from_dict(checkpoint["model_config"])
        config = _extended(TrainConfig.from_dict(checkpoint["train_config"]), extend_to_epochs, checkpoint, exp_dir)
    initial = _initial_weights(init_from, feature_config) if init_from is not None and checkpoint is None else None
    if initial is not None:
        vocabulary, model_config = initial.vocabulary, initial.model_config
    elif checkpoint is None and vocabulary is None:
        texts = (normalize_text(entry.text, config.normalize) for store in train_stores for entry in store)
        vocabulary = Vocabulary.from_texts(texts)
    to_units = None
    if model_config.units == "phones":
        lexicon, phones = _phone_lexicon(config, model_config)
        vocabulary = Vocabulary(tuple(phones.character(name) for name in phones.names) + (" ",))
        model_config = dataclasses.replace(model_config, phones=phones.names)
        to_units = functools.partial(phone_transcript, lexicon=lexicon, phones=phones)
    if checkpoint is None and initial is None:
        model_config = dataclasses.replace(model_config, input_dim=train_stores[0].dim, vocab_size=vocabulary.size)
    training = build_examples(train_stores, vocabulary, config.normalize, model_config.subsample, config.skip_oov_utts,
                              to_units)
    validation = build_examples(valid_stores, vocabulary, config.normalize, model_config.subsample, skip_oov=True,
                                to_units=to_units)
    if not training.examples:
        raise AsrCliError(f"no usable training utterances (skipped: {training.skipped_summary()})")
    if not validation.examples:
        raise AsrCliError(f"no usable validation utterances (skipped: {validation.skipped_summary()})")

    torch.manual_seed(config.seed)
    model = AcousticModel(model_config)
    if model_config.cmvn == "speaker":  # the data pipeline normalises; the model's own CMVN stays the identity
        require_speakers(train_stores, "training")
        train_cmvn, valid_cmvn = SpeakerCmvn.of_stores(train_stores), SpeakerCmvn.of_stores(valid_stores)
    else:
        train_cmvn = valid_cmvn = None
        mean, std = combine_cmvn(train_stores).mean_and_std()
        model.set_cmvn(torch.from_numpy(mean), torch.from_numpy(std))
    if initial is not None:  # its CMVN too: a few minutes of a new speaker should not redefine the input scale
        model.load_state_dict(initial.state_dict)
    mean = model.cmvn_mean.clone().numpy()
    vtlp = Vtlp(train_stores[0].feature_config, config.vtlp_warp) if config.vtlp_warp > 0 else None
    model.to(env.device)
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(model.parameters(), lr=config.learning_rate,
                                weight_decay=config.weight_decay if config.optimizer == "adamw" else 0.0)
    lengths = [example.num_frames for example in training.examples]
    # An estimate for the schedule: later epochs pack a few batches more or fewer, and all of them are used.
    batches_per_epoch = len(rank_batches(make_batches(lengths, config.batch_frames, config.seed, 0), env.rank,
                                         env.world_size))
    total_steps = batches_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_scale(step, total_steps, config))
    state = {"epoch": 0, "batch": 0, "step": 0, "best_cer": math.inf, "bad_steps": 0, "skipped_steps": 0, "history": []}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = checkpoint["state"]
        _restore_rng(checkpoint["rng"], env)
    network = torch.nn.parallel.DistributedDataParallel(model) if env.world_size > 1 else model
    if warmup_steps(total_steps, config) < config.warmup_steps and env.is_main and checkpoint is None:
        print(f"warning: --warmup-steps {config.warmup_steps} is over a quarter of this run's {total_steps} steps; "
              f"warming up over {warmup_steps(total_steps, config)}", file=sys.stderr)
    if state["epoch"] >= config.epochs:  # before anything is written: the finished run's records stay as they are
        raise AsrCliError(f"{exp_dir}: training already finished ({config.epochs} epochs); nothing to resume")
    if env.is_main:
        _write_run_config(exp_dir, model_config, config, feature_config, vocabulary, train_paths, valid_path, training,
                          validation, env)
        print(f"model: {model_config.architecture}, {model.num_parameters():,} parameters; vocabulary {vocabulary.size} "
              f"(blank + {_describe_vocabulary(vocabulary, model_config)}); {len(training.examples):,} training utterances "
              f"(skipped: {training.skipped_summary()}); {len(validation.examples):,} validation utterances "
              f"(skipped: {validation.skipped_summary()}); {batches_per_epoch} batches/epoch x {env.world_size} "
              "process(es)", file=sys.stderr)

    autocast_device = "cuda" if env.device.type == "cuda" else "cpu"
    intermediate_layer = model_config.num_layers // 2 if config.intermediate_ctc > 0 else 0
    with StopRequest() as stop:
        while state["epoch"] < config.epochs:
            epoch = state["epoch"]
            all_batches = make_batches(lengths, config.batch_frames, config.seed, epoch)
            batches = rank_batches(all_batches, env.rank, env.world_size)
            dataset = BatchDataset(train_stores, training.examples, batches, mean, config.spec_augment,
                                   epoch_batch_seeds(config.seed, epoch, len(batches)), train_cmvn, vtlp)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=None, sampler=range(state["batch"], len(batches)),
                num_workers=config.num_workers, generator=torch.Generator(),  # keeps the global RNG for dropout
                persistent_workers=False, prefetch_factor=4 if config.num_workers else None,
                worker_init_fn=_ignore_stop_signals,
            )
            network.train()
            progress = tqdm(total=len(batches), initial=state["batch"], desc=f"epoch {epoch + 1}/{config.epochs}",
                            unit="batch", disable=not (show_progress and env.is_main), dynamic_ncols=True)
            epoch_started, epoch_frames, loss_sum, loss_tokens = time.perf_counter(), 0, 0.0, 0
            for batch in loader:
                governor.update()
                features = batch["features"].to(env.device, non_blocking=True)
                with torch.autocast(autocast_device, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                    outputs = network(features, batch["lengths"], intermediate_layer)
                tokens = int(batch["target_lengths"].sum())
                loss = ctc_loss(outputs[0], outputs[1], batch, env.device) / tokens
                if intermediate_layer:
                    intermediate_loss = ctc_loss(outputs[2], outputs[1], batch, env.device) / tokens
                    loss = (1 - config.intermediate_ctc) * loss + config.intermediate_ctc * intermediate_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
                # With DDP the gradients are already averaged, so every process takes the same branch.
                if torch.isfinite(grad_norm):
                    optimizer.step()
                    scheduler.step()
                    state["bad_steps"] = 0
                    loss_sum, loss_tokens = loss_sum + loss.item() * tokens, loss_tokens + tokens
                else:
                    optimizer.zero_grad(set_to_none=True)
                    state["bad_steps"] += 1
                    state["skipped_steps"] += 1
                state["step"] += 1
                state["batch"] += 1
                epoch_frames += int(batch["lengths"].sum())
                elapsed = time.perf_counter() - epoch_started
                progress.update(1)
                progress.set_postfix(loss=f"{loss_sum / max(loss_tokens, 1):.3f}",
                                     fps=f"{epoch_frames * env.world_size / max(elapsed, 1e-9):,.0f}", refresh=False)
                if state["bad_steps"] >= config.max_bad_steps:
                    progress.close()
                    raise AsrCliError(
                        f"{state['bad_steps']} non-finite losses in a row (epoch {epoch + 1}, batch {state['batch']}); "
                        "lower --lr or --grad-clip, or check the data; the last good checkpoint is "
                        f"{exp_dir / LAST_CHECKPOINT}")
                if env.any(stop.requested):
                    progress.close()
                    _save_checkpoint(exp_dir / LAST_CHECKPOINT, model, optimizer, scheduler, state, vocabulary,
                                     model_config, config, fingerprint, env)
                    if env.is_main:
                        print(f"stopped in epoch {epoch + 1} after batch {state['batch']}; resume with the same command "
                              f"and --resume (checkpoint: {exp_dir / LAST_CHECKPOINT})", file=sys.stderr)
                    return {"stopped": True, "stop_signal": stop.signal or signal.SIGINT, **_public_state(state)}
            progress.close()

            # End of epoch: validate, keep the best model, checkpoint, log, plot.
            epoch_time_s = time.perf_counter() - epoch_started
            valid = evaluate(model, valid_stores, validation, vocabulary, config, env, valid_cmvn) if env.is_main else {}
            record = {
                "epoch": epoch + 1, "step": state["step"], "train_loss": loss_sum / max(loss_tokens, 1),
                **valid, "learning_rate": scheduler.get_last_lr()[0], "epoch_time_s": round(epoch_time_s, 1),
                "frames_per_s": round(epoch_frames * env.world_size / max(epoch_time_s, 1e-9)),
                "padding_waste": round(padding_waste(batches, lengths), 4),
                "skipped_steps": state["skipped_steps"],
            }
            state["history"].append(record)
            state["epoch"], state["batch"] = epoch + 1, 0
            improved = False
            if env.is_main:
                improved = valid["valid_cer"] < state["best_cer"]
                if improved:
                    state["best_cer"] = valid["valid_cer"]
                    _save_model(exp_dir / MODEL_FILE, model, feature_config, vocabulary,
                                {**record, **_data_summary(train_stores, training, valid_stores)})
                write_jsonl(exp_dir / METRICS_FILE, state["history"])  # rewritten whole: a resume never duplicates
                _plot_curves(exp_dir, state["history"])
                print(f"epoch {epoch + 1}: train loss {record['train_loss']:.3f}, valid loss {valid['valid_loss']:.3f}, "
                      f"CER {100 * valid['valid_cer']:.1f}%, WER {100 * valid['valid_wer']:.1f}%"
                      f"{' (best)' if improved else ''}, {record['frames_per_s']:,} frames/s", file=sys.stderr)
            _save_checkpoint(exp_dir / LAST_CHECKPOINT, model, optimizer, scheduler, state, vocabulary,
                             model_config, config, fingerprint, env)
            if improved:
                _copy_file(exp_dir / LAST_CHECKPOINT, exp_dir / BEST_CHECKPOINT)
            env.barrier()
    summary = {"stopped": False, **_public_state(state), "model": str(exp_dir / MODEL_FILE)}
    if env.is_main:
        write_json(exp_dir / "summary.json", summary)
    return summary


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM (sent to the whole process group) to the training process,
    which stops cleanly and ends them; a worker killed by them would crash the step with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def ctc_loss(log_probs: torch.Tensor, output_lengths: torch.Tensor, batch: dict, device: torch.device) -> torch.Tensor:
    """The CTC loss of a batch, summed over utterances: (B, T', V) log-probabilities against its targets."""
    return F.ctc_loss(log_probs.transpose(0, 1).float(), batch["targets"].to(device), output_lengths.cpu(),
                      batch["target_lengths"], blank=0, reduction="sum")


def evaluate(model: AcousticModel, stores: Sequence[FeatureStore], examples: ExampleSet, vocabulary: Vocabulary,
             config: TrainConfig, env: Distributed, speaker_cmvn: SpeakerCmvn | None = None) -> dict:
    """Validation loss per token and greedy CER/WER (normalised as in `score`)."""
    model.eval()
    lengths = [example.num_frames for example in examples.examples]
    batches = make_batches(lengths, config.batch_frames * 2, config.seed, 0, shuffle=False)
    dataset = BatchDataset(stores, examples.examples, batches, model.cmvn_mean.cpu().numpy(), None, [0] * len(batches),
                           speaker_cmvn)
    loss_sum, tokens, references, hypotheses = 0.0, 0, [], []
    with torch.no_grad():
        for batch_number in range(len(dataset)):
            batch = dataset[batch_number]
            log_probs, output_lengths = model(batch["features"].to(env.device), batch["lengths"])
            loss_sum += float(ctc_loss(log_probs, output_lengths, batch, env.device))
            tokens += int(batch["target_lengths"].sum())
            for index, label_ids in zip(batches[batch_number], greedy_decode(log_probs, output_lengths)):
                example = examples.examples[index]
                utterance_id = stores[example.store].entry(example.position).id
                references.append(Transcript(utterance_id, vocabulary.decode(example.labels)))
                hypotheses.append(Transcript(utterance_id, vocabulary.decode(label_ids)))
    report = score(references, hypotheses, ScoreOptions(normalize=config.normalize, bootstrap_draws=0)).overall()
    model.train()
    return {"valid_loss": loss_sum / max(tokens, 1), "valid_cer": report["cer"], "valid_wer": report["wer"]}


@dataclass(frozen=True)
class InitialWeights:
    """A trained model to start from (`--init-from`): its architecture, units and weights."""

    model_config: ModelConfig
    vocabulary: Vocabulary
    state_dict: dict


def _describe_vocabulary(vocabulary: Vocabulary, model_config: ModelConfig) -> str:
    if model_config.units == "phones":
        return f"word boundary + {len(model_config.phones)} phones: {' '.join(model_config.phones)}"
    return repr("".join(vocabulary.characters))


def _phone_lexicon(config: TrainConfig, model_config: ModelConfig) -> tuple[Lexicon, PhoneSet]:
    """The lexicon of a phone-unit run and its phones (those of the model being resumed or fine-tuned, if any)."""
    if config.lexicon is None:
        raise AsrCliError("--units phones needs --lexicon: a Kaldi lexicon.txt (WORD PHONE PHONE ...) or cmudict")
    lexicon = load_lexicon(config.lexicon, PHONE_UNITS)
    phones = PhoneSet(model_config.phones) if model_config.phones else PhoneSet.of(lexicon)
    unknown = {unit for spellings in lexicon.pronunciations.values() for units in spellings for unit in units
               } - set(phones.names)
    if unknown:
        raise AsrCliError(f"{config.lexicon} uses phones the model lacks: {', '.join(sorted(unknown)[:10])}")
    return lexicon, phones


def _initial_weights(path: str | Path, feature_config: dict) -> InitialWeights:
    """The model file's weights for fine-tuning; its features must be the training stores'."""
    from .model import load_model_file

    model, contents = load_model_file(path)
    differing = [name for name, value in contents["feature_config"].items() if feature_config.get(name) != value]
    if differing:
        raise AsrCliError(f"--init-from {path}: the model was trained on other features than the training stores "
                          f"hold ({', '.join(differing)}); prepare the stores with the model's feature options")
    return InitialWeights(model.config, Vocabulary(tuple(contents["vocabulary"])), model.state_dict())


def _extended(config: TrainConfig, epochs: int | None, checkpoint: dict, exp_dir: Path) -> TrainConfig:
    """The resumed run's configuration, with its epochs raised to `epochs` when asked (extending a run)."""
    if epochs is None or epochs == config.epochs:
        return config
    if epochs < checkpoint["state"]["epoch"]:
        raise AsrCliError(f"{exp_dir}: --epochs {epochs} is fewer than the {checkpoint['state']['epoch']} epochs "
                          "already trained")
    return dataclasses.replace(config, epochs=epochs)


def _check_output_folder(exp_dir: Path, resume: bool) -> None:
    """An experiment folder is new, empty, or ours: training never writes over another folder's files."""
    foreign = sorted(p.name for p in exp_dir.iterdir() if p.name not in EXPERIMENT_FILES) if exp_dir.is_dir() else []
    if foreign:
        raise AsrCliError(f"{exp_dir} holds files that are not a training run's (e.g. {', '.join(foreign[:3])}); "
                          "choose a new or empty experiment folder")
    ensure_writable_dir(exp_dir, "experiment folder")
    if resume and not (exp_dir / LAST_CHECKPOINT).is_file():
        raise AsrCliError(f"--resume: no checkpoint in {exp_dir} ({LAST_CHECKPOINT} not found)")
    if not resume and (exp_dir / LAST_CHECKPOINT).is_file():
        raise AsrCliError(f"{exp_dir} holds a training run already; pass --resume to continue it, or use a new folder")


def _save_torch_atomically(path: Path, obj: dict) -> None:
    """torch.save to a temporary sibling, then rename: a full disk leaves the previous file intact."""
    try:
        with atomic_write(path, "wb") as handle:
            torch.save(obj, handle)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0]
        raise AsrCliError(f"could not write {path} ({reason}); the previous version, if any, "
                          "is intact. Free some disk space and resume with --resume") from error


def _save_checkpoint(path: Path, model, optimizer, scheduler, state, vocabulary, model_config, config, fingerprint,
                     env: Distributed) -> None:
    if env.is_main:
        _save_torch_atomically(path, {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "state": state, "rng": _rng_state(), "vocabulary": list(vocabulary.characters),
            "model_config": model_config.to_dict(), "train_config": config.to_dict(), "data_fingerprint": fingerprint,
        })
    env.barrier()


def _load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise AsrCliError(f"--resume: checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise AsrCliError(f"{path} is damaged or not a checkpoint ({type(error).__name__}); "
                          f"try {path.with_name(BEST_CHECKPOINT)}, or start anew") from error
    if not isinstance(checkpoint, dict):
        raise AsrCliError(f"{path} is not an asr-cli training checkpoint; try {path.with_name(BEST_CHECKPOINT)}, "
                          "or start anew")
    if checkpoint.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise AsrCliError(f"{path}: checkpoint format {checkpoint.get('format_version')} is not supported")
    return checkpoint


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict, env: Distributed) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if env.rank:  # other processes saved no state of their own: derive a distinct, reproducible one
        torch.manual_seed(int(torch.randint(0, 2**62, (1,))) + env.rank)


def _data_summary(train_stores: Sequence[FeatureStore], training: ExampleSet,
                  valid_stores: Sequence[FeatureStore]) -> dict:
    """What the model was trained on, for `asr-cli info`."""
    entries = [train_stores[e.store].entry(e.position) for e in training.examples]
    return {"train_stores": [str(store.path.resolve()) for store in train_stores],
            "train_utterances": len(entries), "train_hours": round(sum(e.duration for e in entries) / 3600, 3),
            "train_speakers": len({e.speaker for e in entries if e.speaker is not None}),
            "valid_store": str(valid_stores[0].path.resolve())}


def _save_model(path: Path, model: AcousticModel, feature_config: dict, vocabulary: Vocabulary, record: dict) -> None:
    info = {"epoch": record["epoch"], "valid_cer": record["valid_cer"], "valid_wer": record["valid_wer"],
            "asr_cli_version": __version__, "torch_version": str(torch.__version__),
            **{key: record[key] for key in ("train_stores", "train_utterances", "train_hours", "train_speakers",
                                            "valid_store") if key in record}}
    _save_torch_atomically(path, model_file_contents(model, feature_config, list(vocabulary.characters), info))


def _copy_file(source: Path, destination: Path) -> None:
    with open(source, "rb") as reader, atomic_write(destination, "wb") as writer:
        while chunk := reader.read(1 << 20):
            writer.write(chunk)


def _public_state(state: dict) -> dict:
    return {key: state[key] for key in ("epoch", "step", "best_cer", "skipped_steps")}


def _write_run_config(exp_dir, model_config, config, feature_config, vocabulary, train_paths, valid_path,
                      training: ExampleSet, validation: ExampleSet, env: Distributed) -> None:
    write_json(exp_dir / CONFIG_FILE, {
        "command": sys.argv, "train_stores": [str(Path(p).resolve()) for p in train_paths],
        "valid_store": str(Path(valid_path).resolve()), "model_config": model_config.to_dict(),
        "train_config": config.to_dict(), "feature_config": feature_config,
        "vocabulary": list(vocabulary.characters), "skipped_utterances": training.skipped,
        "skipped_validation_utterances": validation.skipped,
        "world_size": env.world_size, "device": str(env.device),
        "versions": {"asr_cli": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "platform": platform.platform()},
    })


def _plot_curves(exp_dir: Path, history: list[dict]) -> None:
    """Training/validation loss and validation CER per epoch, as a PNG (rewritten atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [record["epoch"] for record in history]
    figure, (loss_axes, cer_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    loss_axes.plot(epochs, [r["valid_loss"] for r in history], marker="o", label="validation")
    loss_axes.set(xlabel="epoch", ylabel="CTC loss per token", title="Loss")
    loss_axes.legend()
    cer_axes.plot(epochs, [100 * r["valid_cer"] for r in history], marker="o", color="tab:red")
    cer_axes.set(xlabel="epoch", ylabel="CER %", title="Validation CER (greedy)")
    for axes in (loss_axes, cer_axes):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_write(exp_dir / CURVES_FILE, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
