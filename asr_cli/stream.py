"""Live recognition: audio in as it arrives, words out while the person is still speaking.

    samples -> (resampled) -> frames (features.FeatureStream: Kaldi framing across chunk edges)
    -> online CMVN for a per-speaker model (cmvn.OnlineCmvn) -> the model's CMVN
    -> stacked and subsampled (FrameStacker) -> the recurrent layers, state carried (model.window_log_probs)
    -> the search carried on frame by frame (search.PrefixSearch / GreedySearch)
    -> endpointing: a segment ends after silence, its words final; the search and the layers' states restart

A unidirectional model's outputs are those of the whole stream at once, whatever the chunks; a bidirectional one
runs latency-controlled (a window of `chunk_s` plus `right_context_s` of future, the forward state carried),
exactly as `model.chunked_log_probs` decodes a file. Everything is bounded: the samples and frames held are a
window's worth, the search's tree a segment's (at most `max_segment_s`).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch

from .audio import mono_samples
from .cmvn import OnlineCmvn
from .config import SearchConfig, StreamConfig
from .errors import AsrCliError
from .features import FeatureStream
from .inference import hypothesis_text, word_timings
from .lm_tables import LanguageModelTables
from .model import ModelFile
from .results import Hypothesis, StreamSegment, StreamUpdate
from .search import GreedySearch, PrefixSearch
from .text import BLANK_INDEX

DEFAULT_CHUNK_S = 0.4  # a bidirectional model's, when it was not trained in chunks
DEFAULT_RIGHT_CONTEXT_S = 0.4


def streaming_problem(model: ModelFile, tables: LanguageModelTables | None = None) -> str | None:
    """Why a model (with an LM) cannot stream, or None: features or layers that need whole recordings."""
    config = model.config
    if model.feature_config.encoder is not None:
        return "its features are a pretrained encoder's states, which attend over whole windows of audio"
    if config.architecture == "dnn":
        return "it is a DNN, whose context windows are not built frame by frame (train an LSTM or BLSTM)"
    if config.frontend == "conv":
        return "its convolutional front-end is not built frame by frame yet (train with --frontend stack)"
    if tables is not None and tables.arrays.external:
        return "its LM is searched through KenLM, which needs whole utterances; give the ARPA file (--lm-backend arpa)"
    return None


class FrameStacker:
    """Frame stacking and subsampling across chunk edges (model.stack_and_subsample, a few frames at a time):
    output k is input frames k * subsample ... k * subsample + stack - 1, zeros past the end at `finish`."""

    def __init__(self, stack: int, subsample: int, dim: int) -> None:
        self.stack, self.subsample = stack, subsample
        self.held = torch.zeros(0, dim)  # from the next output's first frame on
        self.skip = 0  # frames still to come that no output starts at (subsample > stack)

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, dim) normalised frames -> the (m, stack * dim) outputs they complete."""
        dropped = min(self.skip, len(frames))
        self.skip -= dropped
        held = torch.cat([self.held, frames[dropped:]])
        count = (len(held) - self.stack) // self.subsample + 1 if len(held) >= self.stack else 0
        return self._take(held, count)

    def finish(self) -> torch.Tensor:
        """The outputs left (the last ones read zeros past the end, as offline)."""
        held = torch.cat([self.held, self.held.new_zeros(self.stack - 1, self.held.shape[1])])
        return self._take(held, math.ceil(len(self.held) / self.subsample))

    def _take(self, held: torch.Tensor, count: int) -> torch.Tensor:
        if count <= 0:
            self.held = held
            return held.new_zeros(0, self.stack * held.shape[1])
        windows = held.unfold(0, self.stack, self.subsample)[:count]  # (count, dim, stack)
        used = count * self.subsample
        self.held, self.skip = held[used:], max(used - len(held), 0) + self.skip
        return windows.transpose(1, 2).reshape(count, -1)


class Stream:
    """A recogniser fed audio as it arrives (`Recognizer.stream`): `accept` takes any number of samples and says
    what changed, `finish` ends the stream. See the module's docstring."""

    def __init__(
        self,
        model: ModelFile,
        search: SearchConfig = SearchConfig(),
        tables: LanguageModelTables | None = None,
        config: StreamConfig = StreamConfig(),
        spoken_words: dict[str, str] | None = None,
    ) -> None:
        problem = streaming_problem(model, tables)
        if problem is not None:
            raise AsrCliError(f"this model cannot stream: {problem}")
        self.model, self.search_config, self.tables, self.config = model, search.resolved(), tables, config
        self.spoken_words = spoken_words
        self.sample_rate_hz = model.feature_config.sample_rate_hz
        self.seconds_per_frame = model.seconds_per_frame
        self.chunk_frames, self.right_context = stream_window(model, config)
        self.features = FeatureStream(model.feature_config)
        self.cmvn = self._online_cmvn(model, config)
        self.stacker = FrameStacker(model.config.stack_frames, model.config.subsample, model.feature_config.dim)
        first_layer_dim = model.feature_config.dim * model.config.stack_frames
        self.pending = torch.zeros(0, first_layer_dim)  # first-layer inputs not yet through the layers
        acoustic = model.model
        self.device = acoustic.cmvn_mean.device  # the layers run there; features and stacking on the CPU
        self.input_mean, self.input_std = acoustic.cmvn_mean.cpu(), acoustic.cmvn_std.cpu()  # model.normalise's
        self.finished = False
        self.resampler, self.input_rate_hz = None, None
        self.num_samples = 0  # at the model's rate
        self.segment_start = 0  # the segment's first output frame, from the stream's start
        self._restart()

    # --- the public side ---

    def accept(self, samples, sample_rate: int | None = None) -> StreamUpdate:
        """Give the next samples (1-D, or samples x channels averaged to mono; float in [-1, 1] or int16) at
        `sample_rate` Hz (default: the model's; another rate is resampled as it comes, and must then stay the
        same). Returns the segments this finished and the current partial text."""
        if self.finished:
            raise AsrCliError("this stream was finished; start another with model.stream()")
        samples = self._resampled(self._mono(samples), sample_rate)
        return self._frames_in(self.features.push(samples), final=False)

    def finish(self) -> StreamUpdate:
        """End the stream: the frames still held are recognised and the last segment is finished."""
        if self.finished:
            return StreamUpdate("")
        self.finished = True
        frames = np.zeros((0, self.model.feature_config.dim), np.float32)
        if self.resampler is not None:  # the resampler's own delay
            tail = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            frames = self.features.push(tail)
            self.num_samples += len(tail)
        update = self._frames_in(np.concatenate([frames, self.features.finish()]), final=True)
        last = self._end_segment()
        return StreamUpdate("", update.finished + ([last] if last is not None else []))

    @property
    def time_s(self) -> float:
        """Seconds of audio accepted so far."""
        return self.num_samples / self.sample_rate_hz

    # --- audio in ---

    def _mono(self, samples) -> np.ndarray:
        return mono_samples(samples, f"the samples given at {self.time_s:.2f} s")

    def _resampled(self, samples: np.ndarray, sample_rate: int | None) -> np.ndarray:
        rate_hz = self.sample_rate_hz if sample_rate is None else int(sample_rate)
        if self.input_rate_hz is None:
            self.input_rate_hz = rate_hz
        elif rate_hz != self.input_rate_hz:
            raise AsrCliError(f"the stream began at {self.input_rate_hz} Hz and cannot change to {rate_hz} Hz")
        if rate_hz != self.sample_rate_hz:
            if self.resampler is None:
                import soxr

                self.resampler = soxr.ResampleStream(rate_hz, self.sample_rate_hz, 1, dtype="float32", quality="HQ")
            samples = self.resampler.resample_chunk(samples)
        self.num_samples += len(samples)
        return samples

    # --- frames through the model and the search ---

    def _frames_in(self, frames: np.ndarray, final: bool) -> StreamUpdate:
        if self.cmvn is not None and len(frames):
            frames = self.cmvn(frames)
        normalised = (torch.from_numpy(np.ascontiguousarray(frames)) - self.input_mean) / self.input_std
        stacked = self.stacker.push(normalised)
        if final:
            stacked = torch.cat([stacked, self.stacker.finish()])
        self.pending = torch.cat([self.pending, stacked])
        finished = self._run(final)
        return StreamUpdate(self._text(self.search.best()), finished)

    def _run(self, final: bool) -> list[StreamSegment]:
        """Windows of pending first-layer frames through the layers and the search; an endpoint restarts both
        at the frame after it, so the frames after it in its window are run again from fresh states."""
        finished = []
        with torch.no_grad():
            while len(self.pending):
                if self.chunk_frames is None:  # unidirectional: every frame at once
                    window, num_owned = self.pending, len(self.pending)
                else:
                    if not final and len(self.pending) < self.chunk_frames + self.right_context:
                        break
                    window = self.pending[: self.chunk_frames + self.right_context]
                    num_owned = min(self.chunk_frames, len(self.pending))
                log_probs, states = self.model.model.window_log_probs(window[None].to(self.device), num_owned,
                                                                      self.states)  # fmt: skip
                searched, segment = self._search(log_probs[0].cpu().numpy())
                self.pending = self.pending[searched:]
                if segment is False:  # no endpoint: the states after the window's chunk carry on
                    self.states = states
                    continue
                if segment is not None:
                    finished.append(segment)
        return finished

    def _search(self, log_probs: np.ndarray):
        """(rows searched, the segment an endpoint finished: a StreamSegment, None for one without words, or
        False for no endpoint). With endpointing, rows go in one at a time so that where a segment ends does
        not depend on how the audio was cut."""
        if not self.config.endpointing:
            self.search.advance(log_probs)
            return len(log_probs), False
        blank = np.argmax(log_probs, axis=1) == BLANK_INDEX
        for row in range(len(log_probs)):
            self.search.advance(log_probs[row : row + 1])
            self.trailing_blanks = self.trailing_blanks + 1 if blank[row] else 0
            if self._endpoint():
                return row + 1, self._end_segment()
        return len(log_probs), False

    def _endpoint(self) -> bool:
        """Kaldi online2's endpoint rules, with CTC's blank for silence: the frames since the model last put
        anything above blank, after words (the best path has some) or alone; or a segment at its longest."""
        config, spf = self.config, self.seconds_per_frame
        if self.search.num_frames * spf >= config.max_segment_s:
            return True
        trailing_s = self.trailing_blanks * spf
        if trailing_s < config.endpoint_silence_s:
            return False
        return trailing_s >= config.idle_s or bool(self.search.best().label_ids)

    def _end_segment(self) -> StreamSegment | None:
        """The segment's final words (None when it has none); the search and the layers restart after it."""
        best = self.search.finish()[0]
        num_frames = self.search.num_frames
        start_s = self.segment_start * self.seconds_per_frame
        self.segment_start += num_frames
        self._restart()
        text = self._text(best)
        if not text:
            return None
        duration_s = num_frames * self.seconds_per_frame
        words = [word.shifted(start_s) for word in word_timings(
            best, self.model.vocabulary.characters, self.seconds_per_frame, duration_s, self.spoken_words)]  # fmt: skip
        bounds = (words[0].start, words[-1].end) if words else (start_s, start_s + duration_s)
        return StreamSegment(text, words, round(bounds[0], 3), round(bounds[1], 3), best.score)

    def _restart(self) -> None:
        vocabulary = self.model.vocabulary
        greedy = self.search_config.is_greedy
        self.search = GreedySearch() if greedy else PrefixSearch(vocabulary, self.search_config, self.tables)
        self.states = [None] * len(self.model.model.layers)
        self.trailing_blanks = 0  # output frames since the last one whose best label was not blank

    def _text(self, hypothesis: Hypothesis) -> str:
        return hypothesis_text(hypothesis.label_ids, self.model.vocabulary, self.spoken_words)

    # --- set-up ---

    @staticmethod
    def _online_cmvn(model: ModelFile, config: StreamConfig) -> OnlineCmvn | None:
        if not model.config.speaker_cmvn:
            return None  # the model's own (global) CMVN needs no future
        return online_cmvn(model, config)


def online_cmvn(model: ModelFile, config: StreamConfig = StreamConfig()) -> OnlineCmvn:
    """The online CMVN a stream normalises a per-speaker model's input with (from the model's recorded training
    statistics; a model file from before they were recorded starts from the stream's own first frames)."""
    frame_s = model.feature_config.frame_shift_ms / 1000
    return OnlineCmvn(
        model.input_statistics,
        max(int(round(config.cmvn_window_s / frame_s)), 1),
        int(round(config.cmvn_prior_s / frame_s)),
    )


def stream_window(model: ModelFile, config: StreamConfig) -> tuple[int | None, int]:
    """(chunk, right context) in first-layer frames for a bidirectional model: the config's, else those it was
    trained with, else the defaults; (None, 0) for a unidirectional one, which needs no future."""
    if model.config.directions == 1:
        return None, 0
    frame_s = model.seconds_per_frame
    trained = model.config.chunk_frames
    chunk_s = config.chunk_s if config.chunk_s is not None else trained * frame_s if trained else DEFAULT_CHUNK_S
    if config.right_context_s is not None:
        right_s = config.right_context_s
    else:
        right_s = model.config.right_context_frames * frame_s if trained else DEFAULT_RIGHT_CONTEXT_S
    return max(int(round(chunk_s / frame_s)), 1), int(round(right_s / frame_s))


def latency_controlled(model: ModelFile, config: StreamConfig) -> ModelFile:
    """The model decoding files in the windows a stream with `config` uses (model.chunked_log_probs): the same
    weights; a unidirectional model as it is."""
    chunk_frames, right_context = stream_window(model, config)
    if chunk_frames is None:
        return model
    acoustic = copy.copy(model.model)  # shares the weights
    acoustic.config = dataclasses.replace(model.config, chunk_frames=chunk_frames, right_context_frames=right_context)
    return dataclasses.replace(model, model=acoustic)
