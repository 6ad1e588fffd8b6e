"""Acoustic models: deep (B)LSTM, LSTMP and peephole LSTM after Sak, Senior & Beaufays (2014),
and a feed-forward DNN baseline, all with the same CTC output layer.

Shapes: features (batch, frames, feature_dim) in, log-probabilities
(batch, frames // subsample (rounded up), vocab_size) out, blank at index 0.

A bidirectional layer runs on a padded batch, never on packed sequences (on
CPU, packing halves the speed): the forward direction reads the padded batch
as it is, which leaves every utterance's own frames untouched; the backward
direction runs a unidirectional LSTM over each utterance reversed within its
own length, and its outputs are reversed back.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .cmvn import CmvnStats
from .config import ConfigError, FeatureConfig, ModelConfig
from .errors import AsrCliError, first_line, require_file
from .text import Vocabulary


def stack_and_subsample(features: torch.Tensor, lengths: torch.Tensor, stack: int, subsample: int):
    """Stack each frame with the next `stack - 1` and keep every `subsample`-th.

    (B, T, F) -> (B, ceil(T / subsample), stack * F). Frames past an utterance's
    end must be zero in `features`: stacking then reads zeros there, exactly as
    for the utterance alone. Returns (stacked, new lengths).
    """
    if stack == 1 and subsample == 1:
        return features, lengths
    padded = F.pad(features, (0, 0, 0, stack - 1))
    windows = padded.unfold(1, stack, subsample)  # (B, T', F, stack)
    stacked = windows.transpose(2, 3).reshape(features.shape[0], windows.shape[1], -1)
    return stacked, torch.div(lengths + subsample - 1, subsample, rounding_mode="floor")


def reverse_within_lengths(sequences: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each (B, T, D) sequence's first `length` steps; padding stays at the end.

    The permutation is its own inverse, so the same call reverses outputs back.
    """
    steps = torch.arange(sequences.shape[1], device=sequences.device).unsqueeze(0)
    lengths = lengths.to(sequences.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return sequences.gather(1, index.unsqueeze(2).expand(-1, -1, sequences.shape[2]))


class PeepholeLSTM(nn.Module):
    """An LSTM layer with peephole connections and optional projection, for one direction or several.

    Equations (1)-(5) of Sak et al. (2014), with r_t = W_rm m_t feeding the
    recurrence when projected (LSTMP), else r_t = m_t:
        i_t = sigma(W_ix x_t + W_ir r_{t-1} + W_ic * c_{t-1} + b_i)
        f_t = sigma(W_fx x_t + W_fr r_{t-1} + W_fc * c_{t-1} + b_f)
        c_t = f_t * c_{t-1} + i_t * tanh(W_cx x_t + W_cr r_{t-1} + b_c)
        o_t = sigma(W_ox x_t + W_or r_{t-1} + W_oc * c_t + b_o)
        m_t = o_t * tanh(c_t)
    Gate rows are stacked in nn.LSTM's order (i, f, c, o), so weights copy across.
    With `num_directions` = 2 each direction has its own weights (leading
    dimension) and both advance in the same loop as batched matmuls: half the
    Python-level steps of running them one after the other.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        projection_size: int = 0,
        peepholes: bool = True,
        num_directions: int = 1,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.output_size = projection_size or hidden_size
        directions = num_directions
        self.weight_x = nn.Parameter(torch.empty(directions, 4 * hidden_size, input_size))
        self.weight_r = nn.Parameter(torch.empty(directions, 4 * hidden_size, self.output_size))
        self.bias = nn.Parameter(torch.empty(directions, 4 * hidden_size))
        self.peephole_weights = nn.Parameter(torch.empty(directions, 3, hidden_size)) if peepholes else None
        self.weight_projection = (
            nn.Parameter(torch.empty(directions, projection_size, hidden_size)) if projection_size else None
        )
        bound = 1 / math.sqrt(hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(directions, B, T, input_size) -> (directions, B, T, output_size), from zero initial states."""
        return self.run(inputs)[0]

    def run(self, inputs: torch.Tensor, state=None, which: slice = slice(None)):
        """(directions, B, T, input_size) and the state to start from ((directions, B, output_size) recurrent
        outputs, (directions, B, hidden_size) cells; None: zeros) -> (outputs (directions, B, T, output_size),
        the state after the last frame). `which`: the directions whose weights run (all, or one of them)."""
        directions, batch_size, num_frames, input_size = inputs.shape
        if num_frames == 0:
            return inputs.new_zeros(directions, batch_size, 0, self.output_size), state
        # One matmul for the input contributions of every frame; the loop only does the recurrence.
        gates_from_inputs = torch.baddbmm(
            self.bias[which].unsqueeze(1), inputs.reshape(directions, -1, input_size), self.weight_x[which].mT
        )
        gates_from_inputs = gates_from_inputs.view(directions, batch_size, num_frames, -1).permute(2, 0, 1, 3)
        recurrent_weights = self.weight_r[which].transpose(1, 2)
        projection = self.weight_projection[which].mT if self.weight_projection is not None else None
        peepholes = self.peephole_weights[which].unsqueeze(2) if self.peephole_weights is not None else None
        if state is None:
            state = (inputs.new_zeros(directions, batch_size, self.output_size),
                     inputs.new_zeros(directions, batch_size, self.hidden_size))  # fmt: skip
        recurrent, cell = state
        outputs = []
        for step_gates in gates_from_inputs.unbind(0):  # unbind, not indexing: indexing slows backward 2-3x
            gates = torch.baddbmm(step_gates, recurrent, recurrent_weights)
            input_gate, forget_gate, cell_input, output_gate = gates.chunk(4, dim=2)
            if peepholes is not None:
                input_gate = input_gate + peepholes[:, 0] * cell
                forget_gate = forget_gate + peepholes[:, 1] * cell
            cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(cell_input)
            if peepholes is not None:
                output_gate = output_gate + peepholes[:, 2] * cell
            cell_output = torch.sigmoid(output_gate) * torch.tanh(cell)
            recurrent = torch.bmm(cell_output, projection) if projection is not None else cell_output
            outputs.append(recurrent)
        return torch.stack(outputs, dim=2), (recurrent, cell)


def torch_lstm(config: ModelConfig, input_size: int) -> nn.LSTM:
    """One direction of one layer on torch's LSTM (oneDNN on CPU, cuDNN on GPU)."""
    return nn.LSTM(input_size, config.hidden_size, batch_first=True, proj_size=config.projection_size)


def run_torch_lstm(lstm: nn.LSTM, inputs: torch.Tensor, state=None):
    """(outputs, (h, c) after the last frame) of a batch-first torch LSTM from `state` ((h, c), None: zeros)."""
    if inputs.shape[1] == 0:
        return inputs.new_zeros(inputs.shape[0], 0, lstm.proj_size or lstm.hidden_size), state
    with warnings.catch_warnings():
        # oneDNN has no LSTMP kernel, so torch runs its own on CPU: as fast per cell on one thread (bench_train.py
        # --rows lstmp: 1.27x the frames/s of the plain LSTM of the same cells, whose recurrence costs more).
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        return lstm(inputs, state)


class RecurrentLayer(nn.Module):
    """A (bi)directional LSTM layer over a padded batch; outputs past each length are meaningless.

    Without peepholes each direction is a torch LSTM; with them, one PeepholeLSTM
    runs both directions in lockstep.
    """

    def __init__(self, config: ModelConfig, input_size: int) -> None:
        super().__init__()
        self.bidirectional = config.directions == 2
        if config.peepholes:
            self.peephole = PeepholeLSTM(
                input_size, config.hidden_size, config.projection_size, peepholes=True, num_directions=config.directions
            )
        else:
            self.forward_direction = torch_lstm(config, input_size)
            self.backward_direction = torch_lstm(config, input_size) if self.bidirectional else None

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "peephole"):
            directions = [inputs, reverse_within_lengths(inputs, lengths)] if self.bidirectional else [inputs]
            outputs = self.peephole(torch.stack(directions)).unbind(0)
        else:
            outputs = [run_torch_lstm(self.forward_direction, inputs)[0]]
            if self.bidirectional:
                outputs.append(run_torch_lstm(self.backward_direction, reverse_within_lengths(inputs, lengths))[0])
        if not self.bidirectional:
            return outputs[0]
        return torch.cat([outputs[0], reverse_within_lengths(outputs[1], lengths)], dim=2)

    def window(self, inputs: torch.Tensor, num_owned: int, state, lengths: torch.Tensor):
        """A window of a stream or a chunked batch: (B, W, input_size) of which the first `num_owned` frames are
        the chunk and the rest its right context; `state`: the forward direction's at the chunk's start (None:
        zeros); `lengths`: each utterance's frames within the window. The forward direction runs over the chunk
        from `state` (its state after the chunk is returned, for the next window) and on over the right context
        from there; the backward direction over the whole window from zeros: a latency-controlled BLSTM (Zhang et
        al. 2016), whose outputs need only the right context's future. A unidirectional layer's outputs over the
        chunk are exactly those of the whole sequence. Returns ((B, W, output_size) outputs, the state)."""
        owned, context = inputs[:, :num_owned], inputs[:, num_owned:]
        if hasattr(self, "peephole"):
            forwards, backwards = slice(0, 1), slice(1, 2)
            owned_out, forward_state = self.peephole.run(owned.unsqueeze(0), state, forwards)
            context_out = self.peephole.run(context.unsqueeze(0), forward_state, forwards)[0]
            forward_out = torch.cat([owned_out, context_out], dim=2)[0]
            if self.bidirectional:
                reversed_inputs = reverse_within_lengths(inputs, lengths).unsqueeze(0)
                backward_out = self.peephole.run(reversed_inputs, None, backwards)[0][0]
        else:
            owned_out, forward_state = run_torch_lstm(self.forward_direction, owned, state)
            forward_out = torch.cat([owned_out, run_torch_lstm(self.forward_direction, context, forward_state)[0]], 1)
            if self.bidirectional:
                backward_out = run_torch_lstm(self.backward_direction, reverse_within_lengths(inputs, lengths))[0]
        if not self.bidirectional:
            return forward_out, forward_state
        return torch.cat([forward_out, reverse_within_lengths(backward_out, lengths)], dim=2), forward_state


class ConvFrontend(nn.Module):
    """Two 3x3 convolutions over (time, frequency), each striding 2 in frequency and together `subsample` in time
    (ESPnet's VGG/Conv2dSubsampling, DeepSpeech 2): (B, T, F) -> (B, ceil(T / subsample), channels * ceil(F / 4)).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.time_strides = config.conv_time_strides
        channels = config.conv_channels
        self.first = nn.Conv2d(1, channels, 3, stride=(self.time_strides[0], 2), padding=1)
        self.second = nn.Conv2d(channels, channels, 3, stride=(self.time_strides[1], 2), padding=1)
        self.output_dim = channels * math.ceil(math.ceil(config.input_dim / 2) / 2)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames past each length must be zero; they are zero again between the convolutions, so an
        utterance in a padded batch gets exactly what it gets alone."""
        hidden = features.unsqueeze(1)
        for convolution, stride in zip((self.first, self.second), self.time_strides):
            hidden = F.relu(convolution(hidden))  # (B, C, T', F')
            # A 3-tap convolution with padding 1 keeps ceil(length / stride) frames.
            lengths = torch.div(lengths + stride - 1, stride, rounding_mode="floor")
            valid = torch.arange(hidden.shape[2], device=hidden.device)[None, :] < lengths.to(hidden.device)[:, None]
            hidden = hidden * valid[:, None, :, None]
        return hidden.permute(0, 2, 1, 3).flatten(2), lengths


class AcousticModel(nn.Module):
    """CMVN -> frame stacking/subsampling -> (B)LSTM or DNN body -> linear -> log-softmax."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("cmvn_mean", torch.zeros(config.input_dim))
        self.register_buffer("cmvn_std", torch.ones(config.input_dim))
        self.frontend = ConvFrontend(config) if config.frontend == "conv" else None
        stacked_dim = self.frontend.output_dim if self.frontend is not None else config.input_dim * config.stack_frames
        layer_output = (config.projection_size or config.hidden_size) * config.directions
        if config.architecture == "dnn":
            window_dim = stacked_dim * (2 * config.dnn_context + 1)
            self.layers = nn.ModuleList(
                nn.Linear(window_dim if index == 0 else config.hidden_size, config.hidden_size)
                for index in range(config.num_layers)
            )
            layer_output = config.hidden_size
        else:
            self.layers = nn.ModuleList(
                RecurrentLayer(config, stacked_dim if index == 0 else layer_output)
                for index in range(config.num_layers)
            )
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(layer_output, config.vocab_size)

    def set_cmvn(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.cmvn_mean.copy_(torch.as_tensor(mean))
        self.cmvn_std.copy_(torch.as_tensor(std))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, intermediate_layer: int = 0):
        """(B, T, input_dim) raw features and (B,) lengths -> (log_probs (B, T', V), output lengths (B,)).

        With `intermediate_layer` k >= 1, a third output: the log-probabilities that the same output layer
        reads after the first k layers (for intermediate CTC, Lee & Watanabe 2021). A model trained in chunks
        (`chunk_frames`) runs in chunks, as it was trained and as it streams.
        """
        hidden, lengths = self.front(features, lengths)
        if self.config.chunk_frames and not intermediate_layer:
            return self.chunked_log_probs(hidden, lengths, self.config.chunk_frames, self.config.right_context_frames)
        if self.config.architecture == "dnn":
            hidden = self._context_windows(hidden)
            for layer in self.layers:
                hidden = self.dropout(F.relu(layer(hidden)))
        else:
            for index, layer in enumerate(self.layers, start=1):
                hidden = self.dropout(layer(hidden, lengths))
                if index == intermediate_layer:
                    intermediate = self.output(hidden).float().log_softmax(dim=-1)
        log_probs = self.output(hidden).float().log_softmax(dim=-1)
        return (log_probs, lengths, intermediate) if intermediate_layer else (log_probs, lengths)

    def normalise(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Raw (B, T, input_dim) features by the model's CMVN (the identity for a per-speaker model, whose input
        arrives normalised); frames where `mask` (B, T) is false become zeros, as padding must be."""
        normalised = (features - self.cmvn_mean) / self.cmvn_std
        return normalised if mask is None else normalised * mask.unsqueeze(2)

    def front(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, input_dim) raw features -> (the first layer's (B, T', D) inputs, their lengths): normalised,
        then stacked and subsampled, or through the conv front-end."""
        mask = torch.arange(features.shape[1], device=features.device)[None, :] < lengths.to(features.device)[:, None]
        normalised = self.normalise(features, mask)
        if self.frontend is not None:
            return self.frontend(normalised, lengths.cpu())
        return stack_and_subsample(normalised, lengths, self.config.stack_frames, self.config.subsample)

    def window_log_probs(self, hidden: torch.Tensor, num_owned: int, states: list, lengths: torch.Tensor | None = None):
        """One window of a stream or chunked batch through the recurrent layers (RecurrentLayer.window): (B, W, D)
        first-layer inputs, of which the first `num_owned` are the chunk -> (the chunk's (B, num_owned, V)
        log-probabilities, the layers' forward states after it). `states`: one per layer (None: zeros)."""
        if lengths is None:
            lengths = torch.full((hidden.shape[0],), hidden.shape[1])
        new_states = []
        for layer, state in zip(self.layers, states):
            hidden, state = layer.window(hidden, num_owned, state, lengths)
            hidden = self.dropout(hidden)
            new_states.append(state)
        return self.output(hidden[:, :num_owned]).float().log_softmax(dim=-1), new_states

    def chunked_log_probs(self, hidden: torch.Tensor, lengths: torch.Tensor, chunk_frames: int, right_context: int):
        """The whole batch in windows of `chunk_frames` first-layer frames plus `right_context` more, the forward
        states carried from window to window: what a stream with those settings computes, for training and
        decoding a latency-controlled BLSTM. (B, T', D) -> (log_probs (B, T', V), lengths)."""
        if self.config.architecture == "dnn":
            raise ConfigError("chunk_frames", "{0} is for recurrent models, not the DNN")
        states: list = [None] * len(self.layers)
        pieces = []
        for start in range(0, hidden.shape[1], chunk_frames):
            window = hidden[:, start : start + chunk_frames + right_context]
            num_owned = min(chunk_frames, hidden.shape[1] - start)
            in_window = (lengths.to(hidden.device) - start).clamp(0, window.shape[1]).cpu()
            log_probs, states = self.window_log_probs(window, num_owned, states, in_window)
            pieces.append(log_probs)
        if not pieces:
            return hidden.new_zeros(hidden.shape[0], 0, self.config.vocab_size), lengths
        return torch.cat(pieces, dim=1), lengths

    def _context_windows(self, stacked: torch.Tensor) -> torch.Tensor:
        """(B, T', D) -> (B, T', (2C+1) D): each frame with C neighbours on each side, zeros outside."""
        context = self.config.dnn_context
        padded = F.pad(stacked, (0, 0, context, context))
        windows = padded.unfold(1, 2 * context + 1, 1)  # (B, T', D, 2C+1)
        return windows.transpose(2, 3).reshape(stacked.shape[0], stacked.shape[1], -1)

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())


MODEL_FORMAT_VERSION = 1


def model_file_contents(
    model: AcousticModel, feature_config: dict, vocabulary: list[str], info: dict, input_statistics=None
) -> dict:
    """Everything decoding needs, as plain tensors, numbers, strings, lists and dicts (no pickled code).
    `input_statistics`: the training features' CmvnStats, which online CMVN starts from when a per-speaker model
    streams."""
    contents = {
        "format_version": MODEL_FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "feature_config": feature_config,
        "vocabulary": list(vocabulary),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "info": info,
    }
    if input_statistics is not None:
        contents["input_statistics"] = input_statistics.to_dict()
    return contents


@dataclass(frozen=True)
class ModelFile:
    """A loaded model file: the model (eval mode, on its device) and what decoding needs besides."""

    model: AcousticModel
    feature_config: FeatureConfig
    vocabulary: Vocabulary
    info: dict  # the training record: data, best epoch and its validation scores, versions
    input_statistics: CmvnStats | None = None  # of the training features (model files since streaming)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def phones(self):
        """A phone model's `lexicon.PhoneSet`; None for a character model."""
        from .lexicon import PhoneSet

        return PhoneSet(self.config.phones) if self.config.phone_units else None

    @property
    def seconds_per_frame(self) -> float:
        """Seconds between the model's output frames (the input's frame shift times the subsampling)."""
        return self.config.subsample * self.feature_config.frame_shift_ms / 1000

    def feature_extractor(self, encoder_path=None):
        """What computes this model's features from 16-bit-range waveforms (see features.feature_extractor)."""
        from .features import feature_extractor

        return feature_extractor(self.feature_config, encoder_path)


def load_model_file(path, device: str | torch.device = "cpu") -> ModelFile:
    """The model file at `path` (a `model.pt`); loads no code (weights_only)."""
    path = require_file(path, "model file")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the one-line error below says it
            warnings.simplefilter("ignore")
            contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated, foreign or unsafe files
        if "Weights only load failed" in str(error):  # torch's own text goes on to suggest unsafe loading: not ours
            reason = "it holds objects other than plain data and tensors, which asr-cli never loads"
        else:
            reason = f"{type(error).__name__}: {first_line(error)}"
        raise AsrCliError(f"{path} is not a readable asr-cli model file ({reason})") from error
    if not isinstance(contents, dict) or "model_config" not in contents or "state_dict" not in contents:
        raise AsrCliError(f"{path} is not an asr-cli model file (a training checkpoint? use EXP_DIR/model.pt)")
    if contents.get("format_version") != MODEL_FORMAT_VERSION:
        raise AsrCliError(
            f"{path}: model format {contents.get('format_version')} is not supported (expected {MODEL_FORMAT_VERSION})"
        )
    model, feature_config = _model_from_contents(contents, path)
    info = contents.get("info", {})
    return ModelFile(model.to(device).eval(), feature_config, Vocabulary(tuple(contents["vocabulary"])),
                     info if isinstance(info, dict) else {}, _input_statistics(contents, path))  # fmt: skip


def _input_statistics(contents: dict, path) -> CmvnStats | None:
    record = contents.get("input_statistics")
    if record is None:
        return None
    try:
        return CmvnStats.from_dict(record)
    except (TypeError, ValueError, KeyError) as error:
        raise AsrCliError(
            f"{path}: its input statistics are damaged ({first_line(error)}); use another copy"
        ) from error


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when available, else the CPU. Asking for CUDA where there is none is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", "{0} cuda: no CUDA device is available; use {0} cpu")
    return torch.device(name)


def _model_from_contents(contents: dict, path) -> tuple[AcousticModel, FeatureConfig]:
    """The model and features a model file describes; an inconsistent file (fields of the wrong type or value
    included) is an error naming what is wrong, never a traceback, and never runs code."""
    problem = None
    try:
        config = ModelConfig.from_dict(contents["model_config"])
        vocabulary = contents.get("vocabulary")
        if not isinstance(contents.get("feature_config"), dict):
            problem = "it has no feature configuration"
        elif not isinstance(vocabulary, list) or len(vocabulary) + 1 != config.vocab_size:
            problem = f"its vocabulary does not match its output layer ({config.vocab_size} outputs)"
        elif len(set(vocabulary)) != len(vocabulary) or not all(isinstance(c, str) for c in vocabulary):
            problem = "its vocabulary lists a unit twice, or one that is not text"
        else:
            feature_config = FeatureConfig.from_dict(contents["feature_config"])
            model = AcousticModel(config)
            model.load_state_dict(contents["state_dict"])
            problem = _numerical_problem(model)
            if problem is None:
                return model, feature_config
    except (TypeError, ValueError, KeyError, RuntimeError, AttributeError) as error:
        problem = f"{type(error).__name__}: {first_line(error)}"
    raise AsrCliError(
        f"{path}: an asr-cli model file with inconsistent contents ({problem}); it was damaged or "
        "edited: use another copy, or train again"
    )


def _numerical_problem(model: AcousticModel) -> str | None:
    """What makes a model's numbers unusable (NaN or infinite weights, a CMVN deviation that is not positive),
    or None: refused where a model enters (decode, transcribe, export, --init-from)."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return f"{name} holds NaN or infinite values"
    if not (model.cmvn_std > 0).all():
        return "its CMVN standard deviations are not all positive"
    return None


def _describe_units(config: ModelConfig, vocabulary: list[str]) -> str:
    if config.phone_units:
        return f"{len(config.phones)} phones + word boundary + blank: {' '.join(config.phones)}"
    return f"{len(vocabulary)} characters + blank: " + "".join(vocabulary).replace(" ", "<space>")


def _describe_features(config: FeatureConfig) -> str:
    if config.encoder is not None:
        return f"encoder states: {config.encoder.describe()}"
    size = f"{config.num_ceps} cepstra" if config.kind == "mfcc" else f"{config.num_mel_bins} mel bins"
    return (
        f"{config.kind}, {size}{' + deltas' if config.deltas else ''}, {config.sample_rate_hz} Hz, "
        f"{config.frame_shift_ms:g} ms shift"
    )


def describe_model_file(path) -> dict:
    """What a model file holds, for `asr-cli info`: architecture, size, units, features and training record."""
    loaded = load_model_file(path)
    model, config, features = loaded.model, loaded.config, loaded.feature_config.to_dict()
    front = (
        f"conv front-end ({config.conv_channels} channels)"
        if config.frontend == "conv"
        else f"{config.stack_frames} frames stacked"
    )
    body = (
        "DNN"
        if config.architecture == "dnn"
        else f"{config.architecture.upper()}"
        + (f"P (projection {config.projection_size})" if config.projection_size else "")
        + (" with peepholes" if config.peepholes else "")
    )
    return {
        "file": str(path),
        "architecture": f"{config.num_layers}x{config.hidden_size} {body}, {front}, subsampled {config.subsample}, "
        f"dropout {config.dropout:g}",
        "parameters": model.num_parameters(),
        "units": _describe_units(config, list(loaded.vocabulary.characters)),
        "features": _describe_features(loaded.feature_config),
        "normalisation": "per speaker (per utterance when no speaker is known)"
        if config.speaker_cmvn
        else "global CMVN of the training data",
        "training": loaded.info,
        "model_config": config.to_dict(),
        "feature_config": features,
    }


EXPORT_METADATA_FILE = "asr_cli.json"  # inside a TorchScript export: what the module expects and produces
EXPORT_TOLERANCE = 1e-4


def export_torchscript(model_path, output) -> dict:
    """Write a model file's acoustic model as TorchScript (traced), with its feature pipeline's configuration,
    vocabulary and normalisation in the extra file `asr_cli.json`; checked against the model on a batch of
    another shape than the trace's. Returns that metadata.

    The module maps (B, T, F) features and (B,) lengths to (log_probs (B, T', V), lengths (B,)).
    """
    import json
    import warnings

    from .fileio import atomic_write

    loaded = load_model_file(model_path)
    model = loaded.model
    if model.config.peepholes:
        raise AsrCliError(
            f"{model_path}: peephole layers run a Python loop over time, which TorchScript tracing "
            "cannot capture; export models built on torch's LSTM (trained without --peepholes)"
        )
    generator = torch.Generator().manual_seed(0)
    example = (torch.randn(2, 60, model.config.input_dim, generator=generator), torch.tensor([60, 41]))
    check = (torch.randn(3, 97, model.config.input_dim, generator=generator), torch.tensor([97, 50, 13]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it keeps as constants
        traced = torch.jit.trace(model, example)
        expected, traced_output = model(*check), traced(*check)
    difference = float((expected[0] - traced_output[0]).abs().max())
    if difference > EXPORT_TOLERANCE or not torch.equal(expected[1], traced_output[1]):
        raise AsrCliError(f"{model_path}: the traced model differs from the model ({difference:.2g}); not exported")
    metadata = {
        "format": "asr-cli torchscript 1",
        "inputs": "features (batch, frames, dim) float32, lengths (batch,) int64",
        "outputs": "log_probs (batch, frames / subsample, vocabulary + 1; blank 0), lengths (batch,)",
        "feature_config": loaded.feature_config.to_dict(),
        "vocabulary": list(loaded.vocabulary.characters),
        "model_config": model.config.to_dict(),
        "normalisation": (
            "features must arrive normalised by their speaker's (or utterance's) mean and std"
            if model.config.speaker_cmvn
            else "global CMVN is inside the module"
        ),
    }
    encoder = loaded.feature_config.encoder
    if encoder is not None:  # the module is the part after the encoder, which is not inside it
        metadata["contains"] = "the BLSTM-CTC part only: its input features are the states of the encoder named here"
        metadata["encoder"] = encoder.identity()
    with atomic_write(output, "wb") as handle:
        torch.jit.save(traced, handle, _extra_files={EXPORT_METADATA_FILE: json.dumps(metadata)})
    return metadata
