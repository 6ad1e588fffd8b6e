"""Speech activity at decode time: which frames of a recording hold speech, so that the search writes nothing into
the room noise around and between the words.

Two detectors, one answer: a boolean per 10 ms of the recording.

- `energy`: the pause segmenter's rule (segment.py): frames more than `vad_threshold_db` above the recording's
  noise floor (its 10th percentile of frame energies), pauses shorter than `vad_min_pause_s` closed, runs shorter
  than `vad_min_speech_s` dropped, `vad_padding_s` kept on both sides. Computed from a filterbank model's own frames (the sum of
  the mel energies), so a feature store needs no audio, or from the samples for other features.
- `silero`: the Silero VAD model (MIT; the `silero-vad` wheel ships its ONNX file, run by onnxruntime:
  `pip install 'asr-cli[vad]'`) on the audio at 16 kHz, with the same padding and minimum lengths.

The model's output frames that cover no speech are then certain blanks (`silent_outputs`, used by
inference.Decoder): nothing is written there, and times stay recording times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .config import SpeechActivityConfig
from .errors import AsrCliError
from .logs import log
from .segment import ENERGY_FRAME_S, energy_activity, frame_energies_db, smoothed_activity
from .signals import deferred_stops

SILERO_RATE_HZ = 16000
SILERO_WINDOW = 512  # samples per Silero probability at 16 kHz (32 ms)
LN_TO_DB = 10 / math.log(10)


@dataclass
class SpeechDetector:
    """`mask(frames, samples)`: booleans, True where speech is, one per 10 ms of the recording (None when the
    config says none). `frames` are a filterbank model's log-mel frames (one per 10 ms); `samples` the audio at
    `sample_rate_hz` (needed by silero, and by energy for other features)."""

    config: SpeechActivityConfig
    feature_kind: str
    sample_rate_hz: int
    _silero: object | None = field(default=None, init=False, repr=False)  # loaded on first use
    _said: bool = field(default=False, init=False, repr=False)  # auto's warning is given once

    def method(self, has_audio: bool) -> str:
        """The detector that runs: the configured one; for auto, silero on audio when installed, else none (the
        energy rule is no default: it cuts into quiet speech, see docs/RESULTS.md), and none on a store."""
        if self.config.vad != "auto":
            return self.config.vad
        installed = silero_available()
        method = "silero" if has_audio and installed else "none"
        if has_audio and not installed and not self._said:
            log.warning("--vad auto: silero-vad is not installed, so every frame is searched and words may be "
                        "written into noise; pip install 'asr-cli[vad]', or choose --vad energy")  # fmt: skip
            self._said = True
        return method

    def needs_audio(self, method: str) -> bool:
        return method == "silero" or (method == "energy" and self.feature_kind != "fbank")

    def mask(
        self, frames: np.ndarray | None, samples: np.ndarray | None, has_audio: bool | None = None
    ) -> np.ndarray | None:
        """`has_audio`: whether the input is audio (default: whether `samples` are given); it decides auto."""
        method = self.method(samples is not None if has_audio is None else has_audio)
        if method == "none":
            return None
        if self.needs_audio(method) and samples is None:
            raise AsrCliError(
                f"--vad {method} needs the audio (for {self.feature_kind} features): decode the audio "
                "manifest or files instead of the feature store, or use --vad none"
            )
        config = self.config
        if method == "energy":
            energies_db = (
                fbank_energies_db(frames)
                if not self.needs_audio(method)
                else frame_energies_db(samples, self.sample_rate_hz)
            )
            active = energy_activity(energies_db, config.vad_threshold_db)
        else:
            active = self._silero_probabilities(samples) > config.silero_threshold
        return smoothed_activity(active, config.vad_min_speech_s, config.vad_min_pause_s, config.vad_padding_s)

    def _silero_probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Silero's speech probability for each 10 ms of `samples` (one per 32 ms window, repeated)."""
        from .audio import resample

        model = self._silero_model()
        audio = resample(samples, self.sample_rate_hz, SILERO_RATE_HZ)
        num_windows = math.ceil(len(audio) / SILERO_WINDOW)
        padded = np.zeros(num_windows * SILERO_WINDOW, np.float32)
        padded[: len(audio)] = audio
        import torch

        model.reset_states()
        with torch.no_grad():
            probabilities = np.array(
                [float(model(torch.from_numpy(window), SILERO_RATE_HZ)) for window in padded.reshape(-1, SILERO_WINDOW)]
            )
        per_frame = SILERO_WINDOW / SILERO_RATE_HZ / ENERGY_FRAME_S
        frame_windows = (np.arange(int(len(audio) / SILERO_RATE_HZ / ENERGY_FRAME_S)) / per_frame).astype(int)
        return probabilities[np.minimum(frame_windows, num_windows - 1)]

    def _silero_model(self):
        if self._silero is None:
            self._silero = load_silero()
        return self._silero


def silero_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("silero_vad") is not None and importlib.util.find_spec("onnxruntime") is not None


def load_silero():
    """Silero VAD's ONNX model (the silero-vad wheel). Importing silero_vad sets torch to one thread for the whole
    process; the setting is put back, so the acoustic model keeps its threads."""
    import torch

    threads = torch.get_num_threads()
    try:
        with deferred_stops():  # an interrupt inside onnxruntime's initialisation breaks it (signals.py)
            from silero_vad import load_silero_vad

            return load_silero_vad(onnx=True)
    except ImportError as error:
        raise AsrCliError(
            "--vad silero needs the silero-vad and onnxruntime packages: pip install 'asr-cli[vad]' "
            "(or use --vad energy)"
        ) from error
    finally:
        torch.set_num_threads(threads)


def fbank_energies_db(frames: np.ndarray) -> np.ndarray:
    """(num_frames, num_mel_bins) natural-log mel energies -> (num_frames,) their total in dB."""
    return LN_TO_DB * np.logaddexp.reduce(np.asarray(frames, dtype=np.float64), axis=1)


def silent_outputs(speech: np.ndarray, num_outputs: int, seconds_per_frame: float) -> np.ndarray:
    """(num_outputs,) booleans: the model's output frames (each `seconds_per_frame` long) that cover no speech
    frame of `speech` ((T,) booleans, one per 10 ms); frames past its end are silent."""
    frame_starts = np.arange(num_outputs) * seconds_per_frame / ENERGY_FRAME_S
    starts = np.minimum(np.floor(frame_starts + 1e-6).astype(int), len(speech))
    ends = np.minimum(
        np.maximum(np.floor(frame_starts + seconds_per_frame / ENERGY_FRAME_S + 1e-6), starts + 1), len(speech)
    )
    counts = np.concatenate([[0], np.cumsum(speech, dtype=np.int64)])
    return counts[ends.astype(int)] - counts[starts] == 0


def frames_in_speech(speech: np.ndarray, num_frames: int, frame_shift_s: float) -> np.ndarray:
    """(num_frames,) booleans: the feature frames (every `frame_shift_s`) whose start lies in speech."""
    index = np.minimum(np.floor(np.arange(num_frames) * frame_shift_s / ENERGY_FRAME_S + 1e-6).astype(int), len(speech))
    return np.concatenate([speech, [False]])[index]
