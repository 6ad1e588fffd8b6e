"""Frozen pretrained speech encoders as a feature kind: their hidden states are the features.

Two kinds of model folder are read:

- **ctranslate2**: a CTranslate2 Whisper model (faster-whisper's format: `model.bin` and `config.json`), run by
  the `ctranslate2` package. It gives the encoder's output only.
- **transformers**: a Hugging Face model folder (`config.json` and `model.safetensors` or `pytorch_model.bin`)
  of a Whisper, wav2vec 2.0, HuBERT or WavLM model, run by `transformers` in torch; every block's states are
  available (`layer`).

Whisper reads an 80-bin log-mel spectrogram, computed here as faster-whisper computes it (10 ms frames; 160
zero samples appended; a centred, reflect-padded 400-point STFT under a periodic Hann window, its last frame
dropped; Slaney mel filters; log10 floored at 1e-10 and at 8 below the utterance's maximum; scaled as (x + 4)
/ 4), and gives a state every 20 ms. Its encoder has no attention mask, so every window is encoded alone, at
its own length (or padded to 30 s with `pad_to_window`). The waveform encoders read the samples themselves.
Input longer than `window_s` is encoded in windows that overlap by WINDOW_CONTEXT_S on each side, and each
state is taken from the window where it has the most context.

Both backends are optional dependencies (`pip install 'asr-cli[encoder]'`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import WHISPER_HOP_SAMPLES, WHISPER_MIN_SAMPLES, ConfigError, EncoderConfig
from .errors import AsrCliError, first_line

WHISPER_SAMPLE_RATE_HZ = 16000
WHISPER_FFT_LENGTH = 400
WHISPER_WINDOW_MEL_FRAMES = 3000  # 30 s: the length of Whisper's positional embedding, in mel frames
WINDOW_CONTEXT_S = 5.0  # context kept on each side of the states taken from a window of a long input
CT2_WEIGHTS_FILE = "model.bin"
HF_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
HF_SHARDED_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WAVEFORM_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer", "unispeech-sat")
INSTALL_HINT = "pip install 'asr-cli[encoder]'"


# --- Whisper's log-mel input ---


@functools.lru_cache(maxsize=4)
def slaney_mel_filters(sample_rate_hz: int, fft_length: int, num_mel_bins: int) -> np.ndarray:
    """Slaney-style mel filters, area-normalised, shape (num_mel_bins, fft_length // 2 + 1): those of librosa's
    default (`librosa.filters.mel`), which Whisper's input was built with."""
    fft_hz = np.fft.rfftfreq(n=fft_length, d=1.0 / sample_rate_hz)
    mels = np.linspace(0.0, _slaney_mel(sample_rate_hz / 2), num_mel_bins + 2)
    edges_hz = _slaney_hz(mels)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


SLANEY_LINEAR_HZ_PER_MEL = 200.0 / 3  # linear below 1 kHz, logarithmic above
SLANEY_LOG_START_HZ = 1000.0
SLANEY_LOG_STEP = math.log(6.4) / 27.0


def _slaney_mel(frequency_hz: float) -> float:
    if frequency_hz < SLANEY_LOG_START_HZ:
        return frequency_hz / SLANEY_LINEAR_HZ_PER_MEL
    start_mel = SLANEY_LOG_START_HZ / SLANEY_LINEAR_HZ_PER_MEL
    return start_mel + math.log(frequency_hz / SLANEY_LOG_START_HZ) / SLANEY_LOG_STEP


def _slaney_hz(mels: np.ndarray) -> np.ndarray:
    start_mel = SLANEY_LOG_START_HZ / SLANEY_LINEAR_HZ_PER_MEL
    linear = mels * SLANEY_LINEAR_HZ_PER_MEL
    logarithmic = SLANEY_LOG_START_HZ * np.exp(SLANEY_LOG_STEP * (mels - start_mel))
    return np.where(mels >= start_mel, logarithmic, linear)


def whisper_log_mel(samples: np.ndarray, num_mel_bins: int = 80) -> torch.Tensor:
    """(num_samples,) float32 samples at 16 kHz -> (num_mel_bins, num_samples // 160 + 1) Whisper input, computed
    as faster-whisper's FeatureExtractor does (module docstring)."""
    if len(samples) < WHISPER_MIN_SAMPLES:
        raise AsrCliError(f"{len(samples)} samples are too few for Whisper's input (at least {WHISPER_MIN_SAMPLES})")
    waveform = torch.nn.functional.pad(torch.from_numpy(np.asarray(samples, np.float32)), (0, WHISPER_HOP_SAMPLES))
    window = torch.hann_window(WHISPER_FFT_LENGTH, periodic=True)
    spectrum = torch.stft(
        waveform,
        WHISPER_FFT_LENGTH,
        WHISPER_HOP_SAMPLES,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spectrum[:, :-1].abs().square()
    filters = torch.from_numpy(slaney_mel_filters(WHISPER_SAMPLE_RATE_HZ, WHISPER_FFT_LENGTH, num_mel_bins))
    log_mel = torch.clamp(filters @ power, min=1e-10).log10()
    log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0


# --- windows of long inputs ---


@dataclass(frozen=True)
class Window:
    """States [first, last) of an input are taken from the window of states [start, start + length)."""

    start: int
    length: int
    first: int
    last: int


def windows(num_states: int, window_states: int, context_states: int) -> list[Window]:
    """Cover `num_states` states with windows of at most `window_states`, each state taken from a window that
    gives it `context_states` of context on both sides where the input allows."""
    if num_states <= window_states:
        return [Window(0, num_states, 0, num_states)]
    step = window_states - 2 * context_states
    chosen = []
    for first in range(0, num_states, step):
        last = min(first + step, num_states)
        start = min(max(first - context_states, 0), num_states - window_states)
        chosen.append(Window(start, window_states, first, last))
    return chosen


# --- finding and identifying an encoder folder ---


def sha256_of(paths: Sequence[Path]) -> str:
    """sha256 of the files' contents, in the order given (one file: that file's sha256)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _cached_sha256(paths: tuple[Path, ...], stamps: tuple[tuple[int, int], ...]) -> str:
    return sha256_of(paths)


def weights_sha256(paths: Sequence[Path]) -> str:
    """sha256 of weight files, computed once per process for files that have not changed since."""
    stamps = tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    return _cached_sha256(tuple(paths), stamps)


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AsrCliError(f"{path}: unreadable ({error}); is the encoder folder complete?") from error
    if not isinstance(record, dict):
        raise AsrCliError(f"{path}: not a JSON object; is this an encoder folder?")
    return record


def _weight_files(folder: Path) -> tuple[str, list[Path]]:
    """(backend, the weight files) of an encoder folder; an error saying what a folder needs otherwise."""
    if (folder / CT2_WEIGHTS_FILE).is_file():
        return "ctranslate2", [folder / CT2_WEIGHTS_FILE]
    for name in HF_WEIGHTS_FILES:
        if (folder / name).is_file():
            return "transformers", [folder / name]
    for name in HF_SHARDED_INDEXES:
        if (folder / name).is_file():
            shards = sorted(set(_read_json(folder / name).get("weight_map", {}).values()))
            return "transformers", [folder / shard for shard in shards]
    raise AsrCliError(
        f"{folder} is not an encoder folder: it holds neither a CTranslate2 Whisper model "
        f"({CT2_WEIGHTS_FILE} + config.json, faster-whisper's format) nor a Hugging Face model "
        f"({' or '.join(HF_WEIGHTS_FILES)} + config.json)"
    )


def inspect_encoder(path: str | Path, layer: int = -1, pad_to_window: bool = False) -> EncoderConfig:
    """The identity of the encoder in folder `path` (backend, model type, weights' sha256, dimension), checked."""
    folder = Path(path)
    if not folder.is_dir():
        raise AsrCliError(
            f"encoder folder not found: {folder}"
            if not folder.exists()
            else f"{folder} is a file; give the encoder's folder"
        )
    backend, weight_files = _weight_files(folder)
    missing = [str(p) for p in weight_files if not p.is_file()]
    if missing or not (folder / "config.json").is_file():
        raise AsrCliError(f"{folder}: incomplete encoder folder (missing {', '.join(missing) or 'config.json'})")
    shape = (
        _ct2_whisper_shape(folder / CT2_WEIGHTS_FILE)
        if backend == "ctranslate2"
        else _transformers_shape(folder / "config.json")
    )
    if backend == "ctranslate2" and layer != -1:
        raise ConfigError(
            "encoder_layer",
            "{0}: a CTranslate2 model gives its encoder's output only (-1); for "
            "other blocks convert it to a Hugging Face folder (scripts/whisper_ct2_to_transformers.py)",
        )
    if pad_to_window and shape["model_type"] != "whisper":
        raise ConfigError("encoder_pad", "{0} is for Whisper encoders, whose training input is 30 s windows")
    return EncoderConfig(
        name=folder.resolve().name,
        backend=backend,
        sha256=weights_sha256(weight_files),
        layer=layer,
        pad_to_window=pad_to_window,
        path=str(folder.resolve()),
        **shape,
    )


def _ct2_whisper_shape(weights: Path) -> dict:
    """Dimension and block count of a CTranslate2 Whisper model, read from its file's variable table."""
    names = ct2_variable_names(weights)
    if not any(name.startswith("encoder/conv1") for name in names):
        raise AsrCliError(f"{weights}: a CTranslate2 model, but not a Whisper model (no encoder/conv1)")
    blocks = {name.split("/")[1] for name in names if re.match(r"encoder/layer_\d+/", name)}
    return {
        "model_type": "whisper",
        "dim": int(names["encoder/conv1/weight"][0]),
        "num_layers": len(blocks),
        "frame_shift_ms": 20.0,
    }


def _transformers_shape(config_path: Path) -> dict:
    config = _read_json(config_path)
    model_type = config.get("model_type")
    if model_type == "whisper":
        return {
            "model_type": "whisper",
            "dim": int(config["d_model"]),
            "num_layers": int(config["encoder_layers"]),
            "frame_shift_ms": 20.0,
        }
    if model_type in WAVEFORM_MODEL_TYPES:
        conv = tuple(zip(config["conv_kernel"], config["conv_stride"]))
        stride = math.prod(s for _, s in conv)
        return {
            "model_type": model_type,
            "dim": int(config["hidden_size"]),
            "num_layers": int(config["num_hidden_layers"]),
            "conv_layers": conv,
            "frame_shift_ms": 1000.0 * stride / WHISPER_SAMPLE_RATE_HZ,
        }
    raise AsrCliError(
        f"{config_path}: model type {model_type!r} is not a speech encoder asr-cli can use (Whisper, "
        f"{', '.join(WAVEFORM_MODEL_TYPES)})"
    )


def ct2_variable_names(weights: Path) -> dict[str, tuple[int, ...]]:
    """Variable name -> shape of a CTranslate2 model file (its layout: ctranslate2/specs/model_spec.py)."""
    return {name: shape for name, shape, _, _ in iter_ct2_variables(weights, read_data=False)}


CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def iter_ct2_variables(weights: Path, read_data: bool = True):
    """Yield (name, shape, dtype name, raw bytes or None) for each variable of a CTranslate2 model file."""
    import struct

    def unpack(handle, fmt):
        data = handle.read(struct.calcsize(fmt))
        if len(data) != struct.calcsize(fmt):
            raise AsrCliError(f"{weights}: truncated CTranslate2 model file")
        return struct.unpack(fmt, data)[0]

    def string(handle):
        return handle.read(unpack(handle, "H"))[:-1].decode("utf-8", errors="replace")

    with open(weights, "rb") as handle:
        unpack(handle, "I")  # binary version
        string(handle)  # spec name
        unpack(handle, "I")  # revision
        for _ in range(unpack(handle, "I")):
            name = string(handle)
            shape = tuple(unpack(handle, "I") for _ in range(unpack(handle, "B")))
            type_id, num_bytes = unpack(handle, "B"), unpack(handle, "I")
            if read_data:
                data = handle.read(num_bytes)
            else:
                handle.seek(num_bytes, os.SEEK_CUR)
                data = None
            yield name, shape, CT2_DTYPES[type_id] if type_id < len(CT2_DTYPES) else str(type_id), data


# --- running an encoder ---


class SpeechEncoder:
    """An encoder folder loaded for its identity `config`: waveforms at 16 kHz in, (num_frames, dim) states out,
    with `config.num_frames(len(waveform))` frames each. Call it like a `features.FeatureExtractor`."""

    def __init__(self, config: EncoderConfig, path: str | Path | None = None, device: str = "cpu") -> None:
        folder = Path(path if path is not None else config.path)
        self.config = config
        self.folder = folder
        self._check_identity(folder)
        runner = (
            _ct2_whisper_runner(folder, device)
            if config.backend == "ctranslate2"
            else _transformers_runner(folder, config, device)
        )
        self._encode_window = _padded_to_whisper_window(runner) if config.pad_to_window else runner

    def _check_identity(self, folder: Path) -> None:
        """The folder's encoder must be the recorded one (same weights, same kind)."""
        expected = self.config
        if not folder.is_dir():
            raise AsrCliError(
                f"the features come from the encoder {expected.name} (sha256 {expected.sha256[:12]}...), "
                f"which is not at {folder}; give its folder with --encoder"
            )
        found = inspect_encoder(folder, expected.layer, expected.pad_to_window)
        if found.sha256 != expected.sha256 or found.backend != expected.backend:
            raise AsrCliError(
                f"{folder} holds another encoder ({found.backend}, weights sha256 {found.sha256[:12]}...) "
                f"than the features were computed with: {expected.name} ({expected.backend}, sha256 "
                f"{expected.sha256[:12]}...); give that encoder's folder with --encoder"
            )

    def __call__(self, waveforms: Sequence[np.ndarray], seeds: Sequence[int] | None = None) -> list[np.ndarray]:
        """States of each (num_samples,) float32 waveform at 16 kHz: float32 (num_frames, dim) arrays."""
        return [self._encode(np.asarray(waveform, np.float32)) for waveform in waveforms]

    def _encode(self, samples: np.ndarray) -> np.ndarray:
        config = self.config
        num_states = config.num_frames(len(samples))
        if num_states == 0:
            return np.zeros((0, config.dim), np.float32)
        whisper = config.model_type == "whisper"
        inputs = whisper_log_mel(samples)[:, : 2 * num_states] if whisper else torch.from_numpy(samples)
        frames_per_state = 2 if whisper else math.prod(s for _, s in config.conv_layers)
        window_states = int(config.window_s * 1000 / config.frame_shift_ms)
        context_states = int(WINDOW_CONTEXT_S * 1000 / config.frame_shift_ms)
        output = np.empty((num_states, config.dim), np.float32)
        for window in windows(num_states, window_states, context_states):
            begin = window.start * frames_per_state
            if whisper:
                piece = inputs[:, begin : begin + window.length * frames_per_state]
            else:  # the samples the window's states see (its receptive field runs past its last state's start)
                piece = inputs[begin : begin + _samples_for(config, window.length)]
            states = self._encode_window(piece)
            output[window.first : window.last] = states[window.first - window.start : window.last - window.start]
        return output


def _samples_for(config: EncoderConfig, num_states: int) -> int:
    """The fewest samples a waveform encoder turns into `num_states` states."""
    samples = num_states
    for kernel, stride in reversed(config.conv_layers):
        samples = (samples - 1) * stride + kernel
    return samples


def _ct2_whisper_runner(folder: Path, device: str) -> Callable[[torch.Tensor], np.ndarray]:
    try:
        import ctranslate2
    except ImportError as error:
        raise AsrCliError(
            f"{folder} is a CTranslate2 model: it needs the ctranslate2 package ({INSTALL_HINT})"
        ) from error
    threads = torch.get_num_threads()
    try:
        # float32: the weights are float16 on disk, which CPUs compute in float32 anyway (CTranslate2 warns otherwise)
        model = ctranslate2.models.Whisper(
            str(folder), device=device, compute_type="float32", intra_threads=threads, inter_threads=1
        )
    except (RuntimeError, ValueError) as error:
        raise AsrCliError(f"{folder}: CTranslate2 cannot load it ({first_line(error)})") from error

    def encode(log_mel: torch.Tensor) -> np.ndarray:
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(log_mel.numpy()[None]))
        return np.asarray(model.encode(storage, to_cpu=True))[0]

    return encode


def _padded_to_whisper_window(encode: Callable[[torch.Tensor], np.ndarray]) -> Callable[[torch.Tensor], np.ndarray]:
    """Whisper's training condition: every window padded (zeros, as faster-whisper pads) to 30 s, the states
    of the real frames kept."""

    def padded(log_mel: torch.Tensor) -> np.ndarray:
        num_frames = log_mel.shape[1]
        full = torch.nn.functional.pad(log_mel, (0, WHISPER_WINDOW_MEL_FRAMES - num_frames))
        return encode(full)[: num_frames // 2]

    return padded


def _transformers_runner(folder: Path, config: EncoderConfig, device: str) -> Callable[[torch.Tensor], np.ndarray]:
    try:
        import transformers
    except ImportError as error:
        raise AsrCliError(
            f"{folder} is a Hugging Face model: it needs the transformers package ({INSTALL_HINT})"
        ) from error
    transformers.logging.set_verbosity_error()  # a Whisper folder without its decoder is expected here
    transformers.utils.logging.disable_progress_bar()
    try:
        model = transformers.AutoModel.from_pretrained(str(folder)).to(device).eval()
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise AsrCliError(f"{folder}: transformers cannot load it ({first_line(error)})") from error
    if config.model_type == "whisper":
        return _whisper_blocks(model.encoder, config.layer, device)
    normalise = _normalises_waveform(folder)

    @torch.no_grad()
    def encode(samples: torch.Tensor) -> np.ndarray:
        values = samples
        if normalise:  # as the model's feature extractor does: zero mean, unit variance per input
            values = (values - values.mean()) / torch.sqrt(values.var(unbiased=False) + 1e-7)
        outputs = model(values[None].to(device), output_hidden_states=True)
        states = outputs.last_hidden_state if config.layer == -1 else outputs.hidden_states[config.layer]
        return states[0].float().cpu().numpy()

    return encode


def _normalises_waveform(folder: Path) -> bool:
    path = folder / "preprocessor_config.json"
    return bool(_read_json(path).get("do_normalize", True)) if path.is_file() else True


def _whisper_blocks(encoder: torch.nn.Module, layer: int, device: str) -> Callable[[torch.Tensor], np.ndarray]:
    """Whisper's encoder over a window of any even length (transformers' own forward insists on 30 s): the
    convolutions, the positional embedding's first positions, the blocks up to `layer` (-1: all, then the final
    layer norm)."""
    last_block = len(encoder.layers) if layer == -1 else layer

    @torch.no_grad()
    def encode(log_mel: torch.Tensor) -> np.ndarray:
        hidden = torch.nn.functional.gelu(encoder.conv1(log_mel[None].to(device)))
        hidden = torch.nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
        hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
        for block in encoder.layers[:last_block]:
            output = block(hidden, attention_mask=None)
            hidden = output[0] if isinstance(output, tuple) else output
        if layer == -1:
            hidden = encoder.layer_norm(hidden)
        return hidden[0].float().cpu().numpy()

    return encode
