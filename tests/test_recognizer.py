"""The Python API (`asr_cli.load_model(...).transcribe(...)`), `asr-cli transcribe` and the transcript writers."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import asr_cli
from asr_cli.cli import run
from asr_cli.config import DecodeConfig, SearchConfig
from asr_cli.decode import decode_inputs
from asr_cli.errors import AsrCliError
from tests.helpers import run_cli, write_tone


@pytest.fixture(scope="module")
def recording(speechocean_utterances, tmp_path_factory) -> Path:
    """A real utterance as a 16 kHz WAV file."""
    samples, rate_hz = soundfile.read(speechocean_utterances[40].audio, dtype="float32")
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    soundfile.write(str(path), samples, rate_hz)
    return path


def test_the_api_transcribes_like_decode(tmp_path: Path, tiny_model: Path, recording: Path):
    model = asr_cli.load_model(tiny_model)
    result = model.transcribe(recording)
    greedy = DecodeConfig(search=SearchConfig(beam_size=1), show_progress=False, timestamps=True)
    decode_inputs(tiny_model, [recording], tmp_path / "hyp.jsonl", greedy)
    decoded = json.loads((tmp_path / "hyp.jsonl").read_text())
    assert result.text == decoded["text"] and [w.to_dict() for w in result.words] == decoded["words"]
    assert result.score == pytest.approx(decoded["score"], abs=1e-3)
    assert asr_cli.transcribe(tiny_model, recording).text == result.text


def test_arrays_tensors_and_other_rates(tiny_model: Path, recording: Path):
    model = asr_cli.load_model(tiny_model)
    samples, rate_hz = soundfile.read(str(recording), dtype="int16")
    from_path = model.transcribe(recording)
    assert model.transcribe(samples, rate_hz).text == from_path.text  # int16
    floats = samples.astype(np.float32) / 32768
    assert model.transcribe(torch.from_numpy(floats)).score == pytest.approx(from_path.score, abs=1e-3)
    assert model.transcribe(np.stack([floats, floats], axis=1), 16000).score == pytest.approx(from_path.score, abs=1e-3)
    import librosa

    at_8k = librosa.resample(floats, orig_sr=16000, target_sr=8000)
    assert model.transcribe(at_8k, 8000).duration_s == pytest.approx(from_path.duration_s, abs=1e-3)


def test_bad_api_inputs(tiny_model: Path, recording: Path):
    model = asr_cli.load_model(tiny_model)
    with pytest.raises(AsrCliError, match="shape"):
        model.transcribe(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(AsrCliError, match="NaN"):
        model.transcribe(np.full(16000, np.nan, np.float32))
    with pytest.raises(AsrCliError, match="sample_rate is for arrays"):
        model.transcribe(recording, 8000)
    with pytest.raises(AsrCliError, match="model file not found"):
        asr_cli.load_model("missing.pt")
    silence = model.transcribe(np.zeros(16000, np.float32))  # digital silence: finite features and score
    assert silence.duration_s == 1.0 and np.isfinite(silence.score)
    assert all(0 <= w.start <= w.end <= 1.0 for w in silence.words)  # words, if any, inside the recording


def test_importing_the_package_does_not_load_torch():
    code = "import sys, asr_cli; print('torch' in sys.modules, callable(asr_cli.load_model))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == [
        "False",
        "True",
    ]


def test_transcribe_command_prints_text_and_writes_every_format(
    tmp_path: Path, tiny_model: Path, recording: Path, capsys
):
    assert run(["transcribe", str(tiny_model), str(recording)]) == 0
    expected = asr_cli.load_model(tiny_model).transcribe(recording).text
    assert capsys.readouterr().out == expected + "\n"  # one recording: just the text
    write_tone(tmp_path / "tone.wav")
    status = run(
        [
            "transcribe",
            str(tiny_model),
            str(recording),
            str(tmp_path / "missing.wav"),
            str(tmp_path / "tone.wav"),
            "--output-format",
            "all",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    captured = capsys.readouterr()
    assert status == 1 and "1 of 3 recording(s) could not be transcribed" in captured.err
    assert "missing.wav" in captured.err and "Traceback" not in captured.err
    assert captured.out.splitlines()[0] == f"{recording}: {expected}" and captured.out.splitlines()[1].startswith(
        f"{tmp_path / 'tone.wav'}: "
    )
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        f"{stem}.{ext}" for stem in ("speech", "tone") for ext in ("txt", "json", "srt", "vtt", "tsv", "text", "ctm")
    )
    record = json.loads((tmp_path / "out" / "speech.json").read_text())
    assert record["text"] == expected and record["id"] == "speech"


def test_dash_means_standard_output_and_lm_reads_kaldi_text(tmp_path: Path, tiny_model: Path, tiny_stores):
    decoded = run_cli("decode", tiny_model, tiny_stores[1], "-o", "-")
    assert "wrote -" in decoded.stderr
    assert [json.loads(line)["id"] for line in decoded.stdout.splitlines()][:1] and not (Path.cwd() / "-").exists()
    data_dir = tmp_path / "kaldi"
    data_dir.mkdir()
    (data_dir / "wav.scp").write_text("utt1 a.wav\n")
    (data_dir / "text").write_text("utt1 HELLO WORLD\nutt2 HELLO THERE\n")
    arpa = run_cli("lm", data_dir / "text", "-o", "-", "--order", "1").stdout
    assert "\tutt1" not in arpa and "\thello" in arpa


def test_info_says_what_a_model_is(tmp_path: Path, tiny_model: Path, capsys):
    assert run(["info", str(tiny_model)]) == 0
    text = capsys.readouterr().out
    assert "architecture: 1x24 BLSTM, 3 frames stacked, subsampled 3" in text
    assert "trained on: 16 utterances" in text and "1 speakers" in text and "best epoch: 1" in text
    assert run(["info", str(tiny_model), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"] == asr_cli.load_model(tiny_model).model.num_parameters()
    assert summary["feature_config"]["num_mel_bins"] == 80
    status = run(["info", str(tmp_path)])
    assert status == 1 and "is a folder" in capsys.readouterr().err


def test_a_stored_lm_is_used_without_flags(tmp_path: Path, tiny_model: Path, tiny_stores, recording: Path, capsys):
    import shutil

    folder = tmp_path / "packaged"
    folder.mkdir()
    shutil.copy(tiny_model, folder / "model.pt")
    model_file = folder / "model.pt"
    assert run(["lm", str(tiny_stores[0]), "-o", str(tmp_path / "words.arpa"), "--order", "2"]) == 0
    status = run(["transcribe", str(model_file), str(recording), "--lm", "stored"])  # nothing stored yet
    assert status == 1 and "holds no stored LM" in capsys.readouterr().err
    plain = asr_cli.load_model(model_file).transcribe(recording)
    assert (
        run(
            [
                "pack",
                str(model_file),
                "--lm",
                str(tmp_path / "words.arpa"),
                "--lm-weight",
                "2.0",
                "--word-bonus",
                "1.5",
                "--beam-size",
                "8",
            ]
        )
        == 0
    )
    assert (folder / "lm.arpa").is_file() and json.loads((folder / "decoding.json").read_text())["lm_weight"] == 2.0
    model = asr_cli.load_model(model_file)
    stored = model.transcribe(recording)
    explicit = model.transcribe(recording, lm=tmp_path / "words.arpa", lm_weight=2.0, word_bonus=1.5, beam_size=8)
    assert stored == explicit and stored != plain
    assert model.transcribe(recording, lm=None) == plain
    capsys.readouterr()
    assert run(["transcribe", str(model_file), str(recording)]) == 0
    assert capsys.readouterr().out.strip() == stored.text
    assert run(["transcribe", str(model_file), str(recording), "--lm", "none"]) == 0
    assert capsys.readouterr().out.strip() == plain.text


def test_a_stored_lexicon_comes_with_the_stored_lm(
    tmp_path: Path, tiny_model: Path, tiny_stores, recording: Path, capsys
):
    import shutil

    folder = tmp_path / "packaged"
    folder.mkdir()
    model_file = Path(shutil.copy(tiny_model, folder / "model.pt"))
    assert run(["lm", str(tiny_stores[0]), "-o", str(tmp_path / "words.arpa"), "--order", "2"]) == 0
    words = ["go", "tom", "bus"]
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n")
    (tmp_path / "other.txt").write_text("zebra\n")
    pack = ["pack", str(model_file), "--lm", str(tmp_path / "words.arpa"), "--beam-size", "8"]
    assert run([*pack, "--lexicon", str(tmp_path / "other.txt")]) == 1  # checked before anything is stored
    assert "shares no word with the LM" in capsys.readouterr().err and not (folder / "decoding.json").exists()
    assert run([*pack, "--lexicon", str(tmp_path / "words.txt")]) == 0
    assert (folder / "lexicon.txt").read_text() == (tmp_path / "words.txt").read_text()
    model = asr_cli.load_model(model_file)
    stored = model.transcribe(recording)
    assert stored == model.transcribe(
        recording, lm=tmp_path / "words.arpa", beam_size=8, lexicon=tmp_path / "words.txt"
    )
    assert set(stored.text.split()) <= set(words)


def test_export_gives_the_models_log_probabilities(tmp_path: Path, tiny_model: Path, tiny_stores, capsys):
    from asr_cli.model import load_model_file
    from asr_cli.store import FeatureStore

    assert run(["export", str(tiny_model), "-o", str(tmp_path / "model.ts")]) == 0
    extra = {"asr_cli.json": ""}
    module = torch.jit.load(str(tmp_path / "model.ts"), _extra_files=extra)
    metadata = json.loads(extra["asr_cli.json"])
    assert metadata["feature_config"]["num_mel_bins"] == 80 and len(metadata["vocabulary"]) == 26
    store = FeatureStore(tiny_stores[1])
    frames = [torch.from_numpy(store.features(i)) for i in range(3)]
    lengths = torch.tensor([len(f) for f in frames])
    batch = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
    model = load_model_file(tiny_model).model
    with torch.no_grad():
        expected, exported = model(batch, lengths), module(batch, lengths)
    torch.testing.assert_close(exported[0], expected[0], atol=1e-4, rtol=0)
    assert torch.equal(exported[1], expected[1])


def test_export_of_a_peephole_model_is_refused_clearly(tmp_path: Path, capsys):
    from asr_cli.config import FeatureConfig, ModelConfig
    from asr_cli.model import AcousticModel, model_file_contents

    (tmp_path / "exp").mkdir()
    model = AcousticModel(ModelConfig(num_layers=1, hidden_size=8, peepholes=True, vocab_size=3))  # untrained
    torch.save(model_file_contents(model, FeatureConfig().to_dict(), ["a", "b"], {}), tmp_path / "exp" / "model.pt")
    assert run(["export", str(tmp_path / "exp" / "model.pt"), "-o", str(tmp_path / "model.ts")]) == 1
    assert "peephole" in capsys.readouterr().err and not (tmp_path / "model.ts").exists()
