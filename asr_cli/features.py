"""Kaldi-compatible log-mel filterbank and MFCC features, batched in torch; deltas; CMVN statistics.

Framing follows Kaldi: 25 ms povey windows every 10 ms with `snip_edges`
(only whole frames), DC removal, pre-emphasis, power spectrum, mel
triangles that are linear on the mel scale, natural log floored at
float32 epsilon. Samples are scaled to the 16-bit integer range first,
as Kaldi reads them, so the numbers agree with Kaldi's tools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .config import FeatureConfig

INT16_SCALE = 32768.0
LOG_FLOOR = float(np.finfo(np.float32).eps)
POVEY_WINDOW_EXPONENT = 0.85
DELTA_WINDOW_FRAMES = 2


def hz_to_mel(frequency_hz: np.ndarray) -> np.ndarray:
    """HTK/Kaldi mel scale, 1127 ln(1 + f / 700); equal to librosa.hz_to_mel(f, htk=True).

    Written out because importing librosa (numba) costs a quarter second in every worker.
    """
    return 1127.0 * np.log1p(np.asarray(frequency_hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    return 700.0 * np.expm1(np.asarray(mel, dtype=np.float64) / 1127.0)


def mel_band_edges(config: FeatureConfig) -> tuple[float, float, float]:
    """(lowest mel, highest mel, mel step) of the filterbank: filter k is centred at lowest + (k + 1) * step."""
    nyquist_hz = config.sample_rate_hz / 2
    high_freq_hz = config.high_freq_hz if config.high_freq_hz > 0 else nyquist_hz + config.high_freq_hz
    mel_low, mel_high = hz_to_mel(np.array([config.low_freq_hz, high_freq_hz]))
    return float(mel_low), float(mel_high), float((mel_high - mel_low) / (config.num_mel_bins + 1))


def vtln_warp_hz(
    frequency_hz: np.ndarray,
    warp_factor: float,
    low_freq_hz: float,
    high_freq_hz: float,
    low_cutoff_hz: float = 100.0,
    high_cutoff_hz: float = -500.0,
) -> np.ndarray:
    """Kaldi's piecewise-linear VTLN warp (`VtlnWarpFreq`): f / warp_factor in the middle of the band,
    straight lines to the band's edges outside the cut-offs, so the edges stay where they are.

    A high cut-off <= 0 is an offset from the band's top, as in Kaldi.
    """
    frequency_hz = np.asarray(frequency_hz, dtype=np.float64)
    high_cutoff_hz = high_cutoff_hz if high_cutoff_hz > 0 else high_freq_hz + high_cutoff_hz
    low_knee = low_cutoff_hz * max(1.0, warp_factor)
    high_knee = high_cutoff_hz * min(1.0, warp_factor)
    scale = 1.0 / warp_factor
    left_slope = (scale * low_knee - low_freq_hz) / (low_knee - low_freq_hz)
    right_slope = (high_freq_hz - scale * high_knee) / (high_freq_hz - high_knee)
    warped = np.where(
        frequency_hz < low_knee,
        low_freq_hz + left_slope * (frequency_hz - low_freq_hz),
        np.where(
            frequency_hz < high_knee, scale * frequency_hz, high_freq_hz + right_slope * (frequency_hz - high_freq_hz)
        ),
    )
    return np.where((frequency_hz < low_freq_hz) | (frequency_hz > high_freq_hz), frequency_hz, warped)


def vtlp_source_bins(config: FeatureConfig, warp_factor: float) -> np.ndarray:
    """For VTLP on stored log-mel frames: the fractional filter index whose centre each filter moves to
    when the filterbank is warped by `warp_factor` (Kaldi's VTLN warp), shape (num_mel_bins,).

    Reading each frame at these positions (linear interpolation between neighbouring filters) approximates
    recomputing the features with the warped filterbank, without going back to the audio.
    """
    mel_low, mel_high, mel_step = mel_band_edges(config)
    centres_hz = mel_to_hz(mel_low + mel_step * np.arange(1, config.num_mel_bins + 1))
    warped_hz = vtln_warp_hz(centres_hz, warp_factor, float(mel_to_hz(mel_low)), float(mel_to_hz(mel_high)))
    positions = (hz_to_mel(warped_hz) - mel_low) / mel_step - 1
    return np.clip(positions, 0, config.num_mel_bins - 1).astype(np.float32)


def kaldi_mel_matrix(config: FeatureConfig) -> np.ndarray:
    """Mel filterbank of shape (num_mel_bins, fft_length // 2 + 1), as Kaldi builds it.

    librosa.filters.mel draws its triangles linearly in Hz; Kaldi draws them
    linearly in mel and leaves the Nyquist bin out, so the triangles are built
    here, on the HTK mel scale that librosa calls `htk=True`.
    """
    mel_low, _, mel_step = mel_band_edges(config)
    left_mels = mel_low + mel_step * np.arange(config.num_mel_bins)[:, None]
    num_fft_bins = config.fft_length // 2
    bin_mels = hz_to_mel(np.arange(num_fft_bins) * config.sample_rate_hz / config.fft_length)
    rising = (bin_mels - left_mels) / mel_step
    falling = (left_mels + 2 * mel_step - bin_mels) / mel_step
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    return np.pad(weights, ((0, 0), (0, 1))).astype(np.float32)


def kaldi_dct_matrix(num_ceps: int, num_mel_bins: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0..num_ceps-1, shape (num_ceps, num_mel_bins)."""
    k = np.arange(num_ceps)[:, None]
    j = np.arange(num_mel_bins)[None, :]
    matrix = np.sqrt(2.0 / num_mel_bins) * np.cos(np.pi / num_mel_bins * (j + 0.5) * k)
    matrix[0] = np.sqrt(1.0 / num_mel_bins)
    return matrix.astype(np.float32)


def povey_window(num_samples: int) -> torch.Tensor:
    """Kaldi's default window: a Hann window raised to the power 0.85."""
    n = torch.arange(num_samples, dtype=torch.float64)
    hann = 0.5 - 0.5 * torch.cos(2 * math.pi * n / (num_samples - 1))
    return hann.pow(POVEY_WINDOW_EXPONENT).float()


class FeatureExtractor:
    """Computes features for batches of waveforms; holds the precomputed matrices.

    All frames of a batch are cut into one flat (total_frames, fft_length)
    buffer, so no work is spent on padding. DC removal and pre-emphasis are
    applied per frame exactly as Kaldi does, but computed from the whole
    waveform: pre-emphasising the frame of x - mean(x) equals pre-emphasising x
    and subtracting (1 - preemphasis) * mean(x), except at the frame's first
    sample, which the povey window zeroes anyway.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.window = povey_window(config.window_length_samples)
        self.mel_matrix_t = torch.from_numpy(kaldi_mel_matrix(config)).T.contiguous()
        if config.kind == "mfcc":
            lifter = 1 + 0.5 * config.cepstral_lifter * np.sin(
                np.pi * np.arange(config.num_ceps) / config.cepstral_lifter
            )
            dct = kaldi_dct_matrix(config.num_ceps, config.num_mel_bins) * lifter[:, None].astype(np.float32)
            self.dct_matrix_t = torch.from_numpy(dct).T.contiguous()

    def __call__(self, waveforms: Sequence[np.ndarray], seeds: Sequence[int] | None = None) -> list[np.ndarray]:
        """Features for each waveform (float32 in [-1, 1] at the configured rate).

        `seeds` (one per waveform) make dither reproducible whatever the batch.
        Returns one float32 array of shape (num_frames, dim) per waveform; a
        waveform shorter than one window gives shape (0, dim).
        """
        config = self.config
        num_frames = [config.num_frames(len(waveform)) for waveform in waveforms]
        if sum(num_frames) == 0:
            return [np.zeros((0, config.dim), np.float32) for _ in waveforms]
        features = self._base_features(waveforms, num_frames, seeds)
        outputs = []
        for utterance_features in torch.split(features, num_frames):
            if config.deltas:
                utterance_features = add_deltas(utterance_features)
            outputs.append(utterance_features.numpy())
        return outputs

    def base_frames(self, waveform: np.ndarray, seed: int = 0) -> np.ndarray:
        """One waveform's (num_frames, base_dim) frames, without deltas."""
        num_frames = self.config.num_frames(len(waveform))
        if num_frames == 0:
            return np.zeros((0, self.config.base_dim), np.float32)
        return self._base_features([waveform], [num_frames], [seed]).numpy()

    def _base_features(self, waveforms, num_frames: list[int], seeds) -> torch.Tensor:
        """(total_frames, base_dim) frames of every waveform, one after the other."""
        config = self.config
        seeds = list(seeds) if seeds is not None else list(range(len(waveforms)))
        spectra_input = torch.empty(sum(num_frames), config.fft_length)
        spectra_input[:, config.window_length_samples :] = 0.0
        frame_means, log_energies = [], []
        row = 0
        for waveform, count, seed in zip(waveforms, num_frames, seeds):
            if count == 0:
                continue
            samples = self._scaled_samples(waveform, seed)
            raw_frames = samples.unfold(0, config.window_length_samples, config.hop_length_samples)[:count]
            means = raw_frames.mean(dim=-1)
            frame_means.append(means)
            if config.kind == "mfcc":
                log_energies.append((raw_frames - means[:, None]).square().sum(dim=-1).clamp_min(LOG_FLOOR).log())
            emphasised = samples.clone()
            emphasised[1:] -= config.preemphasis * samples[:-1]
            spectra_input[row : row + count, : config.window_length_samples] = emphasised.unfold(
                0, config.window_length_samples, config.hop_length_samples
            )[:count]
            row += count
        windowed = spectra_input[:, : config.window_length_samples]
        windowed.sub_((1 - config.preemphasis) * torch.cat(frame_means)[:, None]).mul_(self.window)
        return self._spectral_features(spectra_input, torch.cat(log_energies) if log_energies else None)

    def _scaled_samples(self, waveform: np.ndarray, seed: int) -> torch.Tensor:
        """Samples in the 16-bit range, dithered when configured.

        Dither is added per sample here, where Kaldi draws it per frame; both
        only keep silence off the log floor.
        """
        samples = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)) * INT16_SCALE
        if self.config.dither > 0:
            generator = torch.Generator().manual_seed(seed)
            samples += self.config.dither * torch.randn(samples.shape, generator=generator)
        return samples

    def _spectral_features(self, windowed: torch.Tensor, log_energy: torch.Tensor | None) -> torch.Tensor:
        """(frames, fft_length) windowed frames -> (frames, base_dim) features."""
        real_imag = torch.view_as_real(torch.fft.rfft(windowed)).square_()
        power = real_imag[..., 0] + real_imag[..., 1]
        log_mel = (power @ self.mel_matrix_t).clamp_min(LOG_FLOOR).log()
        if self.config.kind == "fbank":
            return log_mel
        cepstra = log_mel @ self.dct_matrix_t
        cepstra[:, 0] = log_energy
        return cepstra


class FeatureStream:
    """The frames of a signal that arrives a few samples at a time, equal to those of the whole signal (dither
    apart): each frame is computed once its 25 ms have arrived, from its own samples only (DC removal and
    pre-emphasis are per frame, and the povey window zeroes the one sample pre-emphasis reaches back for), and
    with deltas once the 4 frames after it are in (the last ones at `finish`, their edge repeated as offline)."""

    def __init__(self, config: FeatureConfig) -> None:
        if config.encoder is not None:
            raise ValueError("encoder features are computed over whole windows of audio, not frame by frame")
        self.config = config
        self.extractor = FeatureExtractor(config)
        self.samples = np.zeros(0, np.float32)  # from the next frame's first sample on
        self.num_chunks = 0  # dither's seed
        self.history = np.zeros((0, config.base_dim), np.float32)  # deltas: the last frames given out
        self.pending = np.zeros((0, config.base_dim), np.float32)  # ... and those waiting for their future

    def push(self, samples: np.ndarray) -> np.ndarray:
        """The (num_frames, dim) frames that `samples` (float32 in [-1, 1]) complete."""
        config = self.config
        self.samples = np.concatenate([self.samples, np.asarray(samples, np.float32)])
        num_frames = config.num_frames(len(self.samples))
        if num_frames == 0:
            return np.zeros((0, config.dim), np.float32)
        used = (num_frames - 1) * config.hop_length_samples + config.window_length_samples
        self.num_chunks += 1
        frames = self.extractor.base_frames(self.samples[:used], self.num_chunks)
        self.samples = self.samples[num_frames * config.hop_length_samples :]
        return self._with_deltas(frames, final=False) if config.deltas else frames

    def finish(self) -> np.ndarray:
        """The frames still held back for their deltas (none without deltas); the samples left make no frame."""
        if not self.config.deltas:
            return np.zeros((0, self.config.dim), np.float32)
        return self._with_deltas(np.zeros((0, self.config.base_dim), np.float32), final=True)

    def _with_deltas(self, frames: np.ndarray, final: bool) -> np.ndarray:
        reach = 2 * DELTA_WINDOW_FRAMES
        waiting = np.concatenate([self.pending, frames])
        known = np.concatenate([self.history, waiting])
        ready = len(waiting) if final else max(len(waiting) - reach, 0)
        if ready == 0:
            self.pending = waiting
            return np.zeros((0, self.config.dim), np.float32)
        with_deltas = add_deltas(torch.from_numpy(known)).numpy()
        given = with_deltas[len(self.history) : len(self.history) + ready]
        self.history = known[: len(self.history) + ready][-reach:]
        self.pending = waiting[ready:]
        return given


def feature_extractor(config: FeatureConfig, encoder_path: str | Path | None = None, device: str = "cpu"):
    """What computes the features of `config` from waveforms: Kaldi fbank/MFCC (`FeatureExtractor`), or a
    pretrained encoder (`encoder.SpeechEncoder`, from `encoder_path`, else the folder the config recorded)."""
    if config.encoder is not None:
        from .encoder import SpeechEncoder

        return SpeechEncoder(config.encoder, encoder_path, device)
    return FeatureExtractor(config)


def add_deltas(features: torch.Tensor) -> torch.Tensor:
    """Append Kaldi-style deltas and delta-deltas (window 2, edges repeated).

    (num_frames, dim) -> (num_frames, 3 * dim). As in Kaldi, the second-order
    kernel is the first-order kernel convolved with itself, applied to the
    original features.
    """
    offsets = torch.arange(-DELTA_WINDOW_FRAMES, DELTA_WINDOW_FRAMES + 1, dtype=torch.float32)
    first_order = offsets / offsets.square().sum()
    second_order = torch.nn.functional.conv1d(
        first_order.view(1, 1, -1), first_order.flip(0).view(1, 1, -1), padding=2 * DELTA_WINDOW_FRAMES
    ).view(-1)
    reach = 2 * DELTA_WINDOW_FRAMES
    kernels = torch.stack(
        [
            torch.nn.functional.pad(first_order, (DELTA_WINDOW_FRAMES, DELTA_WINDOW_FRAMES)),
            second_order,
        ]
    )
    if features.shape[0] == 0:
        return features.new_zeros((0, features.shape[1] * 3))
    channels = features.T.unsqueeze(1)  # (dim, 1, num_frames)
    padded = torch.nn.functional.pad(channels, (reach, reach), mode="replicate")
    # conv1d correlates, so correlate with the kernels as they stand: sum_k w[k] x[t + k - reach].
    deltas = torch.nn.functional.conv1d(padded, kernels.unsqueeze(1))  # (dim, 2, num_frames)
    return torch.cat([features, deltas[:, 0].T, deltas[:, 1].T], dim=1)
