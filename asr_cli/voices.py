"""Synthetic speech at scale: the lines of any text said by many voices, for pretraining or mixing with real data.

Voices: eSpeak NG's English accents (en, en-us, en-gb-scotland, en-gb-x-rp, ...) crossed with its voice variants
(m1 ... klatt6: 104 of them; 832 voices in all), and flite's voices when the `flite` program is installed (apt-get install flite).
Each utterance draws its line, voice, rate and pitch, whether it gets background noise (a random stretch of a
folder's recordings, at a random SNR) and reverberation (an exponentially decaying noise impulse response of a
random RT60), all from (seed, utterance index): the same seed and text give the same corpus, whatever --jobs.

Resumable: audio/NNNNNNN.flac is written atomically per utterance and an interrupted run picks up where it stopped
(the utterances already written are kept, after a check that the settings are those they were made with);
the manifest (`synth.jsonl`) is written at the end, atomically.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from .config import ConfigError, VoicesConfig
from .errors import AsrCliError
from .fileio import atomic_write, read_text_lines
from .logs import log, progress_bar
from .manifest import Utterance, write_manifest
from .signals import raise_if_stopped
from .text import normalize_text

SETTINGS_FILE = "synth.json"
MANIFEST_FILE = "synth.jsonl"
# eSpeak NG's English accents (its en-shaw is a spelling, Shavian, not an accent)
ESPEAK_ENGLISH = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")  # fmt: skip
FLITE_SAMPLE_RATE_HZ = 16000
PEAK = 0.9  # the mixed signal's peak, so that noise and reverberation never clip


def espeak_voices() -> list[str]:
    """Every English accent with every voice variant: "en-us+m3", ... (the variants the installed data holds)."""
    import espeakng_loader

    variants = sorted(path.name for path in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir())
    return [f"{language}+{variant}" for language in ESPEAK_ENGLISH for variant in variants]


def flite_voices() -> list[str]:
    """flite's voices as "flite:NAME", or none when flite is not installed."""
    if shutil.which("flite") is None:
        return []
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout
    names = listed.split(":", 1)[-1].split()
    # A *_time voice is limited-domain (a talking clock): it cannot say other text.
    return [f"flite:{name}" for name in names if name and not name.endswith("_time")]


def resolve_voices(spec: str) -> list[str]:
    """The voices a --voices value names: espeak, flite, all, or a comma list of eSpeak voices and flite:NAME."""
    if spec in ("espeak", "all"):
        voices = espeak_voices() + (flite_voices() if spec == "all" else [])
    elif spec == "flite":
        voices = flite_voices()
        if not voices:
            raise AsrCliError("--voices flite: the flite program is not installed (apt-get install flite)")
    else:
        voices = [voice.strip() for voice in spec.split(",") if voice.strip()]
        if any(voice.startswith("flite:") for voice in voices) and shutil.which("flite") is None:
            raise AsrCliError(
                "--voices names flite voices but the flite program is not installed (apt-get install flite)"
            )
    if not voices:
        raise AsrCliError(f"--voices {spec!r} names no voice")
    return voices


def speaker_name(voice: str) -> str:
    """A voice as a manifest's speaker ("en+Mr serious" -> "en+Mr_serious": speakers hold no white space)."""
    return "_".join(voice.split())


def text_lines(paths: Sequence[Path], config: VoicesConfig) -> list[str]:
    """The texts' lines, normalised as transcripts are, with min_words to max_words words (longer lines are cut
    into pieces of max_words) and only `config.characters`; a text that is not UTF-8 or holds no usable line is
    an error naming it."""
    lines, allowed = [], set(config.characters)
    for path in paths:
        kept = 0
        for line in read_text_lines(path, "text"):
            normalised = normalize_text(line)
            if not set(normalised) <= allowed:
                continue
            words = normalised.split()
            for start in range(0, len(words), config.max_words):
                piece = words[start : start + config.max_words]
                if len(piece) >= config.min_words:
                    lines.append(" ".join(piece))
                    kept += 1
        if kept == 0:
            raise AsrCliError(f"{path}: no line of {config.min_words} words or more, in the characters "
                              f"{config.characters!r}, to say")  # fmt: skip
    return lines


@dataclasses.dataclass(frozen=True)
class Plan:
    """What utterance `index` is: its line, voice, rate, pitch, noise and reverberation (from seed and index)."""

    index: int
    text: str
    voice: str
    rate_wpm: int
    pitch: int
    snr_db: float | None
    rt60_s: float | None

    @property
    def id(self) -> str:
        return f"synth-{self.index:07d}"


def plan(index: int, lines: Sequence[str], voices: Sequence[str], config: VoicesConfig) -> Plan:
    rng = random.Random(f"{config.seed}:{index}")
    text, voice = rng.choice(lines), rng.choice(voices)
    rate_wpm, pitch = rng.randint(*config.rate_wpm), rng.randint(*config.pitch)
    noisy = config.noise_source is not None and rng.random() < config.noise_probability
    snr_db = rng.uniform(*config.noise_snr_db) if noisy else None
    rt60_s = rng.uniform(*config.rt60_s) if rng.random() < config.reverb_probability else None
    return Plan(index, text, voice, rate_wpm, pitch, snr_db, rt60_s)


class Speaker:
    """Says a plan's line (eSpeak NG in this process, or flite), then adds its reverberation and noise."""

    def __init__(self, noise: list[np.ndarray] | None, noise_rate_hz: int) -> None:
        from .synth import EspeakEngine

        self.espeak = EspeakEngine()
        self.noise, self.noise_rate_hz = noise, noise_rate_hz

    def __call__(self, item: Plan) -> tuple[np.ndarray, int]:
        """(float32 samples, sample rate)."""
        if item.voice.startswith("flite:"):
            samples, rate_hz = flite_speak(item.text, item.voice.removeprefix("flite:"), item.rate_wpm)
        else:
            samples = self.espeak.speak(item.text, item.voice, item.rate_wpm, item.pitch).astype(np.float32) / 32768
            rate_hz = self.espeak.sample_rate_hz
        if len(samples) == 0:
            raise AsrCliError(f"{item.voice} said nothing for {item.text!r}")
        rng = np.random.default_rng([item.index, 7])
        if item.rt60_s is not None:
            samples = reverberant(samples, rate_hz, item.rt60_s, rng)
        if item.snr_db is not None and self.noise:
            samples = samples + noise_at_snr(samples, self._noise(rate_hz), item.snr_db, rng)
        return (samples * (PEAK / max(float(np.abs(samples).max()), 1e-9))).astype(np.float32), rate_hz

    def _noise(self, rate_hz: int) -> list[np.ndarray]:
        if rate_hz != self.noise_rate_hz:  # flite's rate differs from eSpeak's: the noise follows
            from .audio import resample

            self.noise = [resample(signal, self.noise_rate_hz, rate_hz) for signal in self.noise]
            self.noise_rate_hz = rate_hz
        return self.noise


def flite_speak(text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "said.wav"
        stretch = 170 / rate_wpm  # flite's duration stretch against its ~170 words a minute
        result = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}", "-t", text,
                                 "-o", str(path)], capture_output=True, text=True, check=False)  # fmt: skip
        if result.returncode != 0 or not path.exists():
            raise AsrCliError(f"flite -voice {voice} failed: {result.stderr.strip()[:200]}")
        samples, rate_hz = soundfile.read(str(path), dtype="float32")
    return samples if samples.ndim == 1 else samples.mean(axis=1), rate_hz


def reverberant(samples: np.ndarray, rate_hz: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """`samples` in a room of reverberation time `rt60_s`: convolved with the direct sound plus a noise tail that
    decays by 60 dB in rt60_s, the tail as loud as the direct sound."""
    from scipy.signal import fftconvolve

    length = max(int(rt60_s * rate_hz), 1)
    tail = rng.standard_normal(length) * np.exp(-6.9 * np.arange(length) / length)
    impulse = np.concatenate([[1.0], tail / np.sqrt(np.sum(tail**2))])
    return fftconvolve(samples, impulse)[: len(samples) + length // 4].astype(np.float32)


def noise_at_snr(samples: np.ndarray, noise: list[np.ndarray], snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of the noise recordings (looped when short) scaled to `snr_db` below the speech's power
    (measured where it is not silent: the loudest half of its 10 ms frames)."""
    source = noise[int(rng.integers(len(noise)))]
    repeats = int(np.ceil(len(samples) / max(len(source), 1))) + 1
    looped = np.tile(source, repeats)
    start = int(rng.integers(0, len(looped) - len(samples) + 1))
    stretch = looped[start : start + len(samples)].astype(np.float64)
    frame = max(len(samples) // 100, 1)
    powers = np.sort(np.mean(np.square(samples[: len(samples) // frame * frame].reshape(-1, frame)), axis=1))
    speech_power = float(np.mean(powers[len(powers) // 2 :])) if len(powers) else float(np.mean(samples**2))
    noise_power = max(float(np.mean(stretch**2)), 1e-12)
    return (stretch * np.sqrt(speech_power / noise_power / 10 ** (snr_db / 10))).astype(np.float32)


_worker_speaker: Speaker | None = None


def _start_worker(noise, noise_rate_hz) -> None:
    global _worker_speaker  # one eSpeak engine per worker process
    _worker_speaker = Speaker(noise, noise_rate_hz)


def _write(item: Plan, audio_dir: Path) -> float:
    """Synthesise and write one utterance (atomically); returns its seconds."""
    raise_if_stopped()
    samples, rate_hz = _worker_speaker(item)
    with atomic_write(audio_dir / f"{item.id}.flac", "wb") as handle:
        soundfile.write(handle, samples, rate_hz, format="FLAC")
    return len(samples) / rate_hz


def synthesise(texts: Sequence[Path], output: Path, config: VoicesConfig, show_progress: bool = False) -> dict:
    """Write `config`'s utterances of `texts` under `output` (audio/*.flac and synth.jsonl); returns a summary."""
    if config.num_utterances is None and config.hours is None:
        raise ConfigError(("num_utterances", "hours"), "give {0} or {1}: how much speech to make")
    lines, voices = text_lines(texts, config), resolve_voices(config.voices)
    audio_dir = output / "audio"
    _claim(output, texts, config)
    audio_dir.mkdir(parents=True, exist_ok=True)
    noise_rate_hz = 22050
    noise = None
    if config.noise_source is not None:
        from .noise import folder_noise

        noise = folder_noise(Path(config.noise_source), noise_rate_hz)
    done, written, seconds = [], 0, 0.0
    with ProcessPoolExecutor(config.jobs, initializer=_start_worker, initargs=(noise, noise_rate_hz)) as pool:
        with progress_bar(config.num_utterances, "synthesise", show_progress, unit="utt") as bar:
            for item, duration_s, new in _results(pool, _plans(lines, voices, config), audio_dir, config):
                done.append(Utterance(item.id, f"audio/{item.id}.flac", text=item.text, speaker=speaker_name(item.voice),
                                      duration=round(duration_s, 3)))  # fmt: skip
                written += new
                seconds += duration_s
                bar.update(1)
                if config.hours is not None and seconds >= config.hours * 3600:
                    break
    write_manifest(output / MANIFEST_FILE, done)
    log.info(f"{len(done):,} utterances ({seconds / 3600:.2f} h) by {len({u.speaker for u in done})} voices")
    return {"utterances": len(done), "hours": seconds / 3600, "written": written, "voices": len(voices)}


def _plans(lines, voices, config: VoicesConfig) -> Iterator[Plan]:
    index = 0
    while config.num_utterances is None or index < config.num_utterances:
        yield plan(index, lines, voices, config)
        index += 1


def _results(pool, plans: Iterator[Plan], audio_dir: Path, config: VoicesConfig):
    """(plan, seconds, whether written now) in index order: files already there are read, others synthesised,
    `jobs * 4` at a time in flight."""
    pending = []
    for item in plans:
        path = audio_dir / f"{item.id}.flac"
        if path.exists():
            pending.append((item, None, soundfile.info(str(path)).duration))
        else:
            pending.append((item, pool.submit(_write, item, audio_dir), None))
        while len(pending) > config.jobs * 4 or pending and pending[0][1] is None:
            item, future, duration_s = pending.pop(0)
            yield (item, future.result(), True) if future is not None else (item, duration_s, False)
    for item, future, duration_s in pending:
        yield (item, future.result(), True) if future is not None else (item, duration_s, False)


def _claim(output: Path, texts: Sequence[Path], config: VoicesConfig) -> None:
    """Record the settings in the folder, or check that a run there was made with the same ones (to resume)."""
    settings = {"texts": [str(Path(t).resolve()) for t in texts], **dataclasses.asdict(config)}
    if config.noise_source is not None:
        settings["noise_source"] = str(Path(config.noise_source).resolve())
    for key in ("num_utterances", "hours", "jobs"):  # resuming may ask for more, or run on more cores
        settings.pop(key)
    path = output / SETTINGS_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        if json.loads(json.dumps(settings)) != previous:
            changed = sorted(key for key in settings if previous.get(key) != json.loads(json.dumps(settings))[key])
            raise AsrCliError(f"{output} holds synthetic speech made with other settings ({', '.join(changed)}); "
                              "resume with the same ones, or write to a new folder")  # fmt: skip
        return
    if output.exists() and any(output.iterdir()):
        raise AsrCliError(f"{output} is not empty and holds no {SETTINGS_FILE}: give a new folder")
    output.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(json.dumps(settings, indent=2) + "\n")
