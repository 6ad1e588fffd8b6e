from pathlib import Path

import pytest

from asr_cli.config import CsvImportConfig
from asr_cli.errors import AsrCliError
from asr_cli.importers import import_csv, import_kaldi, import_librispeech
from tests.helpers import SPEECHOCEAN, write_tone


def test_speechocean_imports_unmodified(speechocean_utterances):
    assert len(speechocean_utterances) == 2500
    first = speechocean_utterances[0]
    assert first.id == "000010011"
    assert first.text == "WE CALL IT BEAR"
    assert first.speaker == "0001"
    assert first.audio == str((SPEECHOCEAN / "audio/0001/000010011.flac").resolve())
    assert len({u.speaker for u in speechocean_utterances}) == 125
    assert all(Path(u.audio).is_file() for u in speechocean_utterances[:50])


def _kaldi_dir(tmp_path: Path, wav_scp: str) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(wav_scp)
    return data


def test_kaldi_segments_become_offsets_and_durations(tmp_path: Path):
    data = _kaldi_dir(tmp_path, "rec1 rec1.wav\n")
    write_tone(data / "rec1.wav", seconds=3.0)
    (data / "segments").write_text("seg-a rec1 0.0 1.2\nseg-b rec1 1.5 -1\n")
    (data / "text").write_text("seg-a HELLO WORLD\nseg-b\n")
    (data / "utt2spk").write_text("seg-a spk\nseg-b spk\n")
    a, b = import_kaldi(data)
    assert (a.id, a.offset, a.duration, a.text, a.speaker) == ("seg-a", 0.0, pytest.approx(1.2), "HELLO WORLD", "spk")
    assert (b.offset, b.duration, b.text) == (1.5, None, "")
    assert a.audio == str((data / "rec1.wav").resolve())


def test_kaldi_piped_entry_is_refused_naming_the_line(tmp_path: Path):
    data = _kaldi_dir(tmp_path, "a a.wav\nb sox x.wav -t wav - |\n")
    with pytest.raises(AsrCliError, match=r"wav.scp, line 2: piped command .* not supported"):
        import_kaldi(data)


def test_kaldi_text_for_unknown_utterance_is_an_error(tmp_path: Path):
    data = _kaldi_dir(tmp_path, "a a.wav\n")
    (data / "text").write_text("a HI\nzzz THERE\n")
    with pytest.raises(AsrCliError, match="zzz"):
        import_kaldi(data)


def test_kaldi_non_utf8_text_names_the_line(tmp_path: Path):
    data = _kaldi_dir(tmp_path, "a a.wav\n")
    (data / "text").write_bytes(b"a caf\xe9\n")
    with pytest.raises(AsrCliError, match="text, line 1: not valid UTF-8"):
        import_kaldi(data)


def test_not_a_kaldi_dir(tmp_path: Path):
    with pytest.raises(AsrCliError, match="wav.scp not found"):
        import_kaldi(tmp_path)


def test_librispeech_tree(tmp_path: Path):
    chapter = tmp_path / "LibriSpeech" / "dev" / "84" / "121123"
    chapter.mkdir(parents=True)
    for index in range(2):
        write_tone(chapter / f"84-121123-000{index}.flac", seconds=0.4)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS\n")
    utterances = import_librispeech(tmp_path / "LibriSpeech")
    assert [(u.id, u.text, u.speaker) for u in utterances] == [
        ("84-121123-0000", "GO DO YOU HEAR", "84"),
        ("84-121123-0001", "BUT IN LESS", "84"),
    ]
    (chapter / "84-121123-0001.flac").unlink()
    with pytest.raises(AsrCliError, match="no audio file"):
        import_librispeech(tmp_path / "LibriSpeech")


def test_common_voice_tsv(tmp_path: Path):
    (tmp_path / "clips").mkdir()
    write_tone(tmp_path / "clips" / "cv_1.wav")
    (tmp_path / "train.tsv").write_text('client_id\tpath\tsentence\tup_votes\nabc\tcv_1.wav\t"Hello," she said.\t2\n')
    [utterance] = import_csv(
        tmp_path / "train.tsv", CsvImportConfig(speaker_column="client_id"), audio_dir=tmp_path / "clips"
    )
    assert utterance.id == "cv_1"
    assert utterance.text == '"Hello," she said.'
    assert utterance.speaker == "abc"
    assert utterance.audio == str((tmp_path / "clips" / "cv_1.wav").resolve())


def test_csv_with_missing_column_lists_the_header(tmp_path: Path):
    (tmp_path / "t.csv").write_text("file,words\na.wav,hi\n")
    with pytest.raises(AsrCliError, match="no column.*path.*header has: file, words"):
        import_csv(tmp_path / "t.csv", CsvImportConfig(text_column="words"))
