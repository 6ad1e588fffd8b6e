"""The recipes' own data handling: FSDD utterances assembled with recorded background noise, held-out speakers."""

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import soundfile

from asr_cli.manifest import load_manifest
from tests.helpers import FSDD, REPO_ROOT, require


def recipe_module(name: str):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fsdd_recipe():
    return recipe_module("recipe_fsdd_digits")


def test_the_lexicon_vocabulary_adds_only_public_words_the_model_can_spell(tmp_path: Path):
    """The training words, plus the most frequent public words written with the training text's characters:
    digits in public text ("1", "15") would make the lexicon refuse the model."""
    recipe = recipe_module("recipe_speechocean762")
    manifest = tmp_path / "train.jsonl"
    manifest.write_text('{"id": "u1", "audio": "a.wav", "text": "the good cats"}\n')
    (tmp_path / "public.txt").write_text("1 dog 15 dog dog 1 1 1\n2 dogs dogs 2 2\nzebra\n")  # without the filter: 1, 2
    output = recipe.write_word_list(manifest, tmp_path / "words.txt", [tmp_path / "public.txt"], extra=2)
    # dog and dogs: the two most frequent words it can spell (1 and 2 are more frequent)
    assert output.read_text().split() == ["cats", "dog", "dogs", "good", "the"]


def test_background_noise_is_the_recordings_own_quietest_frames():
    recipe = fsdd_recipe()
    rate_hz = 8000
    rng = np.random.default_rng(0)
    quiet, loud = 0.001 * rng.standard_normal(4000), 0.3 * rng.standard_normal(4000)
    recording = np.concatenate([loud, quiet, loud]).astype(np.float32)
    noise = recipe.background_noise(recording, 12345, rate_hz, random.Random(0))
    assert noise.shape == (12345,) and noise.dtype == np.float32
    assert 0.0005 < np.sqrt(np.mean(noise**2)) < 0.002  # the quiet middle, looped; none of the loud parts
    assert not np.any(recipe.background_noise(np.zeros(10, np.float32), 50, rate_hz, random.Random(0)))


def test_leave_one_speaker_out_splits_and_noisy_pauses(tmp_path: Path):
    recipe = fsdd_recipe()
    fsdd = require(FSDD)
    speakers = recipe.speakers_of(fsdd)
    held_out, others = speakers[0], speakers[1:]
    recipe.assemble(
        fsdd,
        tmp_path,
        {"train": 6, "test": 4},
        splits={"train": (others, recipe.SPLITS["train"]), "test": ([held_out], range(0, 50))},
        noisy_splits=("test",),
    )
    train, test = load_manifest(tmp_path / "train.jsonl"), load_manifest(tmp_path / "test.jsonl")
    assert {u.speaker for u in train} <= set(others) and {u.speaker for u in test} == {held_out}
    for utterances, noisy in ((train, False), (test, True)):
        for utterance in utterances:
            samples, _ = soundfile.read(str(tmp_path / utterance.audio), dtype="float32")
            tail = samples[-400:]  # the last 50 ms: pause after the last digit
            assert np.any(tail != 0) == noisy


def test_untrimmed_recordings_have_noise_around_the_digits_and_nothing_said_clips_have_no_text(tmp_path: Path):
    recipe = fsdd_recipe()
    fsdd = require(FSDD)
    both, speech = recipe.assemble_untrimmed(fsdd, tmp_path, ["theo"], range(0, 50), count=3, silent_count=2)
    utterances, spoken = load_manifest(both), load_manifest(speech)
    assert [u.id for u in spoken] == [u.id for u in utterances if u.text is not None] and len(spoken) == 3
    silent = [u for u in utterances if u.text is None]
    assert len(silent) == 2 and all(u.speaker == "theo" for u in utterances)
    for utterance in silent:
        assert 2.0 <= soundfile.info(str(tmp_path / utterance.audio)).duration <= 3.0
    for utterance in spoken:
        digits = len(utterance.text.split())
        duration_s = soundfile.info(str(tmp_path / utterance.audio)).duration
        # at least 1 s of background at each edge, around 2-7 digits of 0.1-1.0 s each
        assert 2 <= digits <= 7 and duration_s >= 2.0 + 0.1 * digits
