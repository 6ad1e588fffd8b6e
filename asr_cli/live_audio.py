"""Audio that arrives over time, in blocks, for `asr-cli stream`: a file read block by block, a WAV or raw 16-bit
PCM byte stream (standard input: `arecord ... | asr-cli stream model.pt -`), or a microphone (sounddevice, an
optional extra). Each source yields (samples, sample_rate_hz): float32 mono blocks at the source's own rate.

A byte stream is checked before it is trusted: a WAV header is read if there is one; text, or another container
(FLAC, Ogg, MP3, ...), is an error that says how to turn it into PCM; an odd byte at the end, or a stream that
stops before the length its WAV header announced, is reported (`warnings`) after what arrived was used.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .audio import AudioError, audio_info
from .errors import AsrCliError

INT16_SCALE = 32768.0
WAV_PCM, WAV_FLOAT, WAV_EXTENSIBLE = 1, 3, 0xFFFE
# A WAV written to a pipe cannot know its length: writers put 0, or a placeholder near the 32-bit limit
# (0x7fff0000, 0x7fffffff, 0xffffffff, ...); such a size means "until the stream ends".
UNKNOWN_LENGTH_FROM = 0x7FFF0000
PROBE_BYTES = 64
TO_PCM = "ffmpeg -i INPUT -f s16le -ac 1 -ar RATE -"
CONTAINER_MAGIC = {
    b"fLaC": "FLAC",
    b"OggS": "Ogg",
    b"ID3": "MP3",
    b"\xff\xfb": "MP3",
    b"\xff\xf3": "MP3",
    b"FORM": "AIFF",
    b"\x1aE\xdf\xa3": "Matroska/WebM",
    b"RIFF": "RIFF",
}


class AudioStreamError(AsrCliError):
    """A byte stream that is not audio asr-cli can read as it arrives."""


def file_blocks(path: Path, block_s: float) -> Iterator[tuple[np.ndarray, int]]:
    """A recording read `block_s` at a time, at its own rate (any format soundfile reads)."""
    import soundfile

    try:
        rate_hz, _ = audio_info(path)
    except AudioError as error:  # missing, or not audio: said with the file's name
        raise AsrCliError(str(error)) from error
    with soundfile.SoundFile(str(path)) as audio:
        block = max(int(block_s * rate_hz), 1)
        while True:
            samples = audio.read(block, dtype="float32", always_2d=True)
            if len(samples) == 0:
                return
            yield samples.mean(axis=1), rate_hz


class ByteStream:
    """WAV or raw PCM from a binary stream, in blocks of `block_s` (see the module's docstring).

    `sample_rate_hz`: raw PCM's rate (a WAV's comes from its header); `kind`: "auto" (a WAV header if there is one,
    else raw 16-bit little-endian PCM), "wav" or "raw"."""

    def __init__(self, handle: BinaryIO, name: str, sample_rate_hz: int, kind: str = "auto") -> None:
        self.handle, self.name, self.kind = handle, name, kind
        self.sample_rate_hz, self.channels, self.sample_type = sample_rate_hz, 1, "<i2"
        self.data_bytes: int | None = None  # a WAV's announced length
        self.warnings: list[str] = []
        self.bytes_read = 0

    def blocks(self, block_s: float) -> Iterator[tuple[np.ndarray, int]]:
        start = self._header()
        width = np.dtype(self.sample_type).itemsize * self.channels
        block_bytes = max(int(block_s * self.sample_rate_hz), 1) * width
        carried = start
        while True:
            data = self.handle.read(block_bytes)
            carried += data
            usable = len(carried) - len(carried) % width
            if self.data_bytes is not None:
                usable = min(usable, self.data_bytes - self.bytes_read)
            if usable > 0:
                self.bytes_read += usable
                yield self._samples(carried[:usable]), self.sample_rate_hz
            carried = carried[usable:]
            if not data or self.data_bytes is not None and self.bytes_read >= self.data_bytes:
                break
        if self.data_bytes is not None and self.bytes_read >= self.data_bytes:
            return
        if self.bytes_read == 0 and not carried:
            raise AudioStreamError(f"{self.name} ended before any audio arrived")
        if carried and self.data_bytes is None:
            self.warnings.append(f"{self.name} ended with {len(carried)} byte(s) that make no whole sample "
                                 f"(raw PCM must be whole {width}-byte frames); they were dropped")  # fmt: skip
        if self.data_bytes is not None and self.bytes_read < self.data_bytes:
            seconds = self.bytes_read / (width * self.sample_rate_hz)
            self.warnings.append(f"{self.name} ended after {seconds:.2f} s, before the "
                                 f"{self.data_bytes / (width * self.sample_rate_hz):.2f} s its WAV header announced "
                                 "(the sender stopped early?)")  # fmt: skip

    def _samples(self, data: bytes) -> np.ndarray:
        samples = np.frombuffer(data, dtype=self.sample_type).reshape(-1, self.channels)
        if samples.dtype == np.int16:
            return (samples.astype(np.float32) / INT16_SCALE).mean(axis=1)
        return samples.astype(np.float32).mean(axis=1)

    def _header(self) -> bytes:
        """Read the WAV header if there is one; returns the bytes read that are already samples."""
        probe = self._read_exactly(min(PROBE_BYTES, 12), allow_short=True)
        if probe[:4] in (b"RIFF", b"RF64") and probe[8:12] == b"WAVE" and self.kind != "raw":
            self._wav_chunks()
            return b""
        if self.kind == "wav":
            raise AudioStreamError(f"{self.name} does not begin with a WAV header (RIFF....WAVE)")
        self._refuse_non_pcm(probe)
        return probe

    def _refuse_non_pcm(self, probe: bytes) -> None:
        for magic, name in CONTAINER_MAGIC.items():
            if probe.startswith(magic):
                raise AudioStreamError(
                    f"{self.name} is {name} data, not raw PCM or WAV: decode it first, e.g. "
                    f"`{TO_PCM.replace('RATE', str(self.sample_rate_hz))} | asr-cli stream MODEL -`"
                )
        if len(probe) >= 8 and all(byte in b"\t\n\r\x0b\x0c" or 32 <= byte < 127 for byte in probe):
            raise AudioStreamError(f"{self.name} looks like text ({probe[:12]!r}...), not audio: stream WAV or raw "
                                   "16-bit PCM")  # fmt: skip

    def _wav_chunks(self) -> None:
        while True:
            chunk_id, size = struct.unpack("<4sI", self._read_exactly(8))
            if chunk_id == b"fmt ":
                self._wav_format(self._read_exactly(size + size % 2))
            elif chunk_id == b"data":
                self.data_bytes = None if size == 0 or size >= UNKNOWN_LENGTH_FROM else size
                return
            else:
                self._read_exactly(size + size % 2)

    def _wav_format(self, fmt: bytes) -> None:
        audio_format, channels, rate_hz, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
        if audio_format == WAV_EXTENSIBLE and len(fmt) >= 26:
            audio_format = struct.unpack("<H", fmt[24:26])[0]
        if (audio_format, bits) == (WAV_PCM, 16):
            self.sample_type = "<i2"
        elif (audio_format, bits) == (WAV_FLOAT, 32):
            self.sample_type = "<f4"
        else:
            kind = {WAV_PCM: "integer PCM", WAV_FLOAT: "float"}.get(audio_format, f"format {audio_format}")
            raise AudioStreamError(f"{self.name} is a WAV of {bits}-bit {kind} samples; a stream takes 16-bit PCM or "
                                   "32-bit float: convert with `ffmpeg -i INPUT -acodec pcm_s16le -f wav -`")  # fmt: skip
        if channels < 1 or rate_hz < 1:
            raise AudioStreamError(f"{self.name}: its WAV header says {channels} channels at {rate_hz} Hz")
        self.channels, self.sample_rate_hz = channels, rate_hz

    def _read_exactly(self, count: int, allow_short: bool = False) -> bytes:
        data = b""
        while len(data) < count:
            piece = self.handle.read(count - len(data))
            if not piece:
                if allow_short:
                    return data
                raise AudioStreamError(f"{self.name} ended inside its WAV header")
            data += piece
        return data


def microphone_blocks(sample_rate_hz: int, block_s: float, device=None) -> Iterator[tuple[np.ndarray, int]]:
    """The default (or named) input device at the model's rate, `block_s` at a time, until Ctrl-C."""
    try:
        import sounddevice
    except ImportError as error:
        raise AsrCliError("--microphone needs the sounddevice package: pip install 'asr-cli[microphone]' "
                          "(and the PortAudio library: apt-get install libportaudio2)") from error  # fmt: skip
    except OSError as error:  # sounddevice is there, PortAudio is not
        raise AsrCliError(f"--microphone: {error}; install PortAudio (apt-get install libportaudio2)") from error
    block = max(int(block_s * sample_rate_hz), 1)
    try:
        with sounddevice.InputStream(samplerate=sample_rate_hz, channels=1, dtype="float32", blocksize=block,
                                     device=device) as microphone:  # fmt: skip
            while True:
                samples, _ = microphone.read(block)
                yield samples[:, 0].copy(), sample_rate_hz
    except sounddevice.PortAudioError as error:
        raise AsrCliError(
            f"--microphone: no usable input device ({error}); `python -m sounddevice` lists them"
        ) from error


def paced(blocks: Iterator[tuple[np.ndarray, int]]) -> Iterator[tuple[np.ndarray, int]]:
    """The blocks no faster than real time: each given when its last sample would have been recorded."""
    start, seconds = time.monotonic(), 0.0
    for samples, rate_hz in blocks:
        seconds += len(samples) / rate_hz
        delay = start + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield samples, rate_hz
