"""Every option of asr-cli, its default and its choices, in one place.

One frozen dataclass per concern; the command line takes its defaults and
choice lists from here, so each exists once (tests/test_config.py holds the
CLI to that). Torch-free, so `--help` needs no torch. Invalid values raise
`ConfigError`, which names the field; the CLI names the option instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import AsrCliError

# Choices.
FEATURE_KINDS = ("fbank", "mfcc", "encoder")  # encoder: a frozen pretrained speech encoder's states (encoder.py)
ENCODER_BACKENDS = ("ctranslate2", "transformers")
STORE_DTYPES = ("float16", "float32")
ARCHITECTURES = ("blstm", "lstm", "dnn")
FRONTENDS = ("stack", "conv")
CMVN_MODES = ("global", "speaker")
CHARACTER_UNITS, PHONE_UNITS = "chars", "phones"
UNITS = (CHARACTER_UNITS, PHONE_UNITS)
OPTIMIZERS = ("adam", "adamw")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when available
LM_UNITS = ("word", "char")
LM_BACKENDS = ("auto", "arpa", "kenlm")  # auto: KenLM binary files through KenLM, ARPA files through our reader
MISSING_POLICIES = ("error", "deletion")
REF_FORMATS = ("auto", "manifest", "store", "kaldi")
HYP_FORMATS = ("auto", "jsonl", "kaldi")
TRANSCRIPT_FORMATS = ("txt", "json", "srt", "vtt", "tsv", "kaldi", "ctm")  # writers.WRITERS; "all": every one
STREAM_FORMATS = ("txt", "json")  # `asr-cli stream`: a line per finished segment, text or JSON with word times
STREAM_INPUT_FORMATS = ("auto", "wav", "raw")  # a byte stream: a WAV header if there is one, else raw s16le

DEFAULT_DEVICE = "auto"
SHOW_PROGRESS = True  # progress bars on stderr (only ever drawn when it is a terminal)
MIN_SAMPLE_RATE_HZ = 4000
# Upper bounds, far beyond any sensible value, so that a typo is an error rather than an allocation of
# gigabytes that the kernel kills or a traceback from deep inside torch.
MAX_SAMPLE_RATE_HZ = 384_000
MAX_BEAM_SIZE = 4096
MAX_MODEL_WIDTH = 16_384  # cells per layer, projection, DNN units
MAX_LAYERS = 64
MAX_STACK = 64  # frames stacked, subsampling, DNN context
MAX_BATCH_FRAMES = 10_000_000
MAX_JOBS = 256
MAX_EPOCHS = 100_000
MFCC_NUM_MEL_BINS = 23  # Kaldi's MFCC default; fbank keeps FeatureConfig.num_mel_bins
MIN_SPEED_FACTOR, MAX_SPEED_FACTOR = 0.5, 2.0
MAX_LM_ORDER = 10  # beyond this, n-grams of a few hours of transcripts are all singletons
LM_BEAM_SIZE = 16  # the beam when an LM or lexicon is used and none is given; greedy (1) otherwise


class ConfigError(AsrCliError, ValueError):
    """An invalid option value. `problem` is a template whose {0}, {1}, ... are the fields' names, filled with
    the field names here and with the option names by the CLI."""

    def __init__(self, fields: str | Sequence[str], problem: str) -> None:
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)
        self.problem = problem
        super().__init__(self.render(lambda name: name))

    def render(self, name_of: Callable[[str], str]) -> str:
        text = self.problem  # not str.format: the problem may quote paths or values with braces in them
        for index, name in enumerate(self.fields):
            text = text.replace(f"{{{index}}}", name_of(name))
        return text


def _require_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(name, f"{{0}} must be one of {', '.join(choices)}, not {value!r}")


def _require_finite(name: str, value: float, minimum: float | None = None) -> None:
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        at_least = f" >= {minimum:g}" if minimum is not None else ""
        raise ConfigError(name, f"{{0}} must be a finite number{at_least}, not {value}")


def _require_at_least(config: object, minimum: int, *names: str) -> None:
    for name in names:
        if getattr(config, name) < minimum:
            raise ConfigError(name, f"{{0}} must be at least {minimum}, not {getattr(config, name)}")


def _require_at_most(config: object, maximum: int, *names: str) -> None:
    for name in names:
        if getattr(config, name) > maximum:
            raise ConfigError(name, f"{{0}} must be at most {maximum:,}, not {getattr(config, name):,}")


def _require_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ConfigError("threads", f"{{0}} must be at least 1, not {threads}")


class _Serialisable:
    """to_dict/from_dict for the configurations saved with artefacts (nested configurations included)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict):
        values = dict(record)
        for item in dataclasses.fields(cls):
            nested = _NESTED.get((cls.__name__, item.name))
            if nested is not None and isinstance(values.get(item.name), dict):
                values[item.name] = nested.from_dict(values[item.name])
            elif isinstance(values.get(item.name), list):
                values[item.name] = _tuples(values[item.name])
        return cls(**values)


def _tuples(value):
    """JSON lists (of lists) back as the tuples they were saved from."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


@dataclass(frozen=True)
class NormalizeConfig(_Serialisable):
    """Which text normalisation steps run (training text, LM text and scoring alike); saved with score reports."""

    case_fold: bool = True
    remove_punctuation: bool = True  # in-word apostrophes are kept
    collapse_whitespace: bool = True

    def describe(self) -> str:
        steps = [
            name
            for name, on in (
                ("case folding", self.case_fold),
                ("punctuation removal (in-word apostrophes kept)", self.remove_punctuation),
                ("whitespace collapsing", self.collapse_whitespace),
            )
            if on
        ]
        return ", ".join(steps) if steps else "none"


@dataclass(frozen=True)
class EncoderConfig(_Serialisable):
    """Which pretrained encoder computes the features, and how; saved with the stores and models it made.

    Its identity is everything but `name` and `path`: the folder may be renamed or moved (where it was found is
    a hint for finding it again).
    """

    name: str  # the folder's name, e.g. whisper-base
    backend: str  # ctranslate2 (a faster-whisper model folder) or transformers (a Hugging Face model folder)
    model_type: str  # whisper, wav2vec2, hubert, wavlm, ...
    sha256: str  # of the weights file
    dim: int  # of each state
    frame_shift_ms: float = 20.0
    layer: int = -1  # which hidden state: -1 the encoder's output, k >= 0 the output of its k-th block (0: the input)
    num_layers: int = 0  # blocks of the encoder
    window_s: float = 30.0  # longer input is encoded in overlapping windows of at most this length
    pad_to_window: bool = False  # Whisper: pad each window to 30 s, the condition it was trained in
    conv_layers: tuple[tuple[int, int], ...] = ()  # waveform encoders: (kernel, stride) of the feature extractor
    path: str = ""

    def __post_init__(self) -> None:
        _require_choice("backend", self.backend, ENCODER_BACKENDS)
        if self.layer < -1 or (self.num_layers and self.layer > self.num_layers):
            raise ConfigError(
                "layer", f"{{0}} must be -1 (the output) or a block between 0 and {self.num_layers}, not {self.layer}"
            )

    def identity(self) -> dict:
        """What must match for two stores or a store and a model to hold the same features (the weights and how
        they are used; not what the folder is called, or where it was found)."""
        return {key: value for key, value in self.to_dict().items() if key not in ("name", "path")}

    def describe(self) -> str:
        layer = "output" if self.layer == -1 else f"block {self.layer} of {self.num_layers}"
        return (
            f"{self.name} ({self.backend} {self.model_type}, {layer}, {self.dim} dims every "
            f"{self.frame_shift_ms:g} ms{', windows padded to 30 s' if self.pad_to_window else ''}; "
            f"weights sha256 {self.sha256[:12]}...)"
        )

    def num_frames(self, num_samples: int) -> int:
        """States the encoder gives for `num_samples` samples at 16 kHz."""
        if self.model_type == "whisper":  # 10 ms mel frames (160 samples appended), an even number, halved
            return (num_samples // WHISPER_HOP_SAMPLES + 1) // 2 if num_samples >= WHISPER_MIN_SAMPLES else 0
        frames = num_samples
        for kernel, stride in self.conv_layers:
            frames = (frames - kernel) // stride + 1 if frames >= kernel else 0
        return max(frames, 0)


WHISPER_HOP_SAMPLES = 160
WHISPER_MIN_SAMPLES = 320  # the reflect padding of its centred 400-point STFT needs more than 200 samples


@dataclass(frozen=True)
class FeatureConfig(_Serialisable):
    """How features are computed; saved with every feature store and model."""

    kind: str = "fbank"
    sample_rate_hz: int = 16000
    num_mel_bins: int = 80
    num_ceps: int = 13
    cepstral_lifter: float = 22.0
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    preemphasis: float = 0.97
    dither: float = 0.0  # in 16-bit sample units
    low_freq_hz: float = 20.0
    high_freq_hz: float = 0.0  # <= 0: offset from the Nyquist frequency, as in Kaldi
    deltas: bool = False
    encoder: EncoderConfig | None = None  # kind "encoder": the encoder whose states the features are

    def __post_init__(self) -> None:
        _require_choice("kind", self.kind, FEATURE_KINDS)
        if (self.kind == "encoder") != (self.encoder is not None):
            raise ConfigError(("kind", "encoder"), "{0} encoder takes an {1}, and only it does")
        if self.encoder is not None and (
            self.sample_rate_hz != 16000 or self.deltas or self.frame_shift_ms != self.encoder.frame_shift_ms
        ):
            raise ConfigError(
                ("encoder", "sample_rate_hz", "deltas"),
                "{0} features are computed at {1} 16000 Hz, at the encoder's frame rate, without {2}",
            )
        if self.kind == "mfcc" and self.num_ceps > self.num_mel_bins:
            raise ConfigError(
                ("num_ceps", "num_mel_bins"), f"{{0}} ({self.num_ceps}) cannot exceed {{1}} ({self.num_mel_bins})"
            )
        if self.sample_rate_hz < MIN_SAMPLE_RATE_HZ:
            raise ConfigError(
                "sample_rate_hz", f"{{0}} must be at least {MIN_SAMPLE_RATE_HZ}, not {self.sample_rate_hz}"
            )
        _require_at_most(self, MAX_SAMPLE_RATE_HZ, "sample_rate_hz")
        _require_at_least(self, 1, "num_mel_bins", "num_ceps")
        if self.num_mel_bins > self.fft_length // 4:
            raise ConfigError(
                "num_mel_bins",
                f"{{0}}: {self.num_mel_bins} are too many for a {self.fft_length}-point "
                f"FFT at {self.sample_rate_hz} Hz (at most {self.fft_length // 4}): some "
                "filters would be empty",
            )
        _require_finite("dither", self.dither, minimum=0)
        if not (0 <= self.preemphasis <= 1) or not (self.frame_length_ms > 0 and self.frame_shift_ms > 0):
            raise ConfigError(
                ("preemphasis", "frame_length_ms", "frame_shift_ms"), "{0} must be in [0, 1] and {1} and {2} positive"
            )

    def identity(self) -> dict:
        """What makes two feature sets the same (everything but where an encoder folder was found, and dither,
        which only keeps silence off the log floor)."""
        record = {key: value for key, value in self.to_dict().items() if key not in ("dither", "encoder")}
        return {**record, "encoder": self.encoder.identity() if self.encoder is not None else None}

    def differences(self, other: FeatureConfig) -> list[str]:
        """The names of the fields in which `other` holds other features (empty: the same features)."""
        mine, theirs = self.identity(), other.identity()
        return [name for name in mine if mine[name] != theirs.get(name)]

    @classmethod
    def for_kind(cls, kind: str, **overrides) -> FeatureConfig:
        """Defaults per kind: 80 mel bins for fbank, 23 bins and 13 cepstra for MFCC; None overrides nothing."""
        defaults = {"num_mel_bins": MFCC_NUM_MEL_BINS} if kind == "mfcc" else {}
        defaults.update({key: value for key, value in overrides.items() if value is not None})
        return cls(kind=kind, **defaults)

    @property
    def window_length_samples(self) -> int:
        return int(self.sample_rate_hz * self.frame_length_ms / 1000)

    @property
    def hop_length_samples(self) -> int:
        return int(self.sample_rate_hz * self.frame_shift_ms / 1000)

    @property
    def fft_length(self) -> int:
        return 1 << (self.window_length_samples - 1).bit_length()

    @property
    def base_dim(self) -> int:
        if self.encoder is not None:
            return self.encoder.dim
        return self.num_ceps if self.kind == "mfcc" else self.num_mel_bins

    @property
    def dim(self) -> int:
        """Feature dimension per frame, deltas included."""
        return self.base_dim * (3 if self.deltas else 1)

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi's snip_edges framing (or the encoder) yields for `num_samples` samples."""
        if self.encoder is not None:
            return self.encoder.num_frames(num_samples)
        if num_samples < self.window_length_samples:
            return 0
        return 1 + (num_samples - self.window_length_samples) // self.hop_length_samples


@dataclass(frozen=True)
class PrepareConfig:
    """How `prepare` runs; the feature configuration itself is saved in the store."""

    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    dtype: str = "float16"
    jobs: int = 1
    shard_index: int = 1  # K of K/N, counted from 1
    num_shards: int = 1
    skip_bad: bool = False
    overwrite: bool = False
    show_progress: bool = SHOW_PROGRESS
    # Speed perturbation: each factor f adds a copy of every utterance played f times as fast
    # (tempo and pitch, like `sox speed`), named "sp{f}-{id}" with speaker "sp{f}-{speaker}".
    speed_factors: tuple[float, ...] = (1.0,)
    threads: int | None = None  # per worker process; None: the physical cores divided among the workers

    def __post_init__(self) -> None:
        _require_threads(self.threads)
        if not self.speed_factors or len(set(self.speed_factors)) != len(self.speed_factors):
            raise ConfigError("speed_factors", f"{{0}} needs distinct factors, got {list(self.speed_factors)}")
        for factor in self.speed_factors:
            if not MIN_SPEED_FACTOR <= factor <= MAX_SPEED_FACTOR:
                raise ConfigError(
                    "speed_factors", f"{{0}} factor {factor:g} is outside [{MIN_SPEED_FACTOR}, {MAX_SPEED_FACTOR}]"
                )
        _require_choice("dtype", self.dtype, STORE_DTYPES)
        _require_at_least(self, 1, "jobs")
        _require_at_most(self, MAX_JOBS, "jobs")
        if not 1 <= self.shard_index <= self.num_shards:
            raise ConfigError("shard_index", f"{{0}} {self.shard_index}/{self.num_shards}: K must be between 1 and N")


@dataclass(frozen=True)
class SpecAugmentConfig(_Serialisable):
    """Frequency and time masking (Park et al., 2019); masked values become the CMVN mean."""

    freq_masks: int = 2
    freq_width: int = 10  # bins, at most
    time_masks: int = 2
    time_width: int = 20  # frames, at most
    max_time_fraction: float = 0.2  # of each utterance, per mask

    def __post_init__(self) -> None:
        _require_at_least(self, 0, "freq_masks", "freq_width", "time_masks", "time_width")

    @property
    def enabled(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)


SPEC_AUGMENT_OFF = SpecAugmentConfig(0, 0, 0, 0)

NOISE_SOURCES = ("corpus", "coloured")  # or a folder of noise recordings
NOISE_PAUSES_PER_UTTERANCE = 3  # pauses inserted into an augmented utterance, at most


@dataclass(frozen=True)
class NoiseConfig(_Serialisable):
    """Non-speech around, between and under the words of training utterances (noise.py), on the fly; seconds."""

    noise_edges_s: float = 0.0  # noise before and after each augmented utterance: up to this much each (0: none)
    noise_pauses_s: float = 0.0  # pauses of up to this long inserted at an utterance's quiet frames (0: none)
    noise_snr_db: tuple[float, float] | None = None  # additive noise at an SNR drawn from [low, high] dB (None: none)
    noise_source: str = "corpus"  # the training stores' quietest frames, generated coloured noise, or a folder
    noise_probability: float = 0.5  # share of training utterances augmented

    def __post_init__(self) -> None:
        for name in ("noise_edges_s", "noise_pauses_s"):
            _require_finite(name, getattr(self, name), minimum=0.0)
        if not 0.0 <= self.noise_probability <= 1.0:
            raise ConfigError("noise_probability", f"{{0}} is a share: between 0 and 1, not {self.noise_probability}")
        if self.noise_snr_db is not None:
            low, high = self.noise_snr_db
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ConfigError(
                    "noise_snr_db", f"{{0}} must be a range LOW:HIGH with LOW <= HIGH, not {low:g}:{high:g}"
                )

    @property
    def enabled(self) -> bool:
        return self.noise_probability > 0 and (
            self.noise_edges_s > 0 or self.noise_pauses_s > 0 or self.noise_snr_db is not None
        )


def parse_snr_range(text: str) -> tuple[float, float]:
    """ "LOW:HIGH" (dB) as numbers; "20" is 20:20."""
    low, high = parse_range(text, "noise_snr_db")
    NoiseConfig(noise_snr_db=(low, high))  # the range's own checks
    return low, high


@dataclass(frozen=True)
class ModelConfig(_Serialisable):
    """The architecture; saved with every checkpoint and model file."""

    architecture: str = "blstm"
    num_layers: int = 3
    hidden_size: int = 256  # per direction
    projection_size: int = 0  # 0: no recurrent projection (LSTM), else LSTMP
    peepholes: bool = False
    dropout: float = 0.1
    stack_frames: int = 3
    subsample: int = 3
    dnn_context: int = 5  # DNN only: stacked frames on each side of the centre
    frontend: str = "stack"  # stack: frame stacking; conv: two 2-D convolutions striding over time and frequency
    conv_channels: int = 32
    cmvn: str = "global"  # speaker: features arrive normalised per speaker (or per utterance), see data.py
    input_dim: int = 80
    vocab_size: int = 30  # characters + the CTC blank
    units: str = CHARACTER_UNITS  # phones: the characters stand for `phones` (lexicon.PhoneSet)
    phones: tuple[str, ...] = ()  # set by training from its lexicon
    # Latency-controlled (B)LSTM: trained and decoded in windows of `chunk_frames` first-layer frames (after
    # stacking and subsampling) plus `right_context_frames` of future, forward states carried (0: whole utterances).
    chunk_frames: int = 0
    right_context_frames: int = 0

    def __post_init__(self) -> None:
        _require_choice("architecture", self.architecture, ARCHITECTURES)
        _require_at_least(self, 1, "num_layers", "hidden_size", "stack_frames", "subsample", "conv_channels")
        _require_at_least(self, 0, "dnn_context")
        _require_at_most(self, MAX_LAYERS, "num_layers")
        _require_at_most(self, MAX_MODEL_WIDTH, "hidden_size", "conv_channels")
        _require_at_most(self, MAX_STACK, "stack_frames", "subsample", "dnn_context")
        if self.projection_size < 0 or self.projection_size >= self.hidden_size and self.projection_size:
            raise ConfigError("projection_size", f"{{0}} must be 0 or below the hidden size ({self.hidden_size})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"{{0}} must be in [0, 1), not {self.dropout}")
        _require_choice("frontend", self.frontend, FRONTENDS)
        _require_choice("cmvn", self.cmvn, CMVN_MODES)
        _require_choice("units", self.units, UNITS)
        if self.units == CHARACTER_UNITS and self.phones:
            raise ConfigError("units", "phones are listed only for {0} phones")
        _require_at_least(self, 0, "chunk_frames", "right_context_frames")
        if self.chunk_frames and self.architecture == "dnn" or self.right_context_frames and not self.chunk_frames:
            raise ConfigError(
                ("chunk_frames", "right_context_frames"), "{0} is for recurrent models, and {1} needs {0}"
            )
        if self.frontend == "conv" and (self.architecture == "dnn" or self.conv_channels < 1):
            raise ConfigError(
                ("frontend", "conv_channels"), "{0} conv needs a recurrent architecture and {1} at least 1"
            )

    @property
    def directions(self) -> int:
        return 2 if self.architecture == "blstm" else 1

    @property
    def phone_units(self) -> bool:
        """Whether the outputs are phones (decoded into words through a lexicon) rather than characters."""
        return self.units == PHONE_UNITS

    @property
    def speaker_cmvn(self) -> bool:
        """Whether the input arrives normalised per speaker (cmvn.SpeakerNormalizer) instead of inside the model."""
        return self.cmvn == "speaker"

    @property
    def conv_time_strides(self) -> tuple[int, int]:
        """Time strides of the two convolutions; their product is `subsample`, the larger first."""
        second = 2 if self.subsample % 2 == 0 and self.subsample > 2 else 1
        return self.subsample // second, second


@dataclass(frozen=True)
class TrainConfig(_Serialisable):
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
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)

    def __post_init__(self) -> None:
        _require_choice("optimizer", self.optimizer, OPTIMIZERS)
        _require_choice("precision", self.precision, PRECISIONS)
        _require_at_least(self, 1, "epochs", "batch_frames", "max_bad_steps")
        _require_at_least(self, 0, "num_workers", "warmup_steps")
        _require_at_most(self, MAX_EPOCHS, "epochs")
        _require_at_most(self, MAX_BATCH_FRAMES, "batch_frames")
        _require_at_most(self, MAX_JOBS, "num_workers")
        _require_finite("learning_rate", self.learning_rate)
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate", f"{{0}} must be positive, not {self.learning_rate}")
        for name in ("weight_decay", "grad_clip", "final_lr_scale"):
            _require_finite(name, getattr(self, name), minimum=0)
        if self.grad_clip <= 0:
            raise ConfigError("grad_clip", f"{{0}} must be positive, not {self.grad_clip}")
        if not 0.0 <= self.hold_fraction <= 1.0:
            raise ConfigError("hold_fraction", f"{{0}} must be in [0, 1], not {self.hold_fraction}")
        if not 0.0 <= self.intermediate_ctc < 1.0:
            raise ConfigError("intermediate_ctc", f"{{0}} must be in [0, 1), not {self.intermediate_ctc}")
        if not 0.0 <= self.vtlp_warp < 0.5:
            raise ConfigError("vtlp_warp", f"{{0}} must be in [0, 0.5), not {self.vtlp_warp}")


@dataclass(frozen=True)
class SearchConfig:
    """What decides the words: the search's settings, and the LM and lexicon it searches with."""

    beam_size: int | None = None  # None: greedy (1) without an LM or lexicon, LM_BEAM_SIZE with one (`resolved`)
    token_prune_k: int = 10  # tokens tried per frame, at most
    token_prune_threshold: float = 6.0  # ... and only those within this many nats of the frame's best
    beam_threshold: float = 10.0  # prefixes scoring this many nats below the best are dropped
    lm_weight: float = 0.5
    oov_penalty: float = 10.0  # word LM: times lm_weight, for a word no LM word begins with, and an OOV word
    word_bonus: float = 1.0
    nbest: int = 1
    unlisted_word_penalty: float | None = None  # with a lexicon: nats for a word outside it (None: never output)
    lm_path: str | None = None  # an n-gram LM (ARPA, or KenLM binary) fused in the search
    lm_unit: str = "word"
    lm_backend: str = "auto"
    lexicon_path: str | None = None  # the words the search may output (see lexicon.py)

    def __post_init__(self) -> None:
        _require_at_least(self, 1, "nbest", "token_prune_k")
        _require_at_most(self, MAX_BEAM_SIZE, "nbest", "token_prune_k")
        if self.beam_size is not None:
            _require_at_least(self, 1, "beam_size")
            _require_at_most(self, MAX_BEAM_SIZE, "beam_size")
            if self.nbest > self.beam_size:
                raise ConfigError(
                    ("nbest", "beam_size"), f"{{0}} ({self.nbest}) cannot exceed {{1}} ({self.beam_size})"
                )
        for name in ("token_prune_threshold", "beam_threshold", "lm_weight", "oov_penalty", "word_bonus"):
            _require_finite(name, getattr(self, name))
        for name in ("token_prune_threshold", "beam_threshold"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"{{0}} must be positive, not {getattr(self, name)}")
        for name in ("lm_weight", "oov_penalty"):
            _require_finite(name, getattr(self, name), minimum=0)
        if self.unlisted_word_penalty is not None:
            _require_finite("unlisted_word_penalty", self.unlisted_word_penalty, minimum=0)

        _require_choice("lm_unit", self.lm_unit, LM_UNITS)
        _require_choice("lm_backend", self.lm_backend, LM_BACKENDS)

    @property
    def uses_tables(self) -> bool:
        """Whether an LM or a lexicon takes part (the search then needs its tables, and a beam)."""
        return self.lm_path is not None or self.lexicon_path is not None

    @property
    def is_greedy(self) -> bool:
        """Best-path decoding: a beam of one and nothing else to score."""
        return self.resolved().beam_size == 1 and not self.uses_tables

    def resolved(self) -> SearchConfig:
        """This configuration with its beam size decided: given, else LM_BEAM_SIZE with an LM or a lexicon, else
        greedy (or the beam `nbest` needs). Every caller decides the beam here."""
        if self.beam_size is not None:
            return self
        return dataclasses.replace(self, beam_size=LM_BEAM_SIZE if self.uses_tables else self.nbest)


SPEECH_ACTIVITY_METHODS = ("auto", "none", "energy", "silero")


@dataclass(frozen=True)
class SpeechActivityConfig:
    """Which frames of a recording are searched (speech_activity.py); times in seconds."""

    # "energy" (above the recording's noise floor), "silero" (a VAD model), "none" (every frame), or "auto":
    # silero on audio when installed, else none; none on a feature store
    vad: str = "auto"
    vad_threshold_db: float = 12.0  # energy: above the noise floor (the 10th percentile of frame energies)
    silero_threshold: float = 0.5  # silero: speech probability
    vad_min_speech_s: float = 0.1  # shorter bursts are not speech
    vad_min_pause_s: float = 0.3  # shorter pauses are closed
    vad_padding_s: float = 0.2  # kept on both sides of speech

    def __post_init__(self) -> None:
        _require_choice("vad", self.vad, SPEECH_ACTIVITY_METHODS)
        _require_finite("vad_threshold_db", self.vad_threshold_db)
        if not 0.0 < self.silero_threshold < 1.0:
            raise ConfigError(
                "silero_threshold", f"{{0}} is a probability: between 0 and 1, not {self.silero_threshold}"
            )
        for name in ("vad_min_speech_s", "vad_min_pause_s", "vad_padding_s"):
            _require_finite(name, getattr(self, name), minimum=0.0)


@dataclass(frozen=True)
class DecodeConfig:
    """How the `decode` step runs over stores, manifests or files (what it searches for is `search`)."""

    search: SearchConfig = field(default_factory=SearchConfig)
    batch_frames: int = 30000  # padded input frames per batch of the acoustic model
    device: str = DEFAULT_DEVICE
    timestamps: bool = False
    skip_bad: bool = False  # leave out (and list) audio that cannot be decoded, instead of stopping
    show_progress: bool = SHOW_PROGRESS
    threads: int | None = None  # CPU threads (None: adaptive, see threads.py)
    encoder_path: str | None = None  # encoder features: the encoder's folder (None: where the model recorded it)
    speech: SpeechActivityConfig = field(default_factory=SpeechActivityConfig)  # frames searched
    # As a stream would decode (stream.py), to compare the two: online CMVN for a model trained per speaker, and
    # a bidirectional model's windows (None: whole utterances, or the windows it was trained in).
    online_cmvn: bool = False
    chunk_s: float | None = None
    right_context_s: float | None = None

    def __post_init__(self) -> None:
        _require_choice("device", self.device.split(":")[0], DEVICES)
        StreamConfig(chunk_s=self.chunk_s, right_context_s=self.right_context_s)  # the same checks
        _require_at_least(self, 1, "batch_frames")
        _require_at_most(self, MAX_BATCH_FRAMES, "batch_frames")
        _require_threads(self.threads)


@dataclass(frozen=True)
class StreamConfig:
    """How a stream is recognised as it arrives (stream.py); times in seconds of audio."""

    # A bidirectional model looks `right_context_s` ahead of each `chunk_s` of speech (a latency-controlled
    # BLSTM); a model trained in chunks (train --chunk-frames) streams with its own unless these are given.
    chunk_s: float | None = None  # None: the model's, else 0.4
    right_context_s: float | None = None  # None: the model's, else 0.4
    # Endpointing (Kaldi online2's rules, on the best path's trailing blanks): a segment ends after this much
    # silence following words, or at max_segment_s; silence without words is dropped after idle_s.
    endpointing: bool = True
    endpoint_silence_s: float = 0.5
    idle_s: float = 5.0
    max_segment_s: float = 20.0
    # Online CMVN for a model trained per speaker: the last cmvn_window_s of the stream, the training data's
    # statistics standing in for what is missing of the first cmvn_prior_s.
    cmvn_window_s: float = 6.0
    cmvn_prior_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("chunk_s", "right_context_s"):
            if getattr(self, name) is not None:
                _require_finite(name, getattr(self, name), minimum=0.0)
        if self.chunk_s is not None and self.chunk_s <= 0:
            raise ConfigError("chunk_s", f"{{0}} must be above 0, not {self.chunk_s}")
        for name in ("endpoint_silence_s", "idle_s", "max_segment_s", "cmvn_window_s", "cmvn_prior_s"):
            _require_finite(name, getattr(self, name), minimum=0.0)
        for name in ("endpoint_silence_s", "idle_s", "max_segment_s", "cmvn_window_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"{{0}} must be above 0, not {getattr(self, name)}")


@dataclass(frozen=True)
class LiveConfig:
    """How `asr-cli stream` reads audio and prints what it hears (what it recognises is StreamConfig's)."""

    read_ms: float = 100.0  # audio read and recognised at a time: the latency's floor
    input_format: str = "auto"
    segment_format: str = "txt"
    threads: int = 1  # live recognition keeps to one core by default

    def __post_init__(self) -> None:
        _require_finite("read_ms", self.read_ms, minimum=1.0)
        _require_choice("input_format", self.input_format, STREAM_INPUT_FORMATS)
        _require_choice("segment_format", self.segment_format, STREAM_FORMATS)
        _require_threads(self.threads)


@dataclass(frozen=True)
class SegmentationConfig:
    """How a long recording is cut at pauses; times in seconds."""

    long_recording_s: float = 30.0  # recordings longer than this are segmented
    max_segment_s: float = 20.0
    min_pause_s: float = 0.3
    padding_s: float = 0.2
    threshold_db: float = 12.0  # above the noise floor (the 10th percentile of frame energies)

    def __post_init__(self) -> None:
        if not 0 < self.max_segment_s <= self.long_recording_s or self.min_pause_s < 0 or self.padding_s < 0:
            raise ConfigError(
                ("max_segment_s", "long_recording_s", "min_pause_s", "padding_s"),
                "segmentation needs 0 < {0} <= {1}, and {2} and {3} >= 0",
            )


@dataclass(frozen=True)
class ScoreConfig:
    """How hypotheses are read, matched to references and scored."""

    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    missing: str = "error"  # or "deletion": a missing hypothesis scores as empty
    ignore_extra: bool = False
    compute_cer: bool = True
    bootstrap_draws: int = 1000
    seed: int = 0
    ref_format: str = "auto"  # a folder is a store, a file starting with '{' is JSONL, else Kaldi text
    hyp_format: str = "auto"

    def __post_init__(self) -> None:
        _require_choice("missing", self.missing, MISSING_POLICIES)
        _require_choice("ref_format", self.ref_format, REF_FORMATS)
        _require_choice("hyp_format", self.hyp_format, HYP_FORMATS)
        _require_at_least(self, 0, "bootstrap_draws")


@dataclass(frozen=True)
class ReportConfig:
    """What a score report shows beyond the totals."""

    per_speaker: bool = True
    show_worst: int = 10  # utterances with aligned REF/HYP lines
    top_substitutions: int = 10

    def __post_init__(self) -> None:
        _require_at_least(self, 0, "show_worst", "top_substitutions")


@dataclass(frozen=True)
class CorpusConfig:
    """Size and seed of the built-in synthetic corpus."""

    num_train: int = 1200
    num_dev: int = 150
    num_test: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        _require_at_least(self, 1, "num_train", "num_dev", "num_test")


@dataclass(frozen=True)
class VoicesConfig:
    """Synthetic speech of any text by many voices (voices.py): how much, which voices, and what happens to it."""

    num_utterances: int | None = None  # one of the two must be given: None for the other
    hours: float | None = None
    voices: str = "espeak"  # espeak (8 English accents x 104 variants), flite, all, or a comma list
    rate_wpm: tuple[int, int] = (130, 210)
    pitch: tuple[int, int] = (20, 80)  # eSpeak's 0-99
    noise_source: str | None = None  # a folder of noise recordings, mixed under the speech
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    noise_probability: float = 0.8
    reverb_probability: float = 0.3
    rt60_s: tuple[float, float] = (0.2, 0.7)
    min_words: int = 2
    max_words: int = 30  # longer lines are said in pieces
    # Lines with other characters are left out: digits and symbols are said as words, so their transcripts
    # would be wrong, and a character the real data lacks would change the model's vocabulary.
    characters: str = "abcdefghijklmnopqrstuvwxyz' "
    jobs: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_utterances is not None and self.num_utterances < 1:
            raise ConfigError("num_utterances", f"{{0}} must be at least 1, not {self.num_utterances}")
        if self.hours is not None:
            _require_finite("hours", self.hours, minimum=0.0)
            if self.hours <= 0:
                raise ConfigError("hours", f"{{0}} must be above 0, not {self.hours}")
        for name in ("rate_wpm", "pitch", "noise_snr_db", "rt60_s"):
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise ConfigError(name, f"{{0}} must be LOW:HIGH with LOW <= HIGH, not {low}:{high}")
        if not (80 <= self.rate_wpm[0] and self.rate_wpm[1] <= 450 and 0 <= self.pitch[0] and self.pitch[1] <= 99):
            raise ConfigError(("rate_wpm", "pitch"), "{0} must lie within 80:450 words a minute and {1} within 0:99")
        if self.rt60_s[0] <= 0:
            raise ConfigError("rt60_s", f"{{0}} must be above 0 s, not {self.rt60_s[0]}")
        for name in ("noise_probability", "reverb_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, f"{{0}} is a probability: between 0 and 1, not {getattr(self, name)}")
        _require_at_least(self, 1, "min_words", "max_words", "jobs")
        if self.min_words > self.max_words:
            raise ConfigError(("min_words", "max_words"), "{0} must not be above {1}")


def parse_range(text: str, field_name: str, kind=float) -> tuple:
    """ "LOW:HIGH" as two numbers ("20" is 20:20); an error naming the field otherwise."""
    parts = text.split(":")
    try:
        values = [kind(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ConfigError(field_name, f"{{0}} must be LOW:HIGH (e.g. 5:30), not {text!r}")
    return values[0], values[-1]


@dataclass(frozen=True)
class SplitConfig:
    """How `split` holds out whole speakers."""

    dev_speakers: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        _require_at_least(self, 1, "dev_speakers")


@dataclass(frozen=True)
class LmConfig:
    """How `lm` builds an n-gram model."""

    order: int = 3
    unit: str = "word"
    strip_ids: bool = False  # plain text files are Kaldi `text` files (first field an utterance id)
    prune: tuple[int, ...] = ()  # from bigrams up: drop n-grams seen at most this often (the last for higher orders)
    vocabulary_size: int | None = None  # keep the N most frequent words; the others are <unk>
    vocabulary_path: str | None = None  # ... or the words of a list (one per line, first field)
    max_memory_gb: float | None = None  # refuse a build whose counts would need more; None: the memory available

    def __post_init__(self) -> None:
        _require_choice("unit", self.unit, LM_UNITS)
        if self.max_memory_gb is not None and not self.max_memory_gb > 0:
            raise ConfigError("max_memory_gb", f"{{0}} must be a positive number of GB, not {self.max_memory_gb}")
        if not 1 <= self.order <= MAX_LM_ORDER:
            raise ConfigError("order", f"{{0}} must be between 1 and {MAX_LM_ORDER}, not {self.order}")
        if any(k < 0 for k in self.prune) or list(self.prune) != sorted(self.prune):
            raise ConfigError(
                "prune", f"{{0}} takes counts >= 0 that never fall with the order, not {list(self.prune)}"
            )
        if len(self.prune) > max(self.order - 1, 0):
            raise ConfigError(("prune", "order"), f"{{0}} gives {len(self.prune)} thresholds; a {{1}} {self.order} "
                              f"model has {self.order - 1} orders above unigrams")  # fmt: skip
        if self.vocabulary_size is not None and self.vocabulary_size < 1:
            raise ConfigError("vocabulary_size", f"{{0}} must be at least 1, not {self.vocabulary_size}")
        if self.vocabulary_size is not None and self.vocabulary_path is not None:
            raise ConfigError(("vocabulary_size", "vocabulary_path"), "{0} and {1} both set the vocabulary: give one")


@dataclass(frozen=True)
class CsvImportConfig:
    """Which columns of a CSV/TSV table hold what; the defaults fit Common Voice's TSVs."""

    audio_column: str = "path"
    text_column: str | None = "sentence"  # None: no text
    id_column: str | None = None  # None: the audio file's name without extension
    speaker_column: str | None = None
    delimiter: str | None = None  # None: a tab for .tsv files, a comma otherwise

    def __post_init__(self) -> None:
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ConfigError("delimiter", f"{{0}} must be one character (or tab), not {self.delimiter!r}")


_NESTED = {
    ("TrainConfig", "spec_augment"): SpecAugmentConfig,
    ("TrainConfig", "noise"): NoiseConfig,
    ("TrainConfig", "normalize"): NormalizeConfig,
    ("FeatureConfig", "encoder"): EncoderConfig,
}
