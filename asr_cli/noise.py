"""Training for silence and noise: non-speech put around, between and under the words of training utterances,
on the fly, in the log-mel domain of the stored frames (no audio is read again).

A pool of noise frames comes from one of three sources: the training stores' own quietest frames (other
speakers' and other recordings' room noise: `corpus`), generated white, pink and brown noise (`coloured`), or a
folder of noise recordings (any sample rate; resampled). An augmented utterance gets

- leading and trailing stretches of noise (up to `noise_edges_s` each),
- up to NOISE_PAUSES_PER_UTTERANCE pauses (up to `noise_pauses_s` each) inserted at its quiet frames, where words part,
- noise added under the whole of it at an SNR drawn from `noise_snr_db`,

the inserted stretches scaled to the utterance's own noise floor (its 10th percentile of frame energy), so a
quiet recording gets quiet pauses; mel energies add as powers (log-add-exp), which is what mixing the signals
does to a filterbank, up to the cross terms. Labels do not change: noise says nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .audio import AudioError, load_audio
from .config import NOISE_PAUSES_PER_UTTERANCE, ConfigError, FeatureConfig, NoiseConfig
from .errors import AsrCliError
from .logs import log
from .store import FeatureStore

QUIET_QUANTILE = 0.1  # frames at or below this quantile of an utterance's frame energies are its background
PAUSE_MARGIN = 3.0  # natural-log energy (13 dB) above an utterance's floor: where a pause may be put
POOL_UTTERANCES = 2000  # utterances of the training stores whose quiet frames make the corpus pool, at most
MAX_FOLDER_S = 600.0  # seconds of a noise folder read into the pool, at most
COLOURED_S = 20.0  # seconds of each colour generated


def frame_energies(frames: torch.Tensor) -> torch.Tensor:
    """(T, bins) natural-log mel energies -> (T,) the log of their total."""
    return torch.logsumexp(frames.float(), dim=1)


def noise_pool(
    config: NoiseConfig, stores: Sequence[FeatureStore], feature_config: FeatureConfig, seed: int
) -> np.ndarray:
    """(N, bins) float32 raw log-mel noise frames of `config.noise_source`."""
    if config.noise_source == "corpus":
        pool = corpus_quiet_frames(stores, seed)
    elif config.noise_source == "coloured":
        pool = _features(coloured_noise(seed, feature_config.sample_rate_hz), feature_config)
    else:
        pool = _features(folder_noise(Path(config.noise_source), feature_config.sample_rate_hz), feature_config)
    if len(pool) == 0:
        raise AsrCliError(f"the noise source {config.noise_source} gave no frames of noise")
    return pool.astype(np.float32)


def corpus_quiet_frames(stores: Sequence[FeatureStore], seed: int) -> np.ndarray:
    """The quietest frames (QUIET_QUANTILE) of up to POOL_UTTERANCES training utterances, in a seeded order."""
    entries = [(store, position) for store in stores for position in range(len(store))]
    order = np.random.default_rng([seed, 7]).permutation(len(entries))[:POOL_UTTERANCES]
    quiet = []
    for index in order:
        store, position = entries[index]
        frames = torch.from_numpy(np.asarray(store.features(position), dtype=np.float32))
        if len(frames):
            energies = frame_energies(frames)
            quiet.append(frames[energies <= torch.quantile(energies, QUIET_QUANTILE)].numpy())
    return np.concatenate(quiet) if quiet else np.zeros((0, stores[0].feature_config.dim), np.float32)


def coloured_noise(seed: int, sample_rate_hz: int) -> list[np.ndarray]:
    """White, pink (1/f) and brown (1/f^2) noise, COLOURED_S seconds each, at -30 dB full scale."""
    rng = np.random.default_rng([seed, 8])
    num_samples = int(COLOURED_S * sample_rate_hz)
    frequencies = np.fft.rfftfreq(num_samples, 1 / sample_rate_hz)
    signals = []
    for exponent in (0.0, 1.0, 2.0):
        spectrum = np.fft.rfft(rng.standard_normal(num_samples))
        spectrum /= np.maximum(frequencies, 20.0) ** (exponent / 2)
        signal = np.fft.irfft(spectrum, num_samples)
        signals.append((0.0316 * signal / np.sqrt(np.mean(signal**2))).astype(np.float32))
    return signals


def folder_noise(folder: Path, sample_rate_hz: int) -> list[np.ndarray]:
    """The recordings of a noise folder (sorted; up to MAX_FOLDER_S seconds in all) at `sample_rate_hz`. A folder
    that is missing or empty, or a file that is not audio, is an error that names it."""
    if not folder.is_dir():
        raise AsrCliError(f"--noise-source {folder}: no such folder; give a folder of noise recordings, or "
                          "corpus (the training stores' quiet frames) or coloured (generated noise)")  # fmt: skip
    files = sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("."))
    if not files:
        raise AsrCliError(f"--noise-source {folder}: the folder holds no files; put noise recordings in it")
    signals, total_s, problems = [], 0.0, []
    for path in files:
        try:
            samples, _ = load_audio(path, sample_rate_hz)
        except AudioError as error:
            problems.append(f"{path}: {error}")
            continue
        signals.append(samples)
        total_s += len(samples) / sample_rate_hz
        if total_s >= MAX_FOLDER_S:
            break
    if problems:
        raise AsrCliError(f"--noise-source {folder}: {len(problems)} file(s) are not audio that can be read "
                          f"(remove them from the folder): " + "; ".join(problems[:3]))  # fmt: skip
    log.info(f"noise: {len(signals)} recording(s) of {folder}, {total_s:.0f} s (resampled to {sample_rate_hz} Hz)")
    return signals


def _features(signals: list[np.ndarray], feature_config: FeatureConfig) -> np.ndarray:
    from .features import FeatureExtractor

    frames = FeatureExtractor(feature_config)(signals)
    return np.concatenate(frames) if frames else np.zeros((0, feature_config.dim), np.float32)


def require_filterbank(feature_config: FeatureConfig) -> None:
    if feature_config.kind != "fbank" or feature_config.deltas:
        raise ConfigError(
            ("noise_edges_s", "noise_pauses_s", "noise_snr_db"),
            "{0}, {1} and {2} mix noise into log-mel frames: they need fbank features without deltas "
            f"(the stores hold {feature_config.kind}{' with deltas' if feature_config.deltas else ''})",
        )


class NoiseAugment:
    """Utterance transform: noise around, between and under the words (see the module's docstring), on raw
    log-mel frames, so it runs before any normalisation."""

    seed_offset = 3

    def __init__(self, config: NoiseConfig, pool: np.ndarray, frame_shift_s: float) -> None:
        self.config = config
        self.pool = torch.from_numpy(pool)
        self.pool_energies = frame_energies(self.pool)
        self.frames_per_s = 1.0 / frame_shift_s

    def __call__(self, frames: list[torch.Tensor], examples, generator: torch.Generator) -> list[torch.Tensor]:
        chosen = torch.rand(len(frames), generator=generator) < self.config.noise_probability
        return [self.augment(f, generator) if pick and len(f) else f for f, pick in zip(frames, chosen.tolist())]

    def augment(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(T, bins) raw log-mel frames -> (T', bins), T' >= T."""
        frames = frames.float()
        energies = frame_energies(frames)
        floor = torch.quantile(energies, QUIET_QUANTILE)
        pieces, start = [], 0
        for cut in self._pause_positions(energies, floor, generator):
            pieces += [
                frames[start:cut],
                self._stretch(self._length(self.config.noise_pauses_s, generator), floor, generator),
            ]
            start = cut
        pieces.append(frames[start:])
        edges = self.config.noise_edges_s
        pieces = [self._stretch(self._length(edges, generator), floor, generator), *pieces,
                  self._stretch(self._length(edges, generator), floor, generator)]  # fmt: skip
        augmented = torch.cat(pieces)
        if self.config.noise_snr_db is not None:
            augmented = self._add_noise(augmented, energies, generator)
        return augmented

    def _pause_positions(self, energies: torch.Tensor, floor: torch.Tensor, generator) -> list[int]:
        """Up to NOISE_PAUSES_PER_UTTERANCE frame positions, in order, among the utterance's inner quiet frames."""
        if self.config.noise_pauses_s <= 0 or len(energies) < 3:
            return []
        quiet = torch.nonzero(energies[1:-1] <= floor + PAUSE_MARGIN).flatten() + 1
        if len(quiet) == 0:
            return []
        count = int(torch.randint(0, NOISE_PAUSES_PER_UTTERANCE + 1, (1,), generator=generator))
        picks = quiet[torch.randint(0, len(quiet), (count,), generator=generator)]
        return sorted(set(picks.tolist()))

    def _length(self, max_s: float, generator) -> int:
        return int(float(torch.rand(1, generator=generator)) * max_s * self.frames_per_s)

    def _stretch(self, length: int, level: torch.Tensor, generator) -> torch.Tensor:
        """`length` consecutive pool frames (from a random start, wrapping), scaled to mean energy `level`."""
        if length == 0:
            return self.pool[:0]
        start = int(torch.randint(0, len(self.pool), (1,), generator=generator))
        index = (start + torch.arange(length)) % len(self.pool)
        return self.pool[index] + (level - self.pool_energies[index].mean())

    def _add_noise(self, frames: torch.Tensor, speech_energies: torch.Tensor, generator) -> torch.Tensor:
        """Noise under all of `frames`, at an SNR (dB) drawn from the range, against the speech's power (the mean
        power of the original utterance's frames above its median)."""
        low, high = self.config.noise_snr_db
        snr_db = low + (high - low) * float(torch.rand(1, generator=generator))
        loud = speech_energies[speech_energies >= speech_energies.median()]
        speech_log_power = torch.logsumexp(loud, dim=0) - np.log(len(loud))
        noise = self._stretch(len(frames), torch.tensor(0.0), generator)
        noise_log_power = torch.logsumexp(frame_energies(noise), dim=0) - np.log(len(noise))
        gain = speech_log_power - noise_log_power - snr_db * np.log(10) / 10
        return torch.logaddexp(frames, noise + gain)
